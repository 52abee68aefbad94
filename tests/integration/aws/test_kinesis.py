"""Kinesis sink and source against kinesalite (tests/services/kinesalite.sh), with failures injected by
the fault proxy.

kinesalite, unlike moto, keeps every record of concurrent PutRecords into one shard and closes a split
shard (its children take the writes), so the sinks here run with their default requests in flight and
every read-back is checked against the full expected id set: no loss, no duplicate.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from aws_fault_proxy import FaultProxy
from aws_helpers import CREDS, boto_factory, create_stream, read_stream

from arrowflow.connectors.aws import KinesisSink, KinesisSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json, Raw
from arrowflow.testing.conformance import assert_same_rows

SCHEMA = pa.schema([("id", pa.int64()), ("key", pa.string()), ("v", pa.string())])


# The AWS suites' fixtures (tests/integration/aws/conftest.py) point at moto; this module's point at
# kinesalite instead, under the same names.
@pytest.fixture
def aws_opts(kinesalite_endpoint: str) -> dict[str, Any]:
    """boto3 options for kinesalite itself."""
    return {**CREDS, "endpoint_url": kinesalite_endpoint}


@pytest.fixture
def proxy(kinesalite_endpoint: str) -> Iterator[FaultProxy]:
    p = FaultProxy(kinesalite_endpoint)
    yield p
    p.close()


@pytest.fixture
def boto(kinesalite_endpoint: str) -> Callable[[str], Any]:
    return boto_factory(kinesalite_endpoint)


def table(n: int, start: int = 0, keys: int = 17) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {"id": ids, "key": [f"k{i % keys}" for i in ids], "v": [f"value-{i}-ü" for i in ids]}, schema=SCHEMA
    )


def sink(opts: dict[str, Any], stream: str, **kw: Any) -> KinesisSink:
    kw.setdefault("initial_backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    return KinesisSink(stream_name=stream, partition_key_column="key", aws=opts, **kw)


def source(opts: dict[str, Any], stream: str, **kw: Any) -> KinesisSource:
    """A JSON KinesisSource of ``SCHEMA`` that polls quickly (kinesalite has no call rate limit)."""
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("min_call_interval", 0.01)
    return KinesisSource(stream_name=stream, aws=opts, format=Json(schema=SCHEMA), **kw)


def read_all(opts: dict[str, Any], stream: str, expected: int, **kw: Any) -> pa.Table:
    src = source(opts, stream, **kw)
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
    # Requests in flight arrive in any order.
    assert sorted(len(r["Records"]) for r in requests) == [345, 500, 500, 500, 500]
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
    # One request at a time, so that the proxy's "next 3 requests" are the three first ones and the
    # retry's size is known (the concurrent case is the next test).
    s = sink(proxy_opts, stream, max_in_flight=1)
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


def test_concurrent_requests_with_failures_deliver_every_record_once(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any]
) -> None:
    """4 requests in flight into 3 shards, with partial failures and whole-request throttling
    injected: every id lands exactly once (moto lost records put concurrently into one shard)."""
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=3)
    proxy.fail_records["PutRecords"] = (6, "ProvisionedThroughputExceededException")
    proxy.throttle["PutRecords"] = 4
    data = table(12_000, keys=101)
    s = sink(proxy_opts, stream, max_in_flight=4)
    for batch in data.to_batches(max_chunksize=1000):
        s.write(batch)
    s.close()
    records = read_stream(kinesis, stream)
    ids = Counter(json.loads(r["Data"])["id"] for r in records)
    assert set(ids) == set(range(data.num_rows)), f"{data.num_rows - len(ids)} ids lost"
    assert max(ids.values()) == 1, f"{sum(ids.values()) - len(ids)} duplicates"
    assert len({r["ShardId"] for r in records}) == 3
    m = s.metrics()
    assert m["rows_written"] == data.num_rows and m["rows_failed"] == 0
    assert m["retries"] >= 10  # 6 partial failures, 4 throttled requests
    assert len(proxy.recorded("Kinesis_20131202.PutRecords")) > 24  # 24 requests of 500 + retries


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
    s = KinesisSink(stream_name=stream, partition_key_column="key", aws=aws_opts, error_policy="skip")
    s.write(pa.record_batch({"id": [1, 2, 3], "key": ["a", None, ""]}))
    s.close()
    assert s.error_policy.skipped == 2
    s = KinesisSink(
        stream_name=stream,
        partition_key=lambda b: pa.compute.cast(b.column("id"), pa.string()),
        explicit_hash_key_column="h",
        format=Raw(column="v"),
        aws=aws_opts,
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


def split_the_shard(kinesis: Any, stream: str) -> tuple[str, list[str]]:
    """SplitShard of a 1-shard stream at the middle of its hash range; waits until the parent is
    closed and both children are listed. Returns the parent id and the children's ids."""
    (shard,) = kinesis.list_shards(StreamName=stream)["Shards"]
    lo, hi = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(
        StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((lo + hi) // 2)
    )
    deadline = time.monotonic() + 30
    while True:
        shards = kinesis.list_shards(StreamName=stream)["Shards"]
        children = [s["ShardId"] for s in shards if s.get("ParentShardId") == shard["ShardId"]]
        if len(children) == 2 and shards[0]["SequenceNumberRange"].get("EndingSequenceNumber"):
            return shard["ShardId"], children
        assert time.monotonic() < deadline, shards
        time.sleep(0.05)


def assert_in_order_per_key(batches: list[pa.RecordBatch]) -> None:
    """The ids of every partition key, in the order read, increase (they were written in id order):
    a child read before its parent's end would return a key's later ids first."""
    last: dict[str, int] = {}
    for b in batches:
        for i, k in zip(b.column("id").to_pylist(), b.column("key").to_pylist(), strict=True):
            assert i > last.get(k, -1), f"key {k}: id {i} read after id {last[k]}"
            last[k] = i


def test_source_reads_parents_before_children_after_resharding(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any], aws_opts: dict[str, Any]
) -> None:
    """A shard split while a reader reads it: the children (found by discovery) are not read before
    the parent's iterator ended; the writes after the split land in the children and are read
    after; every id exactly once, each key's ids in order."""
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    s = sink(aws_opts, stream)
    s.write_table(table(300, keys=50))
    s.flush()
    src = source(proxy_opts, stream, shard_discovery_interval=0.2)
    (parent_split,) = src.plan()
    parent = src.open(parent_split)
    first = None
    deadline = time.monotonic() + 30
    while first is None:
        assert time.monotonic() < deadline
        first = parent.read_batch(100, 0.5)
    parent_id, child_ids = split_the_shard(kinesis, stream)
    assert parent_id == parent_split.split_id
    s.write_table(table(300, start=300, keys=50))  # into the children: the parent is closed
    s.close()
    per_shard = Counter(r["ShardId"] for r in read_stream(kinesis, stream))
    assert per_shard[parent_id] == 300 and all(per_shard[c] > 0 for c in child_ids), per_shard
    children = src.discover([parent_split])
    assert sorted(c.split_id for c in children) == sorted(child_ids)
    assert all(c.params["parents"] == [parent_split.split_id] for c in children)
    child_readers = [src.open(c) for c in children]
    for r in child_readers:
        assert r.read_batch(100, 0.1) is None  # parent not finished: no read at all
    assert not set(proxy.get_records_shards) & set(child_ids)
    batches = [first]
    deadline = time.monotonic() + 30
    while not parent.snapshot()["closed"]:
        assert time.monotonic() < deadline
        b = parent.read_batch(100, 0.5)
        if b is not None:
            batches.append(b)
    ended_at = len(proxy.get_records_shards)
    assert not set(proxy.get_records_shards[:ended_at]) & set(child_ids)
    deadline = time.monotonic() + 30
    while sum(b.num_rows for b in batches) < 600:
        assert time.monotonic() < deadline
        for r in child_readers:
            b = r.read_batch(100, 0.2)
            if b is not None:
                batches.append(b)
    for r in child_readers:  # nothing more, however often asked
        for _ in range(3):
            assert r.read_batch(100, 0.1) is None
    assert set(proxy.get_records_shards[ended_at:]) == set(child_ids)
    assert_same_rows(pa.Table.from_batches(batches), table(600, keys=50))
    # The source's own loop (plan, round robin over the three shards, 50 rows per call) over the
    # split stream: the parent's 300 records need 6 calls, the children's could come first.
    looped = list(source(aws_opts, stream).batches(max_rows=50, timeout=0.5, idle_timeout=2.0))
    assert_same_rows(pa.Table.from_batches(looped), table(600, keys=50))
    assert_in_order_per_key(looped)
    # A parent reopened from its final position is known to be finished at once.
    again = source(proxy_opts, stream)
    again.plan()
    again.open(parent_split, parent.snapshot())
    assert again._parents_done([parent_split.split_id])


