"""Kafka transactions against the real broker: what read_committed readers see, fencing, and offsets
committed inside a transaction. Each check that an aborted record is hidden also shows, with a
read_uncommitted reader, that the record did reach the broker (so the hiding is the broker's doing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_helpers import CONSUMER, Broker, json_ids

from arrowflow.connectors.kafka import KafkaSource, TransactionalKafkaSink
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConnectorError
from arrowflow.formats import Json

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def rows(n: int, start: int = 0) -> pa.RecordBatch:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.record_batch({"id": ids, "name": pa.array([f"n{i}" for i in ids.tolist()])})


def txn_sink(broker: Broker, topic: str, prefix: str, **kwargs: Any) -> TransactionalKafkaSink:
    return TransactionalKafkaSink(
        broker.bootstrap,
        topic=topic,
        transactional_id_prefix=prefix,
        partitioner="round-robin",
        format=Json(columns=["id", "name"]),
        flush_timeout=30,
        **kwargs,
    )


def bounded_ids(broker: Broker, topic: str, isolation: str = "read_committed") -> list[int]:
    src = KafkaSource(
        broker.bootstrap,
        topics=[topic],
        stopping_offsets="latest",
        format=Json(SCHEMA),
        isolation_level=isolation,
    )
    return sorted(src.read_all(max_rows=64).column("id").to_pylist())


def test_read_committed_never_sees_aborted_records(broker: Broker, new_topic: Callable[..., str]) -> None:
    """Committed and aborted transactions interleaved on one partition, read by a KafkaSource reader
    that polls the whole time: while a transaction is open the reader gets nothing of it (it stops at
    the last stable offset), and after its abort it skips it and reads the next committed one."""
    topic = new_topic("rc", partitions=1)
    sink = txn_sink(broker, topic, f"rc-{topic}")
    sink.recover([])
    source = KafkaSource(broker.bootstrap, partitions=[f"{topic}:0"], format=Json(SCHEMA))
    reader = source.open(source.plan()[0])
    seen: list[int] = []

    def drain(expect: int) -> None:
        """Read until ``expect`` rows in all, then poll a little more: nothing else may come."""
        deadline = time.monotonic() + 30
        while len(seen) < expect:
            assert time.monotonic() < deadline, f"read {len(seen)} of {expect} rows"
            batch = reader.read_batch(1000, 0.5)
            if batch is not None:
                seen.extend(batch.column("id").to_pylist())
        for _ in range(3):
            batch = reader.read_batch(1000, 0.3)
            if batch is not None:
                seen.extend(batch.column("id").to_pylist())
        assert len(seen) == expect, f"read {len(seen)} rows, expected {expect}: {seen[expect:][:10]}"

    committed: list[int] = []
    for step, (start, commit) in enumerate([(0, True), (100, False), (200, True), (300, False), (400, True)]):
        sink.write(rows(100, start))
        sink.flush()  # on the broker, inside the open transaction
        drain(len(committed))  # nothing of the open transaction is readable
        if commit:
            sink.commit(sink.prepare_commit())
            committed += list(range(start, start + 100))
        else:
            sink.abort()
        drain(len(committed))
        assert seen == committed, f"step {step}"
    reader.close()
    sink.close()
    assert bounded_ids(broker, topic) == committed
    everything = bounded_ids(broker, topic, "read_uncommitted")
    assert everything == list(range(500))  # the aborted rows are on the broker, only hidden


def test_transaction_protocol(broker: Broker, new_topic: Callable[..., str]) -> None:
    """init/begin/commit/abort through the sink's two-phase API; a commit is idempotent."""
    topic = new_topic("tx")
    prefix = f"p-{topic}"
    sink = txn_sink(broker, topic, prefix)
    sink.recover([])
    sink.write(rows(20))
    committables = sink.prepare_commit()
    assert committables == [
        {"transactional_id": f"{prefix}-0", "transaction": sink._seq, "marker_topic": topic, "journal": []}
    ]
    assert bounded_ids(broker, topic) == []  # prepared, not committed: invisible
    sink.commit(committables)
    sink.commit(committables)  # idempotent
    assert bounded_ids(broker, topic) == list(range(20))
    sink.write(rows(5, start=100))
    sink.flush()
    sink.abort()
    sink.write(rows(5, start=200))
    sink.close()  # without a pipeline: close commits what was written
    assert bounded_ids(broker, topic) == [*range(20), *range(200, 205)]
    assert bounded_ids(broker, topic, "read_uncommitted") == [*range(20), *range(100, 105), *range(200, 205)]


