"""A pipeline run as its own process by the crash and signal tests.

RangeSource -> Progress (``started`` on the first batch, ``progress`` on each) -> a file sink, resuming
from --checkpoint-dir. Prints ``done`` and then the RunResult as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import sys

from crash_harness import DONE
from crash_helpers import FileAppendSink, FileTwoPhaseSink, Progress, RangeSource

from arrowflow import Pipeline


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=None, help="omit for an unbounded source")
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--sink", choices=["2pc", "append"], default="2pc")
    ap.add_argument("--prepare-delay", type=float, default=0.0)
    ap.add_argument("--guarantee", default="exactly-once")
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.1)
    args = ap.parse_args(argv)

    source = RangeSource(args.rows, num_splits=args.splits, batch_rows=args.batch_rows, delay=args.delay)
    sink = (
        FileTwoPhaseSink(args.out, prepare_delay=args.prepare_delay)
        if args.sink == "2pc"
        else FileAppendSink(args.out)
    )
    result = (
        Pipeline(source)
        .via(Progress())
        .to(sink)
        .run(
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=args.interval,
            guarantee=args.guarantee,
            progress=False,
            queue_size=2,
        )
    )
    print(DONE, flush=True)
    print(
        json.dumps(
            {
                "rows": result.rows,
                "rows_written": result.rows_written,
                "checkpoints": result.checkpoints,
                "last_checkpoint_id": result.last_checkpoint_id,
                "stopped": result.stopped,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
