"""PubSubSource -> FileSink (two-phase, Parquet), run as its own process by the SIGKILL crash test.

The source acknowledges a message only when the checkpoint holding it is durable, so a killed run's
unacknowledged messages come back (when their ack deadline expires) to the next run: nothing is lost.
The source is at-least-once: a message whose checkpoint committed but whose ``acknowledge`` did not
reach the server before the kill is delivered again (a duplicate row in the output). The FileSink
output carries ``_message_id`` so the test can count those.

Pub/Sub has no order across redeliveries, and the emulator hands a killed stream's messages back in
slices of about 100 per ack deadline, so neither "the last id went by" nor a quiet spell means that
everything arrived. A run stops (final checkpoint) once the committed output (FileSink's visible
files) holds every id ``0..expect-1``, or after ``idle`` quiet seconds (a safety net only). Rows are
``{"id": int, "text": str}``. Prints ``started`` on the first batch, ``progress`` on every batch (the
harness kills after a chosen number of them) and ``done`` at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from crash_harness import DONE
from crash_helpers import Progress

from arrowflow import Pipeline
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.gcp_pubsub import PubSubSource
from arrowflow.formats import Json

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


def committed_ids(out: str) -> int:
    """How many distinct ids the committed files under ``out`` hold (hidden files are not read)."""
    if not os.path.isdir(out):
        return 0
    try:
        dataset = ds.dataset(out, format="parquet")
        if not dataset.files:  # no committed file yet (an empty dataset has no "id" column)
            return 0
        table = dataset.to_table(columns=["id"])
    except (OSError, pa.ArrowInvalid):  # a file renamed while listing: look again on the next tick
        return 0
    return int(pc.count_distinct(table.column("id")).as_py())


class StopWhenComplete(Progress):
    """Passes batches through slowly; sets ``stop`` once ``out`` holds ``expect`` ids (or when idle)."""

    name = "stop-when-complete"

    def __init__(self, stop: threading.Event, out: str, expect: int, delay: float, idle: float) -> None:
        super().__init__(delay)
        self.stop = stop
        self.last_batch = time.monotonic()
        threading.Thread(target=self._watch, args=(out, expect, idle), daemon=True).start()

    def _watch(self, out: str, expect: int, idle: float) -> None:
        while not self.stop.wait(0.3):
            have = committed_ids(out)
            quiet = time.monotonic() - self.last_batch
            if have >= expect or quiet > idle:
                # Says which condition ended the run, for the test's failure message.
                print(f"stopped: {have} ids committed, {quiet:.1f} s since the last batch", flush=True)
                self.stop.set()

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        self.last_batch = time.monotonic()
        return super().process(batch)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--emulator-host", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--subscription", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--idle", type=float, default=90.0)
    args = ap.parse_args(argv)
    source = PubSubSource(
        args.project,
        args.subscription,
        emulator_host=args.emulator_host,
        format=Json(SCHEMA),
        metadata_columns=["_message_id"],
        ack_deadline=10,
    )
    stop = threading.Event()
    Pipeline(source).via(StopWhenComplete(stop, args.out, args.expect, args.delay, args.idle)).to(
        FileSink(args.out)
    ).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.2,
        guarantee="at-least-once",  # Pub/Sub is not replayable: exactly-once is refused
        progress=False,
        max_batch_rows=50,
        queue_size=2,
        stop_event=stop,
    )
    print(DONE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
