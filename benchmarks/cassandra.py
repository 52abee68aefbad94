"""Cassandra: ``CassandraSink`` vs the driver used directly, against a real Apache Cassandra 5.0 node.

``cassandra-insert``: the 8-column benchmark table into a fresh table of the Cassandra node that
``tests/services/cassandra.sh`` starts (127.0.0.1:``$CASSANDRA_PORT``, default 9042; one node, 16
vnodes, 768 MiB heap, on the same 2-core machine as the client). Every method uses the driver's
defaults (protocol v5, token-aware routing) and the same prepared INSERT.

* ``arrowflow CassandraSink``: columnwise conversion, ``execute_concurrent_with_args`` with 64
  statements in flight, 2 requests in flight, on the benchmark's session (as the baselines).
* ``execute_concurrent_with_args``: the idiomatic driver baseline: ``to_pylist()`` rows, then the
  driver's own concurrent executor with the same 64 statements in flight, in one call.
* ``session.execute(prepared, row) loop``: one synchronous round trip per row (the simple way), on a
  subset, scaled.

Reading the numbers: server and client share two cores, so neither figure is what a cluster reaches;
the driver's per-statement Python path (bind, future, callbacks) is a large part of the cost in both
the sink and the concurrent baseline.
"""

from __future__ import annotations

import os
import socket
import uuid

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_PORT = int(os.environ.get("CASSANDRA_PORT", "9042"))
_COLUMNS = (
    "id bigint, price double, name text, active boolean, ts timestamp, qty int, code text, score double"
)
_NAMES = ("arrowflow CassandraSink", "execute_concurrent_with_args", "session.execute(prepared, row) loop")


def _skip_all(why: str) -> Prepared:
    return Prepared(methods={n: Method(skip=why) for n in _NAMES}, bytes_per_row=72)


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
    cols = ", ".join(table.schema.names)
    marks = ", ".join("?" * len(table.schema.names))
    insert_cc = session.prepare(f"INSERT INTO {t_cc} ({cols}) VALUES ({marks})")
    insert_py = session.prepare(f"INSERT INTO {t_py} ({cols}) VALUES ({marks})")

    def run_sink() -> int:
        session.execute(f"TRUNCATE {t_af}")
        # The benchmark's session, like the baselines: the cost measured is writing, not connecting.
        sink = CassandraSink(table=t_af, session=session, request_rows=5_000, flush_interval=None)
        for b in batches:
            sink.write(b)
        sink.close()
        return n

    def run_concurrent() -> int:
        session.execute(f"TRUNCATE {t_cc}")
        rows = [tuple(r.values()) for r in table.to_pylist()]
        execute_concurrent_with_args(session, insert_cc, rows, concurrency=64, raise_on_first_error=True)
        return n

    def run_loop() -> int:
        session.execute(f"TRUNCATE {t_py}")
        for row in table.slice(0, py_n).to_pylist():
            session.execute(insert_py, tuple(row.values()))
        return py_n

    def teardown() -> None:
        for t in (t_af, t_cc, t_py):
            session.execute(f"DROP TABLE IF EXISTS {t}")
        cluster.shutdown()

    note = "Cassandra 5.0.9, 1 node"
    methods = {
        "arrowflow CassandraSink": Method(run=run_sink, note=f"{n:,} rows; {note}"),
        "execute_concurrent_with_args": Method(
            run=run_concurrent, note=f"to_pylist; 64 in flight; {note}", target=Target(min_speedup=1)
        ),
        "session.execute(prepared, row) loop": Method(
            run=run_loop, note=f"to_pylist; on {py_n:,} rows, scaled", target=Target(min_speedup=1)
        ),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n, teardown=teardown)


register(
    Workload(
        name="cassandra-insert",
        description="8-column table -> Apache Cassandra 5.0 (one node on loopback)",
        setup=setup_insert,
        reference="arrowflow CassandraSink",
    )
)
