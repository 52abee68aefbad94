"""CassandraSink and CassandraSource against a real Apache Cassandra 5.0 node (tests/services/cassandra.sh).

The driver runs with its defaults (negotiated protocol v5, token-aware routing, schema and token
metadata on). The retry tests put :class:`cql_fault_proxy.CqlFaultProxy` between the driver and the
same server to answer chosen writes with ``WriteTimeout``/``Overloaded``, which Cassandra cannot be
made to do on demand; every row they check is read back from Cassandra.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import itertools
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from cassandra_target import KEYSPACE, Target

from arrowflow import Pipeline
from arrowflow.connectors.cassandra import (
    CassandraConnection,
    CassandraSink,
    CassandraSinkConfig,
    CassandraSource,
)
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ArrowflowError, ConfigurationError
from arrowflow.source import Split
from arrowflow.testing import assert_same_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import CrashReport, run_with_crashes

HERE = Path(__file__).resolve().parent
MIN_TOKEN, MAX_TOKEN = -(2**63), 2**63 - 1

# Every CQL type: each native type, the collections (frozen or not, nested), tuple, a user type and
# Cassandra 5.0's vector. Counters need a table of their own (test_counter_updates). Column "asc" is a
# CQL keyword: the statements must quote it.
ALL_TYPES_CQL = (
    "id int, big bigint, small smallint, tiny tinyint, vint varint, dbl double, flt float, "
    'dec decimal, flag boolean, txt text, vc varchar, "asc" ascii, raw blob, ts timestamp, day date, '
    "tm time, dur duration, uid uuid, tid timeuuid, ip inet, tags list<text>, nums list<int>, "
    "attrs map<text, int>, ints set<int>, uids list<uuid>, days list<date>, "
    "nested map<text, frozen<list<int>>>, flist frozen<list<int>>, pair tuple<int, text>, "
    "addr frozen<address>, vec vector<float, 3>"
)
ALL_TYPES_SCHEMA = pa.schema(
    [
        ("id", pa.int32()),
        ("big", pa.int64()),
        ("small", pa.int16()),
        ("tiny", pa.int8()),
        ("vint", pa.string()),
        ("dbl", pa.float64()),
        ("flt", pa.float32()),
        ("dec", pa.decimal128(12, 3)),
        ("flag", pa.bool_()),
        ("txt", pa.string()),
        ("vc", pa.string()),
        ("asc", pa.string()),
        ("raw", pa.binary()),
        ("ts", pa.timestamp("ms")),
        ("day", pa.date32()),
        ("tm", pa.time64("ns")),
        ("dur", pa.month_day_nano_interval()),
        ("uid", pa.string()),
        ("tid", pa.string()),
        ("ip", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("nums", pa.list_(pa.int32())),
        ("attrs", pa.map_(pa.string(), pa.int32())),
        ("ints", pa.list_(pa.int32())),
        ("uids", pa.list_(pa.string())),
        ("days", pa.list_(pa.date32())),
        ("nested", pa.map_(pa.string(), pa.list_(pa.int32()))),
        ("flist", pa.list_(pa.int32())),
        ("pair", pa.struct([("f0", pa.int32()), ("f1", pa.string())])),
        ("addr", pa.struct([("street", pa.string()), ("no", pa.int32())])),
        ("vec", pa.list_(pa.float32(), 3)),
    ]
)
# Non-frozen collections: Cassandra stores an empty one as no value, so it reads back as null.
NON_FROZEN = ("tags", "nums", "attrs", "ints", "uids", "days", "nested")


def all_types_table(n: int, seed: int = 0) -> pa.Table:
    """Every type, with nulls in every non-key column (row i is null in column 1 + i % 30)."""
    rng = np.random.default_rng(seed)
    sign = np.where(rng.random(n) < 0.5, -1, 1)
    cols: dict[str, list[Any]] = {
        "id": list(range(n)),
        "big": rng.integers(-(2**62), 2**62, n).tolist(),
        "small": rng.integers(-(2**15), 2**15, n).tolist(),
        "tiny": rng.integers(-128, 128, n).tolist(),
        "vint": [
            str(int(s) * (int(x) * 10**25 + i))
            for i, (s, x) in enumerate(zip(sign, rng.integers(0, 10**9, n), strict=True))
        ],
        "dbl": rng.normal(0, 1e6, n).tolist(),
        "flt": np.float32(rng.normal(0, 100, n)).tolist(),
        "dec": [decimal.Decimal(int(x)).scaleb(-3) for x in rng.integers(-(10**9), 10**9, n)],
        "flag": (rng.random(n) < 0.5).tolist(),
        "txt": [f"t\u00e9xt '{i}' \"q\" \u2603" for i in range(n)],
        "vc": [f"varchar {i}" for i in range(n)],
        "asc": [f"ascii-{i}" for i in range(n)],
        "raw": [bytes(rng.integers(0, 256, i % 7).astype(np.uint8)) for i in range(n)],
        "ts": [
            dt.datetime(2024, 1, 1) + dt.timedelta(milliseconds=int(x)) for x in rng.integers(-1e12, 1e12, n)
        ],
        "day": [dt.date(1970, 1, 1) + dt.timedelta(days=int(x)) for x in rng.integers(-50_000, 50_000, n)],
        "tm": rng.integers(0, 86_400 * 10**9, n).tolist(),
        # A duration's months, days and nanoseconds all have one sign.
        "dur": [
            (int(s) * int(m), int(s) * int(d), int(s) * int(ns))
            for s, m, d, ns in zip(
                sign, rng.integers(0, 100, n), rng.integers(0, 40, n), rng.integers(0, 10**14, n), strict=True
            )
        ],
        "uid": [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**62, n)],
        "tid": [
            str(uuid.uuid1(node=int(x), clock_seq=i % 16384)) for i, x in enumerate(rng.integers(0, 2**40, n))
        ],
        # IPv6 on odd rows, IPv4 on even ones, in their canonical text form.
        "ip": [
            str(ipaddress.ip_address(int(x) if i % 2 else int(x) % 2**32))
            for i, x in enumerate(rng.integers(1, 2**62, n))
        ],
        "tags": [[f"a{i}", f"b{i}"][: i % 3] for i in range(n)],
        "nums": [list(range(i % 4)) for i in range(n)],
        "attrs": [[(f"k{j}", j * i) for j in range(i % 3)] for i in range(n)],
        "ints": [sorted({i % 5, i % 7}) for i in range(n)],
        "uids": [[str(uuid.UUID(int=i * 7 + j)) for j in range(i % 3)] for i in range(n)],
        "days": [[dt.date(2000, 1, 1) + dt.timedelta(days=i + j) for j in range(i % 2)] for i in range(n)],
        "nested": [[("a", list(range(i % 3))), ("b", [i])][: i % 3] for i in range(n)],
        "flist": [list(range(i % 3)) for i in range(n)],
        "pair": [{"f0": i, "f1": None if i % 4 == 0 else f"p{i}"} for i in range(n)],
        "addr": [{"street": f"street {i}", "no": None if i % 5 == 0 else i} for i in range(n)],
        "vec": [np.float32(rng.normal(0, 1, 3)).tolist() for _ in range(n)],
    }
    names = ALL_TYPES_SCHEMA.names
    for i in range(n):
        cols[names[1 + i % (len(names) - 1)]][i] = None
    return pa.table(cols, schema=ALL_TYPES_SCHEMA)


def _empty_collections_as_null(table: pa.Table) -> pa.Table:
    for name in NON_FROZEN:
        col = table.column(name)
        values = [None if v is not None and len(v) == 0 else v for v in col.to_pylist()]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, col.type))
    return table


def _all_types_table_in(target: Target) -> str:
    target.session.execute(f"CREATE TYPE IF NOT EXISTS {KEYSPACE}.address (street text, no int)")
    return target.new_table(ALL_TYPES_CQL, "id")


def _ids(rows: Any, col: str = "id") -> list[int]:
    return sorted(getattr(r, col) for r in rows)


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_every_type_with_nulls(cassandra: Target) -> None:
    table = _all_types_table_in(cassandra)
    data = all_types_table(500)
    with CassandraSink(table=table, connection=cassandra.connection(), request_rows=128) as sink:
        for batch in data.to_batches(max_chunksize=97):
            sink.write(batch)
    src = CassandraSource(table, connection=cassandra.connection(), schema=ALL_TYPES_SCHEMA, splits=3)
    out = src.read_all()
    expected = _empty_collections_as_null(data)
    assert out.schema == ALL_TYPES_SCHEMA
    got, want = out.sort_by("id"), expected.sort_by("id")
    for name in ALL_TYPES_SCHEMA.names:
        assert got.column(name).equals(want.column(name)), name
    # What Cassandra itself stored, read without arrowflow (spot checks of the conversions).
    row = cassandra.session.execute(f"SELECT id, vint, tm, dur, addr, vec FROM {table} WHERE id = 1").one()
    assert str(row.vint) == data.column("vint")[1].as_py()
    assert row.tm.nanosecond_time == data.column("tm").cast(pa.int64())[1].as_py()
    months, days, nanos = data.column("dur")[1].as_py()
    assert (row.dur.months, row.dur.days, row.dur.nanoseconds) == (months, days, nanos)
    assert (row.addr.street, row.addr.no) == ("street 1", 1)


def test_default_schema_from_cql_types(cassandra: Target) -> None:
    """Without a schema every CQL type reads as its default Arrow type (decimal as its string)."""
    table = _all_types_table_in(cassandra)
    data = all_types_table(60, seed=1)
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(data)
    out = CassandraSource(table, connection=cassandra.connection(), columns=ALL_TYPES_SCHEMA.names).read_all()
    dec = ALL_TYPES_SCHEMA.get_field_index("dec")
    assert out.schema == ALL_TYPES_SCHEMA.set(dec, pa.field("dec", pa.string()))
    expected = _empty_collections_as_null(data)
    expected = expected.set_column(dec, "dec", expected.column("dec").cast(pa.string()))
    assert out.sort_by("id").equals(expected.sort_by("id"))


def test_counter_updates(cassandra: Target) -> None:
    """Counter columns take a user UPDATE (not idempotent: each write adds)."""
    table = cassandra.new_table("id bigint, hits counter", "id")
    data = pa.table(
        {"id": pa.array(range(50), pa.int64()), "hits": pa.array([i % 7 for i in range(50)], pa.int64())}
    )
    for _ in range(2):
        with CassandraSink(
            statement=f"UPDATE {table} SET hits = hits + ? WHERE id = ?", connection=cassandra.connection()
        ) as sink:
            assert not sink.idempotent
            sink.write_table(data)
    out = CassandraSource(table, connection=cassandra.connection()).read_all()
    assert out.schema == pa.schema([("id", pa.int64()), ("hits", pa.int64())])
    got = dict(zip(out.column("id").to_pylist(), out.column("hits").to_pylist(), strict=True))
    assert got == {i: 2 * (i % 7) for i in range(50)}


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


def test_token_range_splits_follow_the_ring_and_cover_every_row_once(cassandra: Target) -> None:
    """Against the node's 16 vnodes: split bounds are the ring's tokens (fewer splits than ranges:
    runs of whole ranges; more: every ring token is a bound), and reading every split returns each
    row exactly once, each inside its split by the server's own token()."""
    ring = sorted(int(t) for t in cassandra.session.execute("SELECT tokens FROM system.local").one().tokens)
    assert len(ring) == 16
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
    token_of = {r.k: r.t for r in cassandra.session.execute(f"SELECT DISTINCT k, token(k) AS t FROM {table}")}
    assert len(token_of) == 400
    for splits in (7, 40):
        src = CassandraSource(table, connection=cassandra.connection(), splits=splits, page_size=64)
        plan = src.plan()
        assert len(plan) == splits
        bounds = [(json.loads(s.dumps())["params"]["start"], s.params["end"]) for s in plan]
        assert bounds[0][0] == MIN_TOKEN and bounds[-1][1] == MAX_TOKEN
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds)), "splits are not contiguous"
        inner = {t for b in bounds for t in b} - {MIN_TOKEN, MAX_TOKEN}
        if splits < len(ring) + 1:
            assert inner <= set(ring), "a split bound is not a ring token"
        else:
            assert set(ring) <= inner, "a split straddles a ring range"
        seen: list[int] = []
        for split, (lo, hi) in zip(plan, bounds, strict=True):
            reader = src.open(split)
            while not reader.finished:
                batch = reader.read_batch(1000, 1.0)
                if batch is None:
                    continue
                assert batch.num_rows <= 64
                for key in batch.column("k").to_pylist():
                    assert lo < token_of[key] <= hi, f"{key} outside its split ({lo}, {hi}]"
                seen.extend(batch.column("v").to_pylist())
            reader.close()
        assert sorted(seen) == list(range(n)), f"splits={splits}: a row was missed or read twice"


