"""SqlSink against the real PostgreSQL through the fault proxy (issue 19): each fault of
``tests/faults/scenario.py`` while rows are flushed; nothing is lost and nothing doubled (upsert,
with a replay shown by the metrics), a silent server is noticed by ``timeout`` instead of hanging the
flush, and the metrics count the retries, reconnects and timeouts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from proxy import FaultProxy
from scenario import FAULTS, check_recovered, write_through

from arrowflow.connectors.sql import SqlSink
from arrowflow.errors import ConfigurationError
from arrowflow.retry import Retry
from arrowflow.testing import make_table

SERVICE = "postgres"  # the proxy fixture (conftest.py) fronts this server
TIMEOUT = 3.0
ROWS = 3000


@pytest.fixture
def table(postgres_dsn: str) -> Iterator[str]:
    import adbc_driver_postgresql.dbapi as dbapi

    name = f"af_faults_{uuid.uuid4().hex[:10]}"
    yield name
    with dbapi.connect(postgres_dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def _read(dsn: str, table: str) -> list[tuple[Any, ...]]:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
        return list(cur.fetchall())


def _dsn_through(proxy: FaultProxy, dsn: str) -> str:
    return dsn.replace(dsn.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{proxy.port}")


@pytest.mark.parametrize("fault", FAULTS)
def test_sink_loses_nothing_through(fault: str, proxy: FaultProxy, table: str, postgres_dsn: str) -> None:
    rows = make_table(ROWS)
    sink = SqlSink(
        _dsn_through(proxy, postgres_dsn),
        table,
        mode="upsert",
        keys="id",
        create=True,
        flush_rows=500,
        flush_interval=None,
        retry=Retry(max_attempts=501, initial_backoff=0.05, max_backoff=5.0),
        timeout=TIMEOUT,
    )
    m = write_through(fault, proxy, sink, rows.select(["id", "name"]), chunk=250, reset_bytes=20_000)
    got = _read(postgres_dsn, table)
    want = list(zip(rows.column("id").to_pylist(), rows.column("name").to_pylist(), strict=True))
    assert got == want  # every row, once (upsert on the primary key)
    check_recovered(fault, m, proxy)


@pytest.mark.parametrize("value", [0, -1.0, "10", True])
def test_timeout_is_validated(value: Any, postgres_dsn: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        SqlSink(postgres_dsn, "t", timeout=value)
    assert err.value.option == "timeout"
