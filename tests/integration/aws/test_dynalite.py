"""DynamoDB sink -> Scan source through dynalite, the server of the ``aws-dynamodb-sink-dynalite``
benchmark: checks it is DynamoDB-compatible for what arrowflow uses.

dynalite is stricter than moto where real DynamoDB is strict (it refuses more than 25 items or a
repeated key in one BatchWriteItem, and empty sets) and normalizes numbers as DynamoDB does
("4.0" is stored as "4"), so these tests also exercise the sink's dedupe and its validation-error path
against a server that enforces them.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from aws_helpers import CREDS, create_table

from arrowflow.connectors.aws import DynamoDBScanSource, DynamoDBSink
from arrowflow.connectors.memory import MemorySink
from arrowflow.testing.conformance import assert_same_rows

SCHEMA = pa.schema(
    [
        ("pk", pa.string()),
        ("sk", pa.int64()),
        ("f", pa.float64()),
        ("d", pa.decimal128(12, 3)),
        ("s", pa.string()),
        ("b", pa.binary()),
        ("flag", pa.bool_()),
        ("tags", pa.list_(pa.string())),
        ("nested", pa.struct([("x", pa.int64()), ("y", pa.list_(pa.float64()))])),
        ("ts", pa.timestamp("us")),
    ]
)


def row(i: int, version: int) -> dict[str, Any]:
    return {
        "pk": f"p{i % 37}",
        "sk": i,
        "f": None if i % 5 == 1 else i / 3 + version,
        "d": decimal.Decimal(i) / 8,
        "s": "" if i % 11 == 0 else f"s{i}-ü",  # empty non-key strings are allowed (as in DynamoDB)
        "b": None if i % 4 == 0 else bytes([i % 256, 0, 255]),
        "flag": None if i % 6 == 2 else i % 2 == 0,
        "tags": None if i % 3 == 0 else [f"t{i}", "x"],
        "nested": None if i % 9 == 0 else {"x": i, "y": [0.5, None] if i % 2 else []},
        "ts": dt.datetime(2024, 1, 1) + dt.timedelta(microseconds=7 * i),
    }


@pytest.fixture
def ddb_opts(dynalite_endpoint: str) -> dict[str, Any]:
    return {**CREDS, "endpoint_url": dynalite_endpoint}


@pytest.fixture
def ddb(ddb_opts: dict[str, Any]) -> Any:
    import boto3

    return boto3.client("dynamodb", **ddb_opts)


def test_sink_to_scan_round_trip_with_dedupe_and_deletes(ddb: Any, ddb_opts: dict[str, Any]) -> None:
    name = create_table(ddb, (("pk", "S"), ("sk", "N")))
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    # Every 4th key is written again right after its first write (so mostly inside the same request,
    # which dynalite, like DynamoDB, refuses: the sink keeps the last), every 20th is then deleted.
    rows = []
    for i in range(300):
        rows.append({**row(i, 0), "gone": False})
        if i % 4 == 0:
            rows.append({**row(i, 1), "gone": i % 20 == 0})
    schema = SCHEMA.append(pa.field("gone", pa.bool_()))
    data = pa.Table.from_pylist(rows, schema=schema)
    sink = DynamoDBSink(table_name=name, aws=ddb_opts, delete_column="gone", max_in_flight=1)
    for batch in data.to_batches(max_chunksize=160):
        sink.write(batch)
    sink.close()
    assert sink.key_columns == ("pk", "sk")  # DescribeTable
    assert sink.metrics()["rows_failed"] == 0

    latest = {i: row(i, 0) for i in range(300)}
    for i in range(0, 300, 4):
        if i % 20 == 0:
            del latest[i]
        else:
            latest[i] = row(i, 1)
    expected = pa.Table.from_pylist(list(latest.values()), schema=SCHEMA)
    # Timestamps travel as ISO-8601 S values: read them as strings and cast back.
    read_schema = SCHEMA.set(SCHEMA.get_field_index("ts"), pa.field("ts", pa.string()))
    back = DynamoDBScanSource(name, aws=ddb_opts, segments=2, schema=read_schema, page_size=50).read_all()
    back = back.set_column(
        back.schema.get_field_index("ts"), "ts", pc.cast(back.column("ts"), pa.timestamp("us"))
    )
    assert_same_rows(back, expected)
    # Numbers are stored normalized, as DynamoDB does (the sink sends the decimal as "0.000").
    item = ddb.get_item(TableName=name, Key={"pk": {"S": "p0"}, "sk": {"N": "0"}})
    assert "Item" not in item  # deleted
    item = ddb.get_item(TableName=name, Key={"pk": {"S": "p8"}, "sk": {"N": "8"}})["Item"]
    assert item["d"] == {"N": "1"} and item["s"] == {"S": "s8-ü"} and "b" not in item


def test_validation_error_fails_the_request_rows_to_the_error_policy(
    ddb: Any, ddb_opts: dict[str, Any]
) -> None:
    name = create_table(ddb)
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    dead = MemorySink()
    sink = DynamoDBSink(
        table_name=name,
        aws=ddb_opts,
        key_columns=("pk",),
        set_columns=("tags",),
        error_policy=dead,
        flush_interval=None,
        max_items_per_request=2,
        max_in_flight=1,
    )
    # Requests of 2 items: [a, b] holds an empty string set (refused), [c] is fine.
    sink.write(pa.record_batch({"pk": ["a", "b", "c"], "tags": [["x"], [], ["y", "z"]]}))
    sink.close()
    letters = dead.table()
    assert sorted(letters.column("pk").to_pylist()) == ["a", "b"]
    assert all("may not be empty" in e for e in letters.column("error").to_pylist())
    items = ddb.scan(TableName=name)["Items"]
    assert [(i["pk"]["S"], sorted(i["tags"]["SS"])) for i in items] == [("c", ["y", "z"])]
