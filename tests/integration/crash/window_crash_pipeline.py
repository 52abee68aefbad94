"""An event-time pipeline run as its own process by the window crash test.

DataGen (3 splits read in parallel, each covering the same event-time range, rows out of order within
``MAX_DELAY``, rate-limited) -> tumbling 10 s windows by key (count, sum, min, max, approx_distinct) ->
FileSink (Parquet, one bucket directory per minute of ``window_start``, ``_SUCCESS`` once the watermark
has passed the minute), exactly-once, resuming from ``--checkpoint-dir``.
Prints ``started`` at the first batch and ``progress`` per 500 rows (crash_helpers.Progress), then ``done``
and the RunResult as JSON at the end.

:func:`generate` is a pure function of the row index: the test recomputes every row from it.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pyarrow as pa
from crash_harness import DONE
from crash_helpers import Progress

from arrowflow import Pipeline, Source, WatermarkStrategy, agg, tumbling
from arrowflow.connectors.datagen import DataGenSource
from arrowflow.connectors.filesystem import FileSink, PartitionCommit

ROWS = 90_000
SPLITS = 3
STEP_US = 7_000
MAX_DELAY_US = 3_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
WINDOW = "10s"
BUCKET = "%Y%m%d-%H%M"


def _mix(i: np.ndarray) -> np.ndarray:
    z = i.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def generate(indices: np.ndarray) -> pa.RecordBatch:
    """Row ``i`` of split ``k = i // (ROWS / SPLITS)`` has event time ``START + j * STEP - jitter``
    (``j`` its index within the split), so the splits advance through the same time in parallel."""
    per_split = ROWS // SPLITS
    j = indices % per_split
    h = _mix(indices)
    ts = START_US + j * STEP_US - (h % np.uint64(MAX_DELAY_US + 1)).astype(np.int64)
    return pa.record_batch(
        {
            "id": pa.array(indices, pa.int64()),
            "ts": pa.array(ts, pa.timestamp("us")),
            "k": pa.array((h >> np.uint64(32)) % np.uint64(5), pa.int64()),
            "v": pa.array(((h >> np.uint64(8)) % np.uint64(1000)).astype(np.int64)),
        }
    )


AGGS = [agg.count(), agg.sum("v"), agg.min("v"), agg.max("v"), agg.approx_distinct("id", precision=10)]


def run_windows(source: Source, args: argparse.Namespace, max_delay_s: float, progress: Progress) -> int:
    """``source`` (bounded-out-of-orderness watermarks on ``ts``, ``max_delay_s``) -> ``progress`` ->
    tumbling ``WINDOW`` windows by ``k`` (``AGGS``) -> FileSink into ``args.out`` (``BUCKET`` of
    ``window_start``, ``_SUCCESS`` per complete bucket), exactly-once, checkpointed into
    ``args.checkpoint_dir`` every ``args.interval`` s; then prints ``done`` and the RunResult as JSON."""
    sink = FileSink(
        args.out,
        bucket=BUCKET,
        bucket_column="window_start",
        # No delay: the last tumbling window starting in a minute ends with the minute, and the window
        # emits it before the watermark that passes that end reaches the sink.
        partition_commit=PartitionCommit(),
    )
    result = (
        Pipeline(source, watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", max_delay_s))
        .via(progress)
        .window(tumbling(WINDOW), AGGS, by="k")
        .to(sink)
        .run(
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=args.interval,
            guarantee="exactly-once",
            progress=False,
            max_batch_rows=500,
        )
    )
    print(DONE, flush=True)
    print(
        json.dumps(
            {
                "rows": result.rows,
                "rows_written": result.rows_written,
                "watermark": result.watermark,
                "split_watermarks": result.split_watermarks,
                "late_rows": result.late_rows,
                "window_late_rows": result.stage("window").late_rows,
                "stopped": result.stopped,
            }
        ),
        flush=True,
    )
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--interval", type=float, default=0.2)
    args = ap.parse_args(argv)
    source = DataGenSource(
        generator=generate, count=ROWS, num_splits=SPLITS, batch_size=500, rows_per_second=args.rate
    )
    return run_windows(source, args, MAX_DELAY_US / 1e6, Progress(rows_per_line=500))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
