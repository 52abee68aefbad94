"""Helpers for the Kafka tests: produce with plain confluent-kafka, read back with a plain consumer."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition


@dataclass(frozen=True)
class Broker:
    """How to reach a broker and what it gets right (Tansu and the mock share known gaps)."""

    name: str
    bootstrap: str
    #: Aborted transactional records are hidden from read_committed consumers.
    hides_aborted: bool
    #: ``offsets_for_times`` answers correctly.
    offsets_for_times: bool
    #: A second producer with the same transactional.id fences the first (its commit fails).
    fences: bool = True
    #: Offsets sent with send_offsets_to_transaction are committed with the transaction.
    txn_offsets: bool = True
    #: Producer options the tests need on this broker. Tansu 0.6 answers ListOffsets(latest) with
    #: "base offset of the last record batch + 1", so a multi-record batch makes the high watermark
    #: wrong: its tests produce one record per batch.
    producer_config: tuple[tuple[str, Any], ...] = ()

    @property
    def pconf(self) -> dict[str, Any]:
        return dict(self.producer_config)

    def topic(self, prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"


CONSUMER = {"session.timeout.ms": 6000, "log_level": 3, "enable.partition.eof": False}


def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]], **conf: Any
) -> None:
    """Produce ``(key, value)`` pairs (default partitioner unless ``partition`` in conf) and flush."""
    partition = conf.pop("partition", None)
    p = Producer({"bootstrap.servers": bootstrap, "log_level": 3, "linger.ms": 1, **conf})
    for key, value in messages:
        while True:
            try:
                if partition is None:
                    p.produce(topic, value, key)
                else:
                    p.produce(topic, value, key, partition)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(30) == 0


def wait_partitions(bootstrap: str, topic: str, timeout: float = 20.0) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "log_level": 3})
    deadline = time.monotonic() + timeout
    while True:
        tmd = p.list_topics(topic, timeout=5).topics.get(topic)
        if tmd is not None and tmd.error is None and tmd.partitions:
            return len(tmd.partitions)
        assert time.monotonic() < deadline, f"topic {topic} has no partitions"
        time.sleep(0.1)


def consume_all(
    bootstrap: str, topic: str, partitions: int = 4, *, isolation: str = "read_committed"
) -> list[Any]:
    """Every message in ``topic`` (up to the high watermarks at call time), as message objects."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "isolation.level": isolation, **CONSUMER}
    )
    try:
        ends = {}
        for p in range(partitions):
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[Any] = []
        deadline = time.monotonic() + 20
        pos = dict.fromkeys(range(partitions), 0)
        while any(pos[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"read {len(out)} messages, positions {pos}, ends {ends}"
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                out.append(m)
            for tp in c.position([TopicPartition(topic, p) for p in range(partitions)]):
                if tp.offset >= 0:
                    pos[tp.partition] = tp.offset
        return out
    finally:
        c.close()