def test_resume_from_a_mid_range_position(cassandra: Target) -> None:
    """The real server's paging state, through JSON, resumes a range at the next page."""
    table = cassandra.new_table("id bigint, v text", "id")
    data = pa.table({"id": pa.array(range(1000), pa.int64()), "v": [f"v{i}" for i in range(1000)]})
    with CassandraSink(table=table, connection=cassandra.connection()) as sink:
        sink.write_table(data)
    src = CassandraSource(table, connection=cassandra.connection(), splits=2, page_size=100)
    # The split with more rows (the ring's ranges are not equal), read three pages into it.
    token_counts = []
    for split in src.plan():
        lo, hi = split.params["start"], split.params["end"]
        token_counts.append(
            cassandra.session.execute(
                f"SELECT COUNT(*) FROM {table} WHERE token(id) > %s AND token(id) <= %s", (lo, hi)
            ).one()[0]
        )
    split = src.plan()[int(np.argmax(token_counts))]
    total = max(token_counts)
    assert total > 300
    reader = src.open(split)
    first = [reader.read_batch(100, 1.0) for _ in range(3)]
    position = json.loads(json.dumps(reader.snapshot()))
    assert position["paging_state"] and not position["done"]
    assert (position["start"], position["end"]) == (split.params["start"], split.params["end"])
    reader.close()
    # A new source (as after a restart), the split and the position from JSON.
    again = CassandraSource(table, connection=cassandra.connection(), splits=2, page_size=100)
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
    assert len(head) + len(tail) == total, "rows after the position were missed"


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


