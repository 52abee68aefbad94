"""DynamoDB sink + Scan source against moto; UnprocessedItems / throttling injected by the proxy."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from aws_helpers import create_table

from arrowflow._ext.json import encode_rows
from arrowflow.connectors.aws import DynamoDBScanSource, DynamoDBSink
from arrowflow.connectors.aws.attribute_values import to_attribute_values
from arrowflow.connectors.memory import MemorySink
from arrowflow.errors import ConfigurationError
from arrowflow.testing.conformance import assert_same_rows


def av_json(arr: pa.Array, **kw: Any) -> list[bytes]:
    return encode_rows(
        pa.record_batch({"a": to_attribute_values(arr, **kw).values}), nulls="omit"
    ).to_pylist()


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (pa.array([1, None], pa.int8()), [b'{"a":{"N":"1"}}', b'{"a":{"NULL":true}}']),
        (pa.array([2**64 - 1], pa.uint64()), [b'{"a":{"N":"18446744073709551615"}}']),
        (pa.array([0.1, 1e-7], pa.float64()), [b'{"a":{"N":"0.1"}}', b'{"a":{"N":"1e-07"}}']),
        (pa.array([1.5], pa.float32()), [b'{"a":{"N":"1.5"}}']),
        (pa.array([decimal.Decimal("-12.340")], pa.decimal128(10, 3)), [b'{"a":{"N":"-12.340"}}']),
        (pa.array([decimal.Decimal("1" * 40)], pa.decimal256(40, 0)), [b'{"a":{"N":"' + b"1" * 40 + b'"}}']),
        (pa.array(['a"\n'], pa.large_string()), [b'{"a":{"S":"a\\"\\n"}}']),
        (pa.array([b"\x00\xff"], pa.binary()), [b'{"a":{"B":"AP8="}}']),
        (pa.array([b"ab"], pa.binary(2)), [b'{"a":{"B":"YWI="}}']),
        (pa.array([True, None]), [b'{"a":{"BOOL":true}}', b'{"a":{"NULL":true}}']),
        (pa.nulls(1), [b'{"a":{"NULL":true}}']),
        (pa.array([dt.date(2024, 1, 2)]), [b'{"a":{"S":"2024-01-02"}}']),
        (pa.array([1], pa.duration("ms")), [b'{"a":{"N":"1"}}']),
        (pa.array(["x", "x"]).dictionary_encode(), [b'{"a":{"S":"x"}}'] * 2),
        (
            pa.array([[1, None], [], None], pa.list_(pa.int64())),
            [b'{"a":{"L":[{"N":"1"},{"NULL":true}]}}', b'{"a":{"L":[]}}', b'{"a":{"NULL":true}}'],
        ),
        (
            pa.array([{"x": 1, "y": None}, None], pa.struct([("x", pa.int32()), ("y", pa.string())])),
            [b'{"a":{"M":{"x":{"N":"1"},"y":{"NULL":true}}}}', b'{"a":{"NULL":true}}'],
        ),
        (pa.array([[("k", "v")]], pa.map_(pa.string(), pa.string())), [b'{"a":{"M":{"k":{"S":"v"}}}}']),
        (
            pa.array([[[1], [2, 3]]], pa.list_(pa.list_(pa.int16()))),
            [b'{"a":{"L":[{"L":[{"N":"1"}]},{"L":[{"N":"2"},{"N":"3"}]}]}}'],
        ),
    ],
)
def test_attribute_value_mapping(arr: pa.Array, expected: list[bytes]) -> None:
    assert av_json(arr) == expected
    # A slice maps like the same values unsliced.
    if len(arr) > 1:
        assert av_json(arr.slice(1)) == expected[1:]


def test_sets_omitted_nulls_and_invalid_numbers() -> None:
    assert av_json(pa.array([["a", "b"]]), sets=True) == [b'{"a":{"SS":["a","b"]}}']
    assert av_json(pa.array([[1, 2]]), sets=True) == [b'{"a":{"NS":["1","2"]}}']
    assert av_json(pa.array([1, None]), top_level_nulls="omit") == [b'{"a":{"N":"1"}}', b"{}"]
    av = to_attribute_values(pa.array([1.0, math.nan, None, math.inf]))
    assert av.invalid is not None and av.invalid.tolist() == [False, True, False, True]
    nested = to_attribute_values(pa.array([[1.0], [math.nan], None], pa.list_(pa.float64())))
    assert nested.invalid is not None and nested.invalid.tolist() == [False, True, False]


SCHEMA = pa.schema(
    [
        ("pk", pa.string()),
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("d", pa.decimal128(12, 3)),
        ("b", pa.binary()),
        ("flag", pa.bool_()),
        ("tags", pa.list_(pa.string())),
        ("nested", pa.struct([("x", pa.int64()), ("y", pa.list_(pa.float64()))])),
        ("ts", pa.timestamp("ms")),
    ]
)


def typed_table(n: int) -> pa.Table:
    rows = []
    for i in range(n):
        rows.append(
            {
                "pk": f"id-{i}",
                "i": None if i % 7 == 3 else i * 1_000_003 - 2**40,
                "f": None if i % 5 == 1 else i / 3,
                "d": decimal.Decimal(i) / 8,
                "b": None if i % 4 == 0 else bytes([i % 256, 0, 255]),
                "flag": None if i % 6 == 2 else i % 2 == 0,
                "tags": None if i % 3 == 0 else [f"t{i}", "ü"],
                "nested": None if i % 9 == 0 else {"x": i, "y": [0.5, None] if i % 2 else []},
                "ts": dt.datetime(2024, 1, 1) + dt.timedelta(milliseconds=i),
            }
        )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def test_round_trip_every_type_and_parallel_scan(boto: Any, proxy: Any, proxy_opts: dict[str, Any]) -> None:
    ddb = boto("dynamodb")
    name = create_table(ddb)
    data = typed_table(260)
    sink = DynamoDBSink(table_name=name, aws=proxy_opts, key_columns=("pk",))
    for batch in data.to_batches(max_chunksize=100):
        sink.write(batch)
    sink.close()
    bodies = proxy.recorded("DynamoDB_20120810.BatchWriteItem")
    assert max(len(b["RequestItems"][name]) for b in bodies) == 25
    assert sum(len(b["RequestItems"][name]) for b in bodies) == 260
    # Timestamps travel as ISO-8601 S values: read them as strings and compare after a cast.
    read_schema = SCHEMA.set(SCHEMA.get_field_index("ts"), pa.field("ts", pa.string()))
    back = DynamoDBScanSource(name, aws=proxy_opts, segments=3, schema=read_schema, page_size=40).read_all()
    back = back.set_column(
        back.schema.get_field_index("ts"), "ts", pc.cast(back.column("ts"), pa.timestamp("ms"))
    )
    assert_same_rows(back, data)
    # A null top-level attribute is left out of the item (null_attributes="omit").
    item = ddb.get_item(TableName=name, Key={"pk": {"S": "id-3"}})["Item"]
    assert "i" not in item and "tags" not in item and item["pk"] == {"S": "id-3"}
    # Projection and filter.
    few = DynamoDBScanSource(
        name,
        aws=proxy_opts,
        projection=["pk", "i"],
        filter_expression="i < :lim",
        expression_attribute_values={":lim": {"N": str(10 * 1_000_003 - 2**40)}},
    ).read_all()
    assert few.schema.names == ["i", "pk"]
    assert sorted(few.column("pk").to_pylist()) == sorted(f"id-{i}" for i in range(10) if i % 7 != 3)


def test_dedupe_deletes_and_error_policy(boto: Any, aws_opts: dict[str, Any]) -> None:
    ddb = boto("dynamodb")
    name = create_table(ddb, (("pk", "S"), ("sk", "N")))
    dead = MemorySink()
    sink = DynamoDBSink(
        table_name=name, aws=aws_opts, delete_column="gone", error_policy=dead, flush_interval=None
    )
    assert sink.key_columns == ("pk", "sk")  # from DescribeTable
    sink.write(
        pa.record_batch(
            {
                "pk": ["a", "a", "b", "a", "c", None, "d"],
                "sk": [1, 2, 1, 1, 1, 1, 1],
                "v": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, math.nan],
                "gone": [False, False, False, False, None, False, False],
            }
        )
    )
    sink.write(pa.record_batch({"pk": ["b"], "sk": [1], "v": [0.0], "gone": [True]}))
    sink.close()
    # Numbers compared as numbers: float64 travels as its repr ("4.0"), which DynamoDB normalizes
    # (moto stores the text as sent).
    items = {
        (r["pk"]["S"], r["sk"]["N"]): decimal.Decimal(r["v"]["N"]) for r in ddb.scan(TableName=name)["Items"]
    }
    assert items == {("a", "1"): 4, ("a", "2"): 2, ("c", "1"): 5}  # last write of (a,1) won, b deleted
    letters = dead.table()
    assert letters.num_rows == 2
    errors = " ".join(letters.column("error").to_pylist())
    assert "null key attribute" in errors and "NaN" in errors
    with pytest.raises(ConfigurationError):
        DynamoDBSink(table_name=name, max_items_per_request=26)


def test_unprocessed_items_and_throttling_are_retried(
    boto: Any, proxy: Any, proxy_opts: dict[str, Any]
) -> None:
    ddb = boto("dynamodb")
    name = create_table(ddb)
    proxy.unprocessed = 4
    proxy.throttle["BatchWriteItem"] = 2
    data = pa.table({"pk": [f"k{i}" for i in range(200)], "n": list(range(200))})
    sink = DynamoDBSink(
        table_name=name, aws=proxy_opts, initial_backoff=0.01, max_backoff=0.05, max_in_flight=2
    )
    sink.write_table(data)
    sink.close()
    m = sink.metrics()
    assert m["retries"] >= 6 and m["rows_failed"] == 0
    bodies = proxy.recorded("DynamoDB_20120810.BatchWriteItem")
    assert all(len(b["RequestItems"][name]) <= 25 for b in bodies)
    items = []
    kwargs: dict[str, Any] = {"TableName": name}
    while True:
        page = ddb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert sorted(int(i["n"]["N"]) for i in items) == list(range(200))
