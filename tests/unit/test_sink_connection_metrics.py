"""The search and AWS sinks own their retries and count lost connections (issue 19; the network-fault
tests in tests/integration/faults drive them through a fault proxy against the real servers).

Here, without a server: the search clients' built-in retries are off unless asked for (they resent a
reset request unseen: no backoff, no metric), and a refused connection shows in ``reconnects``."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from arrowflow.connectors.aws import KinesisSink
from arrowflow.connectors.search.elasticsearch import ElasticsearchSink
from arrowflow.connectors.search.opensearch import OpenSearchSink
from arrowflow.testing import make_table
from arrowflow.writer import BatchingConfig


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _retries(client: Any) -> int:
    # elasticsearch-py keeps it on the client (a DEFAULT marker when not given), opensearch-py on its
    # transport.
    value = getattr(client, "_max_retries", None)
    return value if isinstance(value, int) else int(client.transport.max_retries)


@pytest.mark.parametrize("cls", [OpenSearchSink, ElasticsearchSink])
def test_search_client_retries_are_the_writers(cls: Any) -> None:
    sink = cls("http://127.0.0.1:9", "i")
    assert _retries(sink.client) == 0
    sink = cls("http://127.0.0.1:9", "i", client_options={"max_retries": 2})
    assert _retries(sink.client) == 2  # the user's choice wins


BATCHING = BatchingConfig(max_request_rows=10, max_attempts=2, initial_backoff=0.01, max_backoff=0.01)


def test_refused_connections_count_as_reconnects() -> None:
    port = _closed_port()
    search = OpenSearchSink(f"http://127.0.0.1:{port}", "i", batching=BATCHING, error_policy="skip")
    kinesis = KinesisSink(
        stream_name="s",
        aws={
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
        },
        batching=BATCHING,
        error_policy="skip",
    )
    for sink in (search, kinesis):
        sink.write_table(make_table(5))
        sink.close()
        m = sink.metrics()
        # Two attempts, each refused: both counted, none a timeout; the rows went to the policy.
        assert (m["reconnects"], m["timeouts"], m["retries"], m["rows_failed"]) == (2, 0, 1, 5), m
