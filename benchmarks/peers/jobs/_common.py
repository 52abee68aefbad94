"""What every peer job shares: the job spec, the result line, the per-row generator of workload 3.

Standard library only: the jobs run in the peers' own virtual environments (``.peers/venvs/<system>``),
which have neither arrowflow nor the ``benchmarks`` package. A job is started as
``<venv python> benchmarks/peers/jobs/<system>_job.py SPEC.json`` and prints, as its last stdout line,
``PEERS_RESULT {json}`` (see :func:`emit`); anything else it prints is kept in the run's log.

The clock. ``seconds`` is measured by the job itself: from just before it builds its clients and
pipeline (imports and interpreter start-up excluded) to the moment its output is complete (files
closed and committed, rows committed, every message acknowledged); for Flink it is the job's net runtime
as Flink reports it (submission to finish; the local MiniCluster's start-up is left out, as a Flink
user running a cluster does not pay it per job). ``cpu_seconds`` is the CPU time of
the whole process (every thread) over the same interval. The harness adds what it measures from the
outside: the process's wall time, total CPU and peak RSS (``wait4``), and the broker's CPU.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

#: The 8 columns of the benchmark table (benchmarks/data.py), in order.
COLUMNS = ("id", "price", "name", "active", "ts", "qty", "code", "score")
#: Workload 1 keeps the rows with ``price < PRICE_LIMIT`` (about half of them).
PRICE_LIMIT = 5000.0

# -- workload 3: the generator ------------------------------------------------------------------------
# Row i of workload 3 is a pure function of i with the types of the benchmark table, written so that
# Python (per row), numpy (vectorized, benchmarks/peers/expected.py) and Java (flink/.../Rows.java)
# compute the very same values: integer arithmetic, and doubles that are exact quotients.
_LOWER2 = "abcdefghijklmnopqrstuvwxyz" * 2
_CODE2 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 2
TS_BASE = datetime(2026, 1, 1)
YEAR_US = 365 * 24 * 3600 * 1_000_000


def gen_row(i: int) -> dict[str, Any]:
    """Row ``i`` of the generated table (``ts`` a naive ``datetime``)."""
    name_start, name_len = i % 26, 15 + i % 11
    code_start, code_len = (i * 7) % 36, 6 + i % 5
    return {
        "id": i,
        "price": ((i * 7919) % 1_000_000) / 100.0,
        "name": _LOWER2[name_start : name_start + name_len],
        "active": i % 2 == 1,
        "ts": TS_BASE + timedelta(microseconds=(i * 1_000_003) % YEAR_US),
        "qty": (i * 104_729) % 2_000_001 - 1_000_000,
        "code": _CODE2[code_start : code_start + code_len],
        "score": ((i * 2_654_435_761) % 4_294_967_296) / 4_294_967_296.0 - 0.5,
    }


# -- spec and result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One job run, as the harness writes it (every field is always present)."""

    workload: str  # "parquet" | "postgres" | "produce" | "opensearch"
    bootstrap: str
    topic: str  # the input topic (parquet, postgres) or the output topic (produce)
    partitions: int
    messages: int  # messages in the input topic / rows to produce
    expected_out: int  # rows the output must hold (the filtered count for parquet)
    guarantee: str  # "at-least-once" | "exactly-once"
    parallelism: int
    checkpoint_interval: float  # seconds
    group_id: str
    out_dir: str  # parquet: where the files go
    scratch_dir: str  # checkpoints, recovery stores
    pg_dsn: str
    pg_table: str
    search_url: str  # opensearch: the node's HTTP address
    index: str  # opensearch: the run's index (created by the harness)

    @classmethod
    def load(cls, argv: list[str] | None = None) -> Spec:
        args = sys.argv[1:] if argv is None else argv
        if len(args) != 1:
            raise SystemExit("usage: <job>.py SPEC.json")
        with open(args[0], encoding="utf-8") as f:
            return cls(**json.load(f))


class Clock:
    """The job's clock: wall and process CPU time since :meth:`start`."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()

    def start(self) -> Clock:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        return self

    def result(self, **extra: Any) -> dict[str, Any]:
        return {
            "seconds": time.perf_counter() - self.t0,
            "cpu_seconds": time.process_time() - self.c0,
            "peak_rss_mb": peak_rss_mb(),
            **extra,
        }


def peak_rss_mb() -> float | None:
    """This process's peak resident set size (``VmHWM``), in MiB. Read by the job itself because the
    harness's ``wait4`` rusage is polluted: Linux carries the parent's high-water mark over ``exec``
    into ``ru_maxrss``, and the harness (which spawns by vfork) holds the whole table."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def emit(result: dict[str, Any]) -> None:
    """Print the result line the harness reads (flushed: the process may exit hard after it)."""
    print("PEERS_RESULT " + json.dumps(result), flush=True)
