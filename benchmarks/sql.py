"""``sql-ingest``: the 8-column table into PostgreSQL, arrowflow's SqlSink vs raw ADBC vs psycopg.

Methods (same run, same server, each into its own logged table, truncated at the start of each call):

* ``arrowflow SqlSink append``: ``SqlSink(mode="append")``, one flush per call (COPY through ADBC).
* ``raw adbc_ingest``: ``cursor.adbc_ingest(table, arrow_table, mode="append")`` + commit; target: the
  sink reaches >= 0.95x of it.
* ``psycopg executemany INSERT``: ``to_pylist`` into tuples then ``executemany`` (both timed, as a user
  would do it) on a subset, scaled; target: the sink is >= 10x faster.
* ``arrowflow SqlSink upsert``: staging COPY + ``INSERT ... ON CONFLICT DO UPDATE`` on ``id`` into a
  table that already holds the keys (every row an update); reported, no target.

The server is ``$POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``); when it
does not answer, the methods are listed as skipped.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_DSN = os.environ.get("POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_DDL = (
    "id bigint, price double precision, name text, active boolean, ts timestamp, qty integer, "
    "code text, score double precision"
)


def _answers(dsn: str) -> bool:
    parts = urlsplit(dsn)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
            return True
    except OSError:
        return False


def setup_ingest(config: RunConfig) -> Prepared:
    names = (
        "arrowflow SqlSink append",
        "raw adbc_ingest",
        "psycopg executemany INSERT",
        "arrowflow SqlSink upsert",
    )
    if not _answers(_DSN):
        return Prepared(
            methods={n: Method(skip=f"PostgreSQL not answering at {_DSN}") for n in names}, bytes_per_row=72
        )
    try:
        import adbc_driver_postgresql.dbapi as adbc
        import psycopg
    except ImportError as exc:
        return Prepared(
            methods={n: Method(skip=f"not installed: {exc.name}") for n in names}, bytes_per_row=72
        )

    from arrowflow.connectors.sql import SqlSink

    table = make_table(config.rows, config.seed)
    n = table.num_rows
    batches = table.to_batches(max_chunksize=65_536)
    py_n = config.subset(2_000 if config.quick else 20_000)
    py_rows = table.slice(0, py_n)
    suffix = uuid.uuid4().hex[:8]
    t_af, t_raw, t_py, t_up = (f"bench_sql_{k}_{suffix}" for k in ("af", "raw", "py", "up"))

    admin: Any = adbc.connect(_DSN, autocommit=True)
    with admin.cursor() as cur:
        for t in (t_af, t_raw, t_py):
            cur.execute(f"CREATE TABLE {t} ({_DDL})")
        cur.execute(f"CREATE TABLE {t_up} ({_DDL}, PRIMARY KEY (id))")
        cur.adbc_ingest(t_up, table, mode="append")

    def truncate(t: str) -> None:
        with admin.cursor() as cur:
            cur.execute(f"TRUNCATE {t}")

    sink = SqlSink(_DSN, t_af, flush_rows=n + 1, flush_interval=None)
    upsert = SqlSink(_DSN, t_up, mode="upsert", keys=("id",), flush_rows=n + 1, flush_interval=None)
    raw: Any = adbc.connect(_DSN)
    pg = psycopg.connect(_DSN)

    def run_sink() -> int:
        truncate(t_af)
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_raw() -> int:
        truncate(t_raw)
        with raw.cursor() as cur:
            cur.adbc_ingest(t_raw, table, mode="append")
        raw.commit()
        return n

    def run_psycopg() -> int:
        truncate(t_py)
        rows = [tuple(r.values()) for r in py_rows.to_pylist()]
        with pg.cursor() as cur:
            cur.executemany(f"INSERT INTO {t_py} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
        pg.commit()
        return py_n

    def run_upsert() -> int:
        for b in batches:
            upsert.write(b)
        upsert.flush()
        return n

    def cleanup() -> None:  # the runner has no teardown hook; tables are dropped at interpreter exit
        with admin.cursor() as cur:
            for t in (t_af, t_raw, t_py, t_up):
                cur.execute(f"DROP TABLE IF EXISTS {t}")

    import atexit

    atexit.register(cleanup)
    methods = {
        "arrowflow SqlSink append": Method(run=run_sink),
        "raw adbc_ingest": Method(
            run=run_raw, note="same table shape, same run", target=Target(min_speedup=0.95)
        ),
        "psycopg executemany INSERT": Method(
            run=run_psycopg, note=f"on {py_n:,} rows, scaled", target=Target(min_speedup=10)
        ),
        "arrowflow SqlSink upsert": Method(run=run_upsert, note="every row updates an existing key"),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


register(
    Workload(
        name="sql-ingest",
        description="8-column table -> PostgreSQL 15 (COPY via ADBC; loopback)",
        setup=setup_ingest,
        reference="arrowflow SqlSink append",
    )
)