def test_source_reads_both_parents_before_a_merged_child(boto: Any, aws_opts: dict[str, Any]) -> None:
    """MergeShards: the child has two parents (ParentShardId, AdjacentParentShardId) and is read only
    after both ended. The adjacent parent holds 4x the records of the other (explicit hash keys), so
    a child gated on one parent only would be read while the other still has records."""
    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=2)
    small, large = kinesis.list_shards(StreamName=stream)["Shards"]
    to_small, to_large = small["HashKeyRange"]["StartingHashKey"], large["HashKeyRange"]["StartingHashKey"]

    def routed(n: int, start: int) -> pa.Table:
        # keys k0..k9 into the first shard (and later the child), k10..k49 into the second
        t = table(n, start=start, keys=50)
        first = pc.less(pc.cast(pc.utf8_slice_codeunits(t.column("key"), 1), pa.int64()), 10)
        return t.append_column("h", pc.if_else(first, to_small, to_large))

    s = KinesisSink(
        stream_name=stream,
        partition_key_column="key",
        explicit_hash_key_column="h",
        format=Json(columns=SCHEMA.names),
        aws=aws_opts,
    )
    s.write_table(routed(300, 0))
    s.flush()
    per_shard = Counter(r["ShardId"] for r in read_stream(kinesis, stream))
    assert per_shard == {small["ShardId"]: 60, large["ShardId"]: 240}
    kinesis.merge_shards(
        StreamName=stream, ShardToMerge=small["ShardId"], AdjacentShardToMerge=large["ShardId"]
    )
    deadline = time.monotonic() + 30
    while len(shards := kinesis.list_shards(StreamName=stream)["Shards"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = shards[2]
    assert (child["ParentShardId"], child["AdjacentParentShardId"]) == (small["ShardId"], large["ShardId"])
    s.write_table(routed(300, 300))
    s.close()
    assert Counter(r["ShardId"] for r in read_stream(kinesis, stream))[child["ShardId"]] == 300
    src = source(aws_opts, stream)
    splits = {sp.split_id: sp for sp in src.plan()}
    assert splits[child["ShardId"]].params["parents"] == [small["ShardId"], large["ShardId"]]
    looped = list(src.batches(max_rows=20, timeout=0.5, idle_timeout=2.0))
    assert_same_rows(pa.Table.from_batches(looped), table(600, keys=50))
    assert_in_order_per_key(looped)


def test_pipeline_checkpoints_every_shard_across_a_reshard(
    boto: Any, aws_opts: dict[str, Any], tmp_path: Any
) -> None:
    """A pipeline over a split stream checkpoints one position per shard (the parent closed at its
    last record, each child at its last); resumed from that checkpoint, it reads only what was
    written since. Both runs together: every id exactly once."""
    from arrowflow import Pipeline
    from arrowflow.pipeline.checkpoint import CheckpointStore

    kinesis = boto("kinesis")
    stream = create_stream(kinesis, shards=1)
    s = sink(aws_opts, stream)
    s.write_table(table(300, keys=50))
    s.flush()
    parent_id, child_ids = split_the_shard(kinesis, stream)
    s.write_table(table(300, start=300, keys=50))
    s.flush()

    def run(rows: int) -> pa.Table:
        out = MemorySink()
        Pipeline(source(aws_opts, stream)).to(out).run(
            checkpoint_dir=tmp_path / "cp", checkpoint_interval=0.2, max_rows=rows, progress=False
        )
        return out.table()

    first = run(600)
    assert_same_rows(first, table(600, keys=50))
    last_seq: dict[str, str] = {}
    for r in read_stream(kinesis, stream):
        last_seq[r["ShardId"]] = r["SequenceNumber"]
    checkpoint = CheckpointStore(tmp_path / "cp").load()
    assert checkpoint is not None
    assert checkpoint.positions == {
        parent_id: {"sequence_number": last_seq[parent_id], "closed": True},
        **{c: {"sequence_number": last_seq[c], "closed": False} for c in child_ids},
    }
    s.write_table(table(100, start=600, keys=50))
    s.close()
    second = run(100)
    assert_same_rows(second, table(100, start=600, keys=50))
    ids = Counter(first.column("id").to_pylist() + second.column("id").to_pylist())
    assert ids == Counter(range(700))


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
