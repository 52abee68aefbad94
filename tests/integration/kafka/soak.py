"""The soak: Kafka -> operators -> FileSink exactly-once for N minutes, SIGKILLed and restarted all along.

A producer thread (plain confluent-kafka, idempotent, so partition ``p`` holds exactly offsets
``0 .. per_partition - 1``) writes JSON rows ``id, v, pad`` into a fresh topic at ``rate`` rows per
second, spread evenly over the soak's duration. soak_pipeline.py reads every partition up to that
offset (waiting for the rows still to come), filters, computes a column and writes Parquet files
exactly-once; soak_harness.py SIGKILLs it every ``kill_every`` seconds and restarts it from its
checkpoint, sampling its RSS from /proc; the run alive when the duration is over finishes on its own.

Then every committed file is read back: the ids must be exactly the expected set (each produced id
whose ``v % 10 != 0``), none twice, ``w`` right on every row; every kill sent must have landed while
data was in flight (at least ``minimum_kills``); the RSS must plateau (soak_harness.rss_verdict).

``python tests/integration/kafka/soak.py --minutes 30`` (what ``make soak`` runs, against the broker of
tests/services/kafka.sh at ``127.0.0.1:$KAFKA_PORT``) prints a table and writes the JSON report to
``--results`` (default benchmarks/results/soak-<UTC time>.json); test_soak.py runs the same for 2
minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(HERE), str(HERE.parent / "crash")]

from kafka_helpers import Broker  # noqa: E402
from soak_harness import MIB, SoakReport, rss_verdict, soak_with_crashes  # noqa: E402
from soak_pipeline import DROP_EVERY, ROWS_PER_LINE, SCHEMA  # noqa: E402
from window_crash_pipeline import _mix  # noqa: E402

from arrowflow.formats import Json  # noqa: E402

#: How much the RSS may rise from the middle to the last third of a run (RSS_TOLERANCE) and from the
#: first to the last third of the runs (RSS_RUN_TOLERANCE) before the curve counts as growing
#: (soak_harness.rss_verdict). Measured in the 20-minute soak of 2026-12-07 (37 runs, no leak): a run
#: grew by -1.6 to +7.5 MiB from its middle to its last third, 5 runs in 37 by more than 4 MiB, one by
#: more than 6, so the median of a 2-minute soak's 3 runs exceeds 6 MiB about never (4 MiB: ~4% of
#: the time); run plateaus spread over 191.4-206.8 MiB, so one run against another (all a 2-minute
#: soak compares across restarts) differs by more than 8 MiB 6% of the time, never by 16 MiB. A
#: retained batch per batch grows a run by 10-13 MiB; 16 MiB more per restart gave +46 MiB.
RSS_TOLERANCE = 6 * MIB
RSS_RUN_TOLERANCE = 16 * MIB
#: ~430 bytes a row decoded: a pipeline that kept every batch alive would grow by ~0.8 MiB/s at
#: 2000 rows/s, several times RSS_TOLERANCE between the middle and the end of a 20-45 s run.
PAD = "p" * 400


@dataclass
class SoakResult:
    """The soak's numbers and, in ``problems``, every check that failed (empty: it passed)."""

    minutes: float
    topic: str
    partitions: int
    rows_produced: int
    rows_expected: int
    rows_committed: int
    kills_sent: int
    restarts: int
    duplicates: int
    lost: int
    unexpected: int
    bad_values: int
    #: Rows the runs read in all (counted in whole progress lines, so a lower bound) minus the rows
    #: produced: rows read again after a kill, which the sink had to keep from being committed twice.
    replayed: int
    report: SoakReport
    rss: Any
    wall_seconds: float
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "minutes": self.minutes,
            "topic": self.topic,
            "partitions": self.partitions,
            "rows_produced": self.rows_produced,
            "rows_expected": self.rows_expected,
            "rows_committed": self.rows_committed,
            "kills_sent": self.kills_sent,
            "restarts_in_flight": self.restarts,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "unexpected": self.unexpected,
            "bad_values": self.bad_values,
            "replayed_rows_at_least": self.replayed,
            "seed": self.report.seed,
            "wall_seconds": round(self.wall_seconds, 1),
            "rss": self.rss.to_json(),
            "epochs": [
                {
                    "index": e.index,
                    "killed": e.killed,
                    "progress_rows": e.progress * ROWS_PER_LINE,
                    "samples": [[round(t, 2), rss] for t, rss in e.samples],
                }
                for e in self.report.epochs
            ],
            "problems": self.problems,
        }

    def table(self) -> str:
        lines = [
            f"soak: {self.minutes:g} min, topic {self.topic} ({self.partitions} partitions),"
            f" seed {self.report.seed}",
            f"{'run':>4} {'end':>7} {'secs':>6} {'rows':>8} {'first max':>10} {'mid med':>8} {'last med':>9}"
            f" {'growth':>7}",
        ]
        for e in self.report.epochs:
            first, mid, last = e.thirds()
            secs = e.samples[-1][0] - e.samples[0][0] if e.samples else 0.0
            growth = self.rss.epoch_growth.get(e.index)

            def mib(v: list[int], how: Any = statistics.median) -> str:
                return f"{how(v) / MIB:.1f}" if v else "-"

            lines.append(
                f"{e.index:>4} {'killed' if e.killed else 'done':>7} {secs:>6.1f}"
                f" {e.progress * ROWS_PER_LINE:>8}"
                f" {mib(first, max):>10} {mib(mid):>8} {mib(last):>9}"
                f" {'-' if growth is None else f'{growth / MIB:+.1f}':>7}"
            )
        r = self.rss
        lines += [
            f"rows produced {self.rows_produced}, expected after the filter {self.rows_expected},"
            f" committed {self.rows_committed}",
            f"restarts (kills in flight) {self.restarts} of {self.kills_sent} kills sent;"
            f" duplicates {self.duplicates}, lost {self.lost}, unexpected {self.unexpected},"
            f" wrong w {self.bad_values}; rows read again after kills >= {self.replayed}",
            f"RSS MiB: start {r.start / MIB:.1f}, plateau {r.plateau / MIB:.1f}, end {r.end / MIB:.1f},"
            f" peak {r.peak / MIB:.1f}; across runs"
            f" {'-' if r.run_growth is None else f'{r.run_growth / MIB:+.1f}'}"
            f" (tolerances {r.tolerance / MIB:.0f} within a run, {r.run_tolerance / MIB:.0f} across runs)",
            f"wall {self.wall_seconds:.0f} s: " + ("PASS" if not self.problems else "FAIL"),
            *(f"  - {p}" for p in self.problems),
        ]
        return "\n".join(lines)


