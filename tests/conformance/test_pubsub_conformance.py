"""The conformance suite over PubSubSource and PubSubSink against the Cloud Pub/Sub emulator on
127.0.0.1:8085 (``tests/services/pubsub.sh``). Each test makes its own topic and subscription."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.gcp_pubsub import PubSubSink, PubSubSource, publisher_client, subscriber_client
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PORT = int(os.environ.get("PUBSUB_PORT", "8085"))
HOST = f"127.0.0.1:{PORT}"
PROJECT = "arrowflow-test"


def new_topic(ordering: bool = False, subscriptions: int = 1) -> tuple[str, list[str]]:
    """A fresh topic and ``subscriptions`` subscriptions on it (ack deadline 10 s)."""
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    except OSError:
        pytest.fail(
            f"the Pub/Sub emulator is not answering on {HOST}; start it with `sh tests/services/up.sh pubsub`"
        )
    suffix = uuid.uuid4().hex[:12]
    topic = f"projects/{PROJECT}/topics/t-{suffix}"
    subs = [f"projects/{PROJECT}/subscriptions/s-{suffix}-{i}" for i in range(subscriptions)]
    pub = publisher_client(HOST)
    pub.create_topic(name=topic)
    sub = subscriber_client(HOST)
    for s in subs:
        sub.create_subscription(
            request={
                "name": s,
                "topic": topic,
                "ack_deadline_seconds": 10,
                "enable_message_ordering": ordering,
            }
        )
    sub.close()
    return topic, subs


class TestPubSubSource(SourceConformance):
    num_rows = 600
    replayable = False
    ordered_per_split = True

    def make_source(self, data: pa.Table) -> Source:
        if "_sub" not in self.__dict__:
            topic, subs = new_topic(ordering=True)
            self._sub = subs[0]
            # One ordering key: the emulator then delivers in publish order.
            table = data.append_column("k", pa.array(["one"] * data.num_rows))
            with PubSubSink(PROJECT, topic, emulator_host=HOST, ordering_key_column="k") as sink:
                sink.write_table(table)
        return PubSubSource(PROJECT, self._sub, emulator_host=HOST, format=Json(data.schema), ack_deadline=10)


class TestPubSubSink(SinkConformance):
    num_rows = 500
    read_back_timeout = 30.0

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        # Several subscriptions: each read-back drains (and acknowledges) a fresh one, because the
        # emulator takes ~10 s to redeliver messages handed back with a zero ack deadline.
        self.topic, self.subs = new_topic(subscriptions=6)
        return PubSubSink(PROJECT, self.topic, emulator_host=HOST, error_policy=error_policy)

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        assert self.subs, "every subscription was used"
        src = PubSubSource(
            PROJECT, self.subs.pop(0), emulator_host=HOST, format=Json(schema), ack_deadline=10
        )
        reader = src.open(src.plan()[0])
        batches = []
        try:
            while True:
                batch = reader.read_batch(1000, 1.5)
                if batch is None:
                    break
                batches.append(batch)
            reader.commit(reader.snapshot())
        finally:
            reader.close()
        return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()

    def bad_batch(self) -> pa.RecordBatch:
        batch = make_table(5).to_batches()[0]
        return batch.set_column(batch.schema.get_field_index("value"), "value", pa.array(np.full(5, np.nan)))
