"""A Pulsar pipeline run as its own process by the SIGKILL crash tests (tests/integration/crash harness).

``produce``: DataGen (ids 0..rows-1) -> PulsarSink (at-least-once), checkpointed.
``consume``: PulsarSource (exclusive subscription, bounded at the topic's last message) -> FileSink
(exactly-once, Parquet) with the ``_message_id`` metadata column, so the test can prove every message
landed exactly once.

Every batch of at most 50 rows is held ``--delay`` seconds (0.1) by an operator, so a run moves at
most ``50 / delay`` rows per second however fast the machine is: a test that kills after at most
``d`` seconds knows a run got through at most ``d / delay + 1`` batches. Prints ``started`` at the
first batch, ``rows <n> ids <lo> <hi>`` as each batch enters the operator (``n`` = rows of this run
so far, the held batch included: a batch printed is never covered by a checkpoint yet; ``lo``/``hi``
= the batch's smallest and largest id), and ``done`` at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource, RandomString
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.pulsar_broker import PulsarSink, PulsarSource
from arrowflow.formats import Json
from arrowflow.ops.base import Operator

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


class Announce(Operator):
    """Passes batches through, printing progress and holding each batch ``delay`` seconds so that a
    run lasts long enough to be killed with data in flight."""

    name = "announce"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.rows = 0

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if self.rows == 0:
            print("started", flush=True)
        self.rows += batch.num_rows
        ids = pc.min_max(batch.column("id"))
        print(f"rows {self.rows} ids {ids['min']} {ids['max']}", flush=True)
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
    ap.add_argument("--delay", type=float, default=0.1)
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
    Pipeline(source).via(Announce(args.delay)).to(sink).run(
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
