"""The conformance suite over SqlSource and SqlSink, against the PostgreSQL 15 server on loopback.

The server is the machine's (or ``tests/services/postgres.sh``'s) cluster; every test uses its own
table (uuid suffix) and drops it afterwards. A missing server fails the tests, it never skips them.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import pyarrow as pa
import pytest

from arrowflow.connectors.sql import SqlSink, SqlSource
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

_PORT = int(os.environ.get("PGPORT_TEST", "5432"))
_DSN = os.environ.get("POSTGRES_DSN", f"postgresql://postgres@127.0.0.1:{_PORT}/postgres")

_DDL = (
    "id bigint CHECK (id >= 0), value double precision, name text, flag boolean, count integer, ts timestamp"
)


def _dsn() -> str:
    try:
        with socket.create_connection(("127.0.0.1", _PORT), timeout=2):
            pass
    except OSError:
        pytest.fail(
            f"PostgreSQL is not answering on 127.0.0.1:{_PORT}; "
            "start it with `sh tests/services/up.sh postgres`",
            pytrace=False,
        )
    return _DSN


def _execute(sql: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(_dsn(), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)


def _read(table: str) -> pa.Table:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(_dsn(), autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{table}"')
        return cur.fetch_arrow_table()


class _Table:
    def new_table(self, data: pa.Table | None = None) -> str:
        name = f"af_conf_{uuid.uuid4().hex[:10]}"
        _execute(f'CREATE TABLE "{name}" ({_DDL})')
        self.add_cleanup(lambda: _execute(f'DROP TABLE IF EXISTS "{name}"'))  # type: ignore[attr-defined]
        if data is not None:
            import adbc_driver_postgresql.dbapi as dbapi

            with dbapi.connect(_dsn()) as conn, conn.cursor() as cur:
                cur.adbc_ingest(name, data, mode="append")
                conn.commit()
        return name


class TestSqlSourceSingle(_Table, SourceConformance):
    """One split, resumed by OFFSET over an unordered scan of a static table."""

    def make_source(self, data: pa.Table) -> Source:
        return SqlSource(_dsn(), table=self.new_table(data), batch_size=128)


class TestSqlSourcePartitioned(_Table, SourceConformance):
    """Four range splits over ``id`` (bounds from min/max), resumed by keyset on the unique id."""

    def make_source(self, data: pa.Table) -> Source:
        return SqlSource(
            _dsn(), table=self.new_table(data), partition_column="id", num_partitions=4, keyset=True
        )


class TestSqlSourceIncremental(_Table, SourceConformance):
    """The unbounded polling split over the increasing ``id``."""

    def make_source(self, data: pa.Table) -> Source:
        if not hasattr(self, "_name"):
            self._name = self.new_table(data)
        return SqlSource(_dsn(), table=self._name, incremental_column="id", poll_interval=0.1)


class TestSqlSinkAppend(_Table, SinkConformance):
    """Append by COPY into a table whose CHECK (id >= 0) rejects the bad batch's rows."""

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self._name = self.new_table()
        return SqlSink(_dsn(), self._name, flush_rows=300, error_policy=error_policy)

    def read_back(self) -> pa.Table:
        return _read(self._name)

    def bad_batch(self) -> pa.RecordBatch:
        bad = make_table(5, seed=3)
        ids = pa.array([-1, -2, -3, -4, -5], pa.int64())
        return bad.set_column(0, "id", ids).to_batches()[0]


class TestSqlSinkUpsert(TestSqlSinkAppend):
    """Upsert through the staging table; same data, keyed on id."""

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self._name = self.new_table()
        _execute(f'ALTER TABLE "{self._name}" ADD PRIMARY KEY (id)')
        return SqlSink(
            _dsn(), self._name, mode="upsert", keys=("id",), flush_rows=300, error_policy=error_policy
        )