def test_unlogged_batches_grouped_by_partition(cql_proxy: Target) -> None:
    """Counted by the proxy on the wire: BATCH requests only, no single-row EXECUTE."""
    table = cql_proxy.new_table("p int, c int, v text", "(p), c")
    n = 1200
    data = pa.table(
        {
            "p": pa.array([i % 10 for i in range(n)], pa.int32()),
            "c": pa.array(range(n), pa.int32()),
            "v": [f"v{i}" for i in range(n)],
        }
    )
    assert cql_proxy.proxy is not None
    sink = CassandraSink(
        table=table, connection=cql_proxy.connection(), batch_by_partition=True, max_batch_statements=25
    )
    sink.write(data.to_batches()[0].slice(0, 1))  # connect and prepare before counting
    sink.flush()
    before = dict(cql_proxy.proxy.requests)
    for b in data.to_batches(max_chunksize=300):
        sink.write(b)
    sink.close()
    after = dict(cql_proxy.proxy.requests)
    assert cql_proxy.proxy.error is None
    out = CassandraSource(table, connection=cql_proxy.connection(), schema=data.schema).read_all()
    assert_same_rows(out, data)
    # 10 partitions x 120 rows in batches of <= 25: at least 50 BATCH requests, no EXECUTE.
    assert after.get("batch", 0) - before.get("batch", 0) >= 50
    assert after.get("execute", 0) == before.get("execute", 0)