def test_zombie_producer_is_fenced(broker: Broker, new_topic: Callable[..., str]) -> None:
    """A restarted run (same transactional id) fences the old producer: the zombie's open transaction
    is aborted by the broker, its commit and its later writes fail, and none of its rows is ever
    visible to read_committed readers, while the new producer's are. A fenced producer is an error of
    the sink, not of the rows: its rows never go to the error policy (here a dead letter)."""
    topic = new_topic("zombie")
    prefix = f"z-{topic}"
    dead = MemorySink()
    zombie = txn_sink(broker, topic, prefix, error_policy=dead)
    zombie.recover([])
    zombie.write(rows(10))
    zombie.commit(zombie.prepare_commit())
    zombie.write(rows(3, start=200))
    prepared = zombie.prepare_commit()  # flushed to the broker, not committed

    successor = txn_sink(broker, topic, prefix)
    successor.recover([{"transactional_id": f"{prefix}-0", "transaction": 0}])  # init_transactions fences
    with pytest.raises(ConnectorError, match="commit_transaction failed"):
        zombie.commit(prepared)
    with pytest.raises(ConnectorError, match=r"fenced|fatal"):
        zombie.write(rows(3, start=500))
        zombie.flush()
    assert dead.num_rows == 0
    successor.write(rows(2, start=300))
    successor.close()
    assert bounded_ids(broker, topic) == [*range(10), 300, 301]
    uncommitted = bounded_ids(broker, topic, "read_uncommitted")
    assert {200, 201, 202} <= set(uncommitted)  # the zombie's rows reached the broker, aborted
    assert not {500, 501, 502} & set(uncommitted)  # a fenced producer writes nothing more


def test_offsets_sent_to_a_transaction_commit_with_it(broker: Broker, new_topic: Callable[..., str]) -> None:
    """Kafka -> Kafka exactly-once: source offsets added to a transaction are committed to the group
    only when the transaction commits (an aborted one leaves the group's offset where it was)."""
    topic = new_topic("eo")
    group = f"g-{topic}"
    sink = txn_sink(broker, topic, topic)
    sink.recover([])
    consumer = Consumer({**broker.client, "group.id": group, **CONSUMER})
    # A read_committed client's OffsetFetch asks for stable offsets (KIP-447): while a transaction holds
    # pending offsets for the group the broker answers UNSTABLE_OFFSET_COMMIT, so look before the
    # commit with a read_uncommitted one, which gets the last committed offset.
    peek = Consumer({**broker.client, "group.id": group, "isolation.level": "read_uncommitted", **CONSUMER})
    try:

        def committed(client: Consumer = consumer) -> int:
            return int(client.committed([TopicPartition(topic, 0)], timeout=20)[0].offset)

        sink.write(rows(3))
        sink.send_offsets({f"{topic}:0": 42}, consumer.consumer_group_metadata())
        assert committed(peek) < 0  # not before the commit
        sink.commit(sink.prepare_commit())
        assert committed() == 42
        sink.write(rows(3, start=3))
        sink.send_offsets({f"{topic}:0": 99}, consumer.consumer_group_metadata())
        sink.flush()
        assert committed(peek) == 42
        sink.abort()
        assert committed() == 42
    finally:
        peek.close()
        consumer.close()
        sink.close()
    assert json_ids(broker, topic) == {0: 1, 1: 1, 2: 1}
