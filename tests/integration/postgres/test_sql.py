"""SqlSink / SqlSource against the real PostgreSQL 15 server (loopback, trust auth).

Every test creates its own tables (uuid suffix) and drops them afterwards. Connection loss is real:
another connection kills the sink's backend with ``pg_terminate_backend``.
"""

from __future__ import annotations

import datetime as dt
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
from arrowflow.connectors.datagen import DataGenSource, RandomString, Sequence, Uniform
from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.sql import SqlSink, SqlSource, dedupe_last
from arrowflow.errors import ConfigurationError, ConnectorError
from arrowflow.retry import Retry
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "faults"))
from scenario import wait_for  # bounded condition waits, shared with the fault tests


def _connect(dsn: str, autocommit: bool = True) -> Any:
    import adbc_driver_postgresql.dbapi as dbapi

    return dbapi.connect(dsn, autocommit=autocommit)


@pytest.fixture
def db(postgres_dsn: str) -> Iterator[Callable[..., Any]]:
    """``db(sql)`` runs a statement; ``db.read(table)`` returns the table ordered by its first column;
    ``db.name()`` makes a fresh table name that is dropped after the test."""
    conn = _connect(postgres_dsn)
    names: list[str] = []

    class Db:
        def __call__(self, sql: str) -> Any:
            with conn.cursor() as cur:
                cur.execute(sql)
                try:
                    return cur.fetchall()
                except Exception:
                    return None

        def read(self, table: str, order: str = "1") -> pa.Table:
            with conn.cursor() as cur:
                cur.execute(f'SELECT * FROM "{table}" ORDER BY {order}')
                return cur.fetch_arrow_table()

        def name(self, prefix: str = "af_sql") -> str:
            name = f"{prefix}_{uuid.uuid4().hex[:10]}"
            names.append(name)
            return name

        def load(self, table: str, data: pa.Table) -> None:
            with conn.cursor() as cur:
                cur.adbc_ingest(table, data, mode="create_append")

    yield Db()
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f'DROP TABLE IF EXISTS "{name}"')
    conn.close()


def _eight_columns(n: int, seed: int = 1) -> pa.Table:
    """The benchmark table's 8-column shape (int64, float64, string, bool, timestamp, int32, string,
    float64), with nulls in every column but ``id``."""
    rng = np.random.default_rng(seed)

    def mask() -> np.ndarray:
        return rng.random(n) < 0.1

    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "price": pa.array(np.round(rng.uniform(0, 10_000, n), 2), mask=mask()),
            "name": pa.array([f"name-{i}-ü'\"" for i in range(n)], mask=mask()),
            "active": pa.array(rng.random(n) < 0.5, mask=mask()),
            "ts": pa.array(
                (np.int64(1_767_225_600_000_000) + rng.integers(0, 10**13, n)).astype("datetime64[us]"),
                pa.timestamp("us"),
                mask=mask(),
            ),
            "qty": pa.array(rng.integers(-1_000_000, 1_000_001, n).astype(np.int32), mask=mask()),
            "code": pa.array([f"C{i:06d}" for i in range(n)], mask=mask()),
            "score": pa.array(rng.standard_normal(n), mask=mask()),
        }
    )


def _plain(table: pa.Table) -> pa.Table:
    """``table`` without the driver's per-field metadata, for exact schema comparisons."""
    return table.cast(pa.schema([pa.field(f.name, f.type, f.nullable) for f in table.schema]))


# -- sink ------------------------------------------------------------------------------------------


