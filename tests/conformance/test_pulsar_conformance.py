"""The conformance suite over PulsarSource and PulsarSink against Apache Pulsar 4.0 standalone on
127.0.0.1:6650 (``tests/services/pulsar.sh``; Pulsar binary protocol). Each test uses its own topic."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.pulsar_broker import PulsarSink, PulsarSource
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PORT = int(os.environ.get("PULSAR_PORT", "6650"))
URL = f"pulsar://127.0.0.1:{PORT}"


def _new_topic() -> str:
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    except OSError:
        pytest.fail(
            f"pulsar is not answering on 127.0.0.1:{PORT}; start it with `sh tests/services/up.sh pulsar`"
        )
    return f"persistent://public/default/conf-{uuid.uuid4().hex[:12]}"


class TestPulsarSourceBounded(SourceConformance):
    """Exclusive subscription, bounded by stop='latest': replayable from a snapshot."""

    num_rows = 600

    def make_source(self, data: pa.Table) -> Source:
        if "_topic" not in self.__dict__:
            self._topic = _new_topic()
            with PulsarSink(URL, topic=self._topic, batching_max_messages=64) as sink:
                sink.write_table(data)
        return PulsarSource(
            URL, topics=self._topic, subscription="conf", format=Json(data.schema), stop="latest"
        )


class TestPulsarSourceShared(TestPulsarSourceBounded):
    """Shared subscription, unbounded: positions are not replayable (the broker redelivers)."""

    replayable = False
    ordered_per_split = False

    def make_source(self, data: pa.Table) -> Source:
        bounded = super().make_source(data)
        assert isinstance(bounded, PulsarSource)
        return PulsarSource(
            URL,
            topics=bounded.topics,
            subscription="conf-shared",
            subscription_type="shared",
            format=Json(data.schema),
            metadata_columns=["_message_id", "_topic", "_publish_time"],
        )


class TestPulsarSink(SinkConformance):
    num_rows = 500

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.topic = _new_topic()
        return PulsarSink(URL, topic=self.topic, error_policy=error_policy)

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        sub = f"rb-{uuid.uuid4().hex[:6]}"
        return PulsarSource(
            URL, topics=self.topic, subscription=sub, format=Json(schema), stop="latest"
        ).read_all()

    def bad_batch(self) -> pa.RecordBatch:
        batch = make_table(5).to_batches()[0]
        return batch.set_column(batch.schema.get_field_index("value"), "value", pa.array(np.full(5, np.nan)))


class TestPulsarSinkKeyed(TestPulsarSink):
    """Key routing from a column, key-based producer batching."""

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.topic = _new_topic()
        return PulsarSink(
            URL, topic=self.topic, key_column="name", value_columns=None, error_policy=error_policy
        )

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        sub = f"rb-{uuid.uuid4().hex[:6]}"
        fmt = Json(pa.schema([f for f in schema if f.name != "name"]))
        table = PulsarSource(
            URL, topics=self.topic, subscription=sub, format=fmt, stop="latest", metadata_columns=["_key"]
        ).read_all()
        # The key column travels as the message key, not in the payload.
        return table.rename_columns([("name" if c == "_key" else c) for c in table.column_names])
