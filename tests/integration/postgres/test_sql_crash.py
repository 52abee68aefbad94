"""SqlSink (ADBC PostgreSQL, upsert keys) through process crashes and a server restart.

* SIGKILL: a DataGen -> SqlSink pipeline process (tests/integration/crash/db_crash_pipeline.py) is
  killed from this process mid-stream (exactly three kills with data in flight, one of them while
  acknowledged rows were not yet checkpointed) and resumed from its checkpoint; the table must equal
  the generated rows: nothing lost, no key twice. The upsert makes "no key twice" hold by itself, so
  a trigger counts every row the database wrote: more writes than rows proves the restarts replayed
  rows, and the table still holding one row per key proves the replay was absorbed.
* Restart: a private PostgreSQL cluster owned by this test (tests/services/postgres.sh with its own
  ``SERVICES_DIR`` and ``PGPORT_TEST``) is stopped and started again while a pipeline writes into it;
  the sink reconnects and the pipeline finishes with every row exactly once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from arrowflow import Pipeline
from arrowflow.connectors.sql import SqlSink
from arrowflow.ops.base import Operator
from arrowflow.retry import Retry
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream
from crash_harness import HERE as CRASH_DIR
from db_crash_pipeline import source as datagen

CRASH = Path(CRASH_DIR)

SERVICES = Path(__file__).resolve().parents[2] / "services"


def _read(dsn: str, table: str) -> pa.Table:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{table}" ORDER BY id')
        return cur.fetch_arrow_table()


def _execute(dsn: str, sql: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)


def _count_writes(dsn: str, table: str) -> None:
    """Create ``table`` as the sink would, plus ``<table>_writes``: one row per row the server wrote
    into ``table`` (inserted or updated by the upsert), appended by a trigger in the same transaction
    (a rolled-back flush leaves no trace)."""
    for statement in (
        f'CREATE TABLE "{table}" (id bigint PRIMARY KEY, x bigint, s text)',
        f'CREATE TABLE "{table}_writes" (id bigint NOT NULL)',
        f"""CREATE FUNCTION "{table}_count"() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO "{table}_writes" VALUES (NEW.id); RETURN NULL; END $$""",
        f"""CREATE TRIGGER "{table}_count" AFTER INSERT OR UPDATE ON "{table}"
          FOR EACH ROW EXECUTE FUNCTION "{table}_count"()""",
    ):
        _execute(dsn, statement)


def test_sigkill_and_resume_loses_nothing_and_duplicates_nothing(postgres_dsn: str, tmp_path: Path) -> None:
    table = f"af_crash_{uuid.uuid4().hex[:10]}"
    rows = 6000
    command = [
        sys.executable, str(CRASH / "db_crash_pipeline.py"), "sql", "--uri", postgres_dsn, "--table", table,
        "--rows", str(rows), "--seed", "11", "--checkpoint-dir", str(tmp_path / "ckpt"), "--stall-runs", "1",
    ]  # fmt: skip
    expected = datagen(rows, 11).read_all()

    def verify(report: CrashReport) -> None:
        assert DONE in report.final_stdout.splitlines()
        got = _read(postgres_dsn, table)
        ids = got.column("id").to_pylist()
        assert len(ids) == len(set(ids)), "a key was written twice"
        assert len(ids) == rows, f"{rows - len(ids)} rows lost"
        assert_same_rows(got.select(expected.schema.names), expected)
        writes = _read(postgres_dsn, f"{table}_writes").column("id").to_pylist()
        assert set(writes) == set(range(rows))
        # Run 1 stalled with acknowledged rows no checkpoint covered: its restart wrote them again.
        assert len(writes) > rows, f"no row was replayed ({len(writes)} writes of {rows} rows)"

    _count_writes(postgres_dsn, table)
    try:
        crash_mid_stream(command, verify=verify, kills=3, kill_after=(1, 8), seed=3)
    finally:
        _execute(postgres_dsn, f'DROP TABLE IF EXISTS "{table}", "{table}_writes"')
        _execute(postgres_dsn, f'DROP FUNCTION IF EXISTS "{table}_count"')


# -- a test-owned PostgreSQL cluster, restarted during a run ----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """A throw-away cluster started by tests/services/postgres.sh in its own SERVICES_DIR and port;
    ``stop``/``start`` use ``pg_ctl`` on the same data directory (the script's start would wipe it)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="af-pg-restart-"))
        self.dir.chmod(0o755)  # the server runs as the postgres user when we are root
        self.port = _free_port()
        self.env = {**os.environ, "SERVICES_DIR": str(self.dir), "PGPORT_TEST": str(self.port)}
        self.data = self.dir / "postgres" / "data"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def script(self, action: str) -> None:
        subprocess.run(["sh", str(SERVICES / "postgres.sh"), action], env=self.env, check=True, timeout=180)

    def pg_ctl(self, *args: str) -> None:
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]
        cmd = [str(bindir / "pg_ctl"), "-D", str(self.data), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, env=self.env, check=True, timeout=120, capture_output=True)

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        self.pg_ctl("-l", str(self.data / "server.log"), "-w", "-t", "60", "-o", options, "start")


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    cluster.script("start")
    try:
        yield cluster
    finally:
        cluster.script("stop")
        shutil.rmtree(cluster.dir, ignore_errors=True)


class RestartOnce(Operator):
    """After ``after`` batches: has ``cluster`` stopped (blocking until it is down) and, from another
    thread, started again; later batches pass while it is down or coming back."""

    name = "restart-once"

    def __init__(self, cluster: PrivateCluster, after: int) -> None:
        self.cluster = cluster
        self.after = after
        self.batches = 0
        self.thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def process(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        self.batches += 1
        if self.batches == self.after:
            self.cluster.stop()
            self.thread = threading.Thread(target=self._start, daemon=True)
            self.thread.start()
        return [batch]

    def _start(self) -> None:
        try:
            self.cluster.start()
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def test_server_restart_during_a_run(private_pg: PrivateCluster, tmp_path: Path) -> None:
    rows = 6000
    table = "restart_target"
    sink = SqlSink(
        private_pg.dsn, table, mode="upsert", keys="id", create=True, flush_rows=300,
        retry=Retry(max_attempts=41, initial_backoff=0.05, max_backoff=5.0),
    )  # fmt: skip
    restart = RestartOnce(private_pg, after=20)
    result: Any = (
        Pipeline(datagen(rows, 21))
        .via(restart)
        .to(sink)
        .run(
            checkpoint_dir=tmp_path / "ckpt",
            checkpoint_interval=0.2,
            guarantee="exactly-once",
            progress=False,
            max_batch_rows=100,
        )
    )
    assert restart.thread is not None
    restart.thread.join(120)
    assert not restart.errors, restart.errors
    assert result.rows == rows
    assert sink.metrics()["reconnects"] >= 1 and sink.metrics()["retries"] >= 1
    got = _read(private_pg.dsn, table)
    ids = got.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == rows
    assert_same_rows(got.select(["id", "x", "s"]), datagen(rows, 21).read_all())
