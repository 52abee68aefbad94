"""CassandraSink and CassandraSource over a socket with the real cassandra-driver.

The server is the CQL protocol test server (``cql_test_server.py``, NOT Cassandra) unless
``ARROWFLOW_CASSANDRA_HOSTS`` names a real cluster (fixture ``cassandra``). Tests that inject server
faults use the fixture ``cql_server``, which is always the protocol test server.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from cassandra.murmur3 import murmur3
from cassandra_target import Target

from arrowflow import Pipeline
from arrowflow.connectors.cassandra import (
    CassandraConnection,
    CassandraSink,
    CassandraSinkConfig,
    CassandraSource,
    token_ranges,
)
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ArrowflowError, ConfigurationError
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import CrashReport, run_with_crashes

HERE = Path(__file__).resolve().parent

ALL_TYPES_CQL = (
    "id int, big bigint, small smallint, tiny tinyint, dbl double, flt float, flag boolean, txt text, "
    "raw blob, ts timestamp, day date, dec decimal, uid uuid, tags list<text>, nums list<int>, "
    "attrs map<text, int>, ints set<int>"
)
ALL_TYPES_SCHEMA = pa.schema(
    [
        ("id", pa.int32()),
        ("big", pa.int64()),
        ("small", pa.int16()),
        ("tiny", pa.int8()),
        ("dbl", pa.float64()),
        ("flt", pa.float32()),
        ("flag", pa.bool_()),
        ("txt", pa.string()),
        ("raw", pa.binary()),
        ("ts", pa.timestamp("ms")),
        ("day", pa.date32()),
        ("dec", pa.decimal128(12, 3)),
        ("uid", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("nums", pa.list_(pa.int32())),
        ("attrs", pa.map_(pa.string(), pa.int32())),
        ("ints", pa.list_(pa.int32())),
    ]
)


def all_types_table(n: int, seed: int = 0) -> pa.Table:
    """Every supported type, with nulls in every non-key column (row i is null in column i % 16)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {
        "id": list(range(n)),
        "big": rng.integers(-(2**62), 2**62, n).tolist(),
        "small": rng.integers(-(2**15), 2**15, n).tolist(),
        "tiny": rng.integers(-128, 128, n).tolist(),
        "dbl": rng.normal(0, 1e6, n).tolist(),
        "flt": np.float32(rng.normal(0, 100, n)).tolist(),
        "flag": (rng.random(n) < 0.5).tolist(),
        "txt": [f"t\u00e9xt '{i}' \"q\"" for i in range(n)],
        "raw": [bytes(rng.integers(0, 256, i % 7).astype(np.uint8)) for i in range(n)],
        "ts": [
            dt.datetime(2024, 1, 1) + dt.timedelta(milliseconds=int(x)) for x in rng.integers(-1e12, 1e12, n)
        ],
        "day": [dt.date(1970, 1, 1) + dt.timedelta(days=int(x)) for x in rng.integers(-50_000, 50_000, n)],
        "dec": [decimal.Decimal(int(x)).scaleb(-3) for x in rng.integers(-(10**9), 10**9, n)],
        "uid": [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**62, n)],
        "tags": [[f"a{i}", f"b{i}"][: i % 3] for i in range(n)],
        "nums": [list(range(i % 4)) for i in range(n)],
        "attrs": [[(f"k{j}", j * i) for j in range(i % 3)] for i in range(n)],
        "ints": [sorted({i % 5, i % 7}) for i in range(n)],
    }
    names = ALL_TYPES_SCHEMA.names
    for i in range(n):
        c = names[1 + i % (len(names) - 1)]
        cols[c][i] = None
    return pa.table(cols, schema=ALL_TYPES_SCHEMA)


def _normalize_empty_collections(table: pa.Table) -> pa.Table:
    """Cassandra stores an empty (non-frozen) collection as no value: it reads back as null."""
    for name in ("tags", "nums", "attrs", "ints"):
        col = table.column(name)
        values = [None if v is not None and len(v) == 0 else v for v in col.to_pylist()]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, col.type))
    return table


