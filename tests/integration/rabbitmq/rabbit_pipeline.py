"""RabbitMQSource(dedup=message_id) -> FileSink (two-phase, parquet), exactly-once; or (``--activemq``)
ActiveMQSource -> FileSink, at-least-once (the source does not deduplicate). Run as its own process by
the SIGKILL crash tests. Rows are ``{"id": int, "text": str}``; the run stops (final checkpoint) once
every id ``0..last`` is either in the committed output of earlier runs or was read by this one (a
broker redelivers a killed run's unacknowledged messages after newer ones, so seeing ``last`` proves
nothing), or after ``idle`` quiet seconds. Prints ``started`` on the first batch, ``progress`` on
every batch (the harness kills after a chosen number of them) and ``done`` at the end."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from crash_harness import DONE
from crash_helpers import Progress

from arrowflow import Pipeline
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.rabbitmq import RabbitMQSource
from arrowflow.formats import Json

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


class StopAtLast(Progress):
    name = "stop-at-last"

    def __init__(self, last: int, stop: threading.Event, idle: float, out: str) -> None:
        super().__init__(0.02)
        self.stop = stop
        self.missing = set(range(last + 1)) - _committed_ids(out)
        self.last_batch = time.monotonic()
        self.idle = idle
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self.stop.wait(0.2):
            if time.monotonic() - self.last_batch > self.idle:
                self.stop.set()

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        self.last_batch = time.monotonic()
        super().process(batch)
        self.missing.difference_update(batch.column("id").to_pylist())
        if not self.missing:
            # Every id seen: go on until the queue is quiet, so the broker's redeliveries of killed
            # runs (duplicates, which arrive after newer messages) are read, skipped and acknowledged
            # too, and the test can require an empty queue.
            self.idle = min(self.idle, 2.0)
        return [batch]


def _committed_ids(out: str) -> set[int]:
    """Ids in the files earlier runs committed (FileSink keeps uncommitted files hidden)."""
    try:
        return set(ds.dataset(out, format="parquet").to_table(columns=["id"]).column("id").to_pylist())
    except (FileNotFoundError, pa.ArrowInvalid):
        return set()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--queue", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--last", type=int, required=True)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--activemq", action="store_true", help="--url is host:port, --queue a /queue/NAME")
    args = ap.parse_args(argv)
    source: Any
    if args.activemq:
        from arrowflow.connectors.activemq import ActiveMQSource

        host, port = args.url.rsplit(":", 1)
        source = ActiveMQSource(host, int(port), destination=args.queue, format=Json(SCHEMA), prefetch=500)
    else:
        source = RabbitMQSource(
            args.url, queue=args.queue, format=Json(SCHEMA), prefetch=500, dedup="message_id"
        )
    stop = threading.Event()
    Pipeline(source).via(StopAtLast(args.last, stop, args.idle, args.out)).to(FileSink(args.out)).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.2,
        # ActiveMQ redelivers without deduplication: not replayable, so at-least-once only.
        guarantee="at-least-once" if args.activemq else "exactly-once",
        progress=False,
        max_batch_rows=50,
        queue_size=2,
        stop_event=stop,
    )
    print(DONE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