def test_append_round_trip_creates_table_and_preserves_types(postgres_dsn: str, db: Any) -> None:
    name = db.name()
    data = _eight_columns(2500)
    sink = SqlSink(postgres_dsn, name, create=True, flush_rows=1000)
    for batch in data.to_batches(max_chunksize=300):
        sink.write(batch)
    sink.close()
    back = db.read(name)
    assert back.schema.names == data.schema.names
    assert [f.type for f in back.schema] == [f.type for f in data.schema]
    assert _plain(back).equals(data)
    assert sink.metrics()["rows_written"] == 2500
    assert sink.metrics()["flushes"] == 3  # 1000 + 1000 + 500 (at close)
    assert db(f'SELECT count(*) FROM "{name}"')[0][0] == 2500
    # The table came from the Arrow schema.
    types = dict(
        db(f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{name}'")
    )
    assert types["id"] == "bigint" and types["qty"] == "integer" and types["ts"].startswith("timestamp")


def test_upsert_updates_inserts_and_deletes(postgres_dsn: str, db: Any) -> None:
    name = db.name()
    first = pa.table({"id": [1, 2, 3, 4], "v": ["a", "b", "c", "d"], "gone": [False, False, False, False]})
    sink = SqlSink(postgres_dsn, name, mode="upsert", keys=["id"], create=True, delete_column="gone")
    assert sink.idempotent
    sink.write_table(first)
    sink.flush()
    assert db.read(name).to_pydict() == {"id": [1, 2, 3, 4], "v": ["a", "b", "c", "d"]}
    # Update 2, insert 5, delete 3 and 9 (absent: harmless); a null flag means "not deleted".
    second = pa.table(
        {"id": [2, 5, 3, 9, 4], "v": ["B", "e", None, None, "D"], "gone": [False, False, True, True, None]}
    )
    sink.write_table(second)
    sink.flush()
    assert db.read(name).to_pydict() == {"id": [1, 2, 4, 5], "v": ["a", "B", "D", "e"]}
    # Writing the same flush again changes nothing (idempotent).
    sink.write_table(second)
    sink.close()
    assert db.read(name).to_pydict() == {"id": [1, 2, 4, 5], "v": ["a", "B", "D", "e"]}
    pk = db(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        f"AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '\"{name}\"'::regclass AND i.indisprimary"
    )
    assert pk == [("id",)]


def test_upsert_duplicates_in_one_flush_last_wins(postgres_dsn: str, db: Any) -> None:
    name = db.name()
    db(f'CREATE TABLE "{name}" (k1 int, k2 text, v bigint, PRIMARY KEY (k1, k2))')
    sink = SqlSink(postgres_dsn, name, mode="upsert", keys=("k1", "k2"), delete_column="del")
    batch = pa.table(
        {
            "k1": pa.array([1, 1, 2, 1, 2, 3, 3], pa.int32()),
            "k2": ["x", "y", "x", "x", "x", "z", "z"],
            "v": [10, 20, 30, 11, 31, 40, 41],
            "del": [False, False, False, False, False, False, True],
        }
    )
    sink.write_table(batch)
    sink.close()
    # (1,x) -> 11, (2,x) -> 31 (last rows win); (3,z) inserted then deleted in the same flush -> absent.
    assert db.read(name, "k1, k2").to_pydict() == {"k1": [1, 1, 2], "k2": ["x", "y", "x"], "v": [11, 20, 31]}


def test_dedupe_last_keeps_order_and_last_rows() -> None:
    t = pa.table({"k": [3, 1, 3, 2, 1, 3], "v": list(range(6))})
    assert dedupe_last(t, ("k",)).to_pydict() == {"k": [2, 1, 3], "v": [3, 4, 5]}
    unique = pa.table({"k": [1, 2, 3]})
    assert dedupe_last(unique, ("k",)) is unique


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_constraint_violations_follow_each_error_policy(postgres_dsn: str, db: Any, mode: str) -> None:
    n = 1000
    ids = np.arange(n, dtype=np.int64)
    values = np.arange(n, dtype=np.int64)
    bad_at = np.array([0, 17, 18, 500, 999])
    values[bad_at] = -values[bad_at] - 1  # violates CHECK (v >= 0)
    data = pa.table({"id": ids, "v": values})
    good = data.filter(pa.array(values >= 0))
    keys = ("id",) if mode == "upsert" else None

    def fresh() -> str:
        name = db.name()
        db(f'CREATE TABLE "{name}" (id bigint PRIMARY KEY, v bigint CHECK (v >= 0))')
        return name

    name = fresh()
    sink = SqlSink(postgres_dsn, name, mode=mode, keys=keys, flush_rows=400)
    with pytest.raises(ConnectorError, match="check constraint"):
        sink.write_table(data)
        sink.flush()
    sink.close()

    name = fresh()
    sink = SqlSink(postgres_dsn, name, mode=mode, keys=keys, flush_rows=400, error_policy="skip")
    sink.write_table(data)
    sink.close()
    assert sink.error_policy.skipped == len(bad_at)
    assert sink.metrics()["rows_rejected"] == len(bad_at)
    assert db.read(name).equals(good) or _plain(db.read(name)).equals(good)

    name = fresh()
    dead = MemorySink()
    sink = SqlSink(postgres_dsn, name, mode=mode, keys=keys, flush_rows=400, error_policy=dead)
    sink.write_table(data)
    sink.close()
    letters = dead.table()
    assert sorted(letters.column("id").to_pylist()) == bad_at.tolist()
    assert all("check constraint" in e for e in letters.column("error").to_pylist())
    assert_same_rows(db.read(name), good)


def test_connection_loss_between_flushes_reconnects(postgres_dsn: str, db: Any) -> None:
    name = db.name()
    sink = SqlSink(postgres_dsn, name, create=True, retry=Retry(max_attempts=6, initial_backoff=0.01))
    sink.write_table(pa.table({"id": np.arange(100, dtype=np.int64)}))
    sink.flush()
    with sink._conn.cursor() as cur:  # the sink's own backend, to kill it from outside
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    sink._conn.commit()
    assert db(f"SELECT pg_terminate_backend({pid})") == [(True,)]
    sink.write_table(pa.table({"id": np.arange(100, 200, dtype=np.int64)}))
    sink.close()
    assert sink.metrics()["reconnects"] >= 1
    assert db.read(name).column("id").to_pylist() == list(range(200))


@pytest.mark.parametrize("mode", ["upsert", "append"])
def test_backends_killed_mid_run_lose_nothing(postgres_dsn: str, db: Any, mode: str) -> None:
    name = db.name()
    app = f"af_kill_{uuid.uuid4().hex[:8]}"
    keys = ("id",) if mode == "upsert" else None
    sink = SqlSink(
        f"{postgres_dsn}?application_name={app}", name, mode=mode, keys=keys, create=True,
        flush_rows=2000, retry=Retry(max_attempts=11, initial_backoff=0.01, max_backoff=5.0),
    )  # fmt: skip
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        killer_conn = _connect(postgres_dsn)
        with killer_conn.cursor() as cur:
            # A handful of kills spread over the run: each must cost a reconnect and a retried flush.
            while not stop.is_set() and kills < 5:
                cur.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    f"WHERE application_name = '{app}'"
                )
                kills += cur.fetchone()[0]
                time.sleep(0.1)
        killer_conn.close()

    total = 40_000
    data = pa.table({"id": np.arange(total, dtype=np.int64), "v": np.arange(total, dtype=np.float64)})
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        for batch in data.to_batches(max_chunksize=500):
            sink.write(batch)
            time.sleep(0.005)  # spread the run so the kills land between and inside flushes
        sink.flush()
    finally:
        stop.set()
        thread.join(10)
    sink.close()
    assert kills > 0 and sink.metrics()["retries"] > 0
    ids = db.read(name).column("id").to_numpy()
    if mode == "upsert":
        assert np.array_equal(ids, np.arange(total))  # every row exactly once
    else:
        assert np.array_equal(np.unique(ids), np.arange(total))  # at-least-once


