"""A pipeline run as its own process by the FileSystem crash tests (SIGKILLed and restarted).

Source: ``range`` (the crash harness's replayable id range) or ``files`` (a FileSource over --input).
Sink: ``filesink`` (FileSink, Parquet, the rename protocol) or ``append`` (the harness's plain
at-least-once file sink). Resumes from --checkpoint-dir. Prints ``started`` when the first batch passes,
``progress`` on every batch (the harness kills after a chosen number of them), ``done`` and then the
RunResult as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import sys

import pyarrow.compute as pc
from crash_harness import DONE
from crash_helpers import FileAppendSink, Progress, RangeSource

from arrowflow import Pipeline
from arrowflow.connectors.filesystem import FileSink, FileSource, RollingPolicy


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", choices=["range", "files"], required=True)
    ap.add_argument("--input", default=None)
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--sink", choices=["filesink", "append"], required=True)
    ap.add_argument("--guarantee", default="exactly-once")
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--delay", type=float, default=0.03)
    args = ap.parse_args(argv)

    source = (
        RangeSource(args.rows, num_splits=3, batch_rows=150)
        if args.source == "range"
        else FileSource(args.input, batch_size=150)
    )
    sink = (
        FileSink(args.out, rolling=RollingPolicy(max_rows=1000), partition_by="bucket")
        if args.sink == "filesink"
        else FileAppendSink(args.out)
    )
    pipeline = Pipeline(source).via(Progress(args.delay))
    if args.sink == "filesink":
        # Route rows into a few Hive directories, so commits and recovery span several directories.
        pipeline = pipeline.with_columns(bucket=lambda b: pc.bit_wise_and(b.column("id"), 3))
    result = pipeline.to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=args.interval,
        guarantee=args.guarantee,
        progress=False,
        queue_size=2,
        max_batch_rows=150,
    )
    print(DONE, flush=True)
    print(
        json.dumps({"rows": result.rows, "checkpoints": result.checkpoints, "stopped": result.stopped}),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