def test_batches_stay_under_the_servers_message_limit(cassandra: Target) -> None:
    """The test node refuses a CQL message over 4 MiB (native_transport_max_message_size defaults to
    half its 8 MiB commit log segment): 24 rows of 256 KiB in one partition must go in several
    batches (max_batch_bytes), not one 6 MiB batch the server rejects whole."""
    table = cassandra.new_table("p int, c int, payload blob", "(p), c")
    n = 24
    data = pa.table(
        {
            "p": pa.array([1] * n, pa.int32()),
            "c": pa.array(range(n), pa.int32()),
            "payload": [bytes([i]) * (256 << 10) for i in range(n)],
        }
    )
    with CassandraSink(table=table, connection=cassandra.connection(), batch_by_partition=True) as sink:
        sink.write_table(data)
    stored = {
        r.c: r.payload for r in cassandra.session.execute(f"SELECT c, payload FROM {table} WHERE p = 1")
    }
    assert stored == {i: bytes([i]) * (256 << 10) for i in range(n)}


def test_configuration_errors_name_the_option() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "table"),
        ({"table": "ks.t", "statement": "INSERT INTO t (a) VALUES (?)"}, "table"),
        ({"statement": "INSERT INTO t (a) VALUES (1)"}, "statement"),
        ({"table": "ks.t", "concurrency": 0}, "concurrency"),
        ({"table": "ks.t", "max_retries": -1}, "max_retries"),
        ({"table": "ks.t", "max_batch_bytes": 0}, "max_batch_bytes"),
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