def _ids(table: pa.Table, col: str = "id") -> list[int]:
    return sorted(table.column(col).to_pylist())


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_every_type_with_nulls(cassandra: Target) -> None:
    table = cassandra.new_table(ALL_TYPES_CQL, "id")
    data = all_types_table(500)
    with CassandraSink(table=table, connection=cassandra.connection(), request_rows=128) as sink:
        for batch in data.to_batches(max_chunksize=97):
            sink.write(batch)
    src = CassandraSource(table, connection=cassandra.connection(), schema=ALL_TYPES_SCHEMA, splits=3)
    out = src.read_all()
    expected = _normalize_empty_collections(data)
    assert out.schema == ALL_TYPES_SCHEMA
    assert out.sort_by("id").equals(expected.sort_by("id")), "tables differ"


def test_default_schema_from_cql_types(cassandra: Target) -> None:
    table = cassandra.new_table("id bigint, v text, d date, u uuid, m map<text, int>", "id")
    cassandra.session.execute(
        f"INSERT INTO {table} (id, v, d, u, m) VALUES (1, 'x', '2024-02-03', "
        "11111111-2222-3333-4444-555555555555, {'a': 1})"
    )
    out = CassandraSource(
        table, connection=cassandra.connection(), columns=["id", "v", "d", "u", "m"]
    ).read_all()
    assert out.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("v", pa.string()),
            ("d", pa.date32()),
            ("u", pa.string()),
            ("m", pa.map_(pa.string(), pa.int32())),
        ]
    )
    assert out.to_pylist() == [
        {
            "id": 1,
            "v": "x",
            "d": dt.date(2024, 2, 3),
            "u": "11111111-2222-3333-4444-555555555555",
            "m": [("a", 1)],
        }
    ]


def test_projection_reads_only_named_columns(cassandra: Target) -> None:
    table = cassandra.new_table("id bigint, a text, b int", "id")
    data = pa.table(
        {
            "id": pa.array(range(300), pa.int64()),
            "a": [str(i) for i in range(300)],
            "b": pa.array(range(300), pa.int32()),
        }
    )
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(data)
    out = CassandraSource(table, connection=cassandra.connection(), columns=["b", "id"], splits=2).read_all()
    assert out.schema.names == ["b", "id"]
    assert_same_rows(out, data.select(["b", "id"]))


# ------------------------------------------------------------------------------------- token ranges