def test_password_never_shows(db: Any) -> None:
    uri = "postgresql://postgres:hunter2secret@127.0.0.1:1/postgres"
    sink = SqlSink(uri, "t", retry=Retry(max_attempts=1))
    assert "hunter2secret" not in repr(sink) and "***" in repr(sink)
    assert "hunter2secret" not in repr(sink.config)
    sink.write(pa.record_batch({"id": [1]}))
    with pytest.raises(ConnectorError) as info:
        sink.flush()
    assert "hunter2secret" not in str(info.value)
    assert "postgres:***@127.0.0.1" in str(info.value)
    source = SqlSource(uri, table="t")
    assert "hunter2secret" not in repr(source)
    with pytest.raises(ConnectorError) as info2:
        source.read_all()
    assert "hunter2secret" not in str(info2.value)


def test_configuration_errors_name_the_option() -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: SqlSink("postgresql://x", "t", mode="upsert"), "keys"),
        (lambda: SqlSink("postgresql://x", "t", mode="merge"), "mode"),
        (lambda: SqlSink("postgresql://x", "t", delete_column="d"), "delete_column"),
        (lambda: SqlSink("postgresql://x", "t", flush_rows=0), "flush_rows"),
        (lambda: SqlSource("postgresql://x"), "query"),
        (lambda: SqlSource("postgresql://x", table="t", num_partitions=3), "num_partitions"),
        (lambda: SqlSource("postgresql://x", table="t", lower_bound=[1]), "lower_bound"),
    ]
    for make, option in cases:
        with pytest.raises(ConfigurationError) as info:
            make()
        assert info.value.option == option


