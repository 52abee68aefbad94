"""Workloads ``aws-kinesis-sink``, ``aws-dynamodb-sink``, ``aws-dynamodb-sink-dynalite`` and
``aws-dynamodb-encode``.

Start the servers first (``sh tests/services/up.sh aws dynalite``); without them the setup fails and
the table shows the error. moto (127.0.0.1:5000) and dynalite (127.0.0.1:4567, ``DYNALITE_PORT``)
are in-memory emulators: absolute rates say little about AWS, the ratios compare the client-side
paths against the same server. The server's own CPU per request bounds every ratio, and it shares
the machine's cores with the client: measured here, moto spends ~9 ms per 25-item BatchWriteItem
whatever the client sends, dynalite (one Node.js thread) ~3-5 ms, so the DynamoDB client-side
difference shows more against dynalite, but the server still caps the sink (see the README).

``aws-kinesis-sink``: the 8-column table as JSON records, partition key = the int64 column.

* ``arrowflow KinesisSink``: ``write`` per 10k-row batch + ``flush`` (JSON kernel, PutRecords of 500
  built from the kernel's entries, 4 requests in flight).
* ``to_pylist + json + put_record per row``: the usual Python path, on a subset.

``aws-dynamodb-sink`` (moto) and ``aws-dynamodb-sink-dynalite`` (dynalite): the table keyed by its
int64 column; the same methods and options against the two servers.

* ``arrowflow DynamoDBSink``: vectorized attribute values + JSON kernel, BatchWriteItem of 25.
* ``to_pylist + Table.batch_writer``: boto3's resource layer (floats as ``Decimal``, timestamps as
  ISO strings), on a subset.

``aws-dynamodb-encode``: ``DynamoDBSink.encode`` alone (Arrow -> BatchWriteItem entries), no I/O.
"""

from __future__ import annotations

import decimal
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

_OPTS = {
    "endpoint_url": "http://127.0.0.1:5000",
    "region_name": "us-east-1",
    "aws_access_key_id": "bench",
    "aws_secret_access_key": "bench",
}
_DYNALITE_OPTS = {**_OPTS, "endpoint_url": f"http://127.0.0.1:{os.environ.get('DYNALITE_PORT', '4567')}"}


def _table(config: RunConfig, cap: int) -> pa.Table:
    return make_table(min(config.rows, cap), config.seed)


def setup_kinesis(config: RunConfig) -> Prepared:
    import boto3

    from arrowflow.connectors.aws import KinesisSink

    client = boto3.client("kinesis", **_OPTS)
    table = _table(config, 20_000 if config.quick else 100_000)
    key = table.schema.names[0]
    batches = table.to_batches(max_chunksize=10_000)
    n = table.num_rows
    py_n = config.subset(300 if config.quick else 2_000)
    py_rows = table.slice(0, py_n)

    def fresh_stream() -> str:
        # moto's Shard.put_record finds the last sequence number with list(records)[-1]: a put costs
        # O(records already in the shard). Every run writes to a new, empty stream (created and
        # deleted inside the timed call, a few ms) so neither method pays for the other's records.
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        client.create_stream(StreamName=stream, ShardCount=4)
        return stream

    def run_af() -> int:
        stream = fresh_stream()
        sink = KinesisSink(stream_name=stream, partition_key_column=key, aws=_OPTS, max_in_flight=4)
        for b in batches:
            sink.write(b)
        sink.close()
        client.delete_stream(StreamName=stream)
        return n

    def run_per_row() -> int:
        stream = fresh_stream()
        for row in py_rows.to_pylist():
            client.put_record(
                StreamName=stream, Data=json.dumps(row, default=str).encode(), PartitionKey=str(row[key])
            )
        client.delete_stream(StreamName=stream)
        return py_n

    return Prepared(
        methods={
            "arrowflow KinesisSink": Method(run=run_af),
            "to_pylist + json + put_record per row": Method(
                run=run_per_row, note=f"on {py_n:,} rows, scaled", target=Target(min_speedup=5)
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def _ddb_table(opts: dict[str, str], key: str) -> str:
    import boto3

    client = boto3.client("dynamodb", **opts)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    return name


def _setup_dynamodb(config: RunConfig, opts: dict[str, str]) -> Prepared:
    import boto3

    from arrowflow.connectors.aws import DynamoDBSink

    table = _table(config, 20_000 if config.quick else 100_000)
    key = table.schema.names[0]
    name = _ddb_table(opts, key)
    batches = table.to_batches(max_chunksize=10_000)
    n = table.num_rows
    py_n = config.subset(1_000 if config.quick else 10_000)
    py_rows = table.slice(0, py_n)
    resource_table = boto3.resource("dynamodb", **opts).Table(name)

    def run_af() -> int:
        sink = DynamoDBSink(table_name=name, key_columns=(key,), aws=opts, max_in_flight=4)
        for b in batches:
            sink.write(b)
        sink.close()
        return n

    def convert(v: Any) -> Any:
        if isinstance(v, float):
            return decimal.Decimal(repr(v))
        if hasattr(v, "isoformat"):
            return v.isoformat()
        return v

    def run_batch_writer() -> int:
        with resource_table.batch_writer() as writer:
            for row in py_rows.to_pylist():
                writer.put_item(Item={k: convert(v) for k, v in row.items()})
        return py_n

    return Prepared(
        methods={
            "arrowflow DynamoDBSink": Method(run=run_af),
            "to_pylist + Table.batch_writer": Method(
                run=run_batch_writer, note=f"on {py_n:,} rows, scaled", target=Target(min_speedup=5)
            ),
        },
        bytes_per_row=table.nbytes / n,
    )


def _dynamodb_setup(opts: dict[str, str]) -> Callable[[RunConfig], Prepared]:
    def setup(config: RunConfig) -> Prepared:
        return _setup_dynamodb(config, opts)

    return setup


def setup_dynamodb_encode(config: RunConfig) -> Prepared:
    from arrowflow.connectors.aws import DynamoDBSink

    table = make_table(config.rows, config.seed)
    key = table.schema.names[0]
    batch = table.combine_chunks().to_batches()[0]
    sink = DynamoDBSink(table_name="unused", key_columns=(key,))
    n = batch.num_rows

    def run_encode() -> int:
        sink.encode(batch)
        return n

    return Prepared(
        methods={"arrowflow DynamoDBSink.encode": Method(run=run_encode, target=Target(min_rate=1e6))},
        bytes_per_row=table.nbytes / n,
    )


register(
    Workload(
        name="aws-kinesis-sink",
        description="8-column table -> Kinesis PutRecords (moto server)",
        setup=setup_kinesis,
        reference="arrowflow KinesisSink",
    )
)
register(
    Workload(
        name="aws-dynamodb-sink",
        description="8-column table -> DynamoDB BatchWriteItem (moto server)",
        setup=_dynamodb_setup(_OPTS),
        reference="arrowflow DynamoDBSink",
    )
)
register(
    Workload(
        name="aws-dynamodb-sink-dynalite",
        description="8-column table -> DynamoDB BatchWriteItem (dynalite server)",
        setup=_dynamodb_setup(_DYNALITE_OPTS),
        reference="arrowflow DynamoDBSink",
    )
)
register(
    Workload(
        name="aws-dynamodb-encode",
        description="8-column table -> BatchWriteItem entries (vectorized attribute values + JSON kernel)",
        setup=setup_dynamodb_encode,
        reference="arrowflow DynamoDBSink.encode",
    )
)
