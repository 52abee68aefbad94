"""The conformance suite over ActiveMQSource, ActiveMQSink and ActiveMQTransactionalSink against the real
ActiveMQ 5.17 (STOMP on 127.0.0.1:61613, ``tests/services/activemq.sh``). Each test uses its own queue and
drains it afterwards (STOMP cannot delete a queue).

The source suites hold at most 150 rows: a default ActiveMQ broker pages at most ``maxPageSize`` (200)
stored messages to a consumer that has not acknowledged them, and the suite reads without checkpoints.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.activemq import ActiveMQSink, ActiveMQSource, ActiveMQTransactionalSink
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PORT = int(os.environ.get("ACTIVEMQ_STOMP_PORT", "61613"))


def drain(destination: str, idle: float = 0.5) -> int:
    """Consume (auto ack) until ``idle`` seconds pass without a message; returns how many."""
    import stomp

    got = [0, time.monotonic()]

    class L(stomp.ConnectionListener):
        def on_message(self, frame: Any) -> None:
            got[0] += 1
            got[1] = time.monotonic()

    conn = stomp.Connection12([("127.0.0.1", PORT)], auto_decode=False)
    conn.set_listener("drain", L())
    conn.connect(wait=True)
    conn.subscribe(destination, id="drain", ack="auto")
    while time.monotonic() - got[1] < idle:
        time.sleep(0.1)
    conn.disconnect()
    return got[0]


class _Queues:
    def new_queue(self) -> str:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        except OSError:
            pytest.fail(
                f"activemq is not answering on 127.0.0.1:{PORT}; `bash tests/services/activemq.sh start`"
            )
        name = f"/queue/conf-{uuid.uuid4().hex[:10]}"
        self.add_cleanup(lambda: drain(name))  # type: ignore[attr-defined]
        return name


class TestActiveMQSource(_Queues, SourceConformance):
    num_rows = 150
    replayable = False

    def make_source(self, data: pa.Table) -> Source:
        if "_queue" not in self.__dict__:
            self._queue = self.new_queue()
            with ActiveMQSink("127.0.0.1", PORT, destination=self._queue) as sink:
                sink.write_table(data)
        return ActiveMQSource(
            "127.0.0.1",
            PORT,
            destination=self._queue,
            format=Json(data.schema),
            metadata_columns=["_message_id", "_redelivered"],
        )


class TestActiveMQSourceClientAck(TestActiveMQSource):
    def make_source(self, data: pa.Table) -> Source:
        src = super().make_source(data)
        assert isinstance(src, ActiveMQSource)
        return ActiveMQSource(
            "127.0.0.1", PORT, destination=src.destination, ack="client", format=Json(data.schema)
        )


class _ReadBack(_Queues):
    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        src = ActiveMQSource("127.0.0.1", PORT, destination=self.queue, format=Json(schema), prefetch=5000)
        batches = list(src.batches(idle_timeout=1.5))
        return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()

    def bad_batch(self) -> pa.RecordBatch:
        batch = make_table(5).to_batches()[0]
        return batch.set_column(batch.schema.get_field_index("value"), "value", pa.array(np.full(5, np.nan)))


class TestActiveMQSink(_ReadBack, SinkConformance):
    num_rows = 150  # read back without acks: see the module docstring

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.queue = self.new_queue()
        return ActiveMQSink(
            "127.0.0.1", PORT, destination=self.queue, header_columns=["name"], error_policy=error_policy
        )


class TestActiveMQTransactionalSink(_ReadBack, SinkConformance):
    num_rows = 150

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.queue = self.new_queue()
        return ActiveMQTransactionalSink("127.0.0.1", PORT, destination=self.queue, error_policy=error_policy)
