"""Redis connectors against the real server (``redis_url``), a test-owned append-only server that is
restarted during a run, and SIGKILLed pipeline processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow import Pipeline
from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.redis_ import RedisPubSubSource, RedisSink, RedisStreamSource
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json
from arrowflow.testing import assert_same_rows, make_table
from arrowflow.writer import BatchingConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream

HERE = Path(__file__).resolve().parent


@pytest.fixture
def r(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    client.prefix = prefix  # type: ignore[attr-defined]
    yield client
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _table(n: int = 300) -> pa.Table:
    return make_table(n)


# -- sink commands ------------------------------------------------------------------------------


def test_set_with_ttl_and_value_column(r: Any, redis_url: str) -> None:
    t = _table(200)
    with RedisSink(
        redis_url, command="set", key_column="id", key_prefix=r.prefix + ":", value_column="name", ttl=60
    ) as s:
        s.write_table(t)
    assert s.idempotent
    assert r.get(f"{r.prefix}:7") == t.column("name")[7].as_py().encode()
    ttl = r.pttl(f"{r.prefix}:7")
    assert 0 < ttl <= 60_000


def test_lists_sets_sorted_sets_hyperloglog(r: Any, redis_url: str) -> None:
    t = _table(300)
    cfg = BatchingConfig(max_request_rows=64, max_in_flight=1)
    for cmd in ("rpush", "lpush", "sadd", "pfadd"):
        with RedisSink(redis_url, command=cmd, key=f"{r.prefix}:{cmd}", value_column="id", batching=cfg) as s:
            s.write_table(t)
    ids = [str(i).encode() for i in range(300)]
    assert r.lrange(f"{r.prefix}:rpush", 0, -1) == ids
    assert r.lrange(f"{r.prefix}:lpush", 0, -1) == ids[::-1]
    assert r.smembers(f"{r.prefix}:sadd") == set(ids)
    assert abs(r.pfcount(f"{r.prefix}:pfadd") - 300) <= 10  # HyperLogLog is approximate
    with RedisSink(
        redis_url, command="zadd", key=f"{r.prefix}:z", score_column="value", value_column="name"
    ) as s:
        s.write_table(t)
    top = r.zrevrange(f"{r.prefix}:z", 0, 0, withscores=True)[0]
    i = int(np.argmax(t.column("value").to_numpy()))
    assert top == (t.column("name")[i].as_py().encode(), t.column("value")[i].as_py())


def test_publish_reaches_pubsub_source(r: Any, redis_url: str) -> None:
    t = _table(200)
    channel = f"{r.prefix}:chan"
    src = RedisPubSubSource(
        redis_url, channels=[channel], format=Json(t.schema), metadata_columns=["_channel"]
    )
    reader = src.open(src.plan()[0])
    try:
        deadline = time.monotonic() + 10
        while not reader.subscribed and time.monotonic() < deadline:  # type: ignore[attr-defined]
            reader.read_batch(1, 0.05)
        with RedisSink(redis_url, command="publish", key=channel) as s:
            s.write_table(t)
        got: list[pa.RecordBatch] = []
        while sum(b.num_rows for b in got) < 200 and time.monotonic() < deadline + 10:
            b = reader.read_batch(64, 0.5)
            if b is not None:
                got.append(b)
        table = pa.Table.from_batches(got)
        assert_same_rows(table, t)
        assert set(table.column("_channel").to_pylist()) == {channel}
        assert reader.snapshot() == 200
    finally:
        reader.close()


def test_wrongtype_rows_go_to_dead_letter(r: Any, redis_url: str) -> None:
    t = _table(50)
    r.set(f"{r.prefix}:l:3", "a string")  # RPUSH on it fails with WRONGTYPE
    dead = MemorySink()
    with RedisSink(
        redis_url,
        command="rpush",
        key_column="id",
        key_prefix=f"{r.prefix}:l:",
        value_column="name",
        error_policy=dead,
    ) as s:
        s.write_table(t)
    letters = dead.table()
    assert letters.column("id").to_pylist() == [3]
    assert "WRONGTYPE" in letters.column("error")[0].as_py()
    assert r.llen(f"{r.prefix}:l:4") == 1


def test_config_errors_name_the_option(redis_url: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        RedisSink(redis_url, command="hset", key="h")
    assert e.value.option == "field_column"
    with pytest.raises(ConfigurationError) as e:
        RedisSink(redis_url, command="rpush", key="a", key_column="b")
    assert e.value.option == "key_column"
    with pytest.raises(ConfigurationError) as e:
        RedisSink(redis_url, command="nope", key="a")
    assert e.value.option == "command"


# -- stream source: acks, pending-entry recovery, poison messages --------------------------------


def test_stream_acks_only_on_commit_and_recovers_pending(r: Any, redis_url: str) -> None:
    t = _table(300)
    stream = f"{r.prefix}:s"
    with RedisSink(redis_url, command="xadd", key=stream) as s:
        s.write_table(t)
    src = RedisStreamSource(
        redis_url, streams=[stream], group="g", format=Json(t.schema), metadata_columns=["_id"]
    )
    split = src.plan()[0]
    reader = src.open(split)
    first = reader.read_batch(100, 1.0)
    assert first is not None and first.num_rows == 100
    checkpoint = reader.snapshot()
    second = reader.read_batch(100, 1.0)
    assert second is not None and second.num_rows == 100
    assert r.xpending(stream, "g")["pending"] == 200  # nothing acknowledged before commit
    reader.commit(checkpoint)
    assert r.xpending(stream, "g")["pending"] == 100
    reader.close()  # "crash": the second batch was never checkpointed
    # Restart from the checkpoint: the second batch comes back from the PEL, then the rest.
    again = src.open(split, checkpoint)
    got = []
    while True:
        b = again.read_batch(64, 0.5)
        if b is None:
            break
        got.append(b)
    rest = pa.Table.from_batches(got)
    assert rest.column("id").to_pylist() == list(range(100, 300))
    again.commit(again.snapshot())
    assert r.xpending(stream, "g")["pending"] == 0
    again.close()


def test_recovery_skips_pending_entries_already_checkpointed(r: Any, redis_url: str) -> None:
    """A crash after the checkpoint was durable but before XACK: those entries are not re-emitted."""
    t = _table(100)
    stream = f"{r.prefix}:s2"
    with RedisSink(redis_url, command="xadd", key=stream) as s:
        s.write_table(t)
    src = RedisStreamSource(redis_url, streams=[stream], group="g", format=Json(t.schema))
    split = src.plan()[0]
    reader = src.open(split)
    b = reader.read_batch(60, 1.0)
    assert b is not None and b.num_rows == 60
    pos = reader.snapshot()
    reader.close()  # no commit
    again = src.open(split, pos)
    b2 = again.read_batch(100, 1.0)
    assert b2 is not None and b2.column("id").to_pylist() == list(range(60, 100))
    assert r.xpending(stream, "g")["pending"] == 40  # the 60 checkpointed ones were acknowledged
    again.close()


def test_poison_entries_go_to_dead_letter(r: Any, redis_url: str) -> None:
    t = _table(20)
    stream = f"{r.prefix}:p"
    with RedisSink(redis_url, command="xadd", key=stream) as s:
        s.write_table(t.slice(0, 10))
    r.xadd(stream, {"data": b"{not json"})
    r.xadd(stream, {"other": b"no data field"})
    with RedisSink(redis_url, command="xadd", key=stream) as s:
        s.write_table(t.slice(10))
    dead = MemorySink()
    src = RedisStreamSource(redis_url, streams=[stream], group="g", format=Json(t.schema), error_policy=dead)
    out = pa.Table.from_batches(list(src.batches(max_rows=7, idle_timeout=1.0)))
    assert_same_rows(out, t)
    letters = dead.table()
    assert letters.num_rows == 2
    assert set(letters.schema.names) >= {"payload", "stream", "id", "error"}
    assert letters.column("payload").to_pylist()[0] == b"{not json"


# -- a server restart during a run ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server with append-only persistence on its own port, started and stopped by PID."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--save",
                "",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # a clean shutdown writes the append-only file
            self.proc.wait(20)
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.dir.mkdir()
    server.start()
    yield server
    server.stop()


def test_server_restart_during_a_run(own_redis: OwnRedis, tmp_path: Path) -> None:
    """Stream -> pipeline -> HSET on a server stopped and restarted mid-run: no loss, PEL drained,
    poison entries (mixed into the stream) in the dead-letter sink."""
    import redis

    n = 3000
    t = pa.table({"id": pa.array(np.arange(n)), "text": pa.array([f"t{i}" for i in range(n)])})
    client = redis.Redis.from_url(own_redis.url)
    poison = [b"{broken", b"not json", b'{"id": "x"']
    with RedisSink(own_redis.url, command="xadd", key="in") as s:
        s.write_table(t.slice(0, n // 2))
    for p in poison:
        client.xadd("in", {"data": p})
    with RedisSink(own_redis.url, command="xadd", key="in") as s:
        s.write_table(t.slice(n // 2))
    batching = BatchingConfig(max_request_rows=200, max_in_flight=1, max_attempts=None, max_retry_time=60.0)
    sink = RedisSink(
        own_redis.url,
        command="hset",
        key_column="id",
        key_prefix="out:",
        field_column="text",
        value_column="id",
        batching=batching,
    )
    dead = MemorySink()
    src = RedisStreamSource(
        own_redis.url, streams=["in"], group="g", format=Json(t.schema), error_policy=dead
    )
    stop = threading.Event()
    seen = {"rows": 0}

    def slow(batch: pa.RecordBatch) -> pa.RecordBatch:
        time.sleep(0.01)
        seen["rows"] += batch.num_rows
        if int(batch.column("id")[-1].as_py()) == n - 1:
            stop.set()
        return batch

    errors: list[BaseException] = []

    def run() -> None:
        try:
            Pipeline(src).map_batches(slow).to(sink).run(
                checkpoint_dir=tmp_path / "cp",
                checkpoint_interval=0.2,
                progress=False,
                max_batch_rows=50,
                stop_event=stop,
            )
        except BaseException as exc:
            errors.append(exc)

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 30
    while seen["rows"] < 500:
        assert time.monotonic() < deadline and th.is_alive(), f"pipeline stalled: {errors}"
        time.sleep(0.02)
    own_redis.stop()
    time.sleep(1.0)
    rows_while_down = seen["rows"]
    own_redis.start()
    th.join(120)
    assert not th.is_alive(), "the pipeline did not finish after the restart"
    assert not errors, errors
    assert seen["rows"] > rows_while_down
    keys = {int(k.split(b":")[1]) for k in client.scan_iter(match="out:*", count=1000)}
    assert keys == set(range(n)), f"{n - len(keys)} rows lost"
    assert client.xpending("in", "g")["pending"] == 0
    # At-least-once: a poison entry read again after the restart may reach the dead letter twice.
    assert set(dead.table().column("payload").to_pylist()) == set(poison)
    client.close()


# -- Sentinel ----------------------------------------------------------------------------------------


def test_sentinel_finds_the_master_for_sink_and_sources(
    r: Any, service: Callable[[str], tuple[str, int]]
) -> None:
    """Sink, stream source and pub/sub source given only the Sentinel (``redis.sh`` runs one that
    monitors the suite's server as master ``arrowflow``) and a URL whose port nothing serves: every
    command must go to the master the Sentinel names."""
    from redis.sentinel import Sentinel

    host, sentinel_port = service("redis-sentinel")
    _, redis_port = service("redis")
    sentinels = [(host, sentinel_port)]
    assert Sentinel(sentinels).discover_master("arrowflow") == (host, redis_port)
    nowhere = "redis://127.0.0.1:9/0"  # the discard port: a client that ignored the Sentinel fails
    t = _table(500)
    stream, prefix = f"{r.prefix}:sentinel-stream", f"{r.prefix}:sentinel"
    with RedisSink(nowhere, command="xadd", key=stream, sentinels=sentinels, service_name="arrowflow") as s:
        s.write_table(t)
    with RedisSink(
        nowhere,
        command="hset",
        key_column="id",
        key_prefix=prefix + ":",
        field_column="name",
        sentinels=sentinels,
        service_name="arrowflow",
    ) as s:
        s.write_table(t)
    assert r.xlen(stream) == 500
    assert len(list(r.scan_iter(match=prefix + ":*", count=1000))) == 500
    source = RedisStreamSource(
        nowhere,
        streams=[stream],
        group="sentinel",
        format=Json(t.schema),
        sentinels=sentinels,
        service_name="arrowflow",
    )
    batches: list[pa.RecordBatch] = []
    with source.open(source.plan()[0]) as reader:
        deadline = time.monotonic() + 60
        while sum(b.num_rows for b in batches) < 500 and time.monotonic() < deadline:
            batch = reader.read_batch(1000, 1.0)
            if batch is not None:
                batches.append(batch)
    assert_same_rows(pa.Table.from_batches(batches), t)
    with pytest.raises(ConfigurationError) as info:
        RedisSink(nowhere, command="xadd", key=stream, sentinels=sentinels)
    assert info.value.option == "service_name"


# -- SIGKILL crash / restart ---------------------------------------------------------------------


def test_stream_to_hash_pipeline_survives_sigkill(r: Any, redis_url: str, tmp_path: Path) -> None:
    n = 3000  # 60 batches of 50
    t = pa.table({"id": pa.array(np.arange(n)), "text": pa.array([f"t{i}" for i in range(n)])})
    stream, target = f"{r.prefix}:in", f"{r.prefix}:out"
    with RedisSink(redis_url, command="xadd", key=stream) as s:
        s.write_table(t)
    cmd = [
        sys.executable,
        str(HERE / "broker_pipeline.py"),
        "redis",
        "--url",
        redis_url,
        "--source",
        stream,
        "--target",
        target,
        "--last",
        str(n - 1),
        "--checkpoint-dir",
        str(tmp_path / "cp"),
        "--delay",
        "0.02",
    ]

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        keys = {int(k.rsplit(b":", 1)[1]) for k in r.scan_iter(match=target + ":*", count=1000)}
        assert keys == set(range(n)), f"{n - len(keys)} rows lost"
        assert r.xpending(stream, "crash")["pending"] == 0

    crash_mid_stream(cmd, verify=verify, kills=3, kill_after=(2, 15), seed=5)
