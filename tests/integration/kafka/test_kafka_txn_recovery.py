"""Recovery of ``TransactionalKafkaSink`` after a crash between a durable checkpoint and the commit of
its transaction: the commit marker (a transactional offset commit) tells whether the broker committed
the transaction, and an uncommitted one is replayed from the journal.

Runs against Tansu (or the ``ARROWFLOW_KAFKA_BOOTSTRAP`` cluster): both store transactional offset
commits only when the transaction commits. The librdkafka mock cluster stores none, so it is not used
here. Tansu still hands aborted records to read_committed readers, so on Tansu a replayed transaction's
rows are read twice (the aborted copy and the replay) and every other row once; against Apache Kafka
every row is read exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_helpers import CONSUMER, Broker, consume_all, wait_partitions

from arrowflow.connectors.kafka import KafkaSink, TransactionalKafkaSink
from arrowflow.errors import ConnectorError
from arrowflow.formats import Json

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[2] / "src")


def rows(n: int, start: int = 0) -> pa.RecordBatch:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.record_batch({"id": ids, "name": pa.array([f"n{i}" for i in ids.tolist()])})


def new_sink(broker: Broker, topic: str, state: Path | None) -> TransactionalKafkaSink:
    sink = KafkaSink(
        broker.bootstrap,
        topic=topic,
        guarantee="exactly-once",
        transactional_id_prefix=f"rec-{topic}",
        format=Json(columns=["id", "name"]),
        config=broker.pconf,
        flush_timeout=10,
    )
    assert isinstance(sink, TransactionalKafkaSink)
    if state is not None:
        sink.attach_state_dir(state)
    return sink


def id_counts(broker: Broker, topic: str) -> Counter[int]:
    n = wait_partitions(broker.bootstrap, topic)
    return Counter(json.loads(m.value())["id"] for m in consume_all(broker.bootstrap, topic, n))


def marker(broker: Broker, sink: TransactionalKafkaSink, topic: str) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": sink.marker_group, **CONSUMER})
    try:
        return int(c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset)
    finally:
        c.close()


def journal_files(state: Path) -> list[str]:
    return sorted(p.name for p in state.rglob("txn-*"))


def test_uncommitted_transaction_is_replayed(process_broker: Broker, tmp_path: Path) -> None:
    broker, topic, state = process_broker, process_broker.topic("replay"), tmp_path / "state"
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
    counts = id_counts(broker, topic)
    assert set(counts) == set(range(75))  # nothing lost
    replayed = {i for i, c in counts.items() if c > 1}
    if broker.hides_aborted:
        assert not replayed
    else:
        assert replayed == set(range(30, 70))  # the aborted copy and the replayed one
    assert max(counts.values()) <= 2


def test_committed_transaction_is_not_replayed(process_broker: Broker, tmp_path: Path) -> None:
    """Crash after the broker committed but before the journal was deleted: the marker says committed."""
    broker, topic, state = process_broker, process_broker.topic("committed"), tmp_path / "state"
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
    assert id_counts(broker, topic) == Counter(range(25))


def test_transaction_after_the_checkpoint_is_discarded(process_broker: Broker, tmp_path: Path) -> None:
    """Rows written after the last checkpoint are re-read by the sources: their journal is deleted."""
    broker, topic, state = process_broker, process_broker.topic("after"), tmp_path / "state"
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
    counts = id_counts(broker, topic)
    assert {i for i in range(10)} | {100, 101, 102} <= set(counts)
    if broker.hides_aborted:
        assert set(counts) == {*range(10), 100, 101, 102}


def test_missing_journal_fails_loudly(process_broker: Broker, tmp_path: Path) -> None:
    broker, topic, state = process_broker, process_broker.topic("lost"), tmp_path / "state"
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


def test_sigkill_between_checkpoint_and_commit(process_broker: Broker, tmp_path: Path) -> None:
    """A real pipeline process SIGKILLed in the window (checkpoint saved, its transaction not yet
    committed), then restarted from its checkpoint: the transaction is replayed, nothing is lost."""
    topic = process_broker.topic("window")
    total = 600
    flag = tmp_path / "window-reached"
    command = [
        sys.executable,
        str(HERE / "kafka_txn_pipeline.py"),
        "--bootstrap",
        process_broker.bootstrap,
        "--topic",
        topic,
        "--rows",
        str(total),
        "--checkpoint-dir",
        str(tmp_path / "cp"),
        "--window-flag",
        str(flag),
    ]
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = ""
        for line in proc.stdout:
            if line.startswith("window"):
                break
        assert line.startswith("window"), proc.stderr.read() if proc.stderr else ""
        first, last = (int(x) for x in line.split()[1:3])
        os.kill(proc.pid, signal.SIGKILL)  # the process sleeps before commit_transaction
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert flag.exists() and journal_files(tmp_path / "cp")
    final = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"done replayed={last - first + 1}" in final.stdout, final.stdout + final.stderr[-3000:]
    counts = id_counts(process_broker, topic)
    assert set(counts) == set(range(total))  # nothing lost
    twice = {i for i, c in counts.items() if c > 1}
    if process_broker.hides_aborted:
        assert not twice
    else:
        assert twice == set(range(first, last + 1))  # the aborted copy and the replayed one
    assert max(counts.values()) <= 2
    assert journal_files(tmp_path / "cp") == []
