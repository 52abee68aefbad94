"""PubSubSource / PubSubSink against the Cloud Pub/Sub emulator on 127.0.0.1:8085.

Round trip with ordering keys and attributes, acknowledgement on checkpoint commit (uncommitted
messages come back, committed ones do not), ack-deadline extension while a checkpoint is pending,
poison messages to a dead-letter sink, configuration errors, and a SIGKILLed pipeline process
(at-least-once: nothing lost).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from arrowflow import Pipeline
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.gcp_pubsub import PubSubSink, PubSubSource, publisher_client, subscriber_client
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json, Raw
from arrowflow.testing import assert_same_rows, make_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream

PIPELINE = Path(__file__).resolve().parent / "pubsub_crash_pipeline.py"
PROJECT = "arrowflow-it"
SCHEMA = make_table(1).schema


def _topic(host: str, *, ordering: bool = False, subs: int = 1, deadline: int = 10) -> tuple[str, list[str]]:
    suffix = uuid.uuid4().hex[:12]
    topic = f"projects/{PROJECT}/topics/it-{suffix}"
    names = [f"projects/{PROJECT}/subscriptions/it-{suffix}-{i}" for i in range(subs)]
    publisher_client(host).create_topic(name=topic)
    client = subscriber_client(host)
    for n in names:
        client.create_subscription(
            request={
                "name": n,
                "topic": topic,
                "ack_deadline_seconds": deadline,
                "enable_message_ordering": ordering,
            }
        )
    client.close()
    return topic, names


def _pull_ids(host: str, sub: str) -> list[int]:
    """The ids of the messages the server still holds for ``sub`` (pulled, not acknowledged)."""
    client = subscriber_client(host)
    ids: list[int] = []
    try:
        for _ in range(5):  # the emulator hands out at most ~100 messages per pull
            resp = client.pull(request={"subscription": sub, "max_messages": 1000}, timeout=5)
            if not resp.received_messages:
                break
            ids += [json.loads(rm.message.data)["id"] for rm in resp.received_messages]
    finally:
        client.close()
    return ids


def _drain(reader: object, want: int, timeout: float = 30.0) -> list[pa.RecordBatch]:
    out: list[pa.RecordBatch] = []
    got = 0
    deadline = time.monotonic() + timeout
    while got < want and time.monotonic() < deadline:
        b = reader.read_batch(1000, 0.3)  # type: ignore[attr-defined]
        if b is not None:
            out.append(b)
            got += b.num_rows
    return out


def test_round_trip_with_ordering_keys_and_attributes(pubsub_emulator_host: str) -> None:
    host = pubsub_emulator_host
    topic, (sub,) = _topic(host, ordering=True)
    n = 3000
    data = make_table(n)
    keys = pa.array([f"key-{i % 7}" for i in range(n)])
    attrs = pa.array(
        [[("row", str(i)), ("kind", "even" if i % 2 == 0 else "odd")] for i in range(n)],
        pa.map_(pa.string(), pa.string()),
    )
    table = data.append_column("okey", keys).append_column("attrs", attrs)
    sink = PubSubSink(
        PROJECT, topic, emulator_host=host, ordering_key_column="okey", attributes_column="attrs"
    )
    Pipeline(CollectionSource(table, batch_size=900)).to(sink).run(progress=False)
    assert sink.metrics()["rows_written"] == n
    src = PubSubSource(
        PROJECT,
        sub,
        emulator_host=host,
        format=Json(SCHEMA),
        metadata_columns=["_ordering_key", "_attributes", "_message_id", "_publish_time"],
    )
    reader = src.open(src.plan()[0])
    got = pa.Table.from_batches(_drain(reader, n))
    reader.commit(reader.snapshot())
    reader.close()
    assert_same_rows(got.select(SCHEMA.names), data)
    ids = got.column("id").to_pylist()
    okeys = got.column("_ordering_key").to_pylist()
    assert okeys == [f"key-{i % 7}" for i in ids]
    for k in set(okeys):  # per ordering key, publish order
        seq = [i for i, kk in zip(ids, okeys, strict=True) if kk == k]
        assert seq == sorted(seq)
    attributes = got.column("_attributes").to_pylist()
    assert all(
        dict(a) == {"row": str(i), "kind": "even" if i % 2 == 0 else "odd"}
        for a, i in zip(attributes, ids, strict=True)
    )
    assert len(set(got.column("_message_id").to_pylist())) == n
    assert got.column("_publish_time").null_count == 0


def test_only_committed_messages_are_acknowledged(pubsub_emulator_host: str) -> None:
    host = pubsub_emulator_host
    TOTAL = 400
    topic, (sub,) = _topic(host)
    with PubSubSink(PROJECT, topic, emulator_host=host) as sink:
        sink.write_table(make_table(TOTAL))
    src = PubSubSource(PROJECT, sub, emulator_host=host, format=Json(SCHEMA), ack_deadline=10)
    reader = src.open(src.plan()[0])
    first = []
    while sum(b.num_rows for b in first) < TOTAL // 2:
        b = reader.read_batch(100, 1.0)
        if b is not None:
            first.append(b)
    committed = reader.snapshot()
    more = _drain(reader, TOTAL - TOTAL // 2)
    reader.commit(committed)
    reader.close()  # hands the uncommitted messages back (the emulator redelivers after ~10 s)
    again = src.open(src.plan()[0])
    # The emulator redelivers about 100 handed-back messages per ack deadline (10 s) and slower
    # on a loaded machine: wait generously; the loop ends as soon as all have come back.
    rest = pa.Table.from_batches(_drain(again, TOTAL - TOTAL // 2, timeout=120))
    time.sleep(0.5)
    extra = again.read_batch(1000, 0.5)
    again.commit(again.snapshot())
    again.close()
    first_ids = set(pa.Table.from_batches(first).column("id").to_pylist())
    rest_ids = set(rest.column("id").to_pylist())
    assert sum(b.num_rows for b in more) > 0
    assert first_ids | rest_ids == set(range(TOTAL))
    assert not first_ids & rest_ids, "committed messages were redelivered"
    assert extra is None


def test_ack_deadline_is_extended_while_a_checkpoint_is_pending(pubsub_emulator_host: str) -> None:
    host = pubsub_emulator_host
    topic, (sub,) = _topic(host, deadline=10)
    with PubSubSink(PROJECT, topic, emulator_host=host) as sink:
        sink.write_table(make_table(200))
    src = PubSubSource(PROJECT, sub, emulator_host=host, format=Json(SCHEMA), ack_deadline=10)
    holder = src.open(src.plan()[0])
    held = pa.Table.from_batches(_drain(holder, 200))
    assert held.num_rows == 200
    # A second stream on the same subscription: it gets only what the server redelivers.
    other = src.open(src.plan()[0])
    waited = time.monotonic() + 16  # longer than the 10 s ack deadline
    stolen = 0
    while time.monotonic() < waited:
        b = other.read_batch(1000, 0.5)
        stolen += 0 if b is None else b.num_rows
    holder.commit(holder.snapshot())
    holder.close()
    other.close()
    assert stolen == 0, f"{stolen} held messages were redelivered although their deadline was extended"


def test_poison_messages_go_to_dead_letter_sink(pubsub_emulator_host: str) -> None:
    host = pubsub_emulator_host
    topic, (sub,) = _topic(host)
    raw = pa.table({"value": pa.array([b'{"id": 1}', b"{broken", b'{"id": 3}'], pa.binary())})
    with PubSubSink(PROJECT, topic, emulator_host=host, value_column="value") as sink:
        sink.write_table(raw)
    dead = MemorySink()
    src = PubSubSource(
        PROJECT, sub, emulator_host=host, format=Json(pa.schema([("id", pa.int64())])), error_policy=dead
    )
    reader = src.open(src.plan()[0])
    got = pa.Table.from_batches(_drain(reader, 2, timeout=10))
    deadline = time.monotonic() + 10
    while dead.num_rows < 1 and time.monotonic() < deadline:
        reader.read_batch(10, 0.3)
    reader.commit(reader.snapshot())
    reader.close()
    assert sorted(got.column("id").to_pylist()) == [1, 3]
    bad = dead.table()
    assert bad.column("payload").to_pylist() == [b"{broken"]
    assert bad.column("message_id").null_count == 0 and bad.column("error")[0].as_py()


def test_sink_rejects_bad_rows_to_the_policy(pubsub_emulator_host: str) -> None:
    host = pubsub_emulator_host
    topic, (sub,) = _topic(host)
    dead = MemorySink()
    data = pa.table({"value": pa.array([b"a", None, b"c"], pa.binary())})
    with PubSubSink(PROJECT, topic, emulator_host=host, value_column="value", error_policy=dead) as sink:
        sink.write_table(data)
    assert dead.table().num_rows == 1
    src = PubSubSource(PROJECT, sub, emulator_host=host, format=Raw())
    reader = src.open(src.plan()[0])
    got = pa.Table.from_batches(_drain(reader, 2, timeout=10))
    reader.commit(reader.snapshot())
    reader.close()
    assert sorted(got.column("value").to_pylist()) == [b"a", b"c"]


def test_direct_publish_chunks_attributes_and_failed_rpcs(pubsub_emulator_host: str) -> None:
    """Without ordering keys the sink sends Publish RPCs itself: chunks of batch_max_messages, the
    attributes column, and a failed RPC (unknown topic: NOT_FOUND, not transient) to the policy."""
    host = pubsub_emulator_host
    topic, (sub,) = _topic(host)
    n = 2500
    data = make_table(n)
    attrs = pa.array(
        [[("row", str(i))] if i % 3 else [] for i in range(n)], pa.map_(pa.string(), pa.string())
    )
    sink = PubSubSink(PROJECT, topic, emulator_host=host, attributes_column="attrs", batch_max_messages=700)
    with sink:
        sink.write_table(data.append_column("attrs", attrs))
    assert sink.metrics()["rows_written"] == n
    src = PubSubSource(
        PROJECT, sub, emulator_host=host, format=Json(SCHEMA), metadata_columns=["_attributes"]
    )
    reader = src.open(src.plan()[0])
    got = pa.Table.from_batches(_drain(reader, n))
    reader.commit(reader.snapshot())
    reader.close()
    assert_same_rows(got.select(SCHEMA.names), data)
    for i, a in zip(got.column("id").to_pylist(), got.column("_attributes").to_pylist(), strict=True):
        assert dict(a or []) == ({"row": str(i)} if i % 3 else {})
    dead = MemorySink()
    missing = f"projects/{PROJECT}/topics/missing-{uuid.uuid4().hex[:8]}"
    with PubSubSink(PROJECT, missing, emulator_host=host, error_policy=dead) as sink:
        sink.write_table(make_table(30))
    assert dead.table().num_rows == 30
    assert "NOT_FOUND" in dead.table().column("error")[0].as_py()


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError) as e:
        PubSubSource("p", "s", ack_deadline=5)
    assert e.value.option == "ack_deadline"
    with pytest.raises(ConfigurationError) as e:
        PubSubSource("p", "s", metadata_columns=["_offset"])
    assert e.value.option == "metadata_columns"
    with pytest.raises(ConfigurationError) as e:
        PubSubSink("p", "", emulator_host="127.0.0.1:1")
    assert e.value.option == "topic"
    with pytest.raises(ConfigurationError) as e:
        PubSubSink("p", "t", emulator_host="127.0.0.1:1", batch_max_messages=1001)
    assert e.value.option == "batch_max_messages"


def test_pipeline_at_least_once_across_sigkill(pubsub_emulator_host: str, tmp_path: Path) -> None:
    """PubSubSource -> FileSink, SIGKILLed twice mid-run and restarted: every message lands, none
    stays unacknowledged (the emulator hands a killed stream's messages back late and in slices of
    ~100, so this takes 30-130 s)."""
    host = pubsub_emulator_host
    topic, (sub,) = _topic(host, deadline=10)
    n = 400
    ids = np.arange(n)
    data = pa.table({"id": pa.array(ids), "text": pa.array([f"t:{i}" for i in ids])})
    with PubSubSink(PROJECT, topic, emulator_host=host) as sink:
        sink.write_table(data)
    out = tmp_path / "out"
    cmd = [sys.executable, str(PIPELINE), "--emulator-host", host, "--project", PROJECT]
    cmd += ["--subscription", sub, "--out", str(out), "--checkpoint-dir", str(tmp_path / "cp")]
    # The emulator redelivers a killed stream's messages late and in slices: 49 s after one kill,
    # then gaps of 20 s between slices, on a quiet box. In the CI run of 2026-12-07 the final run sat
    # 90 s without a message and stopped on the idle net with 200 rows not yet committed. The idle
    # net can only end a run early (failing the test), so it sits near the harness timeout.
    cmd += ["--expect", str(n), "--delay", "0.1", "--idle", "240"]

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        got = ds.dataset(str(out), format="parquet").to_table()
        seen = got.column("id").to_pylist()
        missing = sorted(set(range(n)) - set(seen))
        # Pulled before the loss check, so that a failure can tell a loss (acknowledged, not written)
        # from messages the server hands back; the emulator may still hold others it has not yet
        # redelivered, so "0 pulled" alone does not prove a loss.
        left = _pull_ids(host, sub)
        assert not missing, (
            f"{len(missing)} rows missing ({missing[:3]}..{missing[-3:]}), of which "
            f"{len(set(missing) & set(left))} were pulled from the server after the run, {report}"
        )
        # A duplicate is a redelivery of one message (same id), never a second publish.
        assert len(got.column("_message_id").unique()) == len(set(seen))
        assert not left, f"{len(left)} messages were left unacknowledged"

    # 400 messages in batches of at most 50, a checkpoint every ~2 batches: a kill after 1-4 batches
    # lands mid-stream, before or after a checkpoint.
    crash_mid_stream(cmd, verify=verify, kills=2, kill_after=(1, 4), seed=11, timeout=300)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([str(Path(__file__))]))
