"""The sink conformance suite over FlumeSink, both protocols, against the real Apache Flume 1.11 agent
of ``tests/services/flume.sh`` (see tests/integration/flume/flume_agent.py).

A row becomes an event whose body is ``name`` and whose headers are the other columns cast to
string; :meth:`read_back` turns the events the agent's file_roll sink wrote for this test's run
back into that table."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "flume"))

from flume_agent import FAST, RUN, FlumeAgent, new_run

from arrowflow.connectors.flume import FlumeSink
from arrowflow.sink import Sink
from arrowflow.testing import SinkConformance, make_table

HEADERS = ["id", "value", "flag", "count", "ts"]
AGENT = FlumeAgent()


class _FlumeConformance(SinkConformance):
    protocol = "http"
    ordered = True  # one request in flight, one channel and one sink per source: write order is kept
    read_back_timeout = 120.0  # the agent's file_roll sink backs off up to 5 s when its channel is empty

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        port = AGENT.avro_port if self.protocol == "avro" else AGENT.http_port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            pytest.fail(
                f"the Flume agent is not answering on 127.0.0.1:{port}; "
                "start it with `sh tests/services/up.sh flume`"
            )
        self.run = new_run()
        return FlumeSink(
            protocol=self.protocol,
            address=AGENT.address(self.protocol),
            body_column="name",
            header_columns=HEADERS,
            static_headers={RUN: self.run},
            batching=FAST,
            error_policy=error_policy,
        )

    def read_back(self) -> pa.Table:
        events = AGENT.events_of(self.protocol, self.run)
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


class TestFlumeHttpSink(_FlumeConformance):
    protocol = "http"


class TestFlumeAvroSink(_FlumeConformance):
    protocol = "avro"
