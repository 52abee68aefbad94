"""Workloads ``aws-kinesis-sink``, ``aws-dynamodb-sink``, ``aws-dynamodb-sink-dynalite`` and
``aws-dynamodb-encode``.

Start the servers first (``sh tests/services/up.sh aws dynalite kinesalite``); without them the setup
fails and the table shows the error. moto (127.0.0.1:``$AWS_PORT``, 5000), dynalite (127.0.0.1:
``$DYNALITE_PORT``, 4567) and kinesalite (127.0.0.1:``$KINESALITE_PORT``, 4568; Kinesis only) are
in-memory emulators: absolute rates say little about AWS, the ratios
compare the client-side paths against the same server. The server's own CPU per request bounds every
ratio, and it shares the machine's cores with the client: measured here, moto spends ~9 ms per 25-item
BatchWriteItem whatever the client sends, dynalite (one Node.js thread) ~3-5 ms, so the DynamoDB
client-side difference shows more against dynalite, but the server still caps the sink (see the README).

``aws-kinesis-sink``: the 8-column table as JSON records, partition key = the int64 column, against
kinesalite (moto's Kinesis loses records put concurrently into one shard; kinesalite, one Node.js
thread, serialises a stream's PutRecords and keeps them all, so the check is exact).

* ``arrowflow KinesisSink``: ``write`` per 10k-row batch + ``flush`` (JSON kernel, PutRecords of 500
  built from the kernel's entries, 4 requests in flight).
* ``orjson + put_records of 500 on 4 threads``: the idiomatic baseline: ``to_pylist`` per 10k rows,
  ``orjson.dumps`` per row, ``put_records`` of 500 records submitted to a 4-thread pool (the sink's
  requests in flight) on one boto3 client (clients are thread-safe), failed records re-sent; a subset.
* ``to_pylist + json + put_record per row``: naive, for context, on a smaller subset.
* ``pre-built bodies, PutRecords on 4 threads (ceiling)``: the sink's own request bodies, built in
  setup (untimed), sent by 4 threads through one client with botocore's signing and parsing: what
  the server and botocore allow with no encoding at all. The sink cannot beat it; when the sink and
  the baseline are both near it, the workload is bound by the server (kinesalite) and the *cpu* columns
  show the client-side difference.

Every call writes into a fresh 4-shard stream (so that no method reads or pays for another's records);
a method's previous stream is deleted at the start of its next call. The check reads the stream of the
warm-up call back with ``get_records`` (every shard) and compares the JSON rows with the rows written,
exactly (every row once, none lost), and each record's partition key with its row's id.

``aws-dynamodb-sink`` (moto) and ``aws-dynamodb-sink-dynalite`` (dynalite): the table keyed by its
int64 column; the same methods and options against the two servers, each method into its own table.

* ``arrowflow DynamoDBSink``: vectorized attribute values + JSON kernel, BatchWriteItem of 25, 4
  requests in flight.
* ``Table.batch_writer on 4 threads``: the idiomatic baseline: boto3's resource layer (floats as
  ``Decimal``, timestamps as ISO strings), the rows in 4 contiguous slices, each written by its own
  thread with its own session's ``Table.batch_writer()`` (resources are not thread-safe); a subset.
* ``to_pylist + Table.batch_writer``: the same on one thread, one batch_writer. Also idiomatic (the
  baseline is the faster of the two: against dynalite, one Node.js thread, four client threads may
  only add contention).

The check scans the method's table (low-level client, paginated) and compares every item with the
rows written.

``aws-dynamodb-encode``: ``DynamoDBSink.encode`` alone (Arrow -> BatchWriteItem entries), no I/O.
"""

from __future__ import annotations

import decimal
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from .checks import json_table, same_rows, text_schema
from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table
from .servers import DYNALITE_URL, KINESALITE_URL, MOTO_URL

_OPTS = {
    "endpoint_url": MOTO_URL,
    "region_name": "us-east-1",
    "aws_access_key_id": "bench",
    "aws_secret_access_key": "bench",
}
_DYNALITE_OPTS = {**_OPTS, "endpoint_url": DYNALITE_URL}
_KINESIS_OPTS = {**_OPTS, "endpoint_url": KINESALITE_URL}
#: The sinks' requests in flight (``max_in_flight=4``), and so the baselines' threads.
_THREADS = 4
_KINESIS_THREADS = "orjson + put_records of 500 on 4 threads"
_DDB_THREADS = "Table.batch_writer on 4 threads"
_DDB_ONE = "to_pylist + Table.batch_writer"
#: Against a single-threaded emulator (dynalite) one batch_writer can beat four threads; the baseline
#: is the faster of the two.
_DDB_IDIOMATIC = (_DDB_THREADS, _DDB_ONE)


