"""Kinesis sink and source against moto, with failures injected by the fault proxy."""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa
import pytest
from aws_helpers import create_stream, read_stream

from arrowflow.connectors.aws import KinesisSink, KinesisSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json, Raw
from arrowflow.testing.conformance import assert_same_rows

SCHEMA = pa.schema([("id", pa.int64()), ("key", pa.string()), ("v", pa.string())])


def table(n: int, start: int = 0, keys: int = 17) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {"id": ids, "key": [f"k{i % keys}" for i in ids], "v": [f"value-{i}-ü" for i in ids]}, schema=SCHEMA
    )


def sink(opts: dict[str, Any], stream: str, **kw: Any) -> KinesisSink:
    # moto's PutRecords is not thread-safe per shard (concurrent requests can lose records), so the
    # suites send one request at a time; the writer's concurrency is covered by the core tests.
    kw.setdefault("max_in_flight", 1)
    kw.setdefault("initial_backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    return KinesisSink(stream_name=stream, partition_key_column="key", aws=opts, **kw)


def read_all(opts: dict[str, Any], stream: str, expected: int, **kw: Any) -> pa.Table:
    src = KinesisSource(stream_name=stream, aws=opts, format=Json(schema=SCHEMA), poll_interval=0.05, **kw)
    batches = []
    got = 0
    deadline = time.monotonic() + 60
    for batch in src.batches(max_rows=400, timeout=0.5, idle_timeout=3.0):
        batches.append(batch)
        got += batch.num_rows
        if got >= expected and time.monotonic() > deadline - 55:
            break
        assert time.monotonic() < deadline
    return pa.Table.from_batches(batches) if batches else SCHEMA.empty_table()


def test_round_trip_and_request_limits(boto: Any, proxy: Any, proxy_opts: dict[str, Any]) -> None:
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=2)
    data = table(2345)
    s = sink(proxy_opts, stream)
    for batch in data.to_batches(max_chunksize=700):
        s.write(batch)
    s.close()
    assert s.metrics()["rows_written"] == data.num_rows
    requests = proxy.recorded("Kinesis_20131202.PutRecords")
    assert [len(r["Records"]) for r in requests] == [500, 500, 500, 500, 345]
    back = read_all(proxy_opts, stream, data.num_rows)
    assert_same_rows(back, data)
    # Partition keys came from the column, data is the JSON of the row.
    records = read_stream(kinesis, stream)
    assert {r["PartitionKey"] for r in records} == {f"k{i}" for i in range(17)}
    assert json.loads(records[0]["Data"])["key"] == records[0]["PartitionKey"]


def test_byte_limits_and_oversized_record(boto: Any, proxy: Any, proxy_opts: dict[str, Any]) -> None:
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    big = "x" * (400 * 1024)
    rows = pa.table(
        {"id": list(range(30)), "key": ["k"] * 30, "v": [big] * 29 + ["y" * (1024 * 1024 + 10)]},
        schema=SCHEMA,
    )
    dead = MemorySink()
    s = sink(proxy_opts, stream, error_policy=dead)
    s.write_table(rows)
    s.close()
    sizes = []
    for body in proxy.recorded("Kinesis_20131202.PutRecords"):
        import base64

        sizes.append(sum(len(base64.b64decode(r["Data"])) + len(r["PartitionKey"]) for r in body["Records"]))
    assert len(sizes) >= 3
    assert max(sizes) <= 5 * 1024 * 1024
    letters = dead.table()
    assert letters.column("id").to_pylist() == [29]
    assert "max_record_bytes" in letters.column("error")[0].as_py()
    assert len(read_stream(kinesis, stream)) == 29


def test_partial_failures_retry_only_failed_records(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any]
) -> None:
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=2)
    proxy.fail_records["PutRecords"] = (3, "ProvisionedThroughputExceededException")
    data = table(1200)
    s = sink(proxy_opts, stream)
    s.write_table(data)
    s.close()
    m = s.metrics()
    assert m["retries"] >= 3 and m["rows_retried"] > 0 and m["rows_failed"] == 0
    requests = proxy.recorded("Kinesis_20131202.PutRecords")
    # The first request carried 500 records; its retry only the 167 injected failures.
    assert len(requests[0]["Records"]) == 500
    assert len(requests[1]["Records"]) == 167
    records = read_stream(kinesis, stream)
    ids = sorted(json.loads(r["Data"])["id"] for r in records)
    assert ids == list(range(1200))  # nothing lost, nothing duplicated


