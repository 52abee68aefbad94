"""NATS JetStream connectors against the real nats-server (``nats_url``): acks on checkpoint, restart
positions, message-id deduplication, poison payloads, and SIGKILLed pipeline processes (exactly-once
with ids from the data)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.nats_jetstream import NatsJetStreamSink, NatsJetStreamSource
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json
from arrowflow.testing import assert_same_rows, make_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream

PIPELINE = Path(__file__).resolve().parents[1] / "redis" / "broker_pipeline.py"


def _js(url: str, fn: Any) -> Any:
    import nats

    async def run() -> Any:
        nc = await nats.connect(url)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(run())


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:
    from nats.js.api import StreamConfig

    name = f"IT{uuid.uuid4().hex[:10]}"
    _js(
        nats_url,
        lambda js: js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], duplicate_window=300)),
    )
    yield name
    _js(nats_url, lambda js: js.delete_stream(name))


def _info(url: str, stream: str, durable: str) -> Any:
    return _js(url, lambda js: js.consumer_info(stream, durable))


def _drain(reader: Any, max_rows: int = 64) -> pa.Table:
    got = []
    while True:
        b = reader.read_batch(max_rows, 0.5)
        if b is None:
            break
        got.append(b)
    return pa.Table.from_batches(got)


@pytest.mark.parametrize("raw_pull", [True, False], ids=["pull-socket", "nats-py-fetch"])
def test_acks_on_commit_and_restart_from_ack_floor(nats_url: str, stream: str, raw_pull: bool) -> None:
    t = make_table(300)
    with NatsJetStreamSink(nats_url, subject=f"{stream}.a", msg_id_column="id") as sink:
        sink.write_table(t)
    src = NatsJetStreamSource(
        nats_url,
        stream=stream,
        durable="d",
        format=Json(t.schema),
        metadata_columns=["_sequence"],
        raw_pull=raw_pull,
    )
    split = src.plan()[0]
    r = src.open(split)
    assert r._raw is raw_pull  # type: ignore[attr-defined]  # the path under test
    b = r.read_batch(100, 2.0)
    assert b is not None and b.num_rows == 100
    pos = r.snapshot()
    assert pos == 100
    b2 = r.read_batch(100, 2.0)
    assert b2 is not None
    assert _info(nats_url, stream, "d").ack_floor.stream_seq == 0  # nothing acknowledged yet
    r.commit(pos)
    assert _info(nats_url, stream, "d").ack_floor.stream_seq == 100
    r.close()
    # Restart without a checkpoint position: from the consumer's ack floor, immediately (no ack_wait).
    r = src.open(split)
    rest = _drain(r)
    assert rest.column("id").to_pylist() == list(range(100, 300))
    r.close()
    # Restart from an explicit checkpoint position.
    r = src.open(split, 250)
    assert _drain(r).column("id").to_pylist() == list(range(250, 300))
    r.close()


def test_msg_ids_deduplicate_replays(nats_url: str, stream: str) -> None:
    t = make_table(200)
    with NatsJetStreamSink(nats_url, subject=f"{stream}.a", msg_id_column="id") as sink:
        assert sink.idempotent
        sink.write_table(t)
        sink.write_table(t.slice(50, 100))  # a replay: dropped by the server
    with NatsJetStreamSink(nats_url, subject=f"{stream}.b") as sink:
        assert not sink.idempotent  # derived ids: retries deduplicate, replays do not
        sink.write_table(t.slice(0, 10))
    a = NatsJetStreamSource(
        nats_url, stream=stream, durable="a", subject=f"{stream}.a", format=Json(t.schema), bounded=True
    )
    assert_same_rows(a.read_all(), t)
    everything = NatsJetStreamSource(
        nats_url,
        stream=stream,
        durable="all",
        format=Json(t.schema),
        metadata_columns=["_subject"],
        bounded=True,
    ).read_all()
    assert everything.num_rows == 210
    assert everything.column("_subject").to_pylist().count(f"{stream}.b") == 10


@pytest.mark.parametrize("raw_pull", [True, False], ids=["pull-socket", "nats-py-fetch"])
def test_subject_column_and_poison_messages(nats_url: str, stream: str, raw_pull: bool) -> None:
    t = make_table(20)
    subjects = pa.array([f"{stream}.{'even' if i % 2 == 0 else 'odd'}" for i in range(20)])
    with NatsJetStreamSink(nats_url, subject_column="subj") as sink:
        sink.write_table(t.slice(0, 10).append_column("subj", subjects.slice(0, 10)))
    with NatsJetStreamSink(nats_url, subject=f"{stream}.even", value_column="p") as sink:
        sink.write_table(pa.table({"p": pa.array([b"{bad", b"42"])}))
    with NatsJetStreamSink(nats_url, subject_column="subj") as sink:
        sink.write_table(t.slice(10).append_column("subj", subjects.slice(10)))
    dead = MemorySink()
    src = NatsJetStreamSource(
        nats_url,
        stream=stream,
        durable="p",
        subject=f"{stream}.even",
        format=Json(t.schema),
        bounded=True,
        error_policy=dead,
        raw_pull=raw_pull,
    )
    got = src.read_all(max_rows=7)
    assert sorted(got.column("id").to_pylist()) == list(range(0, 20, 2))
    letters = dead.table()
    assert letters.column("payload").to_pylist() == [b"{bad", b"42"]
    assert set(letters.schema.names) >= {"subject", "sequence", "error"}


def test_both_read_paths_give_the_same_batches_metadata_included(nats_url: str, stream: str) -> None:
    t = make_table(2_000)
    with NatsJetStreamSink(nats_url, subject=f"{stream}.a", msg_id_column="id") as sink:
        sink.write_table(t.slice(0, 1_500))
    with NatsJetStreamSink(nats_url, subject=f"{stream}.b.c") as sink:  # headers without an id
        sink.write_table(t.slice(1_500))
    tables = {}
    for raw in (True, False):
        src = NatsJetStreamSource(
            nats_url,
            stream=stream,
            durable=f"both{int(raw)}",
            format=Json(t.schema),
            metadata_columns=["_subject", "_sequence", "_timestamp"],
            bounded=True,
            raw_pull=raw,
        )
        tables[raw] = src.read_all(max_rows=300)
    assert tables[True].equals(tables[False])
    got = tables[True]
    assert_same_rows(got.select(t.schema.names), t)
    assert got.column("_sequence").to_pylist() == list(range(1, 2_001))
    assert got.column("_subject").to_pylist() == [f"{stream}.a"] * 1_500 + [f"{stream}.b.c"] * 500
    stored = _js(nats_url, lambda js: js.get_msg(stream, 1_700))
    # The stored message's time (UTC), truncated to the column's microseconds as nats-py truncates it.
    assert got.column("_timestamp")[1_699].as_py() == stored.time


def test_a_lost_pull_connection_loses_nothing(nats_url: str, stream: str) -> None:
    """The pull socket dies while messages are on their way to it: the reader recreates the consumer
    after the last message it returned, so those messages come again (AckAll must not skip them)."""
    t = make_table(1_000)
    with NatsJetStreamSink(nats_url, subject=f"{stream}.a", msg_id_column="id") as sink:
        sink.write_table(t)
    src = NatsJetStreamSource(nats_url, stream=stream, durable="lost", format=Json(t.schema))
    r = src.open(src.plan()[0])
    got = [r.read_batch(100, 5.0)]
    assert got[0] is not None and got[0].num_rows == 100
    r.commit(r.snapshot())
    pull = r._pull  # type: ignore[attr-defined]
    # A request for 500 more is answered into the socket, then the connection drops unread.
    pull._request(500, expires=None)
    while len(pull._buf) < 100_000:
        assert pull._recv(5.0), "the server did not deliver the requested messages"
    pull._sock.shutdown(2)
    lost = 0
    while sum(b.num_rows for b in got) < 1_000:
        b = r.read_batch(300, 2.0)
        if b is None:
            lost += 1
            assert lost < 10, f"stuck at {sum(b.num_rows for b in got)} rows"
            continue
        got.append(b)
        r.commit(r.snapshot())
    assert lost >= 1  # the failed read
    assert_same_rows(pa.Table.from_batches(got), t)
    assert _info(nats_url, stream, "lost").ack_floor.stream_seq == 1_000
    r.close()


def test_config_errors(nats_url: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        NatsJetStreamSink(nats_url, subject="a.*")
    assert e.value.option == "subject"
    with pytest.raises(ConfigurationError) as e:
        NatsJetStreamSource(nats_url, stream="S", durable="d", start_sequence=5)
    assert e.value.option == "start_sequence"
    with pytest.raises(ConfigurationError) as e:
        NatsJetStreamSource(nats_url, stream="a.b", durable="d")
    assert e.value.option == "stream"


def test_nats_pipeline_exactly_once_across_sigkill(nats_url: str, stream: str, tmp_path: Path) -> None:
    n = 3000  # 60 batches of 50
    t = pa.table({"id": pa.array(np.arange(n)), "text": pa.array([f"t{i}" for i in range(n)])})
    with NatsJetStreamSink(nats_url, subject=f"{stream}.in", msg_id_column="id") as sink:
        sink.write_table(t)
    from nats.js.api import StreamConfig

    out = f"{stream}OUT"
    _js(
        nats_url,
        lambda js: js.add_stream(StreamConfig(name=out, subjects=[f"{out}.>"], duplicate_window=300)),
    )
    try:
        cmd = [
            sys.executable,
            str(PIPELINE),
            "nats",
            "--url",
            nats_url,
            "--source",
            stream,
            "--target",
            f"{out}.x",
            "--last",
            str(n - 1),
            "--checkpoint-dir",
            str(tmp_path / "cp"),
            "--idle",
            "3",
            "--delay",
            "0.02",
        ]

        def verify(report: CrashReport) -> None:
            assert DONE in report.final_stdout.splitlines()
            got = NatsJetStreamSource(
                nats_url, stream=out, durable="verify", format=Json(t.schema), bounded=True
            ).read_all()
            ids = got.column("id").to_pylist()
            assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates"
            assert set(ids) == set(range(n)), f"{n - len(set(ids))} rows lost"

        crash_mid_stream(cmd, verify=verify, kills=3, kill_after=(2, 15), seed=9)
    finally:
        _js(nats_url, lambda js: js.delete_stream(out))