# -- source ----------------------------------------------------------------------------------------


def test_ranges_cover_every_row_once(postgres_dsn: str, db: Any) -> None:
    name = db.name()
    n = 3000
    ids = pa.array(np.arange(-500, n - 500, dtype=np.int64), mask=np.arange(n) % 97 == 0)
    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    ts = pa.array(base + np.arange(n, dtype=np.int64) * 3_600_000_000, pa.timestamp("us"))
    data = pa.table({"id": ids, "ts": ts, "x": np.arange(n, dtype=np.float64)})
    db.load(name, data)

    # Bounds narrower than the data: rows below/above and NULLs still land in the first/last split.
    source = SqlSource(
        postgres_dsn, table=name, partition_column="id", lower_bound=0, upper_bound=1000, num_partitions=5
    )
    splits = source.plan()
    assert [s.params["lo"] for s in splits] == [None, 200, 400, 600, 800]
    per_split = [pa.Table.from_batches(list(_read_split(source, s))) for s in splits]
    assert per_split[0].num_rows > 0 and per_split[-1].num_rows > 0
    assert_same_rows(pa.concat_tables([_plain(t) for t in per_split]), data)

    # Timestamps, bounds from min/max.
    source = SqlSource(postgres_dsn, f'SELECT * FROM "{name}"', partition_column="ts", num_partitions=7)
    splits = source.plan()
    assert len(splits) == 7 and isinstance(splits[1].params["lo"], str)
    sizes = [sum(b.num_rows for b in _read_split(source, s)) for s in splits]
    assert sum(sizes) == n and min(sizes) > 0
    assert_same_rows(source.read_all(max_rows=250), data)


def _read_split(source: SqlSource, split: Any) -> Iterator[pa.RecordBatch]:
    with source.open(split) as reader:
        while not reader.finished:
            batch = reader.read_batch(400, 1.0)
            if batch is not None:
                yield batch


def test_offset_resume_in_partitioned_split(postgres_dsn: str, db: Any) -> None:
    name = db.name()
    data = pa.table({"id": np.arange(1000, dtype=np.int64)})
    db.load(name, data)
    source = SqlSource(postgres_dsn, table=name, partition_column="id", num_partitions=2)
    split = source.plan()[1]
    with source.open(split) as reader:
        first = reader.read_batch(123, 1.0)
        assert first is not None
        snap = reader.snapshot()
    assert snap == {"rows": 123}
    rest = list(_read_split_from(source, split, snap))
    got = pa.concat_tables([pa.Table.from_batches([first]), *[pa.Table.from_batches([b]) for b in rest]])
    assert got.column("id").to_pylist() == list(range(499, 1000))


def _read_split_from(source: SqlSource, split: Any, position: Any) -> Iterator[pa.RecordBatch]:
    with source.open(split, position) as reader:
        while not reader.finished:
            batch = reader.read_batch(1000, 1.0)
            if batch is not None:
                yield batch