def test_throttled_requests_are_retried(boto: Any, proxy: Any, proxy_opts: dict[str, Any]) -> None:
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    proxy.throttle["PutRecords"] = 3
    s = sink(proxy_opts, stream)
    s.write_table(table(300))
    s.close()
    assert s.metrics()["retries"] == 3
    assert len(proxy.recorded("Kinesis_20131202.PutRecords")) == 4
    ids = sorted(json.loads(r["Data"])["id"] for r in read_stream(kinesis, stream))
    assert ids == list(range(300))


def test_fatal_record_errors_go_to_the_error_policy(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any]
) -> None:
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    proxy.fail_records["PutRecords"] = (1, "KMSAccessDeniedException")
    dead = MemorySink()
    s = sink(proxy_opts, stream, error_policy=dead)
    s.write_table(table(10))
    s.close()
    letters = dead.table()
    assert letters.column("id").to_pylist() == [0, 3, 6, 9]
    assert all("KMSAccessDeniedException" in e for e in letters.column("error").to_pylist())
    assert sorted(json.loads(r["Data"])["id"] for r in read_stream(kinesis, stream)) == [1, 2, 4, 5, 7, 8]


def test_bad_partition_keys_and_key_function(boto: Any, aws_opts: dict[str, Any]) -> None:
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    s = KinesisSink(
        stream_name=stream, partition_key_column="key", aws=aws_opts, error_policy="skip", max_in_flight=1
    )
    s.write(pa.record_batch({"id": [1, 2, 3], "key": ["a", None, ""]}))
    s.close()
    assert s.error_policy.skipped == 2
    s = KinesisSink(
        stream_name=stream,
        partition_key=lambda b: pa.compute.cast(b.column("id"), pa.string()),
        explicit_hash_key_column="h",
        format=Raw(column="v"),
        aws=aws_opts,
        max_in_flight=1,
    )
    s.write(pa.record_batch({"id": [7], "v": [b"raw"], "h": ["1"]}))
    s.close()
    records = read_stream(kinesis, stream)
    assert [(r["PartitionKey"], r["Data"]) for r in records] == [("a", b'{"id":1,"key":"a"}'), ("7", b"raw")]
    with pytest.raises(ConfigurationError):
        KinesisSink(stream_name=stream, partition_key_column="a", partition_key=lambda b: b)
    with pytest.raises(ConfigurationError):
        KinesisSink(partition_key_column="a")


def test_source_metadata_and_resume(boto: Any, aws_opts: dict[str, Any]) -> None:
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=2)
    data = table(600)
    s = sink(aws_opts, stream)
    s.write_table(data)
    s.close()
    src = KinesisSource(
        stream_name=stream,
        aws=aws_opts,
        format=Json(schema=SCHEMA),
        poll_interval=0.05,
        metadata_columns=(
            "_shard_id",
            "_sequence_number",
            "_partition_key",
            "_approximate_arrival_timestamp",
        ),
    )
    splits = src.plan()
    assert sorted(sp.split_id for sp in splits) == ["shardId-000000000000", "shardId-000000000001"]
    first: list[pa.RecordBatch] = []
    positions = {}
    for sp in splits:
        reader = src.open(sp)
        deadline = time.monotonic() + 30
        batch = None
        while batch is None:
            assert time.monotonic() < deadline
            batch = reader.read_batch(100, 0.5)
        assert batch.num_rows <= 100
        first.append(batch)
        positions[sp.split_id] = json.loads(json.dumps(reader.snapshot()))
        reader.close()
    head = pa.Table.from_batches(first)
    assert set(head.column("_shard_id").to_pylist()) == set(positions)
    assert head.column("_partition_key").to_pylist() == head.column("key").to_pylist()
    assert head.schema.field("_approximate_arrival_timestamp").type == pa.timestamp("ms", tz="UTC")
    rest = pa.Table.from_batches(list(src.batches(max_rows=500, positions=positions, idle_timeout=2.0)))
    both = pa.concat_tables([head.select(SCHEMA.names), rest.select(SCHEMA.names)])
    assert_same_rows(both, data)


