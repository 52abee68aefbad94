"""Failover in the three-broker cluster of tests/services/kafka-cluster.sh (replication factor 3,
``min.insync.replicas=2``): the broker leading a partition is SIGKILLed while one pipeline produces
into the topic (``acks=all``, the sink's default) and another reads it (read_committed).

At-least-once: nothing is lost, and the idempotent producer's retries to the new leader are not
duplicated. Exactly-once (one transaction per checkpoint): every id is committed exactly once. The
killed node is started again on its data after the test, so the next test finds three brokers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from kafka_helpers import Cluster, json_ids, run_in_thread, wait_read

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.formats import Json

ROWS = 3000


@pytest.fixture
def whole_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster; after the test, every node it killed is started again on its data."""
    yield cluster
    cluster.start_missing()


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_partition_leader_killed_mid_run(whole_cluster: Cluster, guarantee: str, tmp_path: Path) -> None:
    cluster = whole_cluster
    broker = cluster.broker
    topic = broker.create_topic(broker.topic(f"failover-{guarantee}"), 3, replication=3)
    source = DataGenSource(fields={"id": Seq()}, count=ROWS, batch_size=50, rows_per_second=150)
    sink = KafkaSink(
        broker.bootstrap,
        topic=topic,
        partitioner="round-robin",
        guarantee=guarantee,
        transactional_id_prefix=f"failover-{topic}",
        flush_timeout=120,  # a leader election must not fail a checkpoint's flush
    )
    written: list[Any] = []
    writer = run_in_thread(
        Pipeline(source).to(sink),
        written,
        guarantee=guarantee,
        checkpoint_dir=tmp_path / "cp",
        checkpoint_interval=0.5,
    )
    out = MemorySink()
    reader_source = KafkaSource(
        broker.bootstrap, topics=[topic], format=Json(pa.schema([("id", pa.int64())])), discovery_interval=1.0
    )
    read: list[Any] = []
    reading = Pipeline(reader_source).to(out)
    reader = run_in_thread(reading, read, checkpoint_interval=1.0)
    deadline = time.monotonic() + 120
    while out.num_rows < ROWS // 4:
        assert time.monotonic() < deadline and not read and not written, (out.num_rows, read, written)
        time.sleep(0.1)
    leader = cluster.leader(topic, 0)
    assert writer.is_alive() and reader.is_alive() and out.num_rows < ROWS  # mid-run on both sides
    cluster.kill(leader)
    new_leader = cluster.leader(topic, 0, avoid=leader)
    writer.join(240)
    assert not writer.is_alive(), "the writing pipeline did not finish after the failover"
    wait_read(reading, reader, out, ROWS)
    assert not isinstance(written[0], BaseException), written[0]
    assert not isinstance(read[0], BaseException), read[0]
    assert written[0].rows == ROWS and sink.metrics()["delivery_failures"] == 0
    assert new_leader != leader and cluster.leader(topic, 0) != leader  # the run ended without it
    assert Counter(out.table().column("id").to_pylist()) == Counter(range(ROWS))  # the reader: each once
    assert json_ids(broker, topic) == Counter(range(ROWS))  # committed: nothing lost, nothing twice