def test_rows_the_server_or_driver_refuses_go_to_the_dead_letter_sink(cassandra: Target) -> None:
    """Errors of a real Cassandra, row by row: a partition key over 64 KiB and a null clustering key
    (server: InvalidRequest), a null partition key (caught before sending), an int out of range and a
    malformed uuid (the driver's codecs). Only those rows reach the dead letter; the rest is stored."""
    table = cassandra.new_table("k blob, c int, n int, u uuid", "(k), c")
    keys = [b"a", None, b"x" * 70_000, b"b", b"c", b"d", b"e"]
    data = pa.table(
        {
            "k": pa.array(keys, pa.binary()),
            "c": pa.array([1, 2, 3, None, 5, 6, 7], pa.int32()),
            "n": pa.array([1, 2, 3, 4, 2**40, 6, 7], pa.int64()),
            "u": [str(uuid.UUID(int=i)) if i != 5 else "not-a-uuid" for i in range(7)],
        }
    )
    dlq = MemorySink()
    with CassandraSink(
        table=table, connection=cassandra.connection(), error_policy=dlq, max_retries=1
    ) as sink:
        sink.write_table(data)
    assert _ids(cassandra.session.execute(f"SELECT c FROM {table}"), "c") == [1, 7]
    failed = dlq.table().sort_by("c")
    errors = dict(zip(failed.column("c").to_pylist(), failed.column("error").to_pylist(), strict=True))
    assert set(errors) == {2, 3, None, 5, 6}, errors
    assert "null value in partition key" in errors[2]
    assert "InvalidRequest" in errors[3] and "65535" in errors[3], errors[3]
    assert "InvalidRequest" in errors[None] and "null value" in errors[None], errors[None]
    assert "Int32Type" in errors[5], errors[5]
    assert "UUID" in errors[6], errors[6]


def test_unknown_table_and_column_go_to_the_dead_letter_sink(cassandra: Target) -> None:
    """The server refuses to prepare: every row of the batch goes to the policy with its message."""
    table = cassandra.new_table("id bigint, v text", "id")
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", "c"]})
    for target, batch, message in [
        (f"{KEYSPACE}.no_such_table", data, "does not exist"),
        (table, data.append_column("w", pa.array([1, 2, 3])), "Undefined column name w"),
    ]:
        dlq = MemorySink()
        with CassandraSink(table=target, connection=cassandra.connection(), error_policy=dlq) as sink:
            sink.write_table(batch)
            assert sink.metrics()["rows_failed"] == 3
        failed = dlq.table()
        assert failed.column("id").to_pylist() == [1, 2, 3]
        assert all("InvalidRequest" in e and message in e for e in failed.column("error").to_pylist())
    assert cassandra.session.execute(f"SELECT COUNT(*) FROM {table}").one()[0] == 0
    with pytest.raises(ArrowflowError, match="does not exist"):
        CassandraSink(table=f"{KEYSPACE}.no_such_table", connection=cassandra.connection()).write_table(data)


def test_retryable_server_errors_are_retried_until_they_succeed(cql_proxy: Target) -> None:
    table = cql_proxy.new_table("id bigint, v text", "id")
    proxy = cql_proxy.proxy
    assert proxy is not None
    ids = [10**12 + i for i in range(20)]  # values no other column holds (the proxy matches bytes)
    proxy.inject([ids[3], ids[7]], "write_timeout", times=4)
    proxy.inject([ids[11]], "overloaded", times=1)
    data = pa.table({"id": pa.array(ids, pa.int64()), "v": [str(i) for i in range(20)]})
    with CassandraSink(
        table=table, connection=cql_proxy.connection(), initial_backoff=0.01, max_backoff=0.05, max_retries=5
    ) as sink:
        sink.write_table(data)
        sink.flush()
        metrics = sink.metrics()
    assert proxy.error is None
    assert proxy.injected() == 9, "each fault answered exactly its number of attempts"
    assert _ids(cql_proxy.session.execute(f"SELECT id FROM {table}")) == ids
    assert metrics["retries"] >= 4 and metrics["rows_retried"] == 9, metrics


