"""A Kafka pipeline run as its own process by the SIGKILL crash tests (tests/integration/crash harness).

``produce``: DataGen (ids 0..rows-1, slowed down) -> KafkaSink (at-least-once), checkpointed.
``consume``: KafkaSource (bounded at the high watermarks) -> FileSink (exactly-once, Parquet), with the
``_partition``/``_offset`` metadata columns so the test can prove every message landed exactly once.
Prints ``started`` once the pipeline runs (the harness' readiness line) and ``done`` at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource, RandomString
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.kafka import KafkaSink, KafkaSource
from arrowflow.formats import Json
from arrowflow.ops.base import Operator

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


class Announce(Operator):
    """Passes batches through (sleeping ``delay`` per batch, so a run lasts long enough to be killed)."""

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
    ap.add_argument("mode", choices=["produce", "consume"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    source: Any
    sink: Any
    if args.mode == "produce":
        source = DataGenSource(
            fields={"id": Seq(), "text": RandomString(length=(5, 10))},
            count=args.rows,
            batch_size=100,
        )
        sink = KafkaSink(
            args.bootstrap,
            topic=args.topic,
            key_columns=["text"],
            format=Json(columns=["id", "text"]),
            config={"batch.num.messages": 1},  # Tansu's ListOffsets counts record batches (see kafka_helpers)
        )
        guarantee = "at-least-once"
    else:
        source = KafkaSource(
            args.bootstrap,
            topics=[args.topic],
            format=Json(SCHEMA),
            metadata_columns=["_partition", "_offset"],
            stopping_offsets="latest",
        )
        sink = FileSink(args.out, format="parquet")
        guarantee = "exactly-once"
    Pipeline(source).via(Announce(0.02)).to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.1,
        guarantee=guarantee,
        progress=False,
        max_batch_rows=50,
        queue_size=2,
    )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
