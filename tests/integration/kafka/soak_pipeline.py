"""The soak's pipeline, run as its own process (and SIGKILLed, and restarted) by soak.py.

KafkaSource (JSON rows ``id, v, pad`` from every partition of ``--topic``, each read up to the offset
``--stop`` given for it: the producer is still writing them while this runs, so the source waits for
them and the run ends only once all have been delivered) -> Progress (``started``, then ``progress`` per
``ROWS_PER_LINE`` rows) -> filter ``v % 10 != 0`` -> ``w = v * 3 + id`` -> ``id, v, w`` -> FileSink (Parquet),
exactly-once, checkpointed into ``--checkpoint-dir`` every ``--interval`` s and resuming from it.
Prints ``done`` and the RunResult as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
from crash_harness import DONE
from crash_helpers import Progress

from arrowflow import Pipeline
from arrowflow.connectors.filesystem import FileSink
from arrowflow.connectors.kafka import KafkaSource
from arrowflow.formats import Json

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.int64()), ("pad", pa.string())])
#: Rows per ``progress`` line (soak.py counts them: how far each run got, how many rows were read twice).
ROWS_PER_LINE = 100
#: Rows the filter drops: ``v % DROP_EVERY == 0`` (soak.py's expected set leaves them out).
DROP_EVERY = 10


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--stop", type=int, required=True, help="messages per partition (exclusive stop offset)")
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args(argv)
    source = KafkaSource(
        args.bootstrap,
        topics=[args.topic],
        format=Json(SCHEMA),
        stopping_offsets={f"{args.topic}:{p}": args.stop for p in range(args.partitions)},
    )
    result = (
        Pipeline(source)
        .via(Progress(rows_per_line=ROWS_PER_LINE))
        .filter(lambda b: b.column("v").to_numpy() % DROP_EVERY != 0)
        .with_columns(w=pc.field("v") * 3 + pc.field("id"))
        .select(["id", "v", "w"])
        .to(FileSink(args.out, format="parquet"))
        .run(
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=args.interval,
            guarantee="exactly-once",
            progress=False,
            max_batch_rows=2000,
        )
    )
    print(DONE, flush=True)
    print(json.dumps({"rows": result.rows, "rows_written": result.rows_written}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
