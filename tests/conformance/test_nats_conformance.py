"""The conformance suite over NatsJetStreamSource and NatsJetStreamSink against the real nats-server
with JetStream on 127.0.0.1:4222 (``tests/services/nats.sh``). Each test makes its own stream."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.nats_jetstream import NatsJetStreamSink, NatsJetStreamSource
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PORT = int(os.environ.get("NATS_PORT", "4222"))
URL = f"nats://127.0.0.1:{PORT}"


def _stream_op(op: str, name: str) -> None:
    import nats
    from nats.js.api import StreamConfig

    async def run() -> None:
        nc = await nats.connect(URL)
        try:
            js = nc.jetstream()
            if op == "add":
                await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], duplicate_window=120))
            else:
                await js.delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(run())


class _Streams:
    def new_stream(self) -> str:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        except OSError:
            pytest.fail(
                f"nats is not answering on 127.0.0.1:{PORT}; start it with `sh tests/services/up.sh nats`"
            )
        name = f"CONF{uuid.uuid4().hex[:10]}"
        _stream_op("add", name)
        self.add_cleanup(lambda: _stream_op("delete", name))  # type: ignore[attr-defined]
        return name


class TestNatsSourceBounded(_Streams, SourceConformance):
    num_rows = 600

    def make_source(self, data: pa.Table) -> Source:
        if "_stream" not in self.__dict__:
            self._stream = self.new_stream()
            with NatsJetStreamSink(URL, subject=f"{self._stream}.data", msg_id_column="id") as sink:
                sink.write_table(data)
        return NatsJetStreamSource(
            URL, stream=self._stream, durable="conf", format=Json(data.schema), bounded=True
        )


class TestNatsSourceUnbounded(TestNatsSourceBounded):
    def make_source(self, data: pa.Table) -> Source:
        bounded = super().make_source(data)
        assert isinstance(bounded, NatsJetStreamSource)
        return NatsJetStreamSource(
            URL,
            stream=bounded.stream,
            durable="conf-u",
            subject=f"{bounded.stream}.>",
            format=Json(data.schema),
            metadata_columns=["_sequence", "_subject"],
        )


class TestNatsSink(_Streams, SinkConformance):
    num_rows = 500

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.stream = self.new_stream()
        return NatsJetStreamSink(URL, subject=f"{self.stream}.out", error_policy=error_policy)

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        src = NatsJetStreamSource(URL, stream=self.stream, durable="rb", format=Json(schema), bounded=True)
        return src.read_all()

    def bad_batch(self) -> pa.RecordBatch:
        batch = make_table(5).to_batches()[0]
        return batch.set_column(batch.schema.get_field_index("value"), "value", pa.array(np.full(5, np.nan)))


class TestNatsSinkWithIds(TestNatsSink):
    """Ids from the data: the sink is idempotent."""

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.stream = self.new_stream()
        sink = NatsJetStreamSink(
            URL, subject=f"{self.stream}.out", msg_id_column="id", error_policy=error_policy
        )
        assert sink.idempotent
        return sink
