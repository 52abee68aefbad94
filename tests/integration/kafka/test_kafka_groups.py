"""Consumer groups on the real broker. KafkaSource reads with *assigned* consumers (one split per
partition, like Flink's KafkaSource): a ``group_id`` is where offsets are committed after each durable
checkpoint, not a subscription, so the broker never rebalances arrowflow readers. Two readers share
a group by dividing the partitions, and a rebalance is a reader taking over partitions from the
group's committed offsets. Live subscribed members in the same group make the broker refuse those
commits: the pipeline goes on (its checkpoint, not the group, is the truth)."""

from __future__ import annotations

import logging
from collections import Counter

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_helpers import Broker, produce

from arrowflow import Pipeline
from arrowflow.connectors.kafka import KafkaSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.formats import Json

SCHEMA = pa.schema([("id", pa.int64())])


def _fill(broker: Broker, topic: str, per_partition: int) -> None:
    for p in range(4):
        ids = range(p * per_partition, (p + 1) * per_partition)
        produce(broker, topic, [(None, b'{"id": %d}' % i) for i in ids], partition=p)


def _read(
    broker: Broker, partitions: list[int], topic: str, group: str, max_rows: int | None = None
) -> list[int]:
    """Run a pipeline reading ``partitions`` in ``group`` from its committed offsets, ``max_rows`` rows
    or (without) up to the end; the ids it read. Its checkpoints commit its offsets to the group."""
    source = KafkaSource(
        broker.bootstrap,
        partitions=[f"{topic}:{p}" for p in partitions],
        group_id=group,
        starting_offsets="committed",
        stopping_offsets="latest" if max_rows is None else None,
        format=Json(SCHEMA),
    )
    out = MemorySink()
    Pipeline(source).to(out).run(progress=False, max_batch_rows=50, max_rows=max_rows)
    return out.table().column("id").to_pylist() if out.num_rows else []


def _group_offsets(broker: Broker, group: str, topic: str) -> dict[int, int]:
    c = Consumer({**broker.client, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=20)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def test_two_readers_share_a_group_and_one_takes_over(broker: Broker) -> None:
    topic = broker.create_topic(broker.topic("grp"), 4)
    group = f"g-{topic}"
    _fill(broker, topic, 100)
    # Two readers in one group, each with half the partitions; each stops after 150 rows, after a
    # final checkpoint that commits its offsets to the group.
    first = _read(broker, [0, 1], topic, group, 150)
    second = _read(broker, [2, 3], topic, group, 150)
    assert len(first) == len(second) == 150
    assert set(first) <= set(range(200)) and set(second) <= set(range(200, 400))
    assert sum(_group_offsets(broker, group, topic).values()) == 300
    # The first reader is gone: the second takes over all four partitions from the group's offsets.
    rest = _read(broker, [0, 1, 2, 3], topic, group)
    assert Counter(first + second + rest) == Counter(range(400))  # every row once across the readers
    assert _group_offsets(broker, group, topic) == dict.fromkeys(range(4), 100)


def test_commits_refused_while_subscribed_members_are_in_the_group(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker refuses an offset commit without a member id while the group has live members
    (UNKNOWN_MEMBER_ID): the source logs it and reads on; once the members left, commits work."""
    topic = broker.create_topic(broker.topic("grp"), 4)
    group = f"g-{topic}"
    _fill(broker, topic, 50)
    member = Consumer({**broker.client, "group.id": group, "enable.auto.commit": False})
    member.subscribe([topic])
    try:
        while not member.assignment():  # joined: the group is now Stable with one member
            member.poll(0.2)
        with caplog.at_level(logging.WARNING, logger="arrowflow.kafka"):
            during = _read(broker, [0, 1, 2, 3], topic, group)
        assert Counter(during) == Counter(range(200))
        assert any("UNKNOWN_MEMBER_ID" in r.getMessage() for r in caplog.records)
        assert all(offset < 0 for offset in _group_offsets(broker, group, topic).values())
    finally:
        member.close()  # leaves the group: it is Empty again
    again = _read(broker, [0, 1, 2, 3], topic, group)
    assert Counter(again) == Counter(range(200))  # nothing was committed before: read again, all
    assert _group_offsets(broker, group, topic) == dict.fromkeys(range(4), 50)