def test_token_range_splits_cover_every_row_exactly_once(cassandra: Target) -> None:
    table = cassandra.new_table("k text, c int, v bigint", "(k), c")
    n = 2000
    data = pa.table(
        {
            "k": [f"key-{i % 400}" for i in range(n)],
            "c": pa.array([i // 400 for i in range(n)], pa.int32()),
            "v": pa.array(range(n), pa.int64()),
        }
    )
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(data)
    src = CassandraSource(table, connection=cassandra.connection(), splits=7, page_size=64)
    splits = src.plan()
    assert len(splits) == 7
    seen: list[int] = []
    for split in splits:
        params = json.loads(split.dumps())["params"]
        lo, hi = params["start"], params["end"]
        reader = src.open(split)
        rows = 0
        while not reader.finished:
            batch = reader.read_batch(1000, 1.0)
            if batch is None:
                continue
            assert batch.num_rows <= 64
            rows += batch.num_rows
            for key in batch.column("k").to_pylist():
                assert lo < murmur3(key.encode()) <= hi, f"{key} outside its split ({lo}, {hi}]"
            seen.extend(batch.column("v").to_pylist())
        reader.close()
    assert sorted(seen) == list(range(n)), "a row was missed or read twice"
    assert token_ranges(7)[0][0] == -(2**63) and token_ranges(7)[-1][1] == 2**63 - 1


def test_resume_from_a_mid_range_position(cassandra: Target) -> None:
    table = cassandra.new_table("id bigint, v text", "id")
    data = pa.table({"id": pa.array(range(1000), pa.int64()), "v": [f"v{i}" for i in range(1000)]})
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(data)
    src = CassandraSource(table, connection=cassandra.connection(), splits=1, page_size=100)
    (split,) = src.plan()
    reader = src.open(split)
    first = [reader.read_batch(100, 1.0) for _ in range(3)]
    position = json.loads(json.dumps(reader.snapshot()))
    assert position["paging_state"] and not position["done"]
    assert (position["start"], position["end"]) == (split.params["start"], split.params["end"])
    reader.close()
    # A new source (as after a restart), the split and the position from JSON.
    again = CassandraSource(table, connection=cassandra.connection(), splits=1, page_size=100)
    from arrowflow.source import Split

    with pytest.raises(ConfigurationError):
        again.open(Split(split_id="x", params={"start": 0, "end": 5}), position)
    resumed = again.open(Split.from_json(json.loads(split.dumps())), position)
    rest = []
    while not resumed.finished:
        b = resumed.read_batch(100, 1.0)
        if b is not None:
            rest.append(b)
    resumed.close()
    head = [v for b in first if b is not None for v in b.column("id").to_pylist()]
    tail = [v for b in rest for v in b.column("id").to_pylist()]
    assert len(head) == 300
    assert not set(head) & set(tail), "rows read before the position were read again"
    assert sorted(head + tail) == list(range(1000))


# ------------------------------------------------------------------------------- statements, options


def test_user_update_statement_and_ignore_null_fields(cassandra: Target) -> None:
    table = cassandra.new_table("id bigint, a text, b int", "id")
    cassandra.session.execute(f"INSERT INTO {table} (id, a, b) VALUES (1, 'old', 10)")
    cassandra.session.execute(f"INSERT INTO {table} (id, a, b) VALUES (2, 'old', 20)")
    batch = pa.table(
        {"id": pa.array([1, 2], pa.int64()), "a": ["new", None], "b": pa.array([None, 21], pa.int32())}
    )
    with CassandraSink(
        statement=f"UPDATE {table} SET a = ?, b = ? WHERE id = ?",
        connection=cassandra.connection(),
        ignore_null_fields=True,
        idempotent=True,
    ) as sink:
        assert sink.idempotent
        sink.write_table(batch)
    rows = {r.id: (r.a, r.b) for r in cassandra.session.execute(f"SELECT id, a, b FROM {table}")}
    assert rows == {1: ("new", 10), 2: ("old", 21)}, "unset fields must leave the stored values alone"
    # Without ignore_null_fields a null deletes the cell.
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(batch)
    rows = {r.id: (r.a, r.b) for r in cassandra.session.execute(f"SELECT id, a, b FROM {table}")}
    assert rows == {1: ("new", None), 2: (None, 21)}


def test_unlogged_batches_grouped_by_partition(cassandra: Target) -> None:
    table = cassandra.new_table("p int, c int, v text", "(p), c")
    n = 1200
    data = pa.table(
        {
            "p": pa.array([i % 10 for i in range(n)], pa.int32()),
            "c": pa.array(range(n), pa.int32()),
            "v": [f"v{i}" for i in range(n)],
        }
    )
    before = dict(cassandra.server.counters) if cassandra.server else {}
    with CassandraSink(
        table=table, connection=cassandra.connection(), batch_by_partition=True, max_batch_statements=25
    ) as sink:
        for b in data.to_batches(max_chunksize=300):
            sink.write(b)
    after = dict(cassandra.server.counters) if cassandra.server else {}
    out = CassandraSource(table, connection=cassandra.connection(), schema=data.schema).read_all()
    assert_same_rows(out, data)
    if cassandra.server is not None:
        # 10 partitions x 120 rows in batches of <= 25: at least 50 BATCH requests and no single-row
        # EXECUTE at all.
        assert after["batch"] - before["batch"] >= 50
        assert after["execute"] == before["execute"]


def test_configuration_errors_name_the_option() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "table"),
        ({"table": "ks.t", "statement": "INSERT INTO t (a) VALUES (?)"}, "table"),
        ({"statement": "INSERT INTO t (a) VALUES (1)"}, "statement"),
        ({"table": "ks.t", "concurrency": 0}, "concurrency"),
        ({"table": "ks.t", "max_retries": -1}, "max_retries"),
        ({"table": "ks.t", "columns": []}, "columns"),
        ({"table": "ks.t", "ignore_null_fields": "yes"}, "ignore_null_fields"),
    ]
    for options, option in cases:
        with pytest.raises(ConfigurationError) as info:
            CassandraSinkConfig(**options)
        assert info.value.option == option, options
    for conn, option in [
        ({"port": 0}, "port"),
        ({"hosts": ()}, "hosts"),
        ({"consistency": "SOMETIMES"}, "consistency"),
        ({"username": "u"}, "username"),
        ({"cluster_options": {"port": 1}}, "cluster_options"),
    ]:
        with pytest.raises(ConfigurationError) as info:
            CassandraConnection(**conn)
        assert info.value.option == option, conn
    with pytest.raises(ConfigurationError) as info:
        CassandraSink(table="no_keyspace")
    assert info.value.option == "table"
    with pytest.raises(ConfigurationError) as info:
        CassandraSource("ks.t", splits=0)
    assert info.value.option == "splits"


