"""A search-sink pipeline run as its own process by the SIGKILL crash test (tests/integration/crash harness).

DataGen (deterministic: ``id`` = 0..rows-1 plus seeded random columns, so a restart regenerates the
same rows) -> a slow pass-through operator -> ``OpenSearchSink`` or ``ElasticsearchSink`` with
``_id`` from the ``id`` column, checkpointed every ``--checkpoint-interval`` seconds with
``guarantee="exactly-once"`` (allowed because the sink is idempotent). Rows written after the last
checkpoint are written again after a restart; with ids they overwrite the same documents.
Prints ``started`` once the first batch passes and ``done`` at the end.

Stall runs (``--stall-runs``, numbered by starts recorded in ``<checkpoint-dir>.runs``) make the kill
land at a known point: the sink's first checkpoint flush that follows written rows returns (every
row acknowledged by the server), then stalls before the checkpoint is saved, records how many rows
it had written (one line in ``<checkpoint-dir>.stalls``) and only then prints ``started``. The
harness's SIGKILL thus finds that many rows in the index that no checkpoint covers, which the restart
must write again (overwriting them, ids being the rows' own). Other runs are killed at random moments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from search_helpers import TARGETS

from arrowflow import Pipeline
from arrowflow.connectors.datagen import Bool, DataGenSource, RandomString, Uniform
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.search import ELASTICSEARCH
from arrowflow.connectors.search.elasticsearch import ElasticsearchSink
from arrowflow.connectors.search.opensearch import OpenSearchSink
from arrowflow.ops.base import Operator

SEED = 7
BATCH = 50


def make_source(rows: int) -> DataGenSource:
    """The deterministic source (the test regenerates the expected table from it)."""
    return DataGenSource(
        fields={
            "id": Seq(),
            "text": RandomString(length=(5, 12)),
            "value": Uniform(low=-1000.0, high=1000.0),
            "flag": Bool(),
        },
        count=rows,
        seed=SEED,
        batch_size=BATCH,
    )


class Announce(Operator):
    """Passes batches through, sleeping ``delay`` per batch so that a run lasts long enough to be killed."""

    name = "announce"

    def __init__(self, delay: float, announce: bool = True) -> None:
        self.delay = delay
        self.announced = not announce

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not self.announced:
            print("started", flush=True)
            self.announced = True
        time.sleep(self.delay)
        return [batch]


def stalling(sink_cls: type[Any], record: Path) -> type[Any]:
    """``sink_cls`` whose first checkpoint flush after written rows stalls once flushed (see above),
    after appending the number of rows it wrote (all acknowledged, none checkpointed) to ``record``."""

    class Stalling(sink_cls):  # type: ignore[misc,valid-type]
        def write(self, batch: pa.RecordBatch) -> None:
            self.pending = getattr(self, "pending", 0) + batch.num_rows
            super().write(batch)

        def flush(self) -> None:
            super().flush()
            if getattr(self, "pending", 0):
                with record.open("a") as f:
                    f.write(f"{self.pending}\n")
                print("started", flush=True)
                time.sleep(600)  # killed here: the checkpoint of these acknowledged rows never lands

    return Stalling


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--url", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--checkpoint-interval", type=float, default=0.4)
    ap.add_argument("--stall-runs", default="", help="comma-separated run numbers (from 0) that stall")
    args = ap.parse_args(argv)
    runs = Path(args.checkpoint_dir + ".runs")
    run_no = len(runs.read_text().splitlines()) if runs.exists() else 0
    with runs.open("a") as f:
        f.write(f"{run_no}\n")
    stall = str(run_no) in args.stall_runs.split(",")
    target = TARGETS[args.target]
    sink_cls = ElasticsearchSink if target.flavor is ELASTICSEARCH else OpenSearchSink
    sink = (stalling(sink_cls, Path(args.checkpoint_dir + ".stalls")) if stall else sink_cls)(
        args.url,
        args.index,
        id_column="id",
        client_options=target.client_options(),
        max_actions=40,  # several requests per checkpoint interval reach the server before a kill
        flush_interval=0.05,
    )
    assert sink.idempotent
    Pipeline(make_source(args.rows)).via(Announce(0.03, announce=not stall)).to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=args.checkpoint_interval,
        guarantee="exactly-once",
        progress=False,
        max_batch_rows=BATCH,
        queue_size=2,
    )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
