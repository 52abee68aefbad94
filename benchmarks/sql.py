"""``sql-ingest``: the 8-column table into PostgreSQL, arrowflow's SqlSink vs raw ADBC vs psycopg.

Methods (same run, same server, each into its own logged table, truncated at the start of each call;
every method gets the table as the same 65,536-row batches):

* ``arrowflow SqlSink append``: ``SqlSink(mode="append")``, one flush per call (COPY through ADBC:
  ``adbc_ingest`` of ``Table.from_batches`` of the buffered batches).
* ``raw adbc_ingest``: ``cursor.adbc_ingest(table, Table.from_batches(batches), mode="append")`` +
  commit: the same client with the same batches (the driver overlaps encoding and COPY across
  batches, so one 1M-row batch would handicap it). Idiomatic baseline; target: the sink reaches
  >= 0.95x of it.
* ``psycopg COPY FROM STDIN (FORMAT BINARY)``: psycopg 3's ``cursor.copy()`` with ``set_types`` and
  ``write_row`` per row, rows from each batch's column lists (``zip`` of ``to_pylist`` per column), on
  a subset, scaled: the fastest psycopg path a user writes. Idiomatic baseline.
* ``psycopg executemany INSERT``: ``to_pylist`` into tuples then ``executemany`` (both timed, as a user
  would do it) on a subset, scaled: the naive path, for context.
* ``arrowflow SqlSink upsert``: staging COPY + ``INSERT ... ON CONFLICT DO UPDATE`` on ``id`` into a
  table that already holds the keys (every row an update); reported, no target.

Every method's table is read back with ``SELECT *`` after its warm-up call and compared with the rows
it was given (``benchmarks.checks.same_rows``). The server is ``$POSTGRES_DSN`` (default
``postgresql://postgres@127.0.0.1:$PGPORT_TEST/postgres``, port 5432); when it does not answer, the
methods are listed as skipped.

``sql-dbapi-sqlite`` / ``sql-dbapi-mariadb``: the DB-API fallback (``SqlSink(connect=...)``) against
the driver's own ``executemany`` of ``to_pylist`` tuples, same rows, same run: SQLite (stdlib
``sqlite3``, a temp file) and MariaDB through pymysql (127.0.0.1:``$MARIADB_PORT``, root, database
``test``). The sink cannot beat the driver (it ends in the same ``executemany``); the ratio shows its
overhead. Upsert (every row an update) is reported for MariaDB.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from . import servers
from .checks import same_rows
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table
from .servers import POSTGRES_DSN as _DSN

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
        "psycopg COPY FROM STDIN (FORMAT BINARY)",
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
    # What the sink's flush hands to adbc_ingest: the buffered batches as one table, chunk for chunk.
    raw_data = pa.Table.from_batches(batches, schema=table.schema)
    py_n = config.subset(2_000 if config.quick else 20_000)
    py_rows = table.slice(0, py_n)
    copy_n = config.subset(5_000 if config.quick else 200_000)
    copy_batches = table.slice(0, copy_n).to_batches(max_chunksize=65_536)
    suffix = uuid.uuid4().hex[:8]
    t_af, t_raw, t_copy, t_py, t_up = (f"bench_sql_{k}_{suffix}" for k in ("af", "raw", "copy", "py", "up"))

    admin: Any = adbc.connect(_DSN, autocommit=True)
    with admin.cursor() as cur:
        for t in (t_af, t_raw, t_copy, t_py):
            cur.execute(f"CREATE TABLE {t} ({_DDL})")
        cur.execute(f"CREATE TABLE {t_up} ({_DDL}, PRIMARY KEY (id))")
        cur.adbc_ingest(t_up, table, mode="append")

    def truncate(t: str) -> None:
        with admin.cursor() as cur:
            cur.execute(f"TRUNCATE {t}")

    def landed(t: str, expected: pa.Table) -> Callable[[], str]:
        def check() -> str:
            with admin.cursor() as cur:
                cur.execute(f"SELECT * FROM {t}")
                got = cur.fetch_arrow_table()
            return same_rows(got, expected, t)

        return check

    sink = SqlSink(_DSN, t_af, flush_rows=n + 1, flush_interval=None)
    upsert = SqlSink(_DSN, t_up, mode="upsert", keys=("id",), flush_rows=n + 1, flush_interval=None)
    raw: Any = adbc.connect(_DSN)
    pg = psycopg.connect(_DSN)
    copy_sql = f"COPY {t_copy} ({', '.join(table.schema.names)}) FROM STDIN (FORMAT BINARY)"
    copy_types = ["int8", "float8", "text", "bool", "timestamp", "int4", "text", "float8"]

    def run_sink() -> int:
        truncate(t_af)
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_raw() -> int:
        truncate(t_raw)
        with raw.cursor() as cur:
            cur.adbc_ingest(t_raw, raw_data, mode="append")
        raw.commit()
        return n

    def run_copy() -> int:
        truncate(t_copy)
        with pg.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.set_types(copy_types)
            write_row = copy.write_row
            for b in copy_batches:
                for row in zip(*(col.to_pylist() for col in b.columns), strict=True):
                    write_row(row)
        pg.commit()
        return copy_n

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
            for t in (t_af, t_raw, t_copy, t_py, t_up):
                cur.execute(f"DROP TABLE IF EXISTS {t}")

    import atexit

    atexit.register(cleanup)
    methods = {
        "arrowflow SqlSink append": Method(run=run_sink, check=landed(t_af, table)),
        "raw adbc_ingest": Method(
            run=run_raw,
            note="same client, same 64k-row batches",
            target=Target(min_speedup=0.95),
            check=landed(t_raw, table),
        ),
        "psycopg COPY FROM STDIN (FORMAT BINARY)": Method(
            run=run_copy,
            note=f"write_row per row; on {copy_n:,} rows, scaled",
            target=Target(min_speedup=1),
            check=landed(t_copy, table.slice(0, copy_n)),
        ),
        "psycopg executemany INSERT": Method(
            run=run_psycopg, note=f"naive; on {py_n:,} rows, scaled", check=landed(t_py, py_rows)
        ),
        "arrowflow SqlSink upsert": Method(
            run=run_upsert, note="every row updates an existing key", check=landed(t_up, table)
        ),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


def _dbapi_rows(config: RunConfig) -> Any:
    n = config.subset(20_000 if config.quick else 100_000)
    table = make_table(n, config.seed)
    return n, table, table.to_batches(max_chunksize=65_536), ", ".join(table.schema.names)


def setup_dbapi_sqlite(config: RunConfig) -> Prepared:
    import os
    import shutil
    import sqlite3
    import tempfile

    from arrowflow.connectors.sql import SqlSink

    n, table, batches, cols = _dbapi_rows(config)
    tmp = tempfile.mkdtemp(prefix="af-bench-sqlite-")
    path = os.path.join(tmp, "bench.sqlite")
    lite = sqlite3.connect(path)
    lite.execute(f"CREATE TABLE lite_af ({_DDL})")
    lite.execute(f"CREATE TABLE lite_py ({_DDL})")
    lite.commit()
    sink = SqlSink(table="lite_af", connect=path, flush_rows=n + 1, flush_interval=None)
    # What a user writes by hand: timestamps as ISO text (sqlite3's datetime adapter is deprecated).
    text_ts = pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    )
    insert = f"INSERT INTO lite_py ({cols}) VALUES ({', '.join('?' * table.num_columns)})"

    def run_sink() -> int:
        lite.execute("DELETE FROM lite_af")
        lite.commit()
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_py() -> int:
        lite.execute("DELETE FROM lite_py")
        lite.executemany(insert, [tuple(r.values()) for r in table.cast(text_ts).to_pylist()])
        lite.commit()
        return n

    def cleanup() -> None:
        sink.close()
        lite.close()
        shutil.rmtree(tmp, ignore_errors=True)

    import atexit

    atexit.register(cleanup)
    methods = {
        "arrowflow SqlSink(connect=path)": Method(run=run_sink, note=f"{n:,} rows, temp file"),
        "sqlite3 executemany(to_pylist)": Method(run=run_py, note="same rows"),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


def setup_dbapi_mariadb(config: RunConfig) -> Prepared:
    from arrowflow.connectors.sql import SqlSink

    names = (
        "arrowflow SqlSink(connect=pymysql)",
        "pymysql executemany(to_pylist)",
        "arrowflow DB-API upsert",
    )
    port = servers.port("MARIADB_PORT", 3306)
    try:
        import pymysql
    except ImportError as exc:
        return Prepared(
            methods={k: Method(skip=f"not installed: {exc.name}") for k in names}, bytes_per_row=72
        )
    if not _answers(f"mysql://127.0.0.1:{port}"):
        why = f"MariaDB not answering at 127.0.0.1:{port}"
        return Prepared(methods={k: Method(skip=why) for k in names}, bytes_per_row=72)

    def connect() -> Any:
        return pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="test")

    n, table, batches, cols = _dbapi_rows(config)
    ddl = _DDL.replace("timestamp", "datetime(6)").replace("double precision", "double")
    t_af, t_py, t_up = (f"bench_dbapi_{k}_{uuid.uuid4().hex[:8]}" for k in ("af", "py", "up"))
    admin: Any = connect()
    with admin.cursor() as cur:
        for t in (t_af, t_py):
            cur.execute(f"CREATE TABLE {t} ({ddl})")
        cur.execute(f"CREATE TABLE {t_up} ({ddl}, PRIMARY KEY (id))")
    admin.commit()
    sink = SqlSink(table=t_af, connect=connect, flush_rows=n + 1, flush_interval=None)
    upsert = SqlSink(
        table=t_up, connect=connect, mode="upsert", keys="id", flush_rows=n + 1, flush_interval=None
    )
    for b in batches:  # the keys exist before timing: every timed row is an update
        upsert.write(b)
    upsert.flush()
    raw = connect()
    insert = f"INSERT INTO {t_py} ({cols}) VALUES ({', '.join(['%s'] * table.num_columns)})"

    def truncate(t: str) -> None:
        with admin.cursor() as cur:
            cur.execute(f"TRUNCATE TABLE {t}")
        admin.commit()

    def run_sink() -> int:
        truncate(t_af)
        for b in batches:
            sink.write(b)
        sink.flush()
        return n

    def run_py() -> int:
        truncate(t_py)
        with raw.cursor() as cur:
            cur.executemany(insert, [tuple(r.values()) for r in table.to_pylist()])
        raw.commit()
        return n

    def run_upsert() -> int:
        for b in batches:
            upsert.write(b)
        upsert.flush()
        return n

    def cleanup() -> None:
        with admin.cursor() as cur:
            for t in (t_af, t_py, t_up):
                cur.execute(f"DROP TABLE IF EXISTS {t}")
        admin.commit()
        for closable in (sink, upsert, admin, raw):
            closable.close()

    import atexit

    atexit.register(cleanup)
    methods = {
        "arrowflow SqlSink(connect=pymysql)": Method(run=run_sink, note=f"{n:,} rows"),
        "pymysql executemany(to_pylist)": Method(run=run_py, note="same rows"),
        "arrowflow DB-API upsert": Method(
            run=run_upsert, note="ON DUPLICATE KEY UPDATE, every row an update"
        ),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


register(
    Workload(
        name="sql-dbapi-sqlite",
        description="8-column table -> SQLite file via SqlSink's DB-API path vs sqlite3 executemany",
        setup=setup_dbapi_sqlite,
        reference="arrowflow SqlSink(connect=path)",
        idiomatic=("sqlite3 executemany(to_pylist)",),
    )
)
register(
    Workload(
        name="sql-dbapi-mariadb",
        description="8-column table -> MariaDB via SqlSink's DB-API path (pymysql) vs pymysql executemany",
        setup=setup_dbapi_mariadb,
        reference="arrowflow SqlSink(connect=pymysql)",
        idiomatic=("pymysql executemany(to_pylist)",),
    )
)
register(
    Workload(
        name="sql-ingest",
        description="8-column table -> PostgreSQL 15 (COPY via ADBC; loopback)",
        setup=setup_ingest,
        reference="arrowflow SqlSink append",
        idiomatic=("raw adbc_ingest", "psycopg COPY FROM STDIN (FORMAT BINARY)"),
    )
)
