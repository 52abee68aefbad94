"""The conformance suite over the AWS connectors: DynamoDB against the moto server on
127.0.0.1:$AWS_PORT (5000), Kinesis against kinesalite on 127.0.0.1:$KINESALITE_PORT (4568; moto loses
records put concurrently into one shard, so the Kinesis sinks here run with their default requests in
flight).

* DynamoDB sink: the deterministic table keyed by ``id``, read back with a parallel Scan; the bad
  batch holds NaN in ``value`` (no DynamoDB number form), so every row goes to the error policy.
* DynamoDB Scan source: a table loaded through the sink, 3 segments.
* DynamoDB Streams source: a stream-enabled table loaded through the sink; the rows compared are
  ``event_name`` (INSERT), ``keys`` and ``new_image`` (the data) and ``old_image`` (null).
* Kinesis sink: read back from every shard and decoded as JSON; the bad batch has null partition keys.
* Kinesis source: a 2-shard stream loaded through the sink (unbounded splits, TRIM_HORIZON).
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arrowflow.connectors.aws import (
    DynamoDBScanSource,
    DynamoDBSink,
    DynamoDBStreamsSource,
    KinesisSink,
    KinesisSource,
)
from arrowflow.formats import Json
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "aws"))
from aws_helpers import CREDS, create_stream, create_table, read_stream

ENDPOINT = f"http://127.0.0.1:{os.environ.get('AWS_PORT', '5000')}"
OPTS = {**CREDS, "endpoint_url": ENDPOINT}
KINESIS_PORT = int(os.environ.get("KINESALITE_PORT", "4568"))
KINESIS_ENDPOINT = f"http://127.0.0.1:{KINESIS_PORT}"
KINESIS_OPTS = {**CREDS, "endpoint_url": KINESIS_ENDPOINT}
SCHEMA = make_table(1).schema
# DynamoDB stores the timestamp as an ISO-8601 string.
READ_SCHEMA = SCHEMA.set(SCHEMA.get_field_index("ts"), pa.field("ts", pa.string()))


def _client(service: str) -> Any:
    """A boto3 client of moto, or of kinesalite for ``kinesis``; fails the test if it does not answer."""
    if service == "kinesis":
        server, port, endpoint = "kinesalite", KINESIS_PORT, KINESIS_ENDPOINT
    else:
        server, port, endpoint = "aws", int(os.environ.get("AWS_PORT", "5000")), ENDPOINT
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        pytest.fail(
            f"{server} is not answering on {endpoint}: start it with `sh tests/services/up.sh {server}`"
        )
    import boto3

    return boto3.client(service, endpoint_url=endpoint, **CREDS)


def _fix_ts(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("ts")
    return table.set_column(i, "ts", pc.cast(table.column("ts"), pa.timestamp("us")))


class TestDynamoDBSinkConformance(SinkConformance):
    num_rows = 300

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.table = create_table(_client("dynamodb"), (("id", "N"),))
        return DynamoDBSink(
            table_name=self.table, aws=OPTS, error_policy=error_policy, null_attributes="null"
        )

    def read_back(self) -> pa.Table:
        return _fix_ts(DynamoDBScanSource(self.table, aws=OPTS, schema=READ_SCHEMA, segments=2).read_all())

    def bad_batch(self) -> pa.RecordBatch:
        return make_table(5).to_batches()[0].set_column(1, "value", pa.array([float("nan")] * 5))


class TestDynamoDBScanConformance(SourceConformance):
    num_rows = 300
    ordered_per_split = False

    def make_source(self, data: pa.Table) -> Source:
        table = create_table(_client("dynamodb"), (("id", "N"),))
        sink = DynamoDBSink(table_name=table, aws=OPTS)
        sink.write_table(data)
        sink.close()
        return DynamoDBScanSource(table, aws=OPTS, schema=READ_SCHEMA, segments=3, page_size=50)

    def expected_table(self, data: pa.Table) -> pa.Table:
        iso = pc.strftime(data.column("ts"), format="%Y-%m-%dT%H:%M:%S")
        return data.set_column(data.schema.get_field_index("ts"), "ts", iso)


class TestDynamoDBStreamsConformance(SourceConformance):
    num_rows = 300
    read_timeout = 0.5
    settle_time = 1.0

    def make_source(self, data: pa.Table) -> Source:
        # One table per test, as for Kinesis: a restarted source reads the stream of its positions.
        if "_table" not in self.__dict__:
            self._table = self._write(data)
        return DynamoDBStreamsSource(table_name=self._table, aws=OPTS, schema=READ_SCHEMA, poll_interval=0.05)

    def _write(self, data: pa.Table) -> str:
        ddb = _client("dynamodb")
        table = f"af-conf-streams-{uuid.uuid4().hex[:8]}"
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        sink = DynamoDBSink(table_name=table, aws=OPTS, max_in_flight=1)  # in order: one request at a time
        sink.write_table(data)
        sink.close()
        return table

    def expected_table(self, data: pa.Table) -> pa.Table:
        iso = pc.strftime(data.column("ts"), format="%Y-%m-%dT%H:%M:%S")
        items = data.set_column(data.schema.get_field_index("ts"), "ts", iso).combine_chunks()
        images = pa.StructArray.from_arrays([c.chunk(0) for c in items.columns], fields=list(READ_SCHEMA))
        n = data.num_rows
        return pa.table(
            {
                "event_name": pa.array(["INSERT"] * n),
                "keys": pa.StructArray.from_arrays([items.column("id").chunk(0)], names=["id"]),
                "new_image": images,
                "old_image": pa.nulls(n, images.type),
            }
        )


class TestKinesisSinkConformance(SinkConformance):
    num_rows = 300

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.stream = create_stream(_client("kinesis"), shards=2)
        return KinesisSink(
            stream_name=self.stream,
            partition_key_column="name",
            aws=KINESIS_OPTS,
            error_policy=error_policy,
        )

    def read_back(self) -> pa.Table:
        records = read_stream(_client("kinesis"), self.stream)
        payloads = pa.array([r["Data"] for r in records], pa.binary())
        return _fix_ts(pa.Table.from_batches([Json(schema=READ_SCHEMA).decode(payloads).batch]))

    def bad_batch(self) -> pa.RecordBatch:
        return make_table(5).to_batches()[0].set_column(2, "name", pa.nulls(5, pa.string()))


class TestKinesisSourceConformance(SourceConformance):
    num_rows = 300
    read_timeout = 0.5
    settle_time = 1.0

    def make_source(self, data: pa.Table) -> Source:
        # One stream per test: a restarted source (the kit calls this again) must read the stream its
        # positions came from; sequence numbers of another stream only line up by chance.
        if "_stream" not in self.__dict__:
            self._stream = create_stream(_client("kinesis"), shards=2)
            sink = KinesisSink(stream_name=self._stream, partition_key_column="id", aws=KINESIS_OPTS)
            sink.write_table(data)
            sink.close()
        return KinesisSource(
            stream_name=self._stream, aws=KINESIS_OPTS, format=Json(schema=SCHEMA), poll_interval=0.05
        )
