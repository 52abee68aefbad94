"""A DataGen -> CassandraSink pipeline run as its own process by the SIGKILL crash test.

DataGen ids 0..rows-1 (``n = id * 7 % 1000``), slowed down, checkpointed every 0.1 s, at-least-once:
the sink flushes at every checkpoint, and a restart replays from the last one. Keyed INSERTs are
upserts, so replays leave one row per id. Prints ``started`` once the pipeline runs and ``done`` at
the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from arrowflow import Pipeline
from arrowflow.connectors.cassandra import CassandraSink
from arrowflow.connectors.datagen import DataGenSource, RandomString
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.ops.base import Operator


class AddN(Operator):
    """Adds ``n = id * 7 % 1000`` (int32), announces the start, and sleeps per batch."""

    name = "add-n"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.announced = False

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not self.announced:
            print("started", flush=True)
            self.announced = True
        time.sleep(self.delay)
        seven = pc.multiply(pc.cast(batch.column("id"), pa.int64()), 7)
        n = pc.cast(pc.subtract(seven, pc.multiply(pc.divide(seven, 1000), 1000)), pa.int32())
        return [batch.append_column("n", n)]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--checkpoint-dir", required=True)
    args = ap.parse_args(argv)
    source = DataGenSource(
        fields={"id": Seq(), "text": RandomString(length=(5, 10))}, count=args.rows, batch_size=100
    )
    sink = CassandraSink(
        table=args.table,
        connection={
            "hosts": args.hosts.split(","),
            "port": args.port,
            "cluster_options": {
                "protocol_version": 4,
                "schema_metadata_enabled": False,
                "token_metadata_enabled": False,
            },
        },
        request_rows=200,
    )
    Pipeline(source).via(AddN(0.03)).to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.1,
        guarantee="at-least-once",
        progress=False,
        max_batch_rows=50,
        queue_size=2,
    )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
