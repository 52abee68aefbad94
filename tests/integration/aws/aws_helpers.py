"""Helpers for the AWS suites: credentials for moto and kinesalite, boto3 clients, unique names,
stream/table creation and reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def boto_factory(endpoint: str) -> Callable[[str], Any]:
    """``make(service)``: a boto3 client of ``endpoint`` with the test credentials."""
    import boto3

    def make(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, **CREDS)

    return make


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_stream(kinesis: Any, shards: int = 2) -> str:
    name = unique("af-stream")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    deadline = time.monotonic() + 30
    while (
        kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        != "ACTIVE"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return name


def create_table(dynamodb: Any, key: tuple[tuple[str, str], ...] = (("pk", "S"),)) -> str:
    name = unique("af-table")
    kinds = ("HASH", "RANGE")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": a, "KeyType": kinds[i]} for i, (a, _) in enumerate(key)],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in key],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def read_stream(kinesis: Any, name: str) -> list[dict[str, Any]]:
    """Every record of every shard (TRIM_HORIZON), with its shard id."""
    out = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            r = kinesis.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                out.append({**rec, "ShardId": shard["ShardId"]})
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out
