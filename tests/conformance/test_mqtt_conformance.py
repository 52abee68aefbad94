"""The conformance suite over MqttSource and MqttSink against the real Mosquitto on 127.0.0.1:1883
(``tests/services/mqtt.sh``). Topics and client ids carry a uuid so parallel runs never collide.

The source is not replayable (a subscription, not a log): the data is queued by the broker for a
persistent session created before publishing, so the source reads it once connected.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.mqtt_broker import MqttSink, MqttSource
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PORT = int(os.environ.get("MQTT_PORT", "1883"))


def _check() -> None:
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    except OSError:
        pytest.fail(
            f"mosquitto is not answering on 127.0.0.1:{PORT}; start it with `sh tests/services/up.sh mqtt`"
        )


def _create_session(client_id: str, topic: str) -> None:
    """Connect once with a persistent MQTT 5 session subscribed to ``topic``, then leave it."""
    src = MqttSource("127.0.0.1", PORT, topics=[topic], client_id=client_id)
    reader = src.open(src.plan()[0])
    deadline = time.monotonic() + 10
    while not reader._client.is_connected() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    time.sleep(0.2)  # the SUBACK
    reader.close()


class TestMqttSource(SourceConformance):
    replayable = False
    num_rows = 400  # Mosquitto queues at most 1000 messages per offline session
    settle_time = 0.5

    def make_source(self, data: pa.Table) -> Source:
        _check()
        if "_topic" not in self.__dict__:
            self._topic = f"conf/{uuid.uuid4().hex[:10]}"
            self._client_id = f"conf-{uuid.uuid4().hex[:10]}"
            _create_session(self._client_id, self._topic)
            with MqttSink("127.0.0.1", PORT, topic=self._topic, qos=1) as sink:
                sink.write_table(data)
        return MqttSource(
            "127.0.0.1", PORT, topics=[self._topic], client_id=self._client_id, format=Json(data.schema)
        )


class TestMqttSink(SinkConformance):
    num_rows = 500

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        _check()
        self.topic = f"conf-sink/{uuid.uuid4().hex[:10]}"
        self.received: list[bytes] = []
        lock = threading.Lock()
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with lock:
                self.received.append(msg.payload)

        sub.on_message = on_message
        sub.connect("127.0.0.1", PORT)
        sub.subscribe(self.topic, qos=1)
        sub.loop_start()
        time.sleep(0.3)  # the SUBACK; messages published before it would be lost
        self.add_cleanup(sub.loop_stop)
        self.add_cleanup(sub.disconnect)
        return MqttSink("127.0.0.1", PORT, topic=self.topic, qos=1, error_policy=error_policy)

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        payloads = pa.array(list(self.received), pa.binary())
        return pa.Table.from_batches([Json(schema).decode(payloads).batch], schema=schema)

    def bad_batch(self) -> pa.RecordBatch:
        batch = make_table(5).to_batches()[0]
        return batch.set_column(batch.schema.get_field_index("value"), "value", pa.array(np.full(5, np.nan)))
