"""Firehose sink against moto (DirectPut -> S3), with partial failures injected by the proxy."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from aws_helpers import unique

from arrowflow.connectors.aws import FirehoseSink
from arrowflow.connectors.memory import MemorySink


def make_stream(boto: Any) -> tuple[str, str]:
    s3, fh = boto("s3"), boto("firehose")
    bucket = unique("af-bucket")
    s3.create_bucket(Bucket=bucket)
    name = unique("af-fh")
    fh.create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{bucket}",
        },
    )
    return name, bucket


def s3_lines(boto: Any, bucket: str) -> list[dict[str, Any]]:
    s3 = boto("s3")
    out = []
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        out += [json.loads(line) for line in body.splitlines() if line]
    return out


def test_round_trip_limits_and_partial_failures(boto: Any, proxy: Any, proxy_opts: dict[str, Any]) -> None:
    name, bucket = make_stream(boto)
    proxy.fail_records["PutRecordBatch"] = (2, "ServiceUnavailableException")
    data = pa.table({"id": list(range(1100)), "s": ["x" * 100] * 1100})
    sink = FirehoseSink(
        delivery_stream_name=name, aws=proxy_opts, initial_backoff=0.01, max_backoff=0.05, max_in_flight=1
    )
    sink.write_table(data)
    sink.close()
    bodies = proxy.recorded("Firehose_20150804.PutRecordBatch")
    assert len(bodies[0]["Records"]) == 500 and len(bodies[1]["Records"]) == 167  # retry: failed only
    assert all(len(b["Records"]) <= 500 for b in bodies)
    assert sink.metrics()["rows_written"] == 1100
    lines = s3_lines(boto, bucket)
    assert sorted(r["id"] for r in lines) == list(range(1100))  # newline-delimited, none lost or doubled


def test_record_and_request_byte_limits(boto: Any, proxy: Any, proxy_opts: dict[str, Any]) -> None:
    name, bucket = make_stream(boto)
    dead = MemorySink()
    rows = pa.table({"id": list(range(12)), "s": ["y" * (900 * 1024)] * 11 + ["z" * (1000 * 1024)]})
    sink = FirehoseSink(delivery_stream_name=name, aws=proxy_opts, error_policy=dead, max_in_flight=1)
    sink.write_table(rows)
    sink.close()
    assert dead.table().column("id").to_pylist() == [11]
    import base64

    for body in proxy.recorded("Firehose_20150804.PutRecordBatch"):
        assert sum(len(base64.b64decode(r["Data"])) for r in body["Records"]) <= 4 * 1024 * 1024
    assert sorted(r["id"] for r in s3_lines(boto, bucket)) == list(range(11))
