"""DynamoDB Streams source against moto: changes written with DynamoDBSink, read back as Arrow rows.

The sinks here write with ``max_in_flight=1``: moto's ``StreamShard.add`` numbers records with
``len(items) + start`` without a lock, so concurrent BatchWriteItem requests can give two change
records the same sequence number (real DynamoDB Streams cannot).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from aws_helpers import unique
from test_dynamodb import SCHEMA, typed_table

from arrowflow import Pipeline
from arrowflow.connectors.aws import DynamoDBSink, DynamoDBStreamsSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConfigurationError
from arrowflow.source import SplitReader
from arrowflow.testing.conformance import assert_same_rows

# Timestamps travel as ISO-8601 S values: the stream is read with them as strings.
READ_SCHEMA = SCHEMA.set(SCHEMA.get_field_index("ts"), pa.field("ts", pa.string()))


def create_stream_table(ddb: Any, view: str = "NEW_AND_OLD_IMAGES") -> tuple[str, str]:
    name = unique("af-streamed")
    desc = ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    return name, desc["TableDescription"]["LatestStreamArn"]


def drain(
    readers: list[SplitReader], expected: int, max_rows: int = 1000, deadline: float = 30.0
) -> pa.Table:
    """Read until ``expected`` rows arrived, then a few more polls to catch extra rows."""
    batches: list[pa.RecordBatch] = []
    total = 0
    end = time.monotonic() + deadline
    extra_polls = 3
    while extra_polls:
        assert time.monotonic() < end, f"only {total} of {expected} change records arrived"
        for r in readers:
            b = r.read_batch(max_rows, 0.5)
            if b is not None and b.num_rows:
                batches.append(b)
                total += b.num_rows
        if total >= expected:
            extra_polls -= 1
    return pa.Table.from_batches(batches)


def iso_ts(table: pa.Table) -> pa.Table:
    iso = pc.strftime(table.column("ts"), format="%Y-%m-%dT%H:%M:%S")
    return table.set_column(table.schema.get_field_index("ts"), "ts", iso)


def test_inserts_modifies_removes_every_type(boto: Any, aws_opts: dict[str, Any]) -> None:
    ddb = boto("dynamodb")
    name, arn = create_stream_table(ddb)
    data = typed_table(120)
    sink = DynamoDBSink(table_name=name, aws=aws_opts, key_columns=("pk",), max_in_flight=1)
    for batch in data.to_batches(max_chunksize=50):
        sink.write(batch)
    sink.flush()
    # Update the first 10 items (i doubled), then delete items 10..14.
    changed = data.slice(0, 10)
    changed = changed.set_column(1, "i", pc.multiply(changed.column("i"), 2))
    sink.write_table(changed)
    sink.flush()
    sink.close()
    deleter = DynamoDBSink(table_name=name, aws=aws_opts, key_columns=("pk",), delete_column="gone")
    deleter.write_table(pa.table({"pk": [f"id-{i}" for i in range(10, 15)], "gone": [True] * 5}))
    deleter.close()

    source = DynamoDBStreamsSource(table_name=name, aws=aws_opts, schema=READ_SCHEMA)
    assert source.key_columns == ("pk",)
    splits = source.plan()
    assert splits and all(s.params["stream_arn"] == arn for s in splits)
    json.dumps([s.to_json() for s in splits])
    readers = [source.open(s) for s in splits]
    table = drain(readers, 135)
    assert table.schema == source.schema
    assert table.num_rows == 135
    seqs = table.column("sequence_number").to_pylist()
    assert len(set(seqs)) == 135
    assert pc.all(pc.is_valid(table.column("approximate_creation_time"))).as_py()
    names = table.column("event_name").to_pylist()
    assert names.count("INSERT") == 120 and names.count("MODIFY") == 10 and names.count("REMOVE") == 5

    expected = iso_ts(data)
    inserts = table.filter(pc.equal(table.column("event_name"), "INSERT"))
    assert inserts.column("old_image").null_count == 120
    assert_same_rows(pa.Table.from_struct_array(inserts.column("new_image")), expected)
    # (Requests in flight concurrently: the stream order is the order moto applied them.)
    pks = inserts.column("new_image").combine_chunks().field("pk").to_pylist()
    assert inserts.column("keys").to_pylist() == [{"pk": p} for p in pks]

    modifies = table.filter(pc.equal(table.column("event_name"), "MODIFY"))
    assert_same_rows(pa.Table.from_struct_array(modifies.column("old_image")), expected.slice(0, 10))
    assert_same_rows(pa.Table.from_struct_array(modifies.column("new_image")), iso_ts(changed))

    removes = table.filter(pc.equal(table.column("event_name"), "REMOVE"))
    assert removes.column("new_image").null_count == 5
    assert_same_rows(pa.Table.from_struct_array(removes.column("old_image")), expected.slice(10, 5))
    assert sorted(r["pk"] for r in removes.column("keys").to_pylist()) == [f"id-{i}" for i in range(10, 15)]


def test_resume_from_saved_position_and_latest(boto: Any, aws_opts: dict[str, Any]) -> None:
    ddb = boto("dynamodb")
    name, arn = create_stream_table(ddb, view="NEW_IMAGE")
    sink = DynamoDBSink(table_name=name, aws=aws_opts, key_columns=("pk",), max_in_flight=1)
    sink.write_table(pa.table({"pk": [f"k{i:03d}" for i in range(100)], "n": list(range(100))}))
    sink.close()
    source = DynamoDBStreamsSource(
        stream_arn=arn, aws=aws_opts, metadata_columns=["_shard_id", "_size_bytes"], poll_interval=0.05
    )
    (split,) = source.plan()
    reader = source.open(split)
    got = None
    for _ in range(60):
        got = reader.read_batch(30, 0.5)
        if got is not None:
            break
    assert got is not None
    first = pa.Table.from_batches([got])
    assert first.num_rows == 30
    assert first.column("_shard_id").to_pylist() == [split.split_id] * 30
    assert pc.all(pc.greater(first.column("_size_bytes"), 0)).as_py()
    saved = json.loads(json.dumps(reader.snapshot()))
    assert saved == {"sequence_number": first.column("sequence_number")[-1].as_py(), "closed": False}
    # LATEST: a reader opened now sees only what is written after it.
    latest = DynamoDBStreamsSource(stream_arn=arn, aws=aws_opts, start_position="LATEST", poll_interval=0.05)
    latest_reader = latest.open(latest.plan()[0])
    assert latest_reader.read_batch(100, 0.5) is None  # fetches the iterator at the current end
    sink = DynamoDBSink(table_name=name, aws=aws_opts, key_columns=("pk",))
    sink.write_table(pa.table({"pk": ["late"], "n": [1000]}))
    sink.close()
    # A new source resumed from the saved position continues right after it: no overlap, no gap.
    again = DynamoDBStreamsSource(stream_arn=arn, aws=aws_opts, poll_interval=0.05)
    rest = drain([again.open(again.plan()[0], saved)], 71)
    got = first.column("new_image").to_pylist() + rest.column("new_image").to_pylist()
    assert [r["pk"] for r in got] == [f"k{i:03d}" for i in range(100)] + ["late"]
    assert [r["n"] for r in got] == [*range(100), 1000]
    late = drain([latest_reader], 1)
    assert late.column("keys").to_pylist() == [{"pk": "late"}]
    assert late.column("old_image").null_count == 1  # NEW_IMAGE view: no old image


def test_throttled_get_records_back_off_and_pipeline(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any], tmp_path: Any
) -> None:
    ddb = boto("dynamodb")
    name, _ = create_stream_table(ddb)
    sink = DynamoDBSink(table_name=name, aws=proxy_opts, key_columns=("pk",), max_in_flight=1)
    sink.write_table(pa.table({"pk": [f"r{i}" for i in range(300)], "n": list(range(300))}))
    sink.close()
    proxy.throttle["GetRecords"] = 3
    source = DynamoDBStreamsSource(
        table_name=name,
        aws=proxy_opts,
        schema=pa.schema([("pk", pa.string()), ("n", pa.int64())]),
        poll_interval=0.05,
        min_call_interval=0.01,
        initial_backoff=0.01,
        max_backoff=0.05,
    )
    out = MemorySink()
    result = (
        Pipeline(source)
        .to(out)
        .run(max_rows=300, checkpoint_dir=str(tmp_path / "cp"), progress=False, max_batch_rows=64)
    )
    assert result is not None
    table = out.table()
    assert table.num_rows == 300
    assert sorted(table.column("new_image").combine_chunks().field("n").to_pylist()) == list(range(300))
    calls = proxy.recorded("DynamoDBStreams_20120810.GetRecords")
    assert len(calls) >= 3 + 300 // 64 and all(c["Limit"] <= 64 for c in calls)


def test_configuration_is_validated(boto: Any, aws_opts: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as e:
        DynamoDBStreamsSource(aws=aws_opts)
    assert e.value.option == "stream_arn"
    with pytest.raises(ConfigurationError) as e:
        DynamoDBStreamsSource(table_name="t", start_position="AT_TIMESTAMP")
    assert e.value.option == "start_position"
    with pytest.raises(ConfigurationError) as e:
        DynamoDBStreamsSource(table_name="t", max_records_per_call=1001)
    assert e.value.option == "max_records_per_call"
    with pytest.raises(ConfigurationError) as e:
        DynamoDBStreamsSource(table_name="t", schema=pa.schema([("a", pa.int64())]), key_columns=["pk"])
    assert e.value.option == "key_columns"
    # A table without a stream fails when the source plans, naming the option.
    ddb = boto("dynamodb")
    plain = unique("af-plain")
    ddb.create_table(
        TableName=plain,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError) as e:
        DynamoDBStreamsSource(table_name=plain, aws=aws_opts).plan()
    assert e.value.option == "table_name"