def test_fatal_and_exhausted_errors_follow_the_policy(cql_proxy: Target) -> None:
    """A real InvalidRequest (null clustering key) is not retried; an injected WriteTimeout on every
    attempt exhausts the retries; both reach the dead letter; the rest is stored."""
    table = cql_proxy.new_table("id bigint, c int, v text", "(id), c")
    proxy = cql_proxy.proxy
    assert proxy is not None
    ids = [10**12 + i for i in range(12)]
    proxy.inject([ids[9]], "write_timeout")  # forever
    data = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "c": pa.array([None if i in (5, 6) else i for i in range(12)], pa.int32()),
            "v": [str(i) for i in range(12)],
        }
    )
    dlq = MemorySink()
    with CassandraSink(
        table=table,
        connection=cql_proxy.connection(),
        error_policy=dlq,
        initial_backoff=0.01,
        max_backoff=0.02,
        max_retries=2,
    ) as sink:
        sink.write_table(data)
    assert proxy.injected() == 3, "one attempt and two retries"
    failed = dlq.table().sort_by("id")
    assert failed.column("id").to_pylist() == [ids[5], ids[6], ids[9]]
    errors = failed.column("error").to_pylist()
    assert all("failed fatally" in e and "InvalidRequest" in e for e in errors[:2]), errors
    assert "retries exhausted after 3 attempt(s)" in errors[2] and "WriteTimeout" in errors[2], errors
    stored = _ids(cql_proxy.session.execute(f"SELECT id FROM {table}"))
    assert stored == [x for i, x in enumerate(ids) if i not in (5, 6, 9)]
    # skip: counted, not raised; fail: raised by flush/close.
    with CassandraSink(table=table, connection=cql_proxy.connection(), error_policy="skip") as sink:
        sink.write_table(data.slice(5, 2))
        sink.flush()
        assert sink.error_policy.skipped == 2
    sink = CassandraSink(table=table, connection=cql_proxy.connection(), max_retries=0)
    sink.write_table(data.slice(9, 1))
    with pytest.raises(ArrowflowError, match="injected write_timeout"):
        sink.flush()
    with pytest.raises(ArrowflowError, match="injected write_timeout"):
        sink.close()


# -------------------------------------------------------------------------------------- crash test


def test_sigkill_crash_restart_pipeline_loses_nothing_and_absorbs_the_replay(
    cassandra: Target, tmp_path: Path
) -> None:
    """DataGen -> CassandraSink killed three times mid-stream (the second run stalls in a checkpoint
    flush after Cassandra acknowledged its rows, so the restart must write them again), then run to
    the end: every id once with its value, and the replay proven on the server: the acknowledged
    rows carry a write time from a later run, and Cassandra counted at least rows + replayed writes."""
    table = cassandra.new_table("id bigint, text text, n int", "id")
    rows = 6000
    checkpoint = tmp_path / "cp"
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
        "--stall-run",
        "1",
        "--checkpoint-dir",
        str(checkpoint),
    ]

    def verify(report: CrashReport) -> None:
        assert "done" in report.final_stdout, report.final_stderr[-2000:]
        events = [json.loads(line) for line in Path(f"{checkpoint}.log").read_text().splitlines()]
        starts = {e["run"]: e["start"] for e in events if "start" in e}
        batches = {r: sum(1 for e in events if e["run"] == r and "ids" in e) for r in starts}
        done = [e["run"] for e in events if e.get("done")]
        # Four starts: three killed with data in flight (each had passed batches on and had not
        # finished), and the last, which still had batches to do, ran to the end.
        assert sorted(starts) == [0, 1, 2, 3] and done == [3], events[-3:]
        assert all(batches[r] >= 1 for r in starts), batches
        (acked,) = [e["acked"] for e in events if "acked" in e and e["run"] == 1]
        assert acked, "the stalled run acknowledged no rows"
        got = CassandraSource(table, connection=cassandra.connection(), splits=4).read_all()
        ids = got.column("id").to_pylist()
        assert len(ids) == len(set(ids)) == rows, f"{rows - len(set(ids))} rows lost"
        assert sorted(ids) == list(range(rows))
        assert got.sort_by("id").column("n").to_pylist() == [i * 7 % 1000 for i in range(rows)]
        # The replay: rows Cassandra acknowledged in run 1 were written again by a later run (their
        # write time is after run 2 started) and the table still has one row each.
        after = int(starts[2] * 1_000_000)
        written = {
            r.id: r.wt for r in cassandra.session.execute(f"SELECT id, writetime(text) AS wt FROM {table}")
        }
        times = {i: written[i] for i in acked}
        stale = [i for i, wt in times.items() if wt < after]
        assert not stale, f"{len(stale)} acknowledged rows were not written again after the restart"
        # And Cassandra's own count of the mutations it applied to the table.
        assert cassandra.writes(table) >= rows + len(acked)

    report = run_with_crashes(
        command,
        verify=verify,
        kills=3,
        min_delay=0.3,
        max_delay=1.0,
        ready_line="started",
        seed=8,
        timeout=180,
    )
    assert report.kills == 3 and report.early_exits == 0, report


# ------------------------------------------------------------------------------------------ pickling


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
