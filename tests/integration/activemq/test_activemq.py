"""ActiveMQ 5.17 over STOMP (127.0.0.1:61613): acks on commit and redelivery, headers/destinations from
columns, persistent delivery, poison payloads to the dead-letter sink, STOMP transactions per checkpoint,
and a SIGKILLed pipeline process (at-least-once: nothing lost)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from arrowflow.connectors.activemq import ActiveMQSink, ActiveMQSource, ActiveMQTransactionalSink
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "conformance"))
from crash_harness import DONE, CrashReport, crash_mid_stream
from test_activemq_conformance import PORT, drain

PIPELINE = Path(__file__).resolve().parents[1] / "rabbitmq" / "rabbit_pipeline.py"
SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


def _table(lo: int, hi: int) -> pa.Table:
    ids = np.arange(lo, hi)
    return pa.table({"id": pa.array(ids), "text": pa.array([f"t:{i}\n" for i in ids])})


@pytest.fixture
def queue(activemq_stomp: tuple[str, int]) -> Iterator[str]:
    name = f"/queue/it-{uuid.uuid4().hex[:10]}"
    yield name
    drain(name)


def _read(reader: Any, want: int, deadline_s: float = 20.0) -> pa.Table:
    out, n = [], 0
    deadline = time.monotonic() + deadline_s
    while n < want and time.monotonic() < deadline:
        b = reader.read_batch(32, 0.3)
        if b is not None and b.num_rows:
            out.append(b)
            n += b.num_rows
    return pa.Table.from_batches(out) if out else SCHEMA.empty_table()


def test_acks_on_commit_rest_is_redelivered(queue: str) -> None:
    with ActiveMQSink("127.0.0.1", PORT, destination=queue) as sink:
        sink.write_table(_table(0, 120))
    src = ActiveMQSource(
        "127.0.0.1", PORT, destination=queue, format=Json(SCHEMA), metadata_columns=["_redelivered"]
    )
    reader = src.open(src.plan()[0])
    first = _read(reader, 40)
    snap = json.loads(json.dumps(reader.snapshot()))
    rest = _read(reader, 120 - first.num_rows)
    assert first.num_rows + rest.num_rows == 120
    reader.commit(snap)
    reader.close()
    again = src.open(src.plan()[0], snap)
    t = _read(again, 120 - first.num_rows)
    again.commit(snap)  # a snapshot of another session acknowledges nothing
    assert sorted(t.column("id").to_pylist()) == sorted(rest.column("id").to_pylist())
    assert all(t.column("_redelivered").to_pylist())
    again.commit(again.snapshot())
    again.close()
    assert drain(queue) == 0


def test_headers_destinations_persistent_and_poison(activemq_stomp: tuple[str, int]) -> None:
    qa, qb = f"/queue/it-a-{uuid.uuid4().hex[:8]}", f"/queue/it-b-{uuid.uuid4().hex[:8]}"
    t = _table(0, 20).append_column("dest", pa.array([qa if i % 2 else qb for i in range(20)]))
    t = t.append_column("tag", pa.array([None if i == 3 else f"x:{i}" for i in range(20)]))
    bad = pa.table({"id": [99], "text": ["bad"], "dest": ["nowhere"], "tag": ["z"]})
    dlq = MemorySink()
    with ActiveMQSink(
        "127.0.0.1", PORT, destination_column="dest", header_columns=["tag"], error_policy=dlq
    ) as sink:
        sink.write_table(t)
        sink.write_table(bad)
    assert dlq.table().column("id").to_pylist() == [99]
    try:
        src = ActiveMQSource(
            "127.0.0.1",
            PORT,
            destination=qa,
            format=Json(SCHEMA),
            metadata_columns=["_headers", "_destination"],
        )
        got = pa.Table.from_batches(list(src.batches(idle_timeout=1.5)))
        assert sorted(got.column("id").to_pylist()) == list(range(1, 20, 2))
        assert set(got.column("_destination").to_pylist()) == {qa}
        for row in got.to_pylist():
            h = dict(row["_headers"])
            assert h["persistent"] == "true"
            assert h.get("tag") == (None if row["id"] == 3 else f"x:{row['id']}")  # escaped and back
            assert row["text"] == f"t:{row['id']}\n"
        # poison payloads to the source's dead-letter sink
        with ActiveMQSink("127.0.0.1", PORT, destination=qa, value_column="text") as raw:
            raw.write_table(pa.table({"text": ["not json", '{"id": 7, "text": "ok"}']}))
        src_dlq = MemorySink()
        src = ActiveMQSource("127.0.0.1", PORT, destination=qa, format=Json(SCHEMA), error_policy=src_dlq)
        good = pa.Table.from_batches(list(src.batches(idle_timeout=1.5)))
        assert good.column("id").to_pylist()[-1:] == [7]
        assert src_dlq.table().column("payload").to_pylist()[-1] == b"not json"
    finally:
        drain(qa)
        drain(qb)


def test_transactions_per_checkpoint(queue: str, caplog: pytest.LogCaptureFixture) -> None:
    sink = ActiveMQTransactionalSink("127.0.0.1", PORT, destination=queue)
    sink.write_table(_table(0, 30))
    committables = sink.prepare_commit()
    assert drain(queue, idle=1.0) == 0, "prepared rows must stay invisible"
    sink.write_table(_table(30, 40))  # the next checkpoint's transaction
    sink.commit(committables)
    assert drain(queue, idle=1.0) == 30
    sink.abort()
    assert drain(queue, idle=1.0) == 0, "aborted rows must never show"
    sink.write_table(_table(40, 45))
    sink.close()  # without a pipeline: commits
    assert drain(queue, idle=1.0) == 5
    # after a "restart", a transaction of a dead connection cannot be committed: logged as lost
    again = ActiveMQTransactionalSink("127.0.0.1", PORT, destination=queue)
    again.recover(committables)
    again.close()
    assert "cannot be committed after a restart" in caplog.text


def test_config_errors() -> None:
    with pytest.raises(ConfigurationError) as e:
        ActiveMQSource("127.0.0.1", PORT, destination="queue/x")
    assert e.value.option == "destination"
    with pytest.raises(ConfigurationError) as e:
        ActiveMQSource("127.0.0.1", PORT, destination="/queue/x", subscription_name="s")
    assert e.value.option == "subscription_name"
    with pytest.raises(ConfigurationError) as e:
        ActiveMQSink("127.0.0.1", PORT, destination="/queue/x", header_columns=["receipt"])
    assert e.value.option == "header_columns"


def test_pipeline_at_least_once_across_sigkill(
    activemq_stomp: tuple[str, int], queue: str, tmp_path: Path
) -> None:
    n = 3000  # 60 batches of 50
    with ActiveMQSink("127.0.0.1", PORT, destination=queue) as sink:
        sink.write_table(_table(0, n))
    host, port = activemq_stomp
    out = tmp_path / "out"
    cmd = [sys.executable, str(PIPELINE), "--activemq", "--url", f"{host}:{port}", "--queue", queue]
    cmd += ["--out", str(out), "--last", str(n - 1), "--checkpoint-dir", str(tmp_path / "cp")]

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        ids = ds.dataset(str(out), format="parquet").to_table().column("id").to_pylist()
        assert set(ids) == set(range(n)), f"{n - len(set(ids))} rows lost"
        assert drain(queue) == 0

    crash_mid_stream(cmd, verify=verify, kills=3, kill_after=(2, 15), seed=3)