def rows(p: int, per_partition: int, start: int, stop: int) -> pa.RecordBatch:
    """Rows ``start .. stop - 1`` of partition ``p``: ``id = p * per_partition + j``, ``v`` from a hash."""
    ids = p * per_partition + np.arange(start, stop, dtype=np.int64)
    v = (_mix(ids) % np.uint64(1000)).astype(np.int64)
    return pa.record_batch(
        {"id": pa.array(ids), "v": pa.array(v), "pad": pa.array([PAD] * len(ids), pa.string())}, schema=SCHEMA
    )


class RateProducer(threading.Thread):
    """Produces ``per_partition`` rows into each partition, evenly over ``duration`` seconds."""

    def __init__(
        self, client: dict[str, Any], topic: str, partitions: int, per_partition: int, duration: float
    ):
        super().__init__(daemon=True)
        self.client, self.topic, self.partitions = client, topic, partitions
        self.per_partition, self.duration = per_partition, duration
        self.error: BaseException | None = None
        self.produced = 0

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def _produce(self) -> None:
        producer = Producer({**self.client, "enable.idempotence": True, "linger.ms": 20})
        done = [0] * self.partitions
        t0 = time.monotonic()
        encoder = Json()
        while min(done) < self.per_partition:
            due = min(
                self.per_partition, math.ceil(self.per_partition * (time.monotonic() - t0) / self.duration)
            )
            for p in range(self.partitions):
                if due > done[p]:
                    for value in encoder.encode(
                        rows(p, self.per_partition, done[p], due)
                    ).payloads.to_pylist():
                        while True:
                            try:
                                producer.produce(self.topic, value, None, p)
                                break
                            except BufferError:
                                producer.poll(0.05)
                    self.produced += due - done[p]
                    done[p] = due
            producer.poll(0)
            time.sleep(0.1)
        assert producer.flush(120) == 0, "the producer could not deliver every row"


def high_watermarks(client: dict[str, Any], topic: str, partitions: int) -> list[int]:
    consumer = Consumer({**client, "group.id": f"soak-{uuid.uuid4().hex}"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)
        ]
    finally:
        consumer.close()


