"""A Pulsar pipeline run as its own process by the SIGKILL crash tests (tests/integration/crash harness).

``produce``: DataGen (ids 0..rows-1, slowed down) -> PulsarSink (at-least-once), checkpointed.
``consume``: PulsarSource (exclusive subscription, bounded at the topic's last message) -> FileSink
(exactly-once, Parquet) with the ``_message_id`` metadata column, so the test can prove every message
landed exactly once. Prints ``started`` once the pipeline runs and ``done`` at the end.
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
from arrowflow.connectors.pulsar_broker import PulsarSink, PulsarSource
from arrowflow.formats import Json
from arrowflow.ops.base import Operator

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


class Announce(Operator):
    """Passes batches through, sleeping ``delay`` per batch so that a run lasts long enough to be killed."""

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
    ap.add_argument("--url", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    source: Any
    sink: Any
    if args.mode == "produce":
        source = DataGenSource(
            fields={"id": Seq(), "text": RandomString(length=(5, 10))}, count=args.rows, batch_size=100
        )
        sink = PulsarSink(args.url, topic=args.topic, key_column="text", value_columns=["id", "text"])
        guarantee = "at-least-once"
    else:
        source = PulsarSource(
            args.url,
            topics=args.topic,
            subscription="crash",
            format=Json(SCHEMA),
            metadata_columns=["_message_id"],
            stop="latest",
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
