"""MongoSink, MongoSource, MongoChangeStreamSource against SecantusDB (MongoDB wire protocol, loopback)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import bson
import pyarrow as pa
import pytest
from bson import json_util

from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.mongodb import MONGODB_BATCHING, MongoChangeStreamSource, MongoSink, MongoSource
from arrowflow.errors import ArrowflowError

DB = "arrowflow_it"


@pytest.fixture()
def coll(mongodb_uri: str) -> Iterator[str]:
    import pymongo

    name = f"c_{uuid.uuid4().hex[:10]}"
    yield name
    with pymongo.MongoClient(mongodb_uri) as client:
        client[DB].drop_collection(name)


def _docs(uri: str, name: str) -> list[dict]:
    import pymongo

    with pymongo.MongoClient(uri) as client:
        return list(client[DB][name].find({}, sort=[("_id", 1)]))


def _typed_table(n: int) -> pa.Table:
    oids = [bson.ObjectId().binary for _ in range(n)]
    return pa.table(
        {
            "_id": pa.array(sorted(oids), pa.binary(12)),
            "i32": pa.array([i if i % 3 else None for i in range(n)], pa.int32()),
            "i64": pa.array([i * 2**33 for i in range(n)], pa.int64()),
            "f64": pa.array([i / 4 for i in range(n)], pa.float64()),
            "s": pa.array([f"s-{i}-é" if i % 4 else None for i in range(n)], pa.string()),
            "b": pa.array([bytes([i % 256]) * 3 for i in range(n)], pa.binary()),
            "ok": pa.array([i % 2 == 0 for i in range(n)]),
            "ts": pa.array([1_700_000_000_000 + i for i in range(n)], pa.timestamp("ms", "UTC")),
            "d": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)], pa.date32()),
            "dec": pa.array([decimal.Decimal(i).scaleb(-2) for i in range(n)], pa.decimal128(12, 2)),
            "l": pa.array([[i, None] if i % 5 else [] for i in range(n)], pa.list_(pa.int64())),
            "st": pa.array(
                [{"x": i, "y": str(i)} if i % 6 else None for i in range(n)],
                pa.struct([("x", pa.int64()), ("y", pa.string())]),
            ),
            "m": pa.array([[("k", float(i))] for i in range(n)], pa.map_(pa.string(), pa.float64())),
        }
    )


def test_round_trip_every_type(mongodb_uri: str, coll: str) -> None:
    data = _typed_table(300)
    sink = MongoSink(mongodb_uri, DB, coll, batching=replace(MONGODB_BATCHING, max_request_rows=64))
    sink.write_table(data)
    sink.close()
    assert sink.metrics()["rows_written"] == 300
    docs = _docs(mongodb_uri, coll)
    assert docs[1]["_id"] == bson.ObjectId(data.column("_id")[1].as_py())
    assert isinstance(docs[1]["dec"], bson.Decimal128)
    back = MongoSource(mongodb_uri, DB, coll, schema=data.schema, num_splits=3).read_all()
    back = back.sort_by("_id")
    assert back.equals(data), back.schema


def _kernel_table(n: int) -> pa.Table:
    """Every column type the ``bson_decode`` kernel decodes (sorted ObjectId ``_id`` s, nulls, negative
    datetimes, non-ASCII text), plus one nested column it declines."""
    return pa.table(
        {
            "_id": pa.array(sorted(bson.ObjectId().binary for _ in range(n)), pa.binary(12)),
            "i32": pa.array([i if i % 3 else None for i in range(n)], pa.int32()),
            "i64": pa.array([i * 2**33 for i in range(n)], pa.int64()),
            "f64": pa.array([i / 4 for i in range(n)], pa.float64()),
            "s": pa.array([f"s-{i}-é" if i % 4 else None for i in range(n)], pa.string()),
            "b": pa.array([bytes([i % 256]) * 3 for i in range(n)], pa.binary()),
            "ok": pa.array([i % 2 == 0 for i in range(n)]),
            "ts": pa.array([-86_400_000 + 1_000_003 * i for i in range(n)], pa.timestamp("ms", "UTC")),
            "nested": pa.array([{"x": i} for i in range(n)], pa.struct([("x", pa.int64())])),
        }
    )


def test_source_decodes_flat_pages_with_the_kernel(mongodb_uri: str, coll: str) -> None:
    """Without pymongoarrow, pages whose schema and values fit ``bson_decode`` skip ``bson.decode_all``;
    a page the kernel declines (a nested column) takes the general path with the same contract."""
    n = 500
    data = _kernel_table(n)
    sink = MongoSink(mongodb_uri, DB, coll, batching=replace(MONGODB_BATCHING, max_request_rows=200))
    sink.write_table(data)
    sink.close()
    flat = data.drop_columns(["nested"])
    src = MongoSource(mongodb_uri, DB, coll, schema=flat.schema)
    (split,) = src.plan()
    reader = src.open(split)
    batches = []
    while not reader.finished:
        batch = reader.read_batch(128, 1.0)
        if batch is not None:
            assert reader.decoded_by == "kernel"
            batches.append(batch)
    position = reader.snapshot()
    reader.close()
    assert pa.Table.from_batches(batches).equals(flat)
    # The position is the last _id, found without decoding the page.
    assert json_util.loads(position) == bson.ObjectId(data.column("_id")[n - 1].as_py())
    # The same read with the nested column: the general path.
    src = MongoSource(mongodb_uri, DB, coll, schema=data.schema)
    reader = src.open(split)
    first = reader.read_batch(128, 1.0)
    assert reader.decoded_by == "python"
    assert reader.kernel_declined is not None and "'nested'" in reader.kernel_declined
    reader.close()
    assert first is not None and pa.Table.from_batches([first]).equals(data.slice(0, 128))


def test_source_filter_projection_and_resume(mongodb_uri: str, coll: str) -> None:
    data = pa.table(
        {
            "_id": pa.array(range(100), pa.int64()),
            "v": pa.array(range(100), pa.int64()),
            "w": pa.array(["x"] * 100),
        }
    )
    sink = MongoSink(mongodb_uri, DB, coll)
    sink.write_table(data)
    sink.close()
    schema = pa.schema([("_id", pa.int64()), ("v", pa.int64())])
    src = MongoSource(mongodb_uri, DB, coll, filter={"v": {"$gte": 50}}, projection={"w": 0}, schema=schema)
    (split,) = src.plan()
    reader = src.open(split)
    first = reader.read_batch(20, 1.0)
    assert first is not None and first.column("_id").to_pylist() == list(range(50, 70))
    position = json.loads(json.dumps(reader.snapshot()))
    reader.close()
    reader = src.open(split, position)
    rest = []
    while not reader.finished:
        batch = reader.read_batch(7, 1.0)
        if batch is not None:
            rest.extend(batch.column("_id").to_pylist())
    reader.close()
    assert rest == list(range(70, 100))


def test_upserts_are_idempotent(mongodb_uri: str, coll: str) -> None:
    data = pa.table({"key": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", "c"]})
    for mode in ("replace", "update"):
        for _ in range(2):  # writing twice leaves one document per key
            sink = MongoSink(mongodb_uri, DB, coll, mode=mode, keys="key")
            sink.write_table(data)
            sink.close()
    changed = pa.table({"key": pa.array([2], pa.int64()), "v": ["B"]})
    sink = MongoSink(mongodb_uri, DB, coll, mode="update", keys=["key"])
    sink.write_table(changed)
    sink.close()
    docs = sorted(_docs(mongodb_uri, coll), key=lambda d: d["key"])
    assert [(d["key"], d["v"]) for d in docs] == [(1, "a"), (2, "B"), (3, "c")]


def test_duplicate_keys_go_to_the_error_policy(mongodb_uri: str, coll: str) -> None:
    first = pa.table({"_id": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", "c"]})
    sink = MongoSink(mongodb_uri, DB, coll)
    sink.write_table(first)
    sink.close()
    again = pa.table({"_id": pa.array([3, 4, 1, 5], pa.int64()), "v": ["x", "d", "y", "e"]})
    dead = MemorySink()
    sink = MongoSink(mongodb_uri, DB, coll, error_policy=dead)
    sink.write_table(again)
    sink.close()
    letters = dead.table()
    assert sorted(letters.column("_id").to_pylist()) == [1, 3]
    assert all("11000" in e for e in letters.column("error").to_pylist())
    assert [d["_id"] for d in _docs(mongodb_uri, coll)] == [1, 2, 3, 4, 5]
    # ordered: the write stops at the duplicate; later documents are re-sent, not lost.
    sink = MongoSink(mongodb_uri, DB, coll, ordered=True, error_policy="skip")
    sink.write_table(pa.table({"_id": pa.array([6, 2, 7], pa.int64()), "v": ["f", "z", "g"]}))
    sink.close()
    assert sink.error_policy.skipped == 1
    assert [d["_id"] for d in _docs(mongodb_uri, coll)] == [1, 2, 3, 4, 5, 6, 7]
    # ignore_duplicates: re-inserting after a restart is harmless.
    sink = MongoSink(mongodb_uri, DB, coll, ignore_duplicates=True)
    assert sink.idempotent
    sink.write_table(pa.table({"_id": pa.array([1, 8], pa.int64()), "v": ["again", "h"]}))
    sink.close()
    docs = _docs(mongodb_uri, coll)
    assert [d["_id"] for d in docs] == [1, 2, 3, 4, 5, 6, 7, 8] and docs[0]["v"] == "a"
    # fail: the error surfaces.
    sink = MongoSink(mongodb_uri, DB, coll)
    with pytest.raises(ArrowflowError, match="11000"):
        sink.write_table(first)
        sink.flush()
    with pytest.raises(ArrowflowError):
        sink.close()


def test_change_stream_resumes_from_token(mongodb_uri: str, coll: str) -> None:
    import pymongo

    schema = pa.schema([("_id", pa.int64()), ("v", pa.string())])
    src = MongoChangeStreamSource(mongodb_uri, DB, coll, schema=schema)
    (split,) = src.plan()
    reader = src.open(split)
    with pymongo.MongoClient(mongodb_uri) as client:
        c = client[DB][coll]
        c.insert_many([{"_id": 1, "v": "a"}, {"_id": 2, "v": "b"}])
        got = _drain(reader, 2)
        assert got.column("_operation").to_pylist() == ["insert", "insert"]
        assert got.column("v").to_pylist() == ["a", "b"]
        token = json.loads(json.dumps(reader.snapshot()))
        reader.close()
        c.delete_one({"_id": 1})
        c.insert_one({"_id": 3, "v": "c"})
    reader = src.open(split, token)
    got = _drain(reader, 2)
    reader.close()
    assert got.column("_operation").to_pylist() == ["delete", "insert"]
    assert got.column("v").to_pylist() == [None, "c"]
    assert json.loads(got.column("_document_key")[0].as_py()) == {"_id": {"$numberInt": "1"}}


def _drain(reader, n: int) -> pa.Table:
    batches = []
    deadline = time.monotonic() + 20
    while sum(b.num_rows for b in batches) < n and time.monotonic() < deadline:
        batch = reader.read_batch(100, 0.5)
        if batch is not None:
            batches.append(batch)
    table = pa.Table.from_batches(batches)
    assert table.num_rows == n
    return table


def _drain_batches(reader, n: int) -> tuple[pa.Table, set[str | None], set[str | None]]:
    """Reads ``n`` changes; returns them with the ``decoded_by`` / ``kernel_declined`` values seen."""
    batches, by, declined = [], set(), set()
    deadline = time.monotonic() + 30
    while sum(b.num_rows for b in batches) < n and time.monotonic() < deadline:
        batch = reader.read_batch(64, 0.5)
        if batch is not None:
            batches.append(batch)
            by.add(reader.decoded_by)
            declined.add(reader.kernel_declined)
    table = pa.Table.from_batches(batches)
    assert table.num_rows == n
    return table, by, declined


def test_change_stream_decodes_flat_documents_with_the_kernel(mongodb_uri: str, coll: str) -> None:
    """Changes arrive as raw BSON; their ``fullDocument`` s are decoded for the whole batch by the
    ``bson_decode`` kernel when the schema is flat, by the general path when it is not (a nested
    column), with the same values; the metadata and the position are those pymongo reports."""
    import pymongo

    n = 300
    data = _kernel_table(n)
    flat = data.drop_columns(["nested"])
    kernel_src = MongoChangeStreamSource(mongodb_uri, DB, coll, schema=flat.schema)
    general_src = MongoChangeStreamSource(mongodb_uri, DB, coll, schema=data.schema)
    (split,) = kernel_src.plan()
    kernel_reader = kernel_src.open(split)
    general_reader = general_src.open(split)
    with pymongo.MongoClient(mongodb_uri) as client:
        c = client[DB][coll]
        oracle = c.watch(full_document="updateLookup", max_await_time_ms=100)
        # One request at a time, so the inserts happen (and are streamed) in the table's order.
        one_at_a_time = replace(MONGODB_BATCHING, max_request_rows=100, max_in_flight=1)
        sink = MongoSink(mongodb_uri, DB, coll, batching=one_at_a_time, ordered=True)
        sink.write_table(data)
        sink.close()
        ids = [bson.ObjectId(v) for v in data.column("_id").to_pylist()]
        c.delete_many({"_id": {"$in": ids[:3]}})
        c.update_one({"_id": ids[10]}, {"$set": {"s": "changed"}})
        total = n + 4
        expected_changes = []
        deadline = time.monotonic() + 30
        while len(expected_changes) < total and time.monotonic() < deadline:
            change = oracle.try_next()
            if change is not None:
                expected_changes.append((change, oracle.resume_token))
        oracle.close()
    assert len(expected_changes) == total

    by_kernel, by, declined = _drain_batches(kernel_reader, total)
    assert by == {"kernel"} and declined == {None}
    by_general, by, declined = _drain_batches(general_reader, total)
    assert by == {"python"}
    assert all(d is not None and "'nested'" in d for d in declined)
    kernel_position, general_position = kernel_reader.snapshot(), general_reader.snapshot()
    kernel_reader.close()
    general_reader.close()

    # Inserts, then three deletes (all-null documents), then the update (the document looked up).
    nulls = pa.table({f.name: pa.nulls(3, f.type) for f in data.schema})
    updated = data.slice(10, 1).set_column(4, "s", pa.array(["changed"]))
    expected = pa.concat_tables([data, nulls, updated])
    meta = ["_operation", "_document_key", "_cluster_time"]
    assert by_general.drop_columns(meta).equals(expected)
    assert by_kernel.drop_columns(meta).equals(expected.drop_columns(["nested"]))
    assert by_kernel.select(meta).equals(by_general.select(meta))
    # The metadata and the position equal what pymongo's own decoded changes say.
    assert by_kernel.column("_operation").to_pylist() == [ch["operationType"] for ch, _ in expected_changes]
    assert by_kernel.column("_document_key").to_pylist() == [
        json_util.dumps(ch["documentKey"], json_options=json_util.CANONICAL_JSON_OPTIONS)
        for ch, _ in expected_changes
    ]
    assert by_kernel.column("_cluster_time").to_pylist() == [
        dt.datetime.fromtimestamp(ch["clusterTime"].time, tz=dt.timezone.utc) for ch, _ in expected_changes
    ]
    last_token = dict(expected_changes[-1][1])
    assert kernel_position == general_position == last_token
    assert json.loads(json.dumps(kernel_position)) == kernel_position


def test_schemaless_read_keeps_fields_first_seen_later(mongodb_uri: str, coll: str) -> None:
    # Issue 19 (found by the bson_page fuzz target): without a schema a page kept only the fields
    # of its first document; documents with other fields lost them.
    import pymongo

    docs = [{"_id": i, "a": i} if i % 3 else {"_id": i, "b": f"x{i}", "c": [i]} for i in range(30)]
    with pymongo.MongoClient(mongodb_uri) as client:
        client[DB][coll].insert_many(docs)
    got = MongoSource(mongodb_uri, DB, coll).read_all()
    assert sorted(got.column_names) == ["_id", "a", "b", "c"]
    rows = sorted(got.to_pylist(), key=lambda r: r["_id"])
    assert rows == [{"_id": d["_id"], "a": d.get("a"), "b": d.get("b"), "c": d.get("c")} for d in docs]