def committed(out: Path) -> pa.Table:
    """Every row of the committed Parquet files below ``out`` (hidden in-progress/pending files skipped)."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables) if tables else pa.table({"id": pa.array([], pa.int64())})


def minimum_kills(duration: float, kill_every: tuple[float, float]) -> int:
    """Kills a soak of ``duration`` seconds must have landed: one per longest kill interval plus a
    generous 30 s start-up allowance for each (a loaded machine), at least one."""
    return max(1, int(duration // (kill_every[1] + 30)))


def run_soak(
    bootstrap: str,
    *,
    minutes: float,
    workdir: Path,
    rate: float = 2000.0,
    partitions: int = 3,
    kill_every: tuple[float, float] = (20.0, 45.0),
    seed: int | None = None,
    tolerance: int = RSS_TOLERANCE,
    run_tolerance: int = RSS_RUN_TOLERANCE,
) -> SoakResult:
    """Run the soak against the broker at ``bootstrap``, files under ``workdir``; the checks' verdict
    is in ``SoakResult.problems``."""
    client = {"bootstrap.servers": bootstrap, "log_level": 3}
    duration = minutes * 60.0
    per_partition = math.ceil(rate * duration / partitions)
    topic = f"soak-{uuid.uuid4().hex[:12]}"
    Broker("kafka", bootstrap).create_topic(topic, partitions)
    out, ckpt = workdir / "out", workdir / "ckpt"
    command = [
        sys.executable,
        str(HERE / "soak_pipeline.py"),
        f"--bootstrap={bootstrap}",
        f"--topic={topic}",
        f"--stop={per_partition}",
        f"--partitions={partitions}",
        f"--checkpoint-dir={ckpt}",
        f"--out={out}",
    ]
    t0 = time.monotonic()
    producer = RateProducer(client, topic, partitions, per_partition, duration)
    producer.start()
    try:
        report = soak_with_crashes(command, duration=duration, kill_every=kill_every, seed=seed)
    finally:
        producer.join(duration + 300)
    wall = time.monotonic() - t0
    problems: list[str] = []
    if producer.error is not None or producer.is_alive():
        problems.append(f"the producer failed: {producer.error!r}")
    highs = high_watermarks(client, topic, partitions)
    if highs != [per_partition] * partitions:
        problems.append(f"partitions hold {highs} messages, not {per_partition} each")

    ids = np.arange(partitions * per_partition, dtype=np.int64)
    expected = ids[(_mix(ids) % np.uint64(1000)).astype(np.int64) % DROP_EVERY != 0]
    table = committed(out)
    got = table.column("id").to_numpy()
    uniq, counts = np.unique(got, return_counts=True)
    duplicates = int((counts - 1).sum())
    lost = int(np.setdiff1d(expected, uniq, assume_unique=True).size)
    unexpected = int(np.setdiff1d(uniq, expected, assume_unique=True).size)
    bad = 0
    if table.num_rows:
        v, w = table.column("v").to_numpy(), table.column("w").to_numpy()
        bad = int((w != v * 3 + got).sum() + (v != (_mix(got) % np.uint64(1000)).astype(np.int64)).sum())
    for name, n in (("duplicate", duplicates), ("lost", lost), ("unexpected", unexpected), ("wrong", bad)):
        if n:
            problems.append(f"{n} {name} row(s)")

    minimum = minimum_kills(duration, kill_every)
    if not report.kills_in_flight == report.kills >= minimum:
        problems.append(
            f"{report.kills_in_flight} kill(s) landed in flight of {report.kills} sent (at least {minimum}"
            f" expected; progress lines at each kill {report.kill_progress})"
        )
    rss = rss_verdict(report.epochs, tolerance=tolerance, run_tolerance=run_tolerance)
    problems += rss.growing
    return SoakResult(
        minutes=minutes,
        topic=topic,
        partitions=partitions,
        rows_produced=producer.produced,
        rows_expected=int(expected.size),
        rows_committed=int(got.size),
        kills_sent=report.kills,
        restarts=report.kills_in_flight,
        duplicates=duplicates,
        lost=lost,
        unexpected=unexpected,
        bad_values=bad,
        replayed=sum(e.progress for e in report.epochs) * ROWS_PER_LINE - producer.produced,
        report=report,
        rss=rss,
        wall_seconds=wall,
        problems=problems,
    )


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--bootstrap", default=f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")
    ap.add_argument("--results", type=Path, default=None, help="the JSON report (default benchmarks/results)")
    ap.add_argument("--rate", type=float, default=2000.0, help="rows per second produced")
    ap.add_argument("--kill-min", type=float, default=20.0)
    ap.add_argument("--kill-max", type=float, default=45.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    results = args.results or ROOT / "benchmarks" / "results" / f"soak-{stamp}.json"
    workdir = Path(tempfile.mkdtemp(prefix="arrowflow-soak-"))
    result = run_soak(
        args.bootstrap,
        minutes=args.minutes,
        workdir=workdir,
        rate=args.rate,
        kill_every=(args.kill_min, args.kill_max),
        seed=args.seed,
    )
    print(result.table())
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    print(f"report: {results}")
    if result.problems:
        print(f"files kept for inspection: {workdir}")
        return 1
    shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
