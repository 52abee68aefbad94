"""The conformance suite over RabbitMQSource and RabbitMQSink against the real RabbitMQ on 127.0.0.1:5672
(``tests/services/rabbitmq.sh``; guest/guest). Each test uses its own durable queue, deleted afterwards."""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.rabbitmq import RabbitMQSink, RabbitMQSource
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
URL = f"amqp://guest:guest@127.0.0.1:{PORT}/%2F"


def _queue_op(op: str, name: str) -> None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        if op == "add":
            conn.channel().queue_declare(name, durable=True)
        else:
            conn.channel().queue_delete(name)
    finally:
        conn.close()


class _Queues:
    def new_queue(self) -> str:
        import pika.exceptions

        name = f"conf-{uuid.uuid4().hex[:10]}"
        try:
            _queue_op("add", name)
        except pika.exceptions.AMQPConnectionError:
            pytest.fail(f"rabbitmq is not answering on 127.0.0.1:{PORT}; `sh tests/services/up.sh rabbitmq`")
        self.add_cleanup(lambda: _queue_op("delete", name))  # type: ignore[attr-defined]
        return name


class TestRabbitSourceBounded(_Queues, SourceConformance):
    """A bounded read drains the queue; nothing is acknowledged, so every test sees the whole queue."""

    num_rows = 600
    replayable = False  # a queue: messages are consumed, not re-read from a position

    def make_source(self, data: pa.Table) -> Source:
        if "_queue" not in self.__dict__:
            self._queue = self.new_queue()
            with RabbitMQSink(URL, routing_key=self._queue) as sink:
                sink.write_table(data)
        return RabbitMQSource(URL, queue=self._queue, format=Json(data.schema), bounded=True, prefetch=0)


class TestRabbitSourceUnboundedDedup(TestRabbitSourceBounded):
    declared_replayable = True  # redeliveries are dropped by message id: fit for exactly-once

    def make_source(self, data: pa.Table) -> Source:
        bounded = super().make_source(data)
        assert isinstance(bounded, RabbitMQSource)
        return RabbitMQSource(
            URL,
            queue=bounded.queue,
            format=Json(data.schema),
            prefetch=2000,
            dedup="message_id",
            metadata_columns=["_routing_key", "_message_id", "_redelivered"],
        )


class TestRabbitSink(_Queues, SinkConformance):
    num_rows = 500

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.queue = self.new_queue()
        return RabbitMQSink(URL, routing_key=self.queue, error_policy=error_policy)

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        return RabbitMQSource(URL, queue=self.queue, format=Json(schema), bounded=True, prefetch=0).read_all()

    def bad_batch(self) -> pa.RecordBatch:
        batch = make_table(5).to_batches()[0]
        return batch.set_column(batch.schema.get_field_index("value"), "value", pa.array(np.full(5, np.nan)))


class TestRabbitSinkRoutingColumn(TestRabbitSink):
    """Routing keys from a column (the default exchange routes by queue name); ids from the data."""

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.queue = self.new_queue()
        sink = RabbitMQSink(
            URL,
            routing_key_column="rk",
            message_id_column="id",
            value_columns=None,
            error_policy=error_policy,
        )
        self._wrap = self.queue
        return _WithRoutingKey(sink, self.queue)


class _WithRoutingKey(Sink):
    """Adds the ``rk`` column the sink routes by (test adapter, not arrowflow code)."""

    def __init__(self, sink: RabbitMQSink, queue: str) -> None:
        self.sink, self.queue = sink, queue

    def write(self, batch: pa.RecordBatch) -> None:
        self.sink.write(batch.append_column("rk", pa.array([self.queue] * batch.num_rows, pa.string())))

    def flush(self) -> None:
        self.sink.flush()

    def _close(self) -> None:
        self.sink.close()

    def metrics(self) -> dict[str, int]:
        return self.sink.metrics()

    @property
    def error_policy(self) -> Any:
        return self.sink.error_policy