def test_incremental_mode_picks_up_new_rows(postgres_dsn: str, db: Any) -> None:
    name = db.name()
    db(f'CREATE TABLE "{name}" (id bigserial PRIMARY KEY, at timestamp NOT NULL, v text)')
    db(f"INSERT INTO \"{name}\" (at, v) SELECT '2026-01-01'::timestamp + g * interval '1 second', 'a' || g "
       "FROM generate_series(1, 50) g")  # fmt: skip
    source = SqlSource(postgres_dsn, table=name, incremental_column="at", poll_interval=0.05)
    assert not source.bounded
    (split,) = source.plan()
    assert not split.bounded

    def drain(reader: Any, want: int) -> list[int]:
        got: list[int] = []
        deadline = time.monotonic() + 20
        while len(got) < want:
            assert time.monotonic() < deadline, f"only {len(got)} of {want} rows arrived"
            batch = reader.read_batch(16, 0.2)
            if batch is not None:
                got += batch.column("id").to_pylist()
        assert reader.read_batch(16, 0.2) is None  # nothing more
        return got

    reader = source.open(split)
    assert drain(reader, 50) == list(range(1, 51))
    snap = reader.snapshot()
    assert snap == dt.datetime(2026, 1, 1, 0, 0, 50).isoformat()
    db(f"INSERT INTO \"{name}\" (at, v) SELECT '2026-01-01'::timestamp + g * interval '1 second', 'b' || g "
       "FROM generate_series(51, 80) g")  # fmt: skip
    assert drain(reader, 30) == list(range(51, 81))
    reader.close()
    # A restart from the old snapshot re-reads exactly the rows after it.
    with source.open(split, snap) as again:
        assert again.snapshot() == snap
        assert drain(again, 30) == list(range(51, 81))


# -- pipeline --------------------------------------------------------------------------------------


def test_pipeline_exactly_once_upsert_with_restart(postgres_dsn: str, db: Any, tmp_path: Path) -> None:
    name = db.name()
    fields = {"id": Sequence(), "x": Uniform(0, 1000, "int64"), "s": RandomString((1, 12))}

    def source() -> DataGenSource:
        return DataGenSource(fields, count=6000, batch_size=250, seed=5, num_splits=2)

    expected = source().read_all()
    seen = 0

    def crash_after_some(batch: pa.RecordBatch) -> pa.RecordBatch:
        nonlocal seen
        seen += batch.num_rows
        time.sleep(0.02)  # let checkpoints (every 0.05 s) complete before the crash
        if seen > 3500:
            raise RuntimeError("simulated crash")
        return batch

    ckpt = tmp_path / "ckpt"
    sink = SqlSink(postgres_dsn, name, mode="upsert", keys=("id",), create=True, flush_rows=500)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Pipeline(source()).map_batches(crash_after_some).to(sink).run(
            checkpoint_dir=ckpt, checkpoint_interval=0.05, guarantee="exactly-once", progress=False
        )
    sink.close()
    written_before = db(f'SELECT count(*) FROM "{name}"')[0][0]
    assert 0 < written_before < 6000

    sink = SqlSink(postgres_dsn, name, mode="upsert", keys=("id",), create=True, flush_rows=500)
    result = (
        Pipeline(source())
        .to(sink)
        .run(checkpoint_dir=ckpt, checkpoint_interval=0.05, guarantee="exactly-once", progress=False)
    )
    sink.close()
    assert result.rows < 6000  # resumed from the checkpoint, not from scratch
    assert_same_rows(db.read(name), expected)


