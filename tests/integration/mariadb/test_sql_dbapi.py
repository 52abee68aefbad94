"""SqlSink / SqlSource over DB-API 2.0 (``connect=``): MariaDB through pymysql, and SQLite (stdlib).

MariaDB is the real server on 127.0.0.1:3306 (tests/services/mariadb.sh: the machine's own, or a
private instance); SQLite is a file in the test's tmp dir. Every test runs against both where the
feature applies. Connection loss is real: another connection ``KILL``s the sink's MariaDB thread.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.sql import SqlSink, SqlSource
from arrowflow.errors import ConfigurationError, ConnectorError
from arrowflow.retry import Retry
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream
from crash_harness import HERE as CRASH_DIR
from db_crash_pipeline import source as datagen


class Db:
    """A backend under test: ``connect`` is what the connector gets; ``run`` executes SQL directly."""

    def __init__(self, kind: str, connect: Any, raw: Callable[[], Any]) -> None:
        self.kind = kind
        self.connect = connect
        self._raw = raw
        self.names: list[str] = []

    def q(self, name: str) -> str:
        return f"`{name}`" if self.kind == "mariadb" else f'"{name}"'

    def name(self) -> str:
        n = f"af_dbapi_{uuid.uuid4().hex[:10]}"
        self.names.append(n)
        return n

    def run(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = self._raw()
        try:
            cur = conn.cursor()
            cur.execute(sql, params) if params is not None else cur.execute(sql)
            rows = list(cur.fetchall()) if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def ids(self, table: str, col: str = "id") -> list[Any]:
        return [r[0] for r in self.run(f"SELECT {self.q(col)} FROM {self.q(table)} ORDER BY 1")]

    def drop_all(self) -> None:
        for n in self.names:
            self.run(f"DROP TABLE IF EXISTS {self.q(n)}")


@pytest.fixture(params=["mariadb", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "mariadb":
        factory = request.getfixturevalue("mariadb_connect")
        d = Db("mariadb", factory, factory)
    else:
        path = str(tmp_path / "test.sqlite")
        d = Db("sqlite", path, lambda: sqlite3.connect(path))
    yield d
    d.drop_all()


@pytest.fixture
def mariadb(mariadb_connect: Callable[[], Any]) -> Iterator[Db]:
    d = Db("mariadb", mariadb_connect, mariadb_connect)
    yield d
    d.drop_all()


def _typed(n: int) -> pa.Table:
    rng = np.random.default_rng(3)

    def mask() -> np.ndarray:
        return (np.arange(n) % 7 == 3) | (rng.random(n) < 0.05)

    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "i32": pa.array(rng.integers(-(2**31), 2**31, n).astype(np.int32), mask=mask()),
            "f64": pa.array(rng.standard_normal(n), mask=mask()),
            "s": pa.array([f"név-{i}-'\"%s?" for i in range(n)], mask=mask()),
            "ok": pa.array(rng.random(n) < 0.5, mask=mask()),
            "ts": pa.array(base + rng.integers(0, 10**13, n), pa.timestamp("us"), mask=mask()),
            "d": pa.array((rng.integers(0, 20000, n)).astype(np.int32), pa.date32(), mask=mask()),
            "dec": pa.array(
                [decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-(10**9), 10**9, n)],
                pa.decimal128(12, 2),
                mask=mask(),
            ),
            "bin": pa.array([bytes([i % 256, 0, 255]) for i in range(n)], pa.binary(), mask=mask()),
        }
    )


# -- sink ------------------------------------------------------------------------------------------


def test_round_trip_every_type_creates_the_table(db: Db) -> None:
    name = db.name()
    data = _typed(1200)
    sink = SqlSink(table=name, connect=db.connect, create=True, flush_rows=500)
    for batch in data.to_batches(max_chunksize=170):
        sink.write(batch)
    sink.close()
    assert sink.metrics()["rows_written"] == 1200 and sink.metrics()["flushes"] == 3
    assert "dbapi" in repr(sink)
    back = SqlSource(connect=db.connect, table=name, schema=data.schema).read_all(max_rows=333)
    assert back.schema == data.schema
    assert back.sort_by("id").equals(data)
    # Without a schema, the types are inferred from the values the driver returns.
    inferred = SqlSource(connect=db.connect, query=f"SELECT id, s, f64, bin FROM {db.q(name)}").read_all()
    assert inferred.schema.field("id").type == pa.int64()
    assert inferred.schema.field("s").type == pa.string()
    assert inferred.schema.field("f64").type == pa.float64()
    assert inferred.schema.field("bin").type == pa.binary()
    assert_same_rows(inferred, data.select(["id", "s", "f64", "bin"]))


def test_upsert_updates_inserts_deletes_and_is_idempotent(db: Db) -> None:
    name = db.name()
    first = pa.table({"id": [1, 2, 3, 4], "v": ["a", "b", "c", "d"], "gone": [False, False, False, False]})
    sink = SqlSink(
        table=name, connect=db.connect, mode="upsert", keys=["id"], create=True, delete_column="gone"
    )
    assert sink.idempotent
    sink.write_table(first)
    sink.flush()
    assert db.run(f"SELECT id, v FROM {db.q(name)} ORDER BY id") == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    second = pa.table(
        {
            "id": [2, 5, 3, 9, 4, 2],
            "v": ["x", "e", None, None, "D", "B"],
            "gone": [False, False, True, True, None, False],
        }
    )
    for _ in range(2):  # the same flush twice: same result (idempotent); (2) written twice: last wins
        sink.write_table(second)
        sink.flush()
        got = db.run(f"SELECT id, v FROM {db.q(name)} ORDER BY id")
        assert got == [(1, "a"), (2, "B"), (4, "D"), (5, "e")]
    sink.close()


def test_upsert_composite_keys_into_an_existing_table(db: Db) -> None:
    name = db.name()
    key_type = "VARCHAR(20)" if db.kind == "mariadb" else "TEXT"
    db.run(f"CREATE TABLE {db.q(name)} (k1 INT, k2 {key_type}, v BIGINT, PRIMARY KEY (k1, k2))")
    sink = SqlSink(table=name, connect=db.connect, mode="upsert", keys=("k1", "k2"))
    sink.write_table(pa.table({"k1": [1, 1, 2], "k2": ["x", "y", "x"], "v": [10, 20, 30]}))
    sink.flush()
    sink.write_table(pa.table({"k1": [1, 3], "k2": ["y", "z"], "v": [21, 40]}))
    sink.close()
    got = db.run(f"SELECT k1, k2, v FROM {db.q(name)} ORDER BY k1, k2")
    assert got == [(1, "x", 10), (1, "y", 21), (2, "x", 30), (3, "z", 40)]


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_rejected_rows_follow_the_error_policy(db: Db, mode: str) -> None:
    n = 300
    values = np.arange(n, dtype=np.int64)
    bad_at = np.array([0, 41, 42, 299])
    values[bad_at] = -1  # violates CHECK (v >= 0)
    data = pa.table({"id": np.arange(n, dtype=np.int64), "v": values})
    good = data.filter(pa.array(values >= 0))
    keys = ("id",) if mode == "upsert" else None

    def fresh() -> str:
        name = db.name()
        db.run(f"CREATE TABLE {db.q(name)} (id BIGINT PRIMARY KEY, v BIGINT CHECK (v >= 0))")
        return name

    name = fresh()
    sink = SqlSink(table=name, connect=db.connect, mode=mode, keys=keys, flush_rows=100)
    with pytest.raises(ConnectorError, match=r"(?i)check|constraint"):
        sink.write_table(data)
        sink.flush()
    sink.close()

    name = fresh()
    dead = MemorySink()
    sink = SqlSink(table=name, connect=db.connect, mode=mode, keys=keys, flush_rows=100, error_policy=dead)
    sink.write_table(data)
    sink.close()
    assert sorted(dead.table().column("id").to_pylist()) == bad_at.tolist()
    assert sink.metrics()["rows_rejected"] == len(bad_at)
    assert db.ids(name) == good.column("id").to_pylist()


def test_killed_connection_reconnects_and_loses_nothing(mariadb: Db) -> None:
    name = mariadb.name()
    sink = SqlSink(
        table=name,
        connect=mariadb.connect,
        mode="upsert",
        keys="id",
        create=True,
        retry=Retry(max_attempts=6, initial_backoff=0.01),
    )
    sink.write_table(pa.table({"id": np.arange(100, dtype=np.int64)}))
    sink.flush()
    thread_id = sink._conn.thread_id()  # the sink's own server thread, killed from another connection
    mariadb.run(f"KILL CONNECTION {int(thread_id)}")
    sink.write_table(pa.table({"id": np.arange(50, 250, dtype=np.int64)}))
    sink.close()
    assert sink.metrics()["reconnects"] >= 1
    assert mariadb.ids(name) == list(range(250))


def test_unreachable_server_raises_a_retryable_error_after_the_retries() -> None:
    import pymysql

    def connect() -> Any:
        return pymysql.connect(host="127.0.0.1", port=1, user="root", connect_timeout=1)

    sink = SqlSink(table="t", connect=connect, retry=Retry(max_attempts=2, initial_backoff=0.01))
    sink.write(pa.record_batch({"id": [1]}))
    with pytest.raises(ConnectorError, match="cannot connect") as info:
        sink.flush()
    assert info.value.retryable
    assert sink.metrics()["retries"] == 1


# -- source ----------------------------------------------------------------------------------------


def test_partitions_offsets_and_keyset_cover_every_row_once(db: Db) -> None:
    name = db.name()
    n = 2000
    ids = pa.array(np.arange(-300, n - 300, dtype=np.int64), mask=np.arange(n) % 91 == 0)
    data = pa.table({"id": ids, "x": np.arange(n, dtype=np.float64)})
    sink = SqlSink(table=name, connect=db.connect, create=True)
    sink.write_table(data)
    sink.close()
    schema = data.schema
    src = SqlSource(
        connect=db.connect, table=name, partition_column="id", lower_bound=0, upper_bound=1000,
        num_partitions=4, schema=schema,
    )  # fmt: skip
    splits = src.plan()
    assert [s.params["lo"] for s in splits] == [None, 250, 500, 750]
    parts = [_read(src, s, 170) for s in splits]
    assert all(p.num_rows for p in parts)
    assert_same_rows(pa.concat_tables(parts), data)
    # Bounds from min/max, resumed from an OFFSET position and from a keyset position.
    for keyset in (False, True):
        src = SqlSource(
            connect=db.connect, table=name, partition_column="id", num_partitions=3, keyset=keyset,
            schema=schema,
        )  # fmt: skip
        split = src.plan()[1]
        with src.open(split) as reader:
            first = reader.read_batch(123, 1.0)
            assert first is not None and first.num_rows == 123
            position = reader.snapshot()
        assert position["rows"] == 123 and (("last" in position) == keyset)
        rest = _read(src, split, 100, position)
        whole = _read(src, split, 1000)
        got = pa.concat_tables([pa.Table.from_batches([first]), rest])
        assert got.column("id").to_pylist() == whole.column("id").to_pylist()


def _read(src: SqlSource, split: Any, max_rows: int, position: Any = None) -> pa.Table:
    batches = []
    with src.open(split, position) as reader:
        while not reader.finished:
            batch = reader.read_batch(max_rows, 1.0)
            if batch is not None:
                assert batch.num_rows <= max_rows
                batches.append(batch)
    schema = src.schema
    return pa.Table.from_batches(batches, schema=schema) if schema else pa.Table.from_batches(batches)


def test_incremental_polls_new_rows_and_resumes(db: Db) -> None:
    name = db.name()
    schema = pa.schema([("id", pa.int64()), ("at", pa.timestamp("us")), ("v", pa.string())])
    base = dt.datetime(2026, 1, 1)

    def rows(lo: int, hi: int) -> pa.Table:
        return pa.table(
            {
                "id": pa.array(range(lo, hi), pa.int64()),
                "at": pa.array([base + dt.timedelta(seconds=i) for i in range(lo, hi)], pa.timestamp("us")),
                "v": [f"v{i}" for i in range(lo, hi)],
            }
        )

    sink = SqlSink(table=name, connect=db.connect, create=True)
    sink.write_table(rows(1, 41))
    sink.flush()
    src = SqlSource(
        connect=db.connect, table=name, incremental_column="at", poll_interval=0.05, schema=schema
    )
    (split,) = src.plan()
    reader = src.open(split)
    assert _drain(reader, 40) == list(range(1, 41))
    position = reader.snapshot()
    assert position == (base + dt.timedelta(seconds=40)).isoformat()
    sink.write_table(rows(41, 61))
    sink.flush()  # committed while the reader's connection stays open: the next poll must see it
    assert _drain(reader, 20) == list(range(41, 61))
    reader.close()
    sink.close()
    with src.open(split, position) as again:
        assert _drain(again, 20) == list(range(41, 61))


def _drain(reader: Any, want: int) -> list[int]:
    got: list[int] = []
    deadline = time.monotonic() + 20
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} rows arrived"
        batch = reader.read_batch(16, 0.2)
        if batch is not None:
            got += batch.column("id").to_pylist()
    assert reader.read_batch(16, 0.2) is None
    return got


def test_configuration_errors_name_the_option(tmp_path: Path) -> None:
    path = str(tmp_path / "x.sqlite")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: SqlSink(table="t"), "uri"),
        (lambda: SqlSink("postgresql://x", "t", connect=path), "connect"),
        (lambda: SqlSink(table="t", connect=42), "connect"),  # type: ignore[arg-type]
        (lambda: SqlSink(table="t", connect=path, dialect="oracle"), "dialect"),
        (lambda: SqlSink("postgresql://x", "t", dialect="mysql"), "dialect"),
        (lambda: SqlSink(connect=path), "table"),
        # The ADBC path speaks PostgreSQL only: another ADBC driver is refused at construction.
        (lambda: SqlSink("file:x.sqlite", "t", driver="adbc_driver_sqlite"), "driver"),
        (lambda: SqlSource("file:x.sqlite", table="t", driver="adbc_driver_sqlite"), "driver"),
        (lambda: SqlSource(connect=path), "query"),
        (lambda: SqlSource("postgresql://x", table="t", schema=pa.schema([("a", pa.int64())])), "schema"),
    ]
    for make, option in cases:
        with pytest.raises(ConfigurationError) as info:
            make()
        assert info.value.option == option, make


def test_unknown_driver_needs_a_dialect(tmp_path: Path) -> None:
    class Conn:  # a DB-API connection from a module arrowflow does not know
        def cursor(self) -> Any:
            raise AssertionError("not reached")

    sink = SqlSink(table="t", connect=Conn, retry=Retry(max_attempts=1))
    sink.write(pa.record_batch({"id": [1]}))
    with pytest.raises(ConfigurationError) as info:
        sink.flush()
    assert info.value.option == "dialect"


def test_sigkill_and_resume_through_dbapi_loses_nothing(
    mariadb: Db, mariadb_connect: Callable[[], Any], tmp_path: Path
) -> None:
    """A DataGen -> SqlSink(connect=pymysql, upsert on id) process SIGKILLed three times mid-stream
    (once while acknowledged rows were not yet checkpointed) and resumed from its checkpoint: the
    table equals the generated rows (nothing lost, no key twice), and a trigger that counts every row
    the server was asked to write shows that rows were written again and absorbed by the upsert."""
    name = mariadb.name()
    writes = mariadb.name()
    probe = mariadb_connect()
    host, port = probe.host, probe.port
    probe.close()
    rows = 6000
    command = [
        sys.executable, str(Path(CRASH_DIR) / "db_crash_pipeline.py"), "mariadb", "--uri", f"{host}:{port}",
        "--table", name, "--rows", str(rows), "--seed", "17", "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--stall-runs", "1",
    ]  # fmt: skip
    expected = datagen(rows, 17).read_all()
    # The table as the sink would create it, and a counter of writes: a BEFORE INSERT trigger fires
    # for every row of INSERT ... ON DUPLICATE KEY UPDATE, new key or not, inside the flush's
    # transaction (InnoDB: a rolled-back flush leaves no count).
    mariadb.run(f"CREATE TABLE `{name}` (id BIGINT PRIMARY KEY, x BIGINT, s LONGTEXT)")
    mariadb.run(f"CREATE TABLE `{writes}` (id BIGINT NOT NULL)")
    mariadb.run(
        f"CREATE TRIGGER `{name}_count` BEFORE INSERT ON `{name}` FOR EACH ROW "
        f"INSERT INTO `{writes}` VALUES (NEW.id)"
    )

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        got = SqlSource(connect=mariadb.connect, table=name, schema=expected.schema).read_all()
        ids = got.column("id").to_pylist()
        assert len(ids) == len(set(ids)) == rows, f"{len(ids)} rows, {len(set(ids))} distinct of {rows}"
        assert_same_rows(got, expected)
        written = mariadb.ids(writes)
        assert set(written) == set(range(rows))
        # Run 1 stalled with acknowledged rows no checkpoint covered: its restart wrote them again.
        assert len(written) > rows, f"no row was replayed ({len(written)} writes of {rows} rows)"

    crash_mid_stream(command, verify=verify, kills=3, kill_after=(1, 8), seed=6)


def test_close_at_interpreter_exit_closes_without_an_error(tmp_path: Path) -> None:
    """A sink with a ``timeout`` (its own database thread) closed from an ``atexit`` handler: at that
    point concurrent.futures takes no new work, and the close must still close the connection
    quietly instead of raising ``cannot schedule new futures after shutdown``."""
    path = tmp_path / "exit.sqlite"
    script = (
        "import atexit\n"
        "import pyarrow as pa\n"
        "from arrowflow.connectors.sql import SqlSink\n"
        f"sink = SqlSink(table='t', connect={str(path)!r}, create=True, timeout=30.0)\n"
        "sink.write(pa.record_batch({'a': [1, 2, 3]}))\n"
        "sink.flush()\n"
        "atexit.register(sink.close)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)