def _table(config: RunConfig, cap: int) -> pa.Table:
    return make_table(min(config.rows, cap), config.seed)


def setup_kinesis(config: RunConfig) -> Prepared:
    import boto3
    import orjson

    from arrowflow.connectors.aws import KinesisSink
    from arrowflow.connectors.aws.config import RawJsonCall

    client = boto3.client("kinesis", **_KINESIS_OPTS)
    table = _table(config, 20_000 if config.quick else 100_000)
    key = table.schema.names[0]
    batches = table.to_batches(max_chunksize=10_000)
    n = table.num_rows
    py_n = config.subset(300 if config.quick else 2_000)
    py_rows = table.slice(0, py_n)
    pr_n = config.subset(5_000 if config.quick else 20_000)
    pr_rows = table.slice(0, pr_n)
    pool = ThreadPoolExecutor(_THREADS)
    streams: dict[str, str] = {}

    def fresh_stream(method: str) -> str:
        # Every run writes to a new, empty stream (created inside the timed call, a few ms; the
        # method's previous one deleted) so that no method pays for another's records.
        old = streams.pop(method, None)
        if old is not None:
            client.delete_stream(StreamName=old)
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        client.create_stream(StreamName=stream, ShardCount=4)
        streams[method] = stream
        return stream

    def run_af() -> int:
        stream = fresh_stream("af")
        sink = KinesisSink(
            stream_name=stream, partition_key_column=key, aws=_KINESIS_OPTS, max_in_flight=_THREADS
        )
        for b in batches:
            sink.write(b)
        sink.close()
        return n

    def put_records(stream: str, records: list[dict[str, Any]]) -> None:
        while records:
            answer = client.put_records(StreamName=stream, Records=records)
            if not answer["FailedRecordCount"]:
                return
            records = [r for r, out in zip(records, answer["Records"], strict=True) if "ErrorCode" in out]

    def run_put_records() -> int:
        stream = fresh_stream("put_records")
        dumps = orjson.dumps
        futures = []
        for b in pr_rows.to_batches(max_chunksize=10_000):
            records = [{"Data": dumps(row), "PartitionKey": str(row[key])} for row in b.to_pylist()]
            futures += [
                pool.submit(put_records, stream, records[i : i + 500]) for i in range(0, len(records), 500)
            ]
        for f in futures:
            f.result()
        return pr_n

    # The sink's own bodies (JSON kernel, 500 records each), built once; the stream name is patched in.
    encoder = KinesisSink(stream_name="STREAM-NAME", partition_key_column=key, aws=_KINESIS_OPTS)
    bodies: list[bytes] = []
    for b in batches:
        entries = encoder.encode(b)
        for i in range(0, len(entries), 500):
            bodies.append(encoder._body(entries.slice(i, 500)))
    encoder.close()
    raw = RawJsonCall(client, "put_records", lean_answer=("FailedRecordCount", "Records"))

    def run_ceiling() -> int:
        stream = fresh_stream("ceiling")
        dummy = {"StreamName": stream, "Records": [{"Data": b"", "PartitionKey": "_"}]}
        named = [body.replace(b"STREAM-NAME", stream.encode(), 1) for body in bodies]
        for answer in pool.map(lambda body: raw.call(body, **dummy), named):
            if answer["FailedRecordCount"]:
                raise RuntimeError("PutRecords: records failed")
        return n

    def run_per_row() -> int:
        stream = fresh_stream("per_row")
        for row in py_rows.to_pylist():
            client.put_record(
                StreamName=stream, Data=json.dumps(row, default=str).encode(), PartitionKey=str(row[key])
            )
        return py_n

    def landed(method: str, expected: pa.Table) -> Callable[[], str]:
        def check() -> str:
            stream = streams[method]
            records = []
            for shard in client.list_shards(StreamName=stream)["Shards"]:
                it = client.get_shard_iterator(
                    StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                while it:
                    answer = client.get_records(ShardIterator=it, Limit=10_000)
                    records += answer["Records"]
                    it = answer.get("NextShardIterator") if answer["Records"] else None
            got = json_table([r["Data"] for r in records], expected.schema)
            if [r["PartitionKey"] for r in records] != [str(v) for v in got.column(key).to_pylist()]:
                raise AssertionError(f"{stream}: a record's partition key is not its {key}")
            return same_rows(got, expected, stream)

        return check

    def teardown() -> None:
        pool.shutdown()
        for stream in streams.values():
            client.delete_stream(StreamName=stream)

    return Prepared(
        methods={
            "arrowflow KinesisSink": Method(run=run_af, check=landed("af", table)),
            _KINESIS_THREADS: Method(
                run=run_put_records,
                note=f"on {pr_n:,} rows, scaled",
                target=Target(min_speedup=1),
                check=landed("put_records", pr_rows),
            ),
            "to_pylist + json + put_record per row": Method(
                run=run_per_row,
                note=f"naive; on {py_n:,} rows, scaled",
                check=landed("per_row", py_rows),
            ),
            "pre-built bodies, PutRecords on 4 threads (ceiling)": Method(
                run=run_ceiling,
                note="the sink's bodies built in setup: the server's ceiling",
                check=landed("ceiling", table),
            ),
        },
        bytes_per_row=table.nbytes / n,
        teardown=teardown,
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


def _scan(opts: dict[str, str], name: str, schema: pa.Schema) -> pa.Table:
    """Every item of table ``name`` (low-level Scan, paginated) as a table of ``schema``."""
    import boto3
    from boto3.dynamodb.types import TypeDeserializer

    client = boto3.client("dynamodb", **opts)
    deserialize = TypeDeserializer().deserialize
    ints = {f.name for f in schema if pa.types.is_integer(f.type)}
    rows = []
    for page in client.get_paginator("scan").paginate(TableName=name):
        for item in page["Items"]:
            row = {k: deserialize(v) for k, v in item.items()}
            rows.append(
                {
                    k: (int(v) if k in ints else float(v)) if isinstance(v, decimal.Decimal) else v
                    for k, v in row.items()
                }
            )
    return pa.Table.from_pylist(rows, schema=text_schema(schema))


def _setup_dynamodb(config: RunConfig, opts: dict[str, str]) -> Prepared:
    import boto3

    from arrowflow.connectors.aws import DynamoDBSink

    table = _table(config, 20_000 if config.quick else 100_000)
    key = table.schema.names[0]
    names = {m: _ddb_table(opts, key) for m in ("af", "threads", "one")}
    batches = table.to_batches(max_chunksize=10_000)
    n = table.num_rows
    py_n = config.subset(1_000 if config.quick else 10_000)
    py_rows = table.slice(0, py_n)
    # One session and resource per thread: boto3 resources are not thread-safe.
    thread_tables = [
        boto3.session.Session().resource("dynamodb", **opts).Table(names["threads"]) for _ in range(_THREADS)
    ]
    one_table = boto3.resource("dynamodb", **opts).Table(names["one"])
    pool = ThreadPoolExecutor(_THREADS)

    def run_af() -> int:
        sink = DynamoDBSink(table_name=names["af"], key_columns=(key,), aws=opts, max_in_flight=_THREADS)
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

    def write_items(resource_table: Any, rows: pa.Table) -> None:
        with resource_table.batch_writer() as writer:
            for row in rows.to_pylist():
                writer.put_item(Item={k: convert(v) for k, v in row.items()})

    def run_threads() -> int:
        step = -(-py_n // _THREADS)
        futures = [
            pool.submit(write_items, t, py_rows.slice(i * step, step)) for i, t in enumerate(thread_tables)
        ]
        for f in futures:
            f.result()
        return py_n

    def run_batch_writer() -> int:
        write_items(one_table, py_rows)
        return py_n

    def landed(method: str, expected: pa.Table) -> Callable[[], str]:
        return lambda: same_rows(_scan(opts, names[method], expected.schema), expected, names[method])

    def teardown() -> None:
        pool.shutdown()
        client = boto3.client("dynamodb", **opts)
        for name in names.values():
            client.delete_table(TableName=name)

    return Prepared(
        methods={
            "arrowflow DynamoDBSink": Method(run=run_af, check=landed("af", table)),
            _DDB_THREADS: Method(
                run=run_threads,
                note=f"on {py_n:,} rows, scaled",
                target=Target(min_speedup=1),
                check=landed("threads", py_rows),
            ),
            _DDB_ONE: Method(
                run=run_batch_writer,
                note=f"one thread; on {py_n:,} rows, scaled",
                check=landed("one", py_rows),
            ),
        },
        bytes_per_row=table.nbytes / n,
        teardown=teardown,
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
        description="8-column table -> Kinesis PutRecords (kinesalite server)",
        setup=setup_kinesis,
        reference="arrowflow KinesisSink",
        idiomatic=(_KINESIS_THREADS,),
    )
)
register(
    Workload(
        name="aws-dynamodb-sink",
        description="8-column table -> DynamoDB BatchWriteItem (moto server)",
        setup=_dynamodb_setup(_OPTS),
        reference="arrowflow DynamoDBSink",
        idiomatic=_DDB_IDIOMATIC,
    )
)
register(
    Workload(
        name="aws-dynamodb-sink-dynalite",
        description="8-column table -> DynamoDB BatchWriteItem (dynalite server)",
        setup=_dynamodb_setup(_DYNALITE_OPTS),
        reference="arrowflow DynamoDBSink",
        idiomatic=_DDB_IDIOMATIC,
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
