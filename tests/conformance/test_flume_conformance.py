"""The sink conformance suite over FlumeSink, both protocols, against the protocol test servers of
tests/integration/flume/flume_test_server.py (protocol test servers, NOT Apache Flume).

A row becomes an event whose body is ``name`` and whose headers are the other columns cast to
string; :meth:`read_back` turns the recorded events back into that table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "flume"))

from flume_test_server import (
    FlumeAvroTestServer,
    FlumeHttpTestServer,
    address_of,
)

from arrowflow.connectors.flume import FlumeSink
from arrowflow.sink import Sink
from arrowflow.testing import SinkConformance, make_table
from arrowflow.writer import BatchingConfig

HEADERS = ["id", "value", "flag", "count", "ts"]
BATCHING = BatchingConfig(
    max_request_rows=100, max_in_flight=1, max_time_in_buffer=0.2, initial_backoff=0.01, max_backoff=0.05
)


class _FlumeConformance(SinkConformance):
    protocol = "http"
    ordered = True  # one request in flight: events arrive in write order

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        server: FlumeHttpTestServer | FlumeAvroTestServer = (
            FlumeHttpTestServer() if self.protocol == "http" else FlumeAvroTestServer()
        )
        self.add_cleanup(server.stop)
        self.server = server
        return FlumeSink(
            protocol=self.protocol,
            address=address_of(server),
            body_column="name",
            header_columns=HEADERS,
            batching=BATCHING,
            error_policy=error_policy,
        )

    def read_back(self) -> pa.Table:
        events = self.server.recorder.events
        columns: dict[str, pa.Array] = {
            h: pa.array([e.headers.get(h) for e in events], pa.string()) for h in HEADERS
        }
        columns["name"] = pa.array([e.body.decode() for e in events], pa.string())
        return pa.table(columns)

    def expected_read_back(self, data: pa.Table) -> pa.Table:
        # Headers are the columns' string casts (the sink's documented mapping); nulls are omitted.
        columns = {h: pc.cast(data.column(h), pa.string()) for h in HEADERS}
        columns["name"] = data.column("name")
        return pa.table(columns)

    def bad_batch(self) -> pa.RecordBatch:
        data = make_table(5)
        return data.set_column(2, "name", pa.nulls(5, pa.string())).to_batches()[0]


class TestFlumeHttpSinkAgainstProtocolTestServer(_FlumeConformance):
    protocol = "http"


class TestFlumeAvroSinkAgainstProtocolTestServer(_FlumeConformance):
    protocol = "avro"
