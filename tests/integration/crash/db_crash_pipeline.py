"""DataGen -> keyed database sink, run as its own process by the SIGKILL crash tests of the databases.

``sql``: SqlSink (ADBC PostgreSQL) upserting on ``id``; ``mariadb``: SqlSink's DB-API path (pymysql,
``--uri host:port``, root, database ``test``) upserting on ``id``; ``mongo``: MongoSink
``mode="replace"`` keyed on ``_id`` (the DataGen key column is then named ``_id``).

Checkpointed with ``guarantee="exactly-once"`` (idempotent upserts). Prints ``started`` on the first
batch, ``progress`` on every batch (the harness kills a run after a chosen number of them),
``done rows=<rows read in this run>`` at the end. Runs listed in ``--stall-runs`` (numbered by starts,
see crash_helpers.run_number) stall after their first checkpoint flush of written rows and print
``stalled``: the kill then leaves rows in the table that no checkpoint covers, so the restart writes
them again (the test proves that replay happened and was absorbed). For ``mongo`` a stalled run
also adds ``stalled: true`` to its documents: MongoDB does not report a replace by an identical
document (no change event), so the restart's replace is visible only because it removes the field.
The rows are a pure function of ``--seed``, so the test can compare the table with
``DataGenSource(...).read_all()``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
from crash_harness import DONE
from crash_helpers import Progress, run_number, stalling

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource, RandomString, Uniform
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.mongodb import MONGODB_KEYED_BATCHING, MongoSink
from arrowflow.connectors.sql import SqlSink


def source(rows: int, seed: int, key: str = "id") -> DataGenSource:
    return DataGenSource(
        fields={key: Seq(), "x": Uniform(0, 10**6, "int64"), "s": RandomString(length=(1, 12))},
        count=rows,
        batch_size=100,
        seed=seed,
        num_splits=2,
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=["sql", "mariadb", "mongo"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--table", required=True, help="SQL table, or database.collection")
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--stall-runs", default="", help="comma-separated run numbers (from 0) that stall")
    args = ap.parse_args(argv)
    stall = str(run_number(args.checkpoint_dir)) in args.stall_runs.split(",")
    sql_sink: Any = stalling(SqlSink) if stall else SqlSink
    mongo_sink: Any = stalling(MongoSink) if stall else MongoSink
    sink: SqlSink | MongoSink
    if args.target == "sql":
        key = "id"
        sink = sql_sink(args.uri, args.table, mode="upsert", keys="id", create=True, flush_rows=400)
    elif args.target == "mariadb":
        import pymysql

        key = "id"
        host, _, port = args.uri.partition(":")

        def connect() -> pymysql.Connection:
            return pymysql.connect(host=host, port=int(port), user="root", password="", database="test")

        sink = sql_sink(
            table=args.table, connect=connect, mode="upsert", keys="id", create=True, flush_rows=400
        )
    else:
        key = "_id"
        database, _, collection = args.table.partition(".")
        batching = replace(MONGODB_KEYED_BATCHING, max_request_rows=200)
        sink = mongo_sink(args.uri, database, collection, mode="replace", keys="_id", batching=batching)
    pipeline = Pipeline(source(args.rows, args.seed, key)).via(Progress(0.02, quiet=stall))
    if stall and args.target == "mongo":
        pipeline = pipeline.with_columns(stalled=lambda b: pa.array(np.ones(b.num_rows, dtype=bool)))
    result = pipeline.to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.1,
        guarantee="exactly-once",
        progress=False,
        max_batch_rows=100,
        queue_size=2,
    )
    print(DONE, flush=True)
    print(f"rows={result.rows}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
