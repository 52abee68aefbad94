"""Cassandra: ``CassandraSink`` vs ``execute_concurrent_with_args`` and a per-row ``session.execute`` loop,
against a real Apache Cassandra 5.0 node.

``cassandra-insert``: the 8-column benchmark table into a fresh table of the Cassandra node that
``tests/services/cassandra.sh`` starts (127.0.0.1:``$CASSANDRA_PORT``, default 9042: Cassandra 5.0.9,
one node, 16 vnodes, 768 MiB heap, on the same 2-core machine as the client). Every method uses the
driver's defaults (protocol v5, token-aware routing, schema and token metadata), the same session and
the same prepared INSERT.

* ``arrowflow CassandraSink``: prepared INSERT, columnwise conversion, ``execute_concurrent`` with
  64 statements in flight, 2 requests in flight, on the benchmark's session (as the baselines: the
  cost measured is writing, not connecting).
* ``execute_concurrent_with_args (concurrency=128)``: the idiomatic baseline: the same prepared
  INSERT, ``zip`` of each column's ``to_pylist()`` per 10k-row batch as the argument tuples, and the
  driver's ``execute_concurrent_with_args`` with ``concurrency=128`` (the sink's most statements in
  flight: 2 requests x 64), the whole table.
* ``session.execute(prepared, row) loop``: ``to_pylist()`` then one synchronous ``execute`` per row
  (the simple way to do it), on a subset, scaled: naive, for context.

Every method's table is read back (``SELECT *`` through the driver, paged) after its warm-up call and
compared with the rows it was given (timestamps at Cassandra's millisecond resolution).

Reading the numbers: server and client share two cores, so no figure is what a cluster reaches; the
driver's per-statement Python path (bind, future, callbacks in its event-loop thread) is a large part
of the cost of the sink and of the concurrent baseline alike.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .checks import same_rows
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_PORT = int(os.environ.get("CASSANDRA_PORT", "9042"))
_COLUMNS = (
    "id bigint, price double, name text, active boolean, ts timestamp, qty int, code text, score double"
)
_CONCURRENT = "execute_concurrent_with_args (concurrency=128)"


def _skip_all(why: str) -> Prepared:
    names = ("arrowflow CassandraSink", _CONCURRENT, "session.execute(prepared, row) loop")
    return Prepared(methods={n: Method(skip=why) for n in names}, bytes_per_row=72)


def setup_insert(config: RunConfig) -> Prepared:
    try:
        from cassandra.cluster import Cluster
        from cassandra.concurrent import execute_concurrent_with_args
    except ImportError as exc:
        return _skip_all(f"not installed: {exc.name} (extra cassandra)")
    from arrowflow.connectors.cassandra import CassandraSink

    try:
        socket.create_connection(("127.0.0.1", _PORT), timeout=2).close()
    except OSError:
        return _skip_all(f"no Cassandra on 127.0.0.1:{_PORT} (sh tests/services/up.sh cassandra)")
    n = config.subset(5_000 if config.quick else 50_000)
    py_n = config.subset(2_000 if config.quick else 10_000)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=10_000)
    py_rows_table = table.slice(0, py_n)
    cluster = Cluster(["127.0.0.1"], port=_PORT)
    session = cluster.connect()
    session.execute(
        "CREATE KEYSPACE IF NOT EXISTS bench "
        "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    suffix = uuid.uuid4().hex[:8]
    t_af, t_cc, t_py = f"bench.af_{suffix}", f"bench.cc_{suffix}", f"bench.py_{suffix}"
    for t in (t_af, t_cc, t_py):
        session.execute(f"CREATE TABLE {t} ({_COLUMNS}, PRIMARY KEY (id))")

    def prepare(t: str) -> Any:
        columns = ", ".join(table.schema.names)
        return session.prepare(f"INSERT INTO {t} ({columns}) VALUES ({', '.join('?' * 8)})")

    insert, insert_cc = prepare(t_py), prepare(t_cc)

    def run_sink() -> int:
        session.execute(f"TRUNCATE {t_af}")
        sink = CassandraSink(table=t_af, session=session, request_rows=5_000, flush_interval=None)
        for b in batches:
            sink.write(b)
        sink.close()
        return n

    def run_concurrent() -> int:
        session.execute(f"TRUNCATE {t_cc}")
        for b in batches:
            rows = list(zip(*(col.to_pylist() for col in b.columns), strict=True))
            execute_concurrent_with_args(session, insert_cc, rows, concurrency=128, raise_on_first_error=True)
        return n

    def run_loop() -> int:
        session.execute(f"TRUNCATE {t_py}")
        for row in py_rows_table.to_pylist():
            session.execute(insert, tuple(row.values()))
        return py_n

    def landed(t: str, expected: pa.Table) -> Callable[[], str]:
        def check() -> str:
            got = pa.Table.from_pylist([r._asdict() for r in session.execute(f"SELECT * FROM {t}")])
            # Cassandra's timestamp is milliseconds (the driver truncates): compare at that resolution.
            ts = expected.schema.get_field_index("ts")
            millis = expected.column("ts").cast(pa.timestamp("ms"), safe=False)
            exp = expected.set_column(ts, "ts", millis)
            return same_rows(got, exp, t)

        return check

    def teardown() -> None:
        for t in (t_af, t_cc, t_py):
            session.execute(f"DROP TABLE IF EXISTS {t}")
        cluster.shutdown()

    server = "Cassandra 5.0.9, 1 node"
    methods = {
        "arrowflow CassandraSink": Method(
            run=run_sink, note=f"{n:,} rows; {server}", check=landed(t_af, table)
        ),
        _CONCURRENT: Method(
            run=run_concurrent,
            note=f"same rows, as many statements in flight as the sink; {server}",
            target=Target(min_speedup=1),
            check=landed(t_cc, table),
        ),
        "session.execute(prepared, row) loop": Method(
            run=run_loop,
            note=f"naive; to_pylist; on {py_n:,} rows, scaled",
            check=landed(t_py, py_rows_table),
        ),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n, teardown=teardown)


register(
    Workload(
        name="cassandra-insert",
        description="8-column table -> Apache Cassandra 5.0 (one node on loopback)",
        setup=setup_insert,
        reference="arrowflow CassandraSink",
        idiomatic=(_CONCURRENT,),
    )
)
