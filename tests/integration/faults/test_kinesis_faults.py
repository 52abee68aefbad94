"""KinesisSink through the fault proxy (issue 19), against kinesalite (tests/services/kinesalite.sh, a
stand-in: a Node.js implementation of the Kinesis API), with the checks of test_aws_faults.py: every
row read back from every shard, a silent endpoint noticed by botocore's ``read_timeout``, the
retries, reconnects and timeouts counted. PutRecords is at-least-once: duplicates only where a
request may have been applied and then resent (a silent network), never a loss. Two requests are in
flight (kinesalite, unlike moto, sequences concurrent PutRecords safely)."""

from __future__ import annotations

import json

import pytest
from aws_helpers import create_stream, read_stream
from proxy import FaultProxy
from scenario import FAULTS
from test_aws_faults import ROWS, _batching, _check_at_least_once, _client, _through, _write_through

from arrowflow.connectors.kinesis import KinesisSink
from arrowflow.connectors.kinesis.config import KINESIS_BATCHING
from arrowflow.testing import make_table

SERVICE = "kinesalite"  # the proxy fixture (conftest.py) fronts this server


@pytest.mark.parametrize("fault", FAULTS)
def test_kinesis_sink_loses_nothing_through(fault: str, proxy: FaultProxy, kinesalite_endpoint: str) -> None:
    stream = create_stream(_client(kinesalite_endpoint)("kinesis"), shards=2)
    rows = make_table(ROWS).select(["id", "name"])
    sink = KinesisSink(stream_name=stream, aws=_through(proxy), batching=_batching(KINESIS_BATCHING, 250))
    m = _write_through(fault, proxy, sink, rows)
    records = read_stream(_client(kinesalite_endpoint)("kinesis"), stream)
    _check_at_least_once(fault, [json.loads(r["Data"])["id"] for r in records], m, proxy)
