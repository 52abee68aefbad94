"""An event-time Kafka pipeline run as its own process by the Kafka window crash test.

KafkaSource (JSON rows ``id, ts, k, v``, every partition of ``--topic`` read up to its end at planning,
each partition with its own bounded-out-of-orderness watermark) -> tumbling 10 s windows by ``k``
(count, sum, min, max, approx_distinct: window_crash_pipeline.AGGS) -> FileSink (Parquet, one bucket
directory per minute of ``window_start``, ``_SUCCESS`` once the watermark has passed the minute),
exactly-once, resuming from ``--checkpoint-dir``. ``--delay`` seconds per batch keep the run long
enough to be killed mid-stream (the topic is pre-filled, so reading alone would be over at once).
Prints ``started`` at the first batch and ``progress`` per 500 rows (crash_helpers.Progress), then
``done`` and the RunResult as JSON at the end.
"""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
from crash_helpers import Progress
from window_crash_pipeline import run_windows

from arrowflow.connectors.kafka import KafkaSource
from arrowflow.formats import Json

SCHEMA = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us")), ("k", pa.int64()), ("v", pa.int64())])
#: How far behind the newest row of its partition a row may be (the test produces within this bound).
MAX_DELAY_S = 3.0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--interval", type=float, default=0.2)
    args = ap.parse_args(argv)
    source = KafkaSource(args.bootstrap, topics=[args.topic], format=Json(SCHEMA), stopping_offsets="latest")
    return run_windows(source, args, MAX_DELAY_S, Progress(args.delay, rows_per_line=500))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
