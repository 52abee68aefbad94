"""DataGen -> keyed database sink, run as its own process by the SIGKILL crash tests of the databases.

``sql``: SqlSink (ADBC PostgreSQL) upserting on ``id``; ``mariadb``: SqlSink's DB-API path (pymysql,
``--uri host:port``, root, database ``test``) upserting on ``id``; ``mongo``: MongoSink
``mode="replace"`` keyed on ``_id`` (the DataGen key column is then named ``_id``).

Checkpointed with ``guarantee="exactly-once"`` (idempotent upserts); slowed down per batch so that a
run lasts long enough to be killed. Prints ``started`` once the first batch passes and
``done rows=<rows read in this run>`` at the end. The rows are a pure function of ``--seed``, so the
test can compare the table with ``DataGenSource(...).read_all()``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import pyarrow as pa

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource, RandomString, Uniform
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.mongodb import MongoSink
from arrowflow.connectors.sql import SqlSink
from arrowflow.ops.base import Operator


def source(rows: int, seed: int, key: str = "id") -> DataGenSource:
    return DataGenSource(
        fields={key: Seq(), "x": Uniform(0, 10**6, "int64"), "s": RandomString(length=(1, 12))},
        count=rows,
        batch_size=100,
        seed=seed,
        num_splits=2,
    )


class Announce(Operator):
    """Passes batches through, sleeping ``delay`` per batch; prints ``started`` on the first."""

    name = "announce"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.announced = False

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not self.announced:
            print("started", flush=True)
            self.announced = True
        time.sleep(self.delay)
        return [batch]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=["sql", "mariadb", "mongo"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--table", required=True, help="SQL table, or database.collection")
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--checkpoint-dir", required=True)
    args = ap.parse_args(argv)
    sink: SqlSink | MongoSink
    if args.target == "sql":
        key = "id"
        sink = SqlSink(args.uri, args.table, mode="upsert", keys="id", create=True, flush_rows=400)
    elif args.target == "mariadb":
        import pymysql

        key = "id"
        host, _, port = args.uri.partition(":")

        def connect() -> pymysql.Connection:
            return pymysql.connect(host=host, port=int(port), user="root", password="", database="test")

        sink = SqlSink(
            table=args.table, connect=connect, mode="upsert", keys="id", create=True, flush_rows=400
        )
    else:
        key = "_id"
        database, _, collection = args.table.partition(".")
        sink = MongoSink(args.uri, database, collection, mode="replace", keys="_id", batch_size=200)
    result = (
        Pipeline(source(args.rows, args.seed, key))
        # 30 batches x 50 ms: a whole run takes >= 1.5 s, longer than the harness's longest delay
        # before a kill (1 s), so the first run is always killed, even on a fast idle machine.
        .via(Announce(0.05))
        .to(sink)
        .run(
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=0.1,
            guarantee="exactly-once",
            progress=False,
            max_batch_rows=100,
            queue_size=2,
        )
    )
    print(f"done rows={result.rows}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
