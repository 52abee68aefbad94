"""A DataGen -> CassandraSink pipeline run as its own process by the SIGKILL crash test.

DataGen ids 0..rows-1 (``n = id * 7 % 1000``), slowed down (``--delay`` seconds per 50-row batch),
checkpointed every 0.1 s, at-least-once: the sink flushes at every checkpoint, and a restart replays
from the last one. Keyed INSERTs are upserts, so replays leave one row per id.

Each start appends JSON lines to ``<checkpoint-dir>.log``: ``{"run", "start"}`` (its number, counted
in that log, and the wall-clock start), one ``{"run", "ids": [first, last]}`` per batch the operator
passed on, and ``{"run", "done": true}`` at the end. The run numbered ``--stall-run`` stalls: its
sink's first checkpoint flush that had rows to send returns (every row acknowledged by Cassandra),
logs ``{"run", "acked": [ids]}``, prints ``started`` and sleeps, so the kill finds rows in Cassandra
that no checkpoint covers: the next run must write them again. Other runs print ``started`` after
their first batch, ``done`` at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from arrowflow import Pipeline
from arrowflow.connectors.cassandra import CassandraSink
from arrowflow.connectors.datagen import DataGenSource, RandomString
from arrowflow.connectors.datagen import Sequence as Seq
from arrowflow.ops.base import Operator


class RunLog:
    """Appends one JSON line per event to the run log (flushed: the process may die any moment)."""

    def __init__(self, path: Path) -> None:
        self.run = sum(1 for line in path.open() if '"start"' in line) if path.exists() else 0
        self._file = path.open("a")
        self.write(start=time.time())

    def write(self, **event: Any) -> None:
        self._file.write(json.dumps({"run": self.run, **event}) + "\n")
        self._file.flush()


class AddN(Operator):
    """Adds ``n = id * 7 % 1000`` (int32), logs the ids, announces the start, sleeps per batch."""

    name = "add-n"

    def __init__(self, delay: float, log: RunLog, announce: bool) -> None:
        self.delay = delay
        self.log = log
        self.announce = announce

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        time.sleep(self.delay)
        ids = batch.column("id")
        self.log.write(ids=[ids[0].as_py(), ids[-1].as_py()])
        if self.announce:  # after the first batch is logged: a kill from now on lands mid-stream
            print("started", flush=True)
            self.announce = False
        seven = pc.multiply(pc.cast(ids, pa.int64()), 7)
        n = pc.cast(pc.subtract(seven, pc.multiply(pc.divide(seven, 1000), 1000)), pa.int32())
        return [batch.append_column("n", n)]


class StallingSink(CassandraSink):
    """A CassandraSink whose first checkpoint flush with rows acknowledged logs them and stalls."""

    def __init__(self, log: RunLog, **options: Any) -> None:
        super().__init__(**options)
        self.log = log
        self.written: list[int] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.written.extend(batch.column("id").to_pylist())
        super().write(batch)

    def flush(self) -> None:
        super().flush()  # every row written so far is acknowledged by Cassandra now
        if self.written:
            self.log.write(acked=self.written)
            print("started", flush=True)
            time.sleep(600)  # killed here, before the checkpoint of these rows is saved


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--stall-run", type=int, default=-1)
    ap.add_argument("--checkpoint-dir", required=True)
    args = ap.parse_args(argv)
    log = RunLog(Path(args.checkpoint_dir + ".log"))
    stall = log.run == args.stall_run
    source = DataGenSource(
        fields={"id": Seq(), "text": RandomString(length=(5, 10))}, count=args.rows, batch_size=50
    )
    # The driver's defaults: negotiated protocol, token-aware routing, schema and token metadata.
    options: dict[str, Any] = {
        "table": args.table,
        "connection": {"hosts": args.hosts.split(","), "port": args.port},
        "request_rows": 100,
        "flush_interval": 0.05,
    }
    sink = StallingSink(log, **options) if stall else CassandraSink(**options)
    Pipeline(source).via(AddN(args.delay, log, announce=not stall)).to(sink).run(
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval=0.1,
        guarantee="at-least-once",
        progress=False,
        max_batch_rows=50,
        queue_size=2,
    )
    log.write(done=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
