"""Cassandra: ``CassandraSink`` vs ``execute_concurrent_with_args`` and a per-row ``session.execute`` loop,
against the CQL test server.

``cassandra-insert``: the 8-column benchmark table into a fresh table of arrowflow's CQL
native-protocol v4 test server (``tests/integration/cassandra/cql_test_server.py``: pure Python, NOT
Cassandra), started as its own process on a free loopback port for the run.

* ``arrowflow CassandraSink``: prepared INSERT, columnwise conversion, ``execute_concurrent`` with
  64 statements in flight, 2 requests in flight.
* ``execute_concurrent_with_args (concurrency=128)``: the idiomatic baseline: the same prepared
  INSERT, ``zip`` of each column's ``to_pylist()`` per 10k-row batch as the argument tuples, and the
  driver's ``execute_concurrent_with_args`` with ``concurrency=128`` (the sink's most statements in
  flight: 2 requests x 64), the whole table.
* ``session.execute(prepared, row) loop``: ``to_pylist()`` then one synchronous ``execute`` per row
  (the simple way to do it), on a subset, scaled: naive, for context.

Every method's table is read back (``SELECT *`` through the driver, paged) after its warm-up call and
compared with the rows it was given (timestamps at Cassandra's millisecond resolution).

Honest reading: neither number says what a real Cassandra cluster reaches. Measured here (CPU time
of each process over a 30k-row sink run): the driver spends about 130 us of CPU per single-row
statement in the client (its Python per-request path: bind, future, callbacks in the event-loop
thread) and the test server about 20-25 us, so on this machine the client driver, not the server,
is the larger cost; sending UNLOGGED batches of 20 rows cut the client's CPU per row about 7x. The
sink's own column conversion runs at about 1.2M rows/s and is not the limit. The ratio mostly
shows what keeping many statements in flight buys over one synchronous round trip per row.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from .checks import same_rows
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_SERVER = Path(__file__).resolve().parents[1] / "tests" / "integration" / "cassandra" / "cql_test_server.py"
_COLUMNS = (
    "id bigint, price double, name text, active boolean, ts timestamp, qty int, code text, score double"
)
_CLUSTER_OPTIONS: dict[str, Any] = {
    "protocol_version": 4,
    "schema_metadata_enabled": False,
    "token_metadata_enabled": False,
}


_CONCURRENT = "execute_concurrent_with_args (concurrency=128)"


def _skip_all(why: str) -> Prepared:
    names = ("arrowflow CassandraSink", _CONCURRENT, "session.execute(prepared, row) loop")
    return Prepared(methods={n: Method(skip=why) for n in names}, bytes_per_row=72)


def _start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(_SERVER), "0"], stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL
    )
    line = proc.stdout.readline() if proc.stdout is not None else ""
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"CQL test server did not start: {line!r}")
    atexit.register(proc.kill)
    return proc, int(line.split()[1])


def setup_insert(config: RunConfig) -> Prepared:
    try:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.concurrent import execute_concurrent_with_args
        from cassandra.policies import RoundRobinPolicy
    except ImportError as exc:
        return _skip_all(f"not installed: {exc.name} (extra cassandra)")
    from arrowflow.connectors.cassandra import CassandraSink

    _, port = _start_server()
    n = config.subset(5_000 if config.quick else 50_000)
    py_n = config.subset(2_000 if config.quick else 10_000)
    table = make_table(n, config.seed)
    batches = table.to_batches(max_chunksize=10_000)
    py_rows_table = table.slice(0, py_n)
    cluster = Cluster(
        ["127.0.0.1"],
        port=port,
        execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())},
        **_CLUSTER_OPTIONS,
    )
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
    connection = {"hosts": ["127.0.0.1"], "port": port, "cluster_options": _CLUSTER_OPTIONS}

    def run_sink() -> int:
        session.execute(f"TRUNCATE {t_af}")
        sink = CassandraSink(table=t_af, connection=connection, request_rows=5_000, flush_interval=None)
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

    atexit.register(cluster.shutdown)
    methods = {
        "arrowflow CassandraSink": Method(
            run=run_sink,
            note=f"{n:,} rows; CQL test server (Python), not Cassandra",
            check=landed(t_af, table),
        ),
        _CONCURRENT: Method(
            run=run_concurrent,
            note="same rows, as many statements in flight as the sink",
            target=Target(min_speedup=1),
            check=landed(t_cc, table),
        ),
        "session.execute(prepared, row) loop": Method(
            run=run_loop,
            note=f"naive; to_pylist; on {py_n:,} rows, scaled",
            check=landed(t_py, py_rows_table),
        ),
    }
    return Prepared(methods=methods, bytes_per_row=table.nbytes / n)


register(
    Workload(
        name="cassandra-insert",
        description="8-column table -> CQL test server (pure-Python protocol server, not Cassandra)",
        setup=setup_insert,
        reference="arrowflow CassandraSink",
        idiomatic=(_CONCURRENT,),
    )
)
