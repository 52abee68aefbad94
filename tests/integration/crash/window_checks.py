"""Checks shared by the window crash tests (DataGen and Kafka -> tumbling window -> FileSink).

* :func:`oracle_windows` - the expected windows: polars ``group_by_dynamic`` over every input row (and a
  one-shot HyperLogLog of each window's ids), with the bucket directory each belongs in.
* :func:`committed` - every committed Parquet file of the sink's output, with its bucket directory.
* :class:`WindowOutput` - the checks a test runs after every kill, at the end, and all along from a
  watcher thread: no window twice, every value equal to the oracle's, ``_SUCCESS`` only on a bucket
  that holds all of its windows, and at the end every window and every marker.

The rows must have the columns ``id`` (int64), ``ts`` (timestamp), ``k`` (the key) and ``v`` (int64);
the pipeline aggregates them with ``count, sum/min/max of v, approx_distinct(id, precision=10)``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from crash_harness import CrashReport

from arrowflow.ops import hll
from arrowflow.time import MAX_WATERMARK

KEYS = ["k", "window_start"]
VALUES = ("bucket", "window_end", "count", "v_sum", "v_min", "v_max", "id_approx_distinct")


def oracle_windows(rows: pl.DataFrame, every: str, bucket: str) -> pl.DataFrame:
    """The windows of ``rows`` (tumbling, ``every`` long, keyed by ``k``) and the bucket (``bucket``, a
    strftime pattern of ``window_start``) each must be committed in."""
    rows = rows.sort("ts", maintain_order=True)
    windows = (
        rows.group_by_dynamic("ts", every=every, group_by="k", include_boundaries=True)
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("v").sum().alias("v_sum"),
            pl.col("v").min().alias("v_min"),
            pl.col("v").max().alias("v_max"),
            pl.col("id").alias("ids"),
        )
        .rename({"_lower_boundary": "window_start", "_upper_boundary": "window_end"})
    )
    # approx_distinct of each window: the sketch of all its ids at once (the crash-resumed one, built
    # from partial sketches checkpointed and restored, must be exactly the same).
    estimates = []
    for ids in windows["ids"].to_list():
        reg, rank = hll.registers(hll.hash64(pa.array(ids, pa.int64())), 10)
        regs = np.zeros(1 << 10, dtype=np.int64)
        np.maximum.at(regs, reg, rank.astype(np.int64))
        nz = regs > 0
        estimates.append(
            int(hll.estimate(np.array([np.ldexp(1.0, -regs[nz]).sum()]), np.array([nz.sum()]), 10)[0])
        )
    windows = windows.with_columns(pl.Series("id_approx_distinct", estimates, dtype=pl.Int64))
    windows = windows.with_columns(pl.col("window_start").dt.strftime(bucket).alias("bucket"))
    return windows.select(["k", "window_start", *VALUES])


def committed(out: Path) -> pl.DataFrame:
    """Every committed (non-hidden) Parquet file, with the bucket directory it is in."""
    frames = []
    for path in sorted(out.glob("*/*.parquet")):
        if path.name.startswith((".", "_")):
            continue
        frames.append(
            pl.DataFrame(pq.read_table(path)).with_columns(pl.lit(path.parent.name).alias("bucket"))
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames)


class WindowOutput:
    """The committed windows under ``out`` checked against ``expect`` (:func:`oracle_windows`).

    ``progress`` collects the number of committed windows after each kill (:meth:`after_kill`)."""

    def __init__(self, out: Path, expect: pl.DataFrame) -> None:
        self.out = out
        self.expect = expect
        buckets = expect.group_by("bucket").len()
        self.complete_size = dict(zip(buckets["bucket"].to_list(), buckets["len"].to_list(), strict=True))
        self.progress: list[int] = []
        self.final: dict[str, Any] = {}

    def check_markers(self) -> dict[str, int]:
        """Every bucket with ``_SUCCESS`` already holds all of its windows. Markers are listed before
        the files: files are committed before their marker, so a concurrent commit cannot fool this."""
        marked = {p.parent.name for p in self.out.glob("*/_SUCCESS")}
        got = committed(self.out)
        per_bucket = got.group_by("bucket").len() if got.height else pl.DataFrame({"bucket": [], "len": []})
        have = dict(zip(per_bucket["bucket"].to_list(), per_bucket["len"].to_list(), strict=True))
        for b in marked:
            assert have.get(b) == self.complete_size.get(b), (
                f"bucket {b} has _SUCCESS but {have.get(b)}/{self.complete_size.get(b)} windows"
            )
        return {b: have.get(b, 0) for b in marked}

    def check(self, final: bool) -> None:
        """No window twice, every committed one equal to the oracle's; with ``final``, all of them and
        a ``_SUCCESS`` on every bucket."""
        marked = set(self.check_markers())
        got = committed(self.out)
        n = got.height
        if n:
            dupes = got.group_by(KEYS).len().filter(pl.col("len") > 1)
            assert dupes.height == 0, f"windows committed twice: {dupes.head(5)}"
            joined = got.join(self.expect, on=KEYS, how="left", suffix="_expected")
            for col in VALUES:
                bad = joined.filter(pl.col(col).ne_missing(pl.col(f"{col}_expected")))
                assert bad.height == 0, f"{col} differs from the oracle: {bad.head(3)}"
        if final:
            assert n == self.expect.height, f"{n} of {self.expect.height} windows committed"
            assert marked == set(self.complete_size), "a complete bucket lacks its _SUCCESS"
        else:
            self.progress.append(n)

    def verify_final(self, report: CrashReport) -> None:
        """The harness's ``verify``: every window once, equal to the oracle, every marker; the final run
        (its last stdout line: the RunResult as JSON, kept in :attr:`final`) ended on the final
        watermark with no late row."""
        self.check(final=True)
        self.final = json.loads(report.final_stdout.strip().splitlines()[-1])
        assert self.final["watermark"] == MAX_WATERMARK and self.final["stopped"] is False
        assert self.final["late_rows"] == 0 and self.final["window_late_rows"] == 0

    def after_kill(self, _: CrashReport) -> None:
        self.check(final=False)

    def assert_resumed(self, report: CrashReport) -> None:
        """One check per kill, output committed before the last kill, and never shrinking."""
        assert len(self.progress) == report.kills
        assert self.progress[-1] > 0, (
            "no window was committed before the last kill: the restarts resumed nothing"
        )
        assert sorted(self.progress) == self.progress  # committed output only grows

    @contextmanager
    def watched(self) -> Iterator[None]:
        """A reader polling the directory while the body runs (the pipeline runs and is killed) never
        sees a marker on an incomplete bucket, and sees at least one committed bucket."""
        stop = threading.Event()
        polls: list[int] = []
        violations: list[str] = []

        def watch() -> None:
            while not stop.is_set():
                try:
                    polls.append(len(self.check_markers()))
                except AssertionError as exc:
                    violations.append(str(exc))
                except (OSError, pl.exceptions.ComputeError, pa.ArrowInvalid):
                    pass  # a file renamed or deleted between listing and reading: look again
                stop.wait(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(10)
        assert not violations, violations[:3]
        assert max(polls, default=0) > 0, "the watcher never saw a committed bucket"
