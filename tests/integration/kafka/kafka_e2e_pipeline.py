"""A Kafka pipeline run as its own process by the SIGKILL crash tests (tests/integration/crash harness).

``produce``: DataGen (ids 0..rows-1, ``--rate`` rows/s) -> KafkaSink, at-least-once, checkpointed.
``produce-eos``: the same into a ``TransactionalKafkaSink`` (exactly-once). With ``--window-flag F``
the sink, the first time (while ``F`` does not exist), stops between a durable checkpoint and the
commit of that checkpoint's transaction: it creates ``F``, prints ``window <first id> <last id>`` (the
ids in that transaction) and sleeps, so the test can SIGKILL it exactly there.
``consume``: KafkaSource (read_committed, bounded at the last stable offsets) -> FileSink (exactly-once,
Parquet) with the ``_partition``/``_offset`` metadata columns, ``--delay`` seconds per batch.

Every run prints ``started`` once its first batch went through (the harness' readiness line: from
then on data is in flight) and ``done`` at the end, and appends the same words to ``--runs-log``, so
a test can count the runs that were killed before finishing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from arrowflow import Pipeline
from arrowflow.connectors.datagen import DataGenSource, RandomString
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.kafka import KafkaSink, KafkaSource, TransactionalKafkaSink
from arrowflow.formats import Json
from arrowflow.ops.base import Operator

SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string())])


def log_run(path: str, word: str) -> None:
    print(word, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(word + "\n")


class Announce(Operator):
    """Passes batches through, sleeping ``delay`` per batch; announces the first one."""

    name = "announce"

    def __init__(self, delay: float, runs_log: str) -> None:
        self.delay = delay
        self.runs_log = runs_log
        self.announced = False

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not self.announced:
            log_run(self.runs_log, "started")
            self.announced = True
        if self.delay:
            time.sleep(self.delay)
        return [batch]


class StopsInTheWindow(TransactionalKafkaSink):
    """Records the id range of the open transaction; sleeps once before committing its third."""

    def __init__(self, *args: Any, window_flag: Path | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window_flag = window_flag
        self.ids: list[int] = []

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            bounds = pc.min_max(batch.column("id"))
            self.ids += [bounds["min"].as_py(), bounds["max"].as_py()]
        super().write(batch)

    def commit(self, committables: Sequence[Any]) -> None:
        flag = self.window_flag
        if committables and self._transactions >= 3 and flag is not None and not flag.exists():
            flag.touch()
            print(f"window {min(self.ids)} {max(self.ids)}", flush=True)
            time.sleep(300)  # killed here
        self.ids = []
        super().commit(committables)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["produce", "produce-eos", "consume"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=500.0, help="rows/s generated (produce modes)")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds per batch (consume)")
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--runs-log", default="")
    ap.add_argument("--window-flag", default="")
    args = ap.parse_args(argv)
    source: Any
    sink: Any
    if args.mode in ("produce", "produce-eos"):
        source = DataGenSource(
            fields={"id": Seq(), "text": RandomString(length=(5, 10))},
            count=args.rows,
            batch_size=50,
            rows_per_second=args.rate,
        )
        common: dict[str, Any] = {
            "topic": args.topic,
            "key_columns": ["text"],
            "format": Json(columns=["id", "text"]),
        }
        if args.mode == "produce":
            sink = KafkaSink(args.bootstrap, **common)
            guarantee = "at-least-once"
        else:
            sink = StopsInTheWindow(
                args.bootstrap,
                transactional_id_prefix=f"crash-{args.topic}",
                window_flag=Path(args.window_flag) if args.window_flag else None,
                **common,
            )
            guarantee = "exactly-once"
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
    result = (
        Pipeline(source)
        .via(Announce(args.delay, args.runs_log))
        .to(sink)
        .run(
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=0.2,
            guarantee=guarantee,
            progress=False,
            max_batch_rows=50,
            queue_size=2,
        )
    )
    print(f"replayed={result.sink_metrics.get('replayed_rows', 0)}", flush=True)
    log_run(args.runs_log, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