def test_source_reads_parents_before_children_after_resharding(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any]
) -> None:
    # moto keeps a split parent writable and never ends its iterator; the proxy ends the iterator
    # of a drained closed shard as Kinesis does (see aws_fault_proxy). moto also routes later
    # writes to the parent, so the children stay empty here: the test checks the gating (no child
    # GetRecords before the parent ended), discovery of the new shards, and no loss / duplicates.
    proxy.end_closed_shards = True
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    s = sink(proxy_opts, stream)
    s.write_table(table(300, keys=5))
    s.flush()
    src = KinesisSource(
        stream_name=stream,
        aws=proxy_opts,
        format=Json(schema=SCHEMA),
        poll_interval=0.05,
        shard_discovery_interval=0.2,
    )
    (parent_split,) = src.plan()
    parent = src.open(parent_split)
    first = None
    deadline = time.monotonic() + 30
    while first is None:
        assert time.monotonic() < deadline
        first = parent.read_batch(100, 0.5)
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
    lo, hi = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(
        StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((lo + hi) // 2)
    )
    children = src.discover([parent_split])
    assert len(children) == 2
    assert all(c.params["parents"] == [parent_split.split_id] for c in children)
    child_readers = [src.open(c) for c in children]
    for r in child_readers:
        assert r.read_batch(100, 0.1) is None  # parent not finished: no read at all
    assert not set(proxy.get_records_shards) & {c.split_id for c in children}
    batches = [first]
    deadline = time.monotonic() + 30
    while not parent.snapshot()["closed"]:
        assert time.monotonic() < deadline
        b = parent.read_batch(100, 0.5)
        if b is not None:
            batches.append(b)
    ended_at = len(proxy.get_records_shards)
    for r in child_readers:
        deadline = time.monotonic() + 10
        while r.split.split_id not in proxy.get_records_shards[ended_at:]:
            assert time.monotonic() < deadline
            assert r.read_batch(100, 0.2) is None  # children are empty in moto
    assert_same_rows(pa.Table.from_batches(batches), table(300, keys=5))
    # A parent reopened from its final position is known to be finished at once.
    again = KinesisSource(stream_name=stream, aws=proxy_opts, format=Json(schema=SCHEMA))
    again.plan()
    again.open(parent_split, parent.snapshot())
    assert again._parents_done([parent_split.split_id])


def test_a_put_answer_without_failures_skips_the_per_record_results(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any]
) -> None:
    """RawJsonCall(lean_answer=...): an answer with FailedRecordCount 0 is parsed without its 500
    results; one with failures keeps them all (the partial-failure retry above relies on them)."""
    from arrowflow.connectors.aws.config import AwsConfig, RawJsonCall

    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    client = AwsConfig.coerce(proxy_opts).client("kinesis")
    lean = RawJsonCall(client, "put_records", lean_answer=("FailedRecordCount", "Records"))
    body = json.dumps(
        {"StreamName": stream, "Records": [{"Data": "eA==", "PartitionKey": f"k{i}"} for i in range(20)]}
    ).encode()
    dummy = {"StreamName": stream, "Records": [{"Data": b"", "PartitionKey": "_"}]}
    answer = lean.call(body, **dummy)
    assert (answer["FailedRecordCount"], answer["Records"]) == (0, [])
    full = RawJsonCall(AwsConfig.coerce(proxy_opts).client("kinesis"), "put_records")
    assert len(full.call(body, **dummy)["Records"]) == 20
    proxy.fail_records["PutRecords"] = (1, "ProvisionedThroughputExceededException")
    failing = lean.call(body, **dummy)
    assert failing["FailedRecordCount"] == 7 and len(failing["Records"]) == 20
    # A call with the client's own serialization is not touched either.
    own = client.put_records(StreamName=stream, Records=[{"Data": b"x", "PartitionKey": "a"}])
    assert len(own["Records"]) == 1
    assert len(read_stream(kinesis, stream)) == 20 + 20 + 20 - 7 + 1


def test_clients_share_the_service_models_not_the_credentials(aws_opts: dict[str, Any]) -> None:
    from arrowflow.connectors.aws.config import AwsConfig

    a = AwsConfig.coerce({**aws_opts, "aws_access_key_id": "AKIAONE"}).client("kinesis")
    b = AwsConfig.coerce({**aws_opts, "aws_access_key_id": "AKIATWO"}).client("firehose")
    assert a._loader is b._loader  # the cache of botocore's JSON files, loaded once per process
    assert a._request_signer._credentials.access_key == "AKIAONE"
    assert b._request_signer._credentials.access_key == "AKIATWO"
