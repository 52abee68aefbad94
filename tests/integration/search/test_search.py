"""Elasticsearch and OpenSearch connectors against real servers: OpenSearch 2.19 and Elasticsearch 9.2.

Every test runs once per target (``search_helpers.TARGETS``) on its own index: opensearch-py against
OpenSearch, elasticsearch-py against Elasticsearch, and elasticsearch-py against OpenSearch through the
test-only node class of ``search_helpers`` (the package's compatibility note).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from search_helpers import TARGETS, BulkProxy, Target, admin, check_server, count, new_index

from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.search import ELASTICSEARCH, Flavor
from arrowflow.connectors.search.elasticsearch import ElasticsearchSink, ElasticsearchSource
from arrowflow.connectors.search.opensearch import OpenSearchSink, OpenSearchSource
from arrowflow.errors import ArrowflowError
from arrowflow.testing import assert_same_rows, make_table

MAPPINGS = {
    "properties": {
        "value": {"type": "double"},
        "name": {"type": "keyword"},
        "flag": {"type": "boolean"},
        "count": {"type": "integer"},
        "ts": {"type": "date"},
    }
}


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    t = TARGETS[request.param]
    check_server(t)
    return t


@pytest.fixture
def index(target: Target) -> Iterator[str]:
    yield from new_index(target, MAPPINGS)


def classes(flavor: Flavor) -> tuple[Any, Any]:
    if flavor is ELASTICSEARCH:
        return ElasticsearchSink, ElasticsearchSource
    return OpenSearchSink, OpenSearchSource


def make_sink(target: Target, index: str | None, url: str | None = None, **options: Any) -> Any:
    options.setdefault("initial_backoff", 0.01)
    options.setdefault("max_backoff", 0.05)
    sink_cls = classes(target.flavor)[0]
    return sink_cls(url or target.url, index, client_options=target.client_options(), **options)


def make_source(target: Target, index: str, **options: Any) -> Any:
    source_cls = classes(target.flavor)[1]
    return source_cls(target.url, index, client_options=target.client_options(), **options)


def test_round_trip_sink_then_source(target: Target, index: str) -> None:
    data = make_table(1500)
    sink = make_sink(target, index, id_column="id", max_actions=200, max_in_flight=3)
    assert sink.idempotent
    for batch in data.to_batches(max_chunksize=256):
        sink.write(batch)
    sink.close()
    metrics = sink.metrics()
    assert metrics["rows_written"] == 1500 and metrics["rows_failed"] == 0
    assert metrics["requests"] >= 8  # cut by max_actions=200
    assert count(target, index) == 1500
    source = make_source(target, index, schema=data.schema, id_column="id", page_size=333)
    table = source.read_all()
    assert table.schema == data.schema
    assert_same_rows(table, data)
    # Projection + inferred schema.
    projected = make_source(target, index, columns=("name", "flag")).read_all()
    assert sorted(projected.schema.names) == ["flag", "name"]
    assert sorted(projected.column("name").to_pylist()) == sorted(data.column("name").to_pylist())


def test_binary_columns_round_trip_as_bytes(target: Target) -> None:
    # The sink writes bytes as base64 text (the server's `binary` type takes exactly that); the
    # source must decode it back into the bytes, also inside structs and lists, not return the text.
    inner = pa.struct([("tag", pa.string()), ("blob", pa.binary())])
    data = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "raw": pa.array([b"\x00\x01\xff", b"", None, bytes(range(256))], pa.binary()),
            "nested": pa.array(
                [{"tag": "a", "blob": b"\xfe"}, {"tag": "b", "blob": None}, None, {"tag": "d", "blob": b"z"}],
                inner,
            ),
            "blobs": pa.array([[b"\x01", b"\x02\x03"], [], None, [b""]], pa.list_(pa.large_binary())),
        }
    )
    mappings = {
        "properties": {"raw": {"type": "binary"}, "nested": {"properties": {"blob": {"type": "binary"}}}}
    }
    for index in new_index(target, mappings):
        sink = make_sink(target, index, id_column="id", refresh="true")
        sink.write_table(data)
        sink.close()
        assert sink.metrics()["rows_written"] == 4
        got = make_source(target, index, schema=data.schema, id_column="id").read_all()
        assert_same_rows(got, data)


def test_mapping_error_goes_to_dead_letter_with_server_text(target: Target, index: str) -> None:
    good = make_table(20)
    bad = pa.table({"id": pa.array([1000, 1001]), "value": pa.array(["not-a-number", "x"])})
    dead = MemorySink()
    sink = make_sink(target, index, id_column="id", error_policy=dead)
    sink.write_table(good)
    sink.write_table(bad)
    sink.close()
    letters = dead.table()
    assert letters.num_rows == 2
    assert sorted(letters.column("id").to_pylist()) == [1000, 1001]
    for text in letters.column("error").to_pylist():
        assert "400" in text and target.mapping_error in text and "value" in text
    assert count(target, index) == 20

    # Under "fail" the same rows surface as an error from flush/close.
    sink = make_sink(target, index, id_column="id")
    sink.write_table(bad)
    with pytest.raises(ArrowflowError, match=target.mapping_error):
        sink.flush()
    with pytest.raises(ArrowflowError):
        sink.close()


def test_429_items_are_resent_through_a_rejecting_proxy(target: Target, index: str) -> None:
    def every_third_twice(attempt: int, n: int) -> set[int]:
        # The first two requests: every third action rejected (and NOT forwarded to the server).
        return set(range(0, n, 3)) if attempt <= 2 else set()

    data = make_table(300)
    with BulkProxy(target.url, every_third_twice, rejection=target.rejection) as proxy:
        sink = make_sink(target, index, url=proxy.url, id_column="id", max_actions=100, max_in_flight=1)
        sink.write_table(data)
        sink.close()
        metrics = sink.metrics()
    # Request 1 (100 items) has 34 rejected; request 2 is the resend of just those 34, 12 rejected.
    assert proxy.rejected == 34 + 12
    assert metrics["rows_failed"] == 0
    assert metrics["retries"] >= 2
    assert metrics["rows_retried"] == 34 + 12
    # The rejected documents never reached the server: only the sink's resends put them there.
    assert count(target, index) == 300
    table = make_source(target, index, schema=data.schema, id_column="id").read_all()
    assert_same_rows(table, data)


def test_whole_request_failures_are_retried(target: Target, index: str) -> None:
    data = make_table(50)
    with BulkProxy(target.url, fail_first=2) as proxy:
        sink = make_sink(target, index, url=proxy.url, id_column="id")
        sink.write_table(data)
        sink.close()
        assert proxy.bulk_requests == 3
    assert sink.metrics()["retries"] == 2
    assert count(target, index) == 50

    # Connection refused: retried until max_retries, then the rows go to the policy.
    dead = MemorySink()
    sink = make_sink(
        target, index, url="http://127.0.0.1:9", id_column="id", max_retries=2, error_policy=dead
    )
    sink.write_table(data.slice(0, 5))
    sink.close()
    assert dead.table().num_rows == 5
    assert "retries exhausted after 3 attempt" in dead.table().column("error")[0].as_py()


def test_create_conflicts_ignore_or_error(target: Target, index: str) -> None:
    data = make_table(30)
    sink = make_sink(target, index, action="create", id_column="id", on_conflict="ignore")
    assert sink.idempotent
    sink.write_table(data)
    sink.write_table(data)  # a replay: every item answers 409, ignored
    sink.close()
    assert sink.metrics()["rows_failed"] == 0
    assert count(target, index) == 30

    dead = MemorySink()
    sink = make_sink(target, index, action="create", id_column="id", error_policy=dead)
    assert not sink.idempotent
    sink.write_table(data.slice(0, 4))
    sink.close()
    assert dead.table().num_rows == 4
    assert "version_conflict_engine_exception" in dead.table().column("error")[0].as_py()


def test_update_delete_routing_and_date_index(target: Target) -> None:
    prefix = f"af-test-dated-{uuid.uuid4().hex[:8]}"
    ts = pa.array([0, 86_400_000_000, 86_400_000_001], pa.timestamp("us"))
    data = pa.table({"id": ["a", "b", "c"], "ts": ts, "n": [1, 2, 3], "r": ["x", "y", "x"]})
    sink = make_sink(
        target,
        None,
        index_template=prefix + "-%Y.%m.%d",
        index_time_column="ts",
        id_column="id",
        routing_column="r",
    )
    sink.write_table(data)
    sink.close()
    day1, day2 = f"{prefix}-1970.01.01", f"{prefix}-1970.01.02"
    try:
        assert count(target, day1) == 1 and count(target, day2) == 2
        # update (doc_as_upsert) changes one document and creates another; delete removes one.
        upd = make_sink(target, day2, action="update", id_column="id", doc_as_upsert=True, routing_column="r")
        upd.write_table(pa.table({"id": ["b", "z"], "n": [20, 99], "r": ["y", "y"]}))
        upd.close()
        rm = make_sink(target, day2, action="delete", id_column="id", routing_column="r")
        rm.write_table(pa.table({"id": ["c", "missing"], "r": ["x", "x"]}))
        rm.close()
        assert rm.metrics()["rows_failed"] == 0  # deleting a missing id is fine
        assert count(target, day2) == 2  # refreshes: a real node shows writes after a refresh only
        got = make_source(
            target, day2, schema=pa.schema([("id", pa.string()), ("n", pa.int64())]), id_column="id"
        )
        rows = sorted(got.read_all().to_pylist(), key=lambda r: r["id"])
        assert rows == [{"id": "b", "n": 20}, {"id": "z", "n": 99}]
        # A null id on update goes to the policy, not to the server.
        dead = MemorySink()
        bad = make_sink(target, day2, action="update", id_column="id", error_policy=dead)
        bad.write_table(pa.table({"id": pa.array([None, "b"], pa.string()), "n": [1, 21]}))
        bad.close()
        assert dead.table().num_rows == 1 and "null _id" in dead.table().column("error")[0].as_py()
    finally:
        for name in (day1, day2):
            admin(target, "DELETE", f"/{name}")


def test_sliced_source_with_point_in_time(target: Target, index: str) -> None:
    data = make_table(400)
    sink = make_sink(target, index, id_column="id")
    sink.write_table(data)
    sink.close()
    count(target, index)
    source = make_source(target, index, schema=data.schema, id_column="id", slices=3, page_size=50)
    splits = source.plan()
    assert len(splits) == 3 and json.loads(splits[0].dumps())["params"]["slices"] == 3
    if target.flavor is ELASTICSEARCH and target.server == "opensearch":
        # OpenSearch has no Elasticsearch `/<index>/_pit` endpoint (it answers 400 "no handler found"):
        # the reader must fail loudly, not read wrong.
        with pytest.raises(Exception, match=r"no handler found for uri \[/[^/]+/_pit\]"):
            source.read_all()
        return
    table = source.read_all()
    assert_same_rows(table, data)


def test_elasticsearch_refuses_the_default_id_sort_loudly_and_a_field_sort_reads() -> None:
    # Elasticsearch 8+ turns indices.id_field_data.enabled off; the test node turns it on (the
    # default sort of the sources is _id). Turned off again, the default sort must fail at the first
    # read naming the option, and a sort on a unique field of the documents must read everything.
    target = TARGETS["elasticsearch"]
    check_server(target)
    index = next(indices := new_index(target, MAPPINGS))
    data = make_table(120)
    sink = make_sink(target, index, id_column="id", refresh="true")
    sink.write_table(data)
    sink.close()
    setting = "indices.id_field_data.enabled"
    admin(target, "PUT", "/_cluster/settings", body={"persistent": {setting: False}})
    try:
        with pytest.raises(ArrowflowError, match=r"refuses to sort on _id .*Pass sort="):
            make_source(target, index, schema=data.schema, id_column="id").read_all()
        by_name = make_source(target, index, schema=data.schema, id_column="id", sort=[{"name": "asc"}])
        assert_same_rows(by_name.read_all(), data)
    finally:
        admin(target, "PUT", "/_cluster/settings", body={"persistent": {setting: None}})
        next(indices, None)  # deletes the index
