"""Recovery of ``TransactionalKafkaSink`` after a crash between a durable checkpoint and the commit of
its transaction: the commit marker (a transactional offset commit) tells whether the broker committed
the transaction, and an uncommitted one is replayed from the journal. (A real pipeline process
SIGKILLed in that window is in test_kafka_e2e.py.)

Runs against the Apache Kafka broker of tests/services/kafka.sh, which applies a transactional offset
commit only when its transaction commits and hides aborted records from read_committed readers: every
row is read exactly once, and a read_uncommitted reader shows that the aborted copy of a replayed
transaction did reach the broker.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_helpers import CONSUMER, Broker, json_ids

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource
from arrowflow.connectors.datagen import Sequence as SequenceField
from arrowflow.connectors.kafka import TransactionalKafkaSink
from arrowflow.errors import ConnectorError
from arrowflow.formats import Json
from arrowflow.ops import Operator
from arrowflow.pipeline import fixed_delay


def rows(n: int, start: int = 0) -> pa.RecordBatch:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.record_batch({"id": ids, "name": pa.array([f"n{i}" for i in ids.tolist()])})


def new_sink(broker: Broker, topic: str, state: Path | None) -> TransactionalKafkaSink:
    sink = TransactionalKafkaSink(
        broker.bootstrap,
        topic=topic,
        transactional_id_prefix=f"rec-{topic}",
        format=Json(columns=["id", "name"]),
        flush_timeout=10,
    )
    if state is not None:
        sink.attach_state_dir(state)
    return sink


def marker(broker: Broker, sink: TransactionalKafkaSink, topic: str) -> int:
    c = Consumer({**broker.client, "group.id": sink.marker_group, **CONSUMER})
    try:
        return int(c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset)
    finally:
        c.close()


def journal_files(state: Path) -> list[str]:
    return sorted(p.name for p in state.rglob("txn-*"))


def test_uncommitted_transaction_is_replayed(broker: Broker, tmp_path: Path) -> None:
    broker, topic, state = broker, broker.topic("replay"), tmp_path / "state"
    crashed = new_sink(broker, topic, state)
    crashed.recover([])
    crashed.write(rows(30))
    first = crashed.prepare_commit()
    crashed.commit(first)
    crashed.write(rows(40, start=30))
    prepared = crashed.prepare_commit()  # the checkpoint is durable; then the process dies
    (entry,) = prepared
    assert entry["transaction"] > first[0]["transaction"]
    assert entry["journal"] and journal_files(state) == sorted(entry["journal"])

    restarted = new_sink(broker, topic, state)
    restarted.recover(prepared)  # fences `crashed`, whose open transaction is aborted
    assert restarted.metrics()["replayed_rows"] == 40
    assert restarted.metrics()["replayed_transactions"] == 1
    assert journal_files(state) == []
    assert marker(broker, restarted, topic) == entry["transaction"]
    with pytest.raises(ConnectorError):  # fenced
        crashed.commit(prepared)
    restarted.write(rows(5, start=70))
    restarted.commit(restarted.prepare_commit())
    restarted.close()
    assert json_ids(broker, topic) == Counter(range(75))  # nothing lost, nothing twice
    # The crashed run's transaction (30..69) did reach the broker: aborted, then replayed.
    everything = json_ids(broker, topic, isolation="read_uncommitted")
    assert everything == Counter([*range(75), *range(30, 70)])


def test_committed_transaction_is_not_replayed(broker: Broker, tmp_path: Path) -> None:
    """Crash after the broker committed but before the journal was deleted: the marker says committed."""
    broker, topic, state = broker, broker.topic("committed"), tmp_path / "state"
    sink = new_sink(broker, topic, state)
    sink.recover([])
    sink.write(rows(25))
    prepared = sink.prepare_commit()
    saved = tmp_path / "saved"
    shutil.copytree(state, saved)
    sink.commit(prepared)
    assert journal_files(state) == []
    shutil.rmtree(state)
    shutil.copytree(saved, state)  # as if the process died before deleting the journal
    assert journal_files(state)
    sink.close()

    restarted = new_sink(broker, topic, state)
    restarted.recover(prepared)
    assert restarted.metrics()["replayed_rows"] == 0
    assert journal_files(state) == []
    restarted.close()
    assert json_ids(broker, topic) == Counter(range(25))


def test_transaction_after_the_checkpoint_is_discarded(broker: Broker, tmp_path: Path) -> None:
    """Rows written after the last checkpoint are re-read by the sources: their journal is deleted."""
    broker, topic, state = broker, broker.topic("after"), tmp_path / "state"
    sink = new_sink(broker, topic, state)
    sink.recover([])
    sink.write(rows(10))
    checkpoint = sink.prepare_commit()
    sink.commit(checkpoint)
    sink.write(rows(10, start=10))
    sink.flush()
    assert journal_files(state)
    restarted = new_sink(broker, topic, state)
    restarted.recover(checkpoint)
    assert restarted.metrics()["replayed_rows"] == 0
    assert journal_files(state) == []
    restarted.write(rows(3, start=100))
    restarted.close()
    assert json_ids(broker, topic) == Counter([*range(10), 100, 101, 102])
    assert set(json_ids(broker, topic, isolation="read_uncommitted")) >= set(range(10, 20))  # aborted


def test_missing_journal_fails_loudly(broker: Broker, tmp_path: Path) -> None:
    broker, topic, state = broker, broker.topic("lost"), tmp_path / "state"
    crashed = new_sink(broker, topic, state)
    crashed.recover([])
    crashed.write(rows(5))
    prepared = crashed.prepare_commit()
    for p in state.rglob("txn-*"):
        p.unlink()
    restarted = new_sink(broker, topic, state)
    with pytest.raises(ConnectorError, match="cannot be replayed"):
        restarted.recover(prepared)
    restarted.close()
    with contextlib.suppress(Exception):
        crashed.close()  # fenced by `restarted`


def test_prepared_transaction_aborted_for_an_in_process_restart_is_replayed(
    broker: Broker, tmp_path: Path
) -> None:
    """``run(restart=...)`` after a commit that failed (the broker stopped between the checkpoint and
    ``commit_transaction``): the runner resets the sink - which aborts the open transaction - and then
    recovers the durable checkpoint that names it. Its journal must survive the abort, else the
    recovery finds the transaction uncommitted and nothing to replay."""
    topic, state = broker.topic("reset"), tmp_path / "state"
    sink = new_sink(broker, topic, state)
    sink.recover([])
    sink.write(rows(30))
    prepared = sink.prepare_commit()  # the checkpoint is durable; the commit then fails
    sink.reset()  # before the restart: the transaction is aborted
    assert journal_files(state) == sorted(prepared[0]["journal"])
    sink.recover(prepared)
    assert sink.metrics()["replayed_rows"] == 30
    assert journal_files(state) == []
    sink.write(rows(5, start=30))
    sink.commit(sink.prepare_commit())
    sink.close()
    assert json_ids(broker, topic) == Counter(range(35))  # nothing lost, nothing twice


class StallAtCheckpoint(Operator):
    """Passes batches through; at its ``at``-th checkpoint (``flush``), and only while ``stalls`` is
    empty, sleeps ``seconds`` before the barrier goes on to the sink, whose transaction holds the
    rows written since the previous checkpoint."""

    name = "stall-at-checkpoint"

    def __init__(self, at: int, seconds: float, stalls: list[float]) -> None:
        self.at, self.seconds, self.stalls = at, seconds, stalls
        self.checkpoints = 0

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        return [batch]

    def flush(self) -> Sequence[pa.RecordBatch]:
        self.checkpoints += 1
        if self.checkpoints == self.at and not self.stalls:
            self.stalls.append(self.seconds)
            time.sleep(self.seconds)
        return []


def test_a_transaction_past_its_timeout_is_restarted_not_reported_fenced(
    broker: Broker, tmp_path: Path
) -> None:
    """A checkpoint held up longer than ``transaction_timeout_ms``: the broker aborts the open
    transaction and bumps the producer epoch, and librdkafka reports ``_FENCED`` ("fenced by a newer
    instance") as it does for a real fencing. The sink says it is the timeout and fails retryably, so
    ``run(restart=...)`` replaces the producer and replays from the checkpoint: every row once. (The
    broker of tests/services/kafka.sh looks for timed-out transactions every second.)"""
    topic = broker.topic("txn-timeout")
    stalls: list[float] = []
    source = DataGenSource(fields={"id": SequenceField()}, count=3000, rows_per_second=1500.0, batch_size=100)
    sink = TransactionalKafkaSink(
        broker.bootstrap,
        topic=topic,
        transactional_id_prefix=f"to-{topic}",
        format=Json(columns=["id"]),
        transaction_timeout_ms=2000,
        flush_timeout=10,
    )
    # 2 s of timeout, up to 1 s until the broker's next look, and a margin.
    result = (
        Pipeline(source)
        .via(StallAtCheckpoint(at=3, seconds=5.0, stalls=stalls))
        .to(sink)
        .run(
            checkpoint_dir=tmp_path / "cp",
            checkpoint_interval=0.3,
            guarantee="exactly-once",
            restart=fixed_delay(2, 0.2),
            progress=False,
        )
    )
    assert stalls == [5.0]
    assert result.restarts == 1, result.restart_causes
    (cause,) = result.restart_causes
    assert "longer than transaction_timeout_ms=2000" in cause and "_FENCED" in cause, cause
    assert json_ids(broker, topic) == Counter(range(3000))  # nothing lost, nothing twice
    # The aborted transaction's rows did reach the broker: the restart wrote them again.
    assert json_ids(broker, topic, isolation="read_uncommitted") - Counter(range(3000))
