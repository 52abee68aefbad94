"""A search-sink pipeline run as its own process by the SIGKILL crash test (tests/integration/crash harness).

DataGen (deterministic: ``id`` = 0..rows-1 plus seeded random columns, so a restart regenerates the
same rows) -> a slow pass-through operator -> ``OpenSearchSink`` or ``ElasticsearchSink`` with
``_id`` from the ``id`` column, checkpointed every ``--checkpoint-interval`` seconds with
``guarantee="exactly-once"`` (allowed because the sink is idempotent). Rows written after the last
checkpoint are written again after a restart; with ids they overwrite the same documents.
Prints ``started`` once the first batch passes, ``progress`` per batch (the harness kills a run after
a chosen number of them) and ``done`` at the end.

Stall runs (``--stall-runs``, numbered by starts, see crash_helpers.run_number) make the kill land at
a known point: the sink's first checkpoint flush that follows written rows returns (every row
acknowledged by the server), then prints ``stalled`` and sleeps before the checkpoint is saved (and
prints no progress lines before). The harness's SIGKILL thus finds rows in the index that no
checkpoint covers, which the restart must write again (overwriting them, ids being the rows' own).
Each stall appends the number of rows it had written to ``<checkpoint-dir>.stalls``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crash_harness import DONE
from crash_helpers import Progress, run_number, stalling
from search_helpers import TARGETS

from arrowflow import Pipeline
from arrowflow.connectors.datagen import Bool, DataGenSource, RandomString, Uniform
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.connectors.search import ELASTICSEARCH
from arrowflow.connectors.search.elasticsearch import ElasticsearchSink
from arrowflow.connectors.search.opensearch import OpenSearchSink

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
    stall = str(run_number(args.checkpoint_dir)) in args.stall_runs.split(",")
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
    Pipeline(make_source(args.rows)).via(Progress(0.03, quiet=stall)).to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=args.checkpoint_interval,
        guarantee="exactly-once",
        progress=False,
        max_batch_rows=BATCH,
        queue_size=2,
    )
    print(DONE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