def test_create_tolerates_a_table_another_session_created_meanwhile(postgres_dsn: str, db: Any) -> None:
    """The race a timed-out flush attempt leaves behind (seen through the fault proxy's black hole):
    the attempt's transaction, still running on the server, creates the table and commits while the
    retry's CREATE waits on it; the retry then fails on the catalog's unique index. The sink must
    take the table as created and write its rows."""
    name = db.name()
    other = _connect(postgres_dsn, autocommit=False)
    try:
        with other.cursor() as cur:
            cur.execute(f'CREATE TABLE "{name}" (id bigint PRIMARY KEY, name text)')  # not committed
        sink = SqlSink(postgres_dsn, name, mode="upsert", keys=["id"], create=True)
        data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", "c"]})
        errors: list[BaseException] = []

        def write() -> None:
            try:
                sink.write_table(data)
                sink.close()
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        # The sink's CREATE waits for the other transaction: wait until the server shows it blocked.
        deadline = time.monotonic() + 60
        while not db(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            f"AND query LIKE '%CREATE TABLE%{name}%'"
        )[0][0]:
            assert time.monotonic() < deadline, "the sink's CREATE TABLE never waited on the other session"
            time.sleep(0.05)
        other.commit()
        writer.join(60)
        assert not writer.is_alive()
        assert not errors, errors
        assert db(f'SELECT id, name FROM "{name}" ORDER BY id') == [(1, "a"), (2, "b"), (3, "c")]
    finally:
        other.close()


# -- background flushes (ADBC): one in flight, failures raised later, rejected rows on the caller ---

WAIT = 120.0  # seconds a condition may take on a loaded machine; never a measured duration


