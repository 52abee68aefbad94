"""The conformance suite over KafkaSource and KafkaSink, against the librdkafka mock cluster.

The mock cluster is a real Kafka-protocol server living in this process (3 brokers; topics
auto-create with 4 partitions). The same connectors run against a real Apache Kafka broker in
``tests/integration/kafka``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.kafka import KafkaSink, KafkaSource, TransactionalKafkaSink
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table


@pytest.fixture(scope="module")
def mock_bootstrap() -> Iterator[str]:
    from confluent_kafka import Producer

    holder = Producer({"test.mock.num.brokers": 3, "log_level": 3})
    md = holder.list_topics(timeout=10)
    yield ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())
    del holder


class _Mock:
    bootstrap: str

    @pytest.fixture(autouse=True)
    def _bootstrap(self, mock_bootstrap: str) -> None:
        self.bootstrap = mock_bootstrap


class TestKafkaSourceBounded(_Mock, SourceConformance):
    """Bounded (latest at planning), keyed by ``id`` so rows spread over the 4 partitions."""

    num_rows = 600

    def _load(self, data: pa.Table) -> str:
        topic = self.__dict__.get("_topic")
        if topic is None:
            topic = f"conf-src-{uuid.uuid4().hex[:10]}"
            with KafkaSink(self.bootstrap, topic=topic, key_columns=["key"]) as sink:
                keyed = data.append_column("key", pa.array([str(i) for i in range(data.num_rows)]))
                sink.write_table(keyed)
            self._topic = topic
        return topic

    def make_source(self, data: pa.Table) -> Source:
        topic = self._load(data)
        fmt = Json(data.schema, columns=data.schema.names)
        return KafkaSource(self.bootstrap, topics=[topic], format=fmt, stopping_offsets="latest")


class TestKafkaSourceUnbounded(TestKafkaSourceBounded):
    """Unbounded, with metadata columns (dropped by expected_table's comparison)."""

    def make_source(self, data: pa.Table) -> Source:
        topic = self._load(data)
        return KafkaSource(
            self.bootstrap,
            topics=[topic],
            format=Json(data.schema),
            metadata_columns=["_offset", "_partition"],
            discovery_interval=5.0,
        )


class TestKafkaSink(_Mock, SinkConformance):
    num_rows = 500

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.topic = f"conf-sink-{uuid.uuid4().hex[:10]}"
        return KafkaSink(self.bootstrap, topic=self.topic, error_policy=error_policy)

    def read_back(self) -> pa.Table:
        schema = make_table(1).schema
        src = KafkaSource(self.bootstrap, topics=[self.topic], format=Json(schema), stopping_offsets="latest")
        return src.read_all()

    def bad_batch(self) -> pa.RecordBatch:
        # NaN cannot be written as JSON (Json(nan="error")): every row fails to encode.
        batch = make_table(5).to_batches()[0]
        nan = pa.array(np.full(5, np.nan))
        return batch.set_column(batch.schema.get_field_index("value"), "value", nan)


class TestKafkaSinkExactlyOnce(TestKafkaSink):
    """The transactional variant: data visible after close()/commit."""

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.topic = f"conf-eos-{uuid.uuid4().hex[:10]}"
        return TransactionalKafkaSink(
            self.bootstrap,
            topic=self.topic,
            transactional_id_prefix=self.topic,
            error_policy=error_policy,
        )

    def check_written(self, sink: Sink, expected: pa.Table) -> None:
        # Written rows become visible at commit: flush() in the suite is a checkpoint here.
        if not sink.closed:
            sink.commit(sink.prepare_commit())  # type: ignore[attr-defined]
        super().check_written(sink, expected)