def test_exactly_once_accepts_generated_insert_not_user_statement(cassandra: Target, tmp_path: Path) -> None:
    table = cassandra.new_table("id bigint, v text", "id")
    data = pa.table({"id": pa.array(range(100), pa.int64()), "v": [str(i) for i in range(100)]})
    sink = CassandraSink(table=table, connection=cassandra.connection())
    Pipeline(CollectionSource(data, batch_size=30)).to(sink).run(
        guarantee="exactly-once", checkpoint_dir=str(tmp_path / "cp"), progress=False
    )
    assert cassandra.session.execute(f"SELECT COUNT(*) FROM {table}").one()[0] == 100
    plain = CassandraSink(
        statement=f"UPDATE {table} SET v = ? WHERE id = ?", connection=cassandra.connection()
    )
    assert not plain.idempotent
    with pytest.raises(ConfigurationError):
        Pipeline(CollectionSource(data)).to(plain).run(
            guarantee="exactly-once", checkpoint_dir=str(tmp_path / "cp2"), progress=False
        )
    plain.close()


# ------------------------------------------------------------------------------------- error policy


def test_null_and_oversized_partition_keys_go_to_the_dead_letter_sink(cassandra: Target) -> None:
    """Errors every Cassandra raises: a null key (caught before sending) and a key over 64 KiB."""
    table = cassandra.new_table("k blob, v int", "k")
    keys = [b"a", None, b"x" * 70_000, b"b"]
    data = pa.table({"k": pa.array(keys, pa.binary()), "v": pa.array([1, 2, 3, 4], pa.int32())})
    dlq = MemorySink()
    with CassandraSink(
        table=table, connection=cassandra.connection(), error_policy=dlq, max_retries=1
    ) as sink:
        sink.write_table(data)
    stored = sorted(r.v for r in cassandra.session.execute(f"SELECT v FROM {table}"))
    assert stored == [1, 4]
    failed = dlq.table().sort_by("v")
    assert failed.column("v").to_pylist() == [2, 3]
    errors = failed.column("error").to_pylist()
    assert "null value in partition key" in errors[0]
    assert "InvalidRequest" in errors[1] and "65535" in errors[1], errors[1]


def test_retryable_server_errors_are_retried_until_they_succeed(cql_server: Target) -> None:
    table = cql_server.new_table("id bigint, v text", "id")
    ks, name = table.split(".")
    assert cql_server.server is not None
    cql_server.server.inject_write_error(ks, name, [3, 7], kind="write_timeout", times=4)
    cql_server.server.inject_write_error(ks, name, [11], kind="overloaded", times=1)
    data = pa.table({"id": pa.array(range(20), pa.int64()), "v": [str(i) for i in range(20)]})
    with CassandraSink(
        table=table, connection=cql_server.connection(), initial_backoff=0.01, max_backoff=0.05, max_retries=5
    ) as sink:
        sink.write_table(data)
        sink.flush()
        metrics = sink.metrics()
    assert sorted(r.id for r in cql_server.session.execute(f"SELECT id FROM {table}")) == list(range(20))
    assert metrics["retries"] >= 2, metrics


