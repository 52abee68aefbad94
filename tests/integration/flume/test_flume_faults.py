"""FlumeSink against the fault-injecting protocol test servers of flume_test_server.py (NOT Apache
Flume): only what the real agent of test_flume.py cannot be made to do on demand. A request that
fails once and then succeeds (HTTP 503/429/500, Avro FAILED/UNKNOWN), a fatal answer (HTTP 400, an
Avro error response), and how many events each request held. Each test compares what the server
received with what was written, row by row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from flume_agent import FAST
from flume_test_server import (
    Event,
    FlumeAvroTestServer,
    FlumeHttpTestServer,
    address_of,
    protocol_test_server,
)

from arrowflow.connectors import MemorySink
from arrowflow.connectors.flume import FlumeSink, default_batching
from arrowflow.errors import ArrowflowError
from arrowflow.writer import BatchingConfig


@pytest.fixture(params=["http", "avro"], ids=lambda p: f"{p}-fault-test-server-not-flume")
def server(request: pytest.FixtureRequest) -> Iterator[FlumeHttpTestServer | FlumeAvroTestServer]:
    with protocol_test_server(request.param) as s:
        yield s
    if isinstance(s, FlumeAvroTestServer):
        assert not s.errors, s.errors


def _protocol(server: Any) -> str:
    return "http" if isinstance(server, FlumeHttpTestServer) else "avro"


def _sink(server: Any, **options: Any) -> FlumeSink:
    options.setdefault("batching", FAST)
    return FlumeSink(protocol=_protocol(server), address=address_of(server), **options)


def _bodies(events: list[Event]) -> list[bytes]:
    return [e.body for e in events]


def test_transient_failures_are_retried_then_succeed(server: Any) -> None:
    server.script.extend([503, 429, 500] if _protocol(server) == "http" else ["FAILED", "UNKNOWN", "FAILED"])
    with _sink(server, header_columns=["n"]) as sink:
        sink.write(pa.record_batch({"body": [f"e{i}" for i in range(30)], "n": np.arange(30)}))
        sink.flush()
        m = sink.metrics()
    assert (m["retries"], m["rows_written"], m["rows_failed"]) == (3, 30, 0)
    assert server.recorder.rejected == 3
    assert server.recorder.events == [Event({"n": str(i)}, f"e{i}".encode()) for i in range(30)]


def test_fatal_answer_goes_to_error_policy_without_retry(server: Any) -> None:
    server.script.append(400 if _protocol(server) == "http" else "ERROR")
    dead = MemorySink()
    with _sink(server, error_policy=dead) as sink:
        sink.write(pa.record_batch({"body": ["rejected-1", "rejected-2"]}))
        sink.flush()
        sink.write(pa.record_batch({"body": ["kept"]}))
        sink.flush()
        assert sink.metrics()["retries"] == 0  # fatal: never re-sent
    assert dead.table().column("body").to_pylist() == ["rejected-1", "rejected-2"]
    assert all("failed fatally" in e for e in dead.table().column("error").to_pylist())
    assert server.recorder.events == [Event({}, b"kept")]

    server.script.append(400 if _protocol(server) == "http" else "ERROR")
    sink = _sink(server, error_policy="fail")
    sink.write(pa.record_batch({"body": ["x"]}))
    with pytest.raises(ArrowflowError, match="failed fatally"):
        sink.flush()
    with pytest.raises(ArrowflowError):
        sink.close()


def test_request_sizes(server: Any) -> None:
    """Flume's batchSize (100) by default; ``max_request_rows`` caps every request."""
    assert default_batching().max_request_rows == 100
    with _sink(server, batching=default_batching()) as sink:
        sink.write(pa.record_batch({"body": [str(i) for i in range(250)]}))
    assert server.recorder.request_sizes() == [100, 100, 50]

    n = 5_000
    batching = BatchingConfig(max_request_rows=400, max_in_flight=1, max_time_in_buffer=0.2)
    with _sink(server, batching=batching) as sink:
        for part in pa.Table.from_batches(
            [pa.record_batch({"body": [f"l{i}" for i in range(n)]})]
        ).to_batches(777):
            sink.write(part)
    sizes = server.recorder.request_sizes()[3:]
    assert sum(sizes) == n and max(sizes) <= 400
    assert _bodies(server.recorder.events)[250:] == [f"l{i}".encode() for i in range(n)]


def test_avro_handshake_once_per_connection_and_answers_in_many_buffers() -> None:
    with protocol_test_server("avro") as server:
        assert isinstance(server, FlumeAvroTestServer)
        with _sink(server, batching=BatchingConfig(max_request_rows=10, max_in_flight=1)) as sink:
            sink.write(pa.record_batch({"body": [str(i) for i in range(35)]}))
            sink.flush()
            # The sink sends its protocol text with the hash, so the server never answers NONE;
            # its protocol JSON differs from the server's text, hence CLIENT.
            assert [m for _, with_text, m in server.handshakes] == ["CLIENT"]
            assert all(with_text for _, with_text, _ in server.handshakes)
            # FAILED is an answer on a healthy connection: the retry reuses it (no new handshake).
            server.script.append("FAILED")
            sink.write(pa.record_batch({"body": ["again"]}))
            sink.flush()
            assert len(server.handshakes) == 1
        # A new sink is a new connection: it handshakes again.
        with _sink(server) as sink:
            sink.write(pa.record_batch({"body": ["new connection"]}))
        assert [m for _, _, m in server.handshakes] == ["CLIENT", "CLIENT"]
        assert server.recorder.request_sizes() == [10, 10, 10, 5, 1, 1]
        assert _bodies(server.recorder.events) == [str(i).encode() for i in range(35)] + [
            b"again",
            b"new connection",
        ]
        assert all(count == 1 for count in server.frames)  # the sink sends one buffer per frame
        assert server.answer_buffer == 3  # ... and joins answers cut into 3-byte buffers