class _Held:
    """Another session holding ``LOCK TABLE ... IN SHARE MODE``: the sink's COPY into that table waits
    for it, so a flush stays in flight until :meth:`release`; plain SELECTs are not blocked.

    ``app`` is the sink's ``application_name``: :meth:`wait_blocked` waits until the sink's backend
    waits for this lock (the background flush is in flight, not merely queued)."""

    def __init__(self, dsn: str, table: str, app: str) -> None:
        self.dsn, self.app = dsn, app
        self.conn: Any = _connect(dsn, autocommit=False)
        with self.conn.cursor() as cur:
            cur.execute(f'LOCK TABLE "{table}" IN SHARE MODE')

    def waiting(self) -> int:
        with _connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity "
                f"WHERE application_name = '{self.app}' AND wait_event_type = 'Lock'"
            )
            return int(cur.fetchone()[0])

    def wait_blocked(self) -> None:
        wait_for(lambda: self.waiting() == 1, "the sink's flush to wait for the lock", cap=WAIT)

    def release(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


def _in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``fn`` in a daemon thread; its exception, if any, lands in the returned list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _ids(start: int, stop: int, v: int = 0) -> pa.RecordBatch:
    n = stop - start
    return pa.record_batch({"id": np.arange(start, stop, dtype=np.int64), "v": np.full(n, v, np.int64)})


def _locked_sink(postgres_dsn: str, db: Any, **kwargs: Any) -> tuple[str, str, SqlSink]:
    """A fresh ``(id bigint, v bigint CHECK (v >= 0))`` table and an append sink on it, flushing every
    100 rows, with its own application_name (for :class:`_Held`). Its session's ``lock_timeout`` is
    ``WAIT``: a flush that blocked the caller on a held lock (what these tests rule out) fails the
    test instead of hanging it."""
    name = db.name()
    db(f'CREATE TABLE "{name}" (id bigint, v bigint CHECK (v >= 0))')
    app = f"af_bg_{uuid.uuid4().hex[:8]}"
    options = f"options=-c%20lock_timeout%3D{int(WAIT)}s"
    sink = SqlSink(f"{postgres_dsn}?application_name={app}&{options}", name, flush_rows=100, **kwargs)
    return name, app, sink


def test_write_returns_while_its_flush_is_in_flight_and_one_flush_at_most(postgres_dsn: str, db: Any) -> None:
    name, app, sink = _locked_sink(postgres_dsn, db, flush_interval=None)
    held = _Held(postgres_dsn, name, app)
    try:
        first, errors = _in_thread(lambda: sink.write(_ids(0, 100)))
        first.join(WAIT)  # a write whose flush blocks on the lock returns: the flush is in the background
        assert not first.is_alive() and not errors
        held.wait_blocked()
        assert sink.metrics()["flush_waits"] == 0
        second, errors2 = _in_thread(lambda: sink.write(_ids(100, 200)))
        # The second flush is due, but waits for the first: the write blocks (backpressure).
        wait_for(
            lambda: sink.metrics()["flush_waits"] == 1,
            "the second write to wait for the first flush",
            cap=WAIT,
        )
        assert second.is_alive() and held.waiting() == 1
        assert sink.metrics()["flushes"] == 0 and sink.metrics()["rows_written"] == 0
        assert db(f'SELECT count(*) FROM "{name}"')[0][0] == 0
    finally:
        held.release()
    second.join(WAIT)
    assert not second.is_alive() and not errors2
    sink.close()
    m = sink.metrics()
    assert (m["flushes"], m["rows_written"], m["flush_waits"]) == (2, 200, 1)
    # Two transactions, the first flush's rows committed before the second's.
    xid = "xmin::text::bigint"
    xids = db(f'SELECT id < 100, min({xid}), max({xid}) FROM "{name}" GROUP BY 1 ORDER BY 1')
    assert [r[0] for r in xids] == [False, True]
    (_, second_lo, second_hi), (_, first_lo, first_hi) = xids
    assert first_lo == first_hi and second_lo == second_hi and first_hi < second_lo
    assert db.read(name).column("id").to_pylist() == list(range(200))


def test_flush_returns_after_the_rows_are_committed(postgres_dsn: str, db: Any) -> None:
    name, app, sink = _locked_sink(postgres_dsn, db, flush_interval=None)
    held = _Held(postgres_dsn, name, app)
    seen: list[int] = []

    def flush_then_count() -> None:
        sink.flush()
        # Right after flush() returns, from another session: every row is there.
        seen.append(db(f'SELECT count(*) FROM "{name}"')[0][0])

    try:
        sink.write(_ids(0, 100))  # in flight, blocked by the lock
        held.wait_blocked()
        sink.write(_ids(100, 150))  # buffered
        flusher, errors = _in_thread(flush_then_count)
        flusher.join(5.0)  # a flush() that returned early would count rows while the lock holds them
    finally:
        held.release()
    flusher.join(WAIT)
    assert not flusher.is_alive() and not errors
    assert seen == [150]
    assert sink.metrics()["rows_written"] == 150
    sink.close()


def test_a_failed_background_flush_is_raised_by_the_next_write(postgres_dsn: str, db: Any) -> None:
    name, app, sink = _locked_sink(postgres_dsn, db, flush_interval=None)
    sink.write(_ids(0, 100))
    sink.flush()
    held = _Held(postgres_dsn, name, app)
    try:
        sink.write(_ids(100, 200, v=-1))  # rejected by the CHECK, once the lock lets it run
        held.wait_blocked()
        sink.write(_ids(200, 250))  # buffered; the failing flush is still in flight: nothing to raise
    finally:
        held.release()
    # The next flush is due: this write waits for the failed one, raises its failure, keeps nothing.
    with pytest.raises(ConnectorError, match="check constraint"):
        sink.write(_ids(250, 350))
    m = sink.metrics()
    assert (m["flushes"], m["rows_written"], m["rows_rejected"]) == (1, 100, 0)
    assert db.read(name).column("id").to_pylist() == list(range(100))
    # Raised once: the sink goes on with what it had buffered before (200..249).
    sink.close()
    assert sink.metrics()["rows_written"] == 150
    assert db.read(name).column("id").to_pylist() == [*range(100), *range(200, 250)]


@pytest.mark.parametrize("by", ["flush", "close"])
def test_a_background_flush_into_a_dropped_table_is_raised_by_flush_or_close(
    postgres_dsn: str, db: Any, by: str
) -> None:
    name, _, sink = _locked_sink(postgres_dsn, db, flush_interval=None)
    sink.write(_ids(0, 100))
    sink.flush()
    db(f'DROP TABLE "{name}"')
    sink.write(_ids(100, 200))  # starts a flush into the missing table; returns
    assert sink.metrics()["rows_written"] == 100
    with pytest.raises(ConnectorError, match="does not exist"):
        sink.flush() if by == "flush" else sink.close()
    assert sink.metrics()["rows_written"] == 100 and sink.metrics()["flushes"] == 1
    sink.close()
    assert sink.closed


def test_reset_forgets_a_failed_background_flush_and_drops_the_buffer(postgres_dsn: str, db: Any) -> None:
    name, app, sink = _locked_sink(postgres_dsn, db, flush_interval=None)
    held = _Held(postgres_dsn, name, app)
    try:
        sink.write(_ids(0, 100, v=-1))  # rejected by the CHECK, once the lock lets it run
        held.wait_blocked()
        sink.write(_ids(100, 150))  # buffered while the failing flush is in flight
    finally:
        held.release()
    sink.reset()  # an in-process restart: the pipeline rewrites these rows from its checkpoint
    sink.write(_ids(0, 150))
    sink.close()
    assert db.read(name).column("id").to_pylist() == list(range(150))  # 100..149 once: buffer dropped
    assert sink.metrics()["rows_written"] == 150


def test_close_at_interpreter_exit_writes_what_is_in_flight_and_buffered(postgres_dsn: str, db: Any) -> None:
    """A sink closed from an ``atexit`` handler, with flushes in the background and rows buffered: by
    then concurrent.futures takes no new work, so the last flush runs on the closing thread."""
    name = db.name()
    script = (
        "import atexit\n"
        "import pyarrow as pa\n"
        "from arrowflow.connectors.sql import SqlSink\n"
        f"sink = SqlSink({postgres_dsn!r}, {name!r}, create=True, flush_rows=100, flush_interval=None)\n"
        "for start in range(0, 250, 50):\n"
        "    sink.write(pa.record_batch({'id': list(range(start, start + 50))}))\n"
        "atexit.register(sink.close)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert db.read(name).column("id").to_pylist() == list(range(250))


class _ThreadRecordingSink(MemorySink):
    """A dead-letter sink that notes the thread of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def write(self, batch: pa.RecordBatch) -> None:
        self.threads.add(threading.get_ident())
        super().write(batch)


@pytest.mark.parametrize("policy", ["skip", "dead-letter"])
def test_bisection_of_a_background_flush_hands_exactly_the_bad_rows_to_the_policy_on_the_writing_thread(
    postgres_dsn: str, db: Any, policy: str
) -> None:
    dead = _ThreadRecordingSink()
    name, app, sink = _locked_sink(
        postgres_dsn, db, flush_interval=None, error_policy=dead if policy == "dead-letter" else "skip"
    )
    bad = [3, 64, 65, 99, 140, 199]
    data = pa.table({"id": np.arange(250, dtype=np.int64), "v": np.zeros(250, np.int64)})
    values = data.column("v").to_numpy().copy()
    values[bad] = -1
    data = data.set_column(1, "v", pa.array(values))
    held = _Held(postgres_dsn, name, app)
    try:
        sink.write(data.slice(0, 100).to_batches()[0])  # bisected in the background, once released
        held.wait_blocked()
        sink.write(data.slice(100, 50).to_batches()[0])  # buffered while the first flush is in flight
        assert sink.error_policy.handled == 0 and sink.metrics()["rows_rejected"] == 0
    finally:
        held.release()
    sink.write(data.slice(150, 100).to_batches()[0])  # due: waits for the first flush, starts the next
    sink.flush()
    assert sink.metrics()["rows_rejected"] == len(bad)
    assert sink.metrics()["rows_written"] == 250 - len(bad)
    if policy == "skip":
        assert sink.error_policy.skipped == len(bad)
    else:
        letters = dead.table()
        assert sorted(letters.column("id").to_pylist()) == bad
        assert all("check constraint" in e for e in letters.column("error").to_pylist())
        assert dead.threads == {threading.get_ident()}  # never the sink's flusher thread
    good = data.filter(pa.array(values >= 0))
    assert_same_rows(db.read(name), good)
    sink.close()
