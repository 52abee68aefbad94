"""A Kafka exactly-once pipeline run as its own process by the transaction-recovery crash test.

DataGen (ids 0..rows-1) -> TransactionalKafkaSink, checkpointed. With ``--window-flag F`` the sink,
the first time (while ``F`` does not exist), stops between a durable checkpoint and the commit of that
checkpoint's transaction: it creates ``F``, prints ``window <first id> <last id>`` (the ids in that
transaction) and sleeps, so the test can SIGKILL it exactly there. Prints ``done`` at the end.
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
from arrowflow.connectors.kafka import TransactionalKafkaSink
from arrowflow.formats import Json


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
            time.sleep(120)  # killed here
        self.ids = []
        super().commit(committables)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--window-flag", default="")
    args = ap.parse_args(argv)
    source = DataGenSource(
        fields={"id": Seq(), "text": RandomString(length=(5, 10))},
        count=args.rows,
        batch_size=50,
        rows_per_second=2000,
    )
    sink = StopsInTheWindow(
        args.bootstrap,
        topic=args.topic,
        guarantee="exactly-once",
        transactional_id_prefix=f"crash-{args.topic}",
        key_columns=["text"],
        format=Json(columns=["id", "text"]),
        config={"batch.num.messages": 1},  # Tansu's ListOffsets counts record batches (see kafka_helpers)
        window_flag=Path(args.window_flag) if args.window_flag else None,
    )
    print("started", flush=True)
    result = (
        Pipeline(source)
        .to(sink)
        .run(
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=0.05,
            guarantee="exactly-once",
            progress=False,
        )
    )
    print(f"done replayed={result.sink_metrics.get('replayed_rows', 0)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