def test_fatal_and_exhausted_errors_follow_the_policy(cql_server: Target) -> None:
    table = cql_server.new_table("id bigint, v text", "id")
    ks, name = table.split(".")
    assert cql_server.server is not None
    cql_server.server.inject_write_error(ks, name, [5, 6], kind="invalid")
    cql_server.server.inject_write_error(ks, name, [9], kind="write_timeout")  # forever: retries run out
    data = pa.table({"id": pa.array(range(12), pa.int64()), "v": [str(i) for i in range(12)]})
    dlq = MemorySink()
    with CassandraSink(
        table=table,
        connection=cql_server.connection(),
        error_policy=dlq,
        initial_backoff=0.01,
        max_backoff=0.02,
        max_retries=2,
    ) as sink:
        sink.write_table(data)
    failed = dlq.table().sort_by("id")
    assert failed.column("id").to_pylist() == [5, 6, 9]
    errors = failed.column("error").to_pylist()
    assert all("InvalidRequest" in e and "injected" in e for e in errors[:2]), errors
    assert "WriteTimeout" in errors[2], errors
    stored = sorted(r.id for r in cql_server.session.execute(f"SELECT id FROM {table}"))
    assert stored == [i for i in range(12) if i not in (5, 6, 9)]
    # skip: counted, not raised; fail: raised by flush/close.
    with CassandraSink(table=table, connection=cql_server.connection(), error_policy="skip") as sink:
        sink.write_table(data.slice(5, 2))
        sink.flush()
        assert sink.error_policy.skipped == 2
    sink = CassandraSink(table=table, connection=cql_server.connection(), max_retries=0)
    sink.write_table(data.slice(5, 1))
    with pytest.raises(ArrowflowError, match="injected"):
        sink.flush()
    with pytest.raises(ArrowflowError, match="injected"):
        sink.close()


# -------------------------------------------------------------------------------------- crash test


def test_sigkill_crash_restart_pipeline_loses_and_duplicates_nothing(
    cassandra: Target, tmp_path: Path
) -> None:
    table = cassandra.new_table("id bigint, text text, n int", "id")
    rows = 3000
    command = [
        sys.executable,
        str(HERE / "cassandra_crash_pipeline.py"),
        "--hosts",
        ",".join(cassandra.hosts),
        "--port",
        str(cassandra.port),
        "--table",
        table,
        "--rows",
        str(rows),
        "--checkpoint-dir",
        str(tmp_path / "cp"),
    ]

    def verify(report: CrashReport) -> None:
        assert "done" in report.final_stdout, report.final_stderr[-2000:]
        got = CassandraSource(table, connection=cassandra.connection(), splits=4).read_all()
        ids = got.column("id").to_pylist()
        assert len(ids) == len(set(ids)), "duplicate keys"
        assert sorted(ids) == list(range(rows)), f"{rows - len(set(ids))} rows lost"
        # Upserts: every row holds the value DataGen computes for its id, whichever run wrote it.
        assert got.sort_by("id").column("n").to_pylist() == [i * 7 % 1000 for i in range(rows)]

    report = run_with_crashes(
        command,
        verify=verify,
        kills=3,
        min_delay=0.3,
        max_delay=1.2,
        ready_line="started",
        seed=8,
        timeout=120,
    )
    assert report.kills >= 2, report  # the runs were really killed mid-way


# ------------------------------------------------------------------------------ the protocol test server


def test_test_server_negotiates_v4_and_serves_the_system_tables(cql_server: Target) -> None:
    """Without a fixed protocol_version the driver offers v5; the server's v4 error makes it downgrade."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    cluster = Cluster(
        ["127.0.0.1"],
        port=cql_server.port,
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
        execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())},
    )
    try:
        session = cluster.connect()
        assert cluster.protocol_version == 4
        local = session.execute(
            "SELECT cluster_name, partitioner FROM system.local WHERE key = 'local'"
        ).one()
        assert local.partitioner == "org.apache.cassandra.dht.Murmur3Partitioner"
        assert list(session.execute("SELECT peer FROM system.peers")) == []
    finally:
        cluster.shutdown()


def test_source_pickles_whole_and_reads_the_same(cassandra: Target) -> None:
    import pickle

    table = cassandra.new_table("id bigint, v text", "id")
    data = pa.table({"id": pa.array(range(200), pa.int64()), "v": [str(i) for i in range(200)]})
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(data)
    source = CassandraSource(table, connection=cassandra.connection(), schema=data.schema, splits=3)
    first = source.read_all()
    again = pickle.loads(pickle.dumps(source))
    assert again.plan() == source.plan()
    assert_same_rows(again.read_all(), first)
    assert_same_rows(first, data)
