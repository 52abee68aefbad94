"""FirehoseSink and DynamoDBSink through the fault proxy (issue 19): each fault of
``tests/faults/scenario.py`` while requests flow; every row is read back from the server, a silent
endpoint is noticed by botocore's ``read_timeout`` instead of hanging the flush, and the metrics count
the retries, reconnects and timeouts.

The servers are stand-ins, not AWS: Firehose (DirectPut -> S3) runs on moto server
(tests/services/aws.sh, an in-memory emulator in Python), and so does DynamoDB: dynalite
(tests/services/dynalite.sh) cannot take this test, its process dies of a client's reset in the middle
of a request (dynalite 4.0.0, ``index.js``: ``req.on('error', function (err) { throw err })``).
What is tested is the client side: botocore's HTTP connections meeting a broken network. KinesisSink
runs through the same faults against kinesalite (test_kinesis_faults.py, sharing this module's code).

Delivery: PutRecords and PutRecordBatch are not idempotent (at-least-once). A request cut on its way
out (``reset``: the first 2000 bytes pass) never reaches the server, so its resend duplicates nothing;
a request the server answered into a silent network (black hole, stall, or a reply slower than the
timeout on a loaded machine) is applied and then sent again: duplicates there are expected, losses
never. BatchWriteItem puts by key: every row is there once whatever was replayed (the metrics show
the replays)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from aws_helpers import CREDS, create_table
from proxy import FaultProxy
from scenario import CAP, FAULTS, check_recovered, write_through
from test_firehose import make_stream, s3_lines

from arrowflow.connectors.aws import DynamoDBSink, FirehoseSink
from arrowflow.connectors.dynamodb.config import DYNAMODB_BATCHING
from arrowflow.connectors.firehose.config import FIREHOSE_BATCHING
from arrowflow.testing import make_table
from arrowflow.writer import AsyncBatchWriter, BatchingConfig

SERVICE = "aws"  # the proxy fixture (conftest.py) fronts this server (moto)
TIMEOUT = 5.0  # botocore's read_timeout and connect_timeout
STALL = 15.0  # longer than TIMEOUT, with room for a slow first request on a loaded machine
ROWS = 2000
#: Faults that do not silence the network: a request is either answered or never arrives.
LOUD = ("latency", "bandwidth", "reset")


def _aws(endpoint: str) -> dict[str, Any]:
    return {
        **CREDS,
        "endpoint_url": endpoint,
        "botocore_config": {"read_timeout": TIMEOUT, "connect_timeout": TIMEOUT},
    }


def _through(proxy: FaultProxy) -> dict[str, Any]:
    return _aws(f"http://127.0.0.1:{proxy.port}")


def _batching(default: BatchingConfig, rows: int, in_flight: int = 2) -> BatchingConfig:
    # Retries for as long as a test may take: the faults end, the rows must get through.
    return dataclasses.replace(
        default,
        max_request_rows=rows,
        max_in_flight=in_flight,
        max_attempts=None,
        max_retry_time=CAP,
        max_backoff=0.5,
    )


def _client(endpoint: str) -> Callable[[str], Any]:
    import boto3

    return lambda service: boto3.client(service, endpoint_url=endpoint, **CREDS)


def _write_through(
    fault: str, proxy: FaultProxy, sink: AsyncBatchWriter, rows: pa.Table, **faults: Any
) -> dict[str, int]:
    m = write_through(fault, proxy, sink, rows, stall=STALL, **faults)
    assert m["rows_written"] >= rows.num_rows and m["rows_failed"] == 0, m
    return m


def _check_at_least_once(fault: str, ids: list[int], m: dict[str, int], proxy: FaultProxy) -> None:
    """Every id arrived; duplicates only where a request may have been applied and resent; the
    metrics show the fault was met (``check_recovered``)."""
    assert set(ids) == set(range(ROWS)), f"{ROWS - len(set(ids) & set(range(ROWS)))} rows lost"
    duplicates = {i: k for i, k in Counter(ids).items() if k > 1}
    if fault in LOUD and m["timeouts"] == 0:
        assert not duplicates, (len(duplicates), m)
    check_recovered(fault, m, proxy)


@pytest.mark.parametrize("fault", FAULTS)
def test_firehose_sink_loses_nothing_through(fault: str, proxy: FaultProxy, aws_endpoint: str) -> None:
    name, bucket = make_stream(_client(aws_endpoint))
    rows = make_table(ROWS).select(["id", "name"])
    sink = FirehoseSink(
        delivery_stream_name=name, aws=_through(proxy), batching=_batching(FIREHOSE_BATCHING, 250)
    )
    m = _write_through(fault, proxy, sink, rows)
    lines = s3_lines(_client(aws_endpoint), bucket)
    _check_at_least_once(fault, [line["id"] for line in lines], m, proxy)


@pytest.mark.parametrize("fault", FAULTS)
def test_dynamodb_sink_loses_nothing_through(fault: str, proxy: FaultProxy, aws_endpoint: str) -> None:
    ddb = _client(aws_endpoint)("dynamodb")
    table = create_table(ddb, key=(("id", "N"),))
    rows = make_table(ROWS).select(["id", "name"])
    sink = DynamoDBSink(
        table_name=table,
        key_columns=["id"],
        aws=_through(proxy),
        batching=_batching(DYNAMODB_BATCHING, 25),
    )
    # A BatchWriteItem of 25 rows is about 2 KB: cut it after 1000 bytes, in the middle.
    m = _write_through(fault, proxy, sink, rows, reset_bytes=1000)
    items: dict[int, str] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            items[int(item["id"]["N"])] = item["name"]["S"]
    want = dict(zip(rows.column("id").to_pylist(), rows.column("name").to_pylist(), strict=True))
    assert items == want  # every row, once (puts by key; the metrics show the replays)
    check_recovered(fault, m, proxy)
