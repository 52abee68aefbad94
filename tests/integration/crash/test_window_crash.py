"""Crash-resume of an event-time pipeline: DataGen -> tumbling window -> FileSink, SIGKILLed mid-run.

The committed window results must equal the oracle (polars ``group_by_dynamic`` over every generated
row, and a one-shot HyperLogLog per window) exactly: no window lost, none twice. Exactly ``KILLS``
SIGKILLs land while data is in flight (the harness's count: after the first batch, before ``done``).
After every kill, and all along as a reader polling the directory sees it, a bucket directory with
``_SUCCESS`` holds all of its windows (it was complete when committed), and no directory holds a window
twice or one the oracle does not have.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from crash_harness import CrashReport, crash_mid_stream, python_command
from window_crash_pipeline import BUCKET, ROWS, generate

from arrowflow.ops import hll
from arrowflow.time import MAX_WATERMARK

KILLS = 4
KEYS = ["k", "window_start"]


def oracle() -> pl.DataFrame:
    rows = pl.from_arrow(generate(np.arange(ROWS, dtype=np.int64))).sort("ts", maintain_order=True)
    windows = (
        rows.group_by_dynamic("ts", every="10s", group_by="k", include_boundaries=True)
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
    windows = windows.with_columns(pl.col("window_start").dt.strftime(BUCKET).alias("bucket"))
    return windows.select(
        [
            "bucket",
            "k",
            "window_start",
            "window_end",
            "count",
            "v_sum",
            "v_min",
            "v_max",
            "id_approx_distinct",
        ]
    )


def committed(out: Path) -> pl.DataFrame:
    """Every committed (non-hidden) Parquet file, with the bucket directory it is in."""
    frames = []
    for path in sorted(out.glob("*/*.parquet")):
        if path.name.startswith((".", "_")):
            continue
        frames.append(
            pl.from_arrow(pq.read_table(path)).with_columns(pl.lit(path.parent.name).alias("bucket"))
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames)


def test_tumbling_window_to_file_sink_exactly_once_across_sigkills(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    expect = oracle()
    total = expect.height
    buckets = expect.group_by("bucket").len()
    complete_size = dict(zip(buckets["bucket"].to_list(), buckets["len"].to_list(), strict=True))
    progress: list[int] = []

    def check_markers() -> dict[str, int]:
        """Every bucket with ``_SUCCESS`` already holds all of its windows. Markers are listed before
        the files: files are committed before their marker, so a concurrent commit cannot fool this."""
        marked = {p.parent.name for p in out.glob("*/_SUCCESS")}
        got = committed(out)
        per_bucket = got.group_by("bucket").len() if got.height else pl.DataFrame({"bucket": [], "len": []})
        have = dict(zip(per_bucket["bucket"].to_list(), per_bucket["len"].to_list(), strict=True))
        for b in marked:
            assert have.get(b) == complete_size[b], (
                f"bucket {b} has _SUCCESS but {have.get(b)}/{complete_size[b]} windows"
            )
        return {b: have.get(b, 0) for b in marked}

    def check_output(final: bool) -> None:
        marked = set(check_markers())
        got = committed(out)
        n = got.height
        if n:
            dupes = got.group_by(KEYS).len().filter(pl.col("len") > 1)
            assert dupes.height == 0, f"windows committed twice: {dupes.head(5)}"
            joined = got.join(expect, on=KEYS, how="left", suffix="_expected")
            for col in ("bucket", "window_end", "count", "v_sum", "v_min", "v_max", "id_approx_distinct"):
                bad = joined.filter(pl.col(col).ne_missing(pl.col(f"{col}_expected")))
                assert bad.height == 0, f"{col} differs from the oracle: {bad.head(3)}"
        if final:
            assert n == total, f"{n} of {total} windows committed"
            assert marked == set(complete_size), "a complete bucket lacks its _SUCCESS"
        else:
            progress.append(n)

    command = python_command(
        "window_crash_pipeline.py",
        f"--checkpoint-dir={ckpt}",
        f"--out={out}",
        "--rate=5000",
        "--interval=0.2",
    )

    def verify(report: CrashReport) -> None:
        check_output(final=True)
        final = json.loads(report.final_stdout.strip().splitlines()[-1])
        assert final["watermark"] == MAX_WATERMARK and final["stopped"] is False
        assert final["late_rows"] == 0 and final["window_late_rows"] == 0

    # A reader watching the directory while the pipeline runs (and is killed) never sees a marker on
    # an incomplete bucket.
    stop = threading.Event()
    polls: list[int] = []
    violations: list[str] = []

    def watch() -> None:
        while not stop.is_set():
            try:
                polls.append(len(check_markers()))
            except AssertionError as exc:
                violations.append(str(exc))
            except (OSError, pl.exceptions.ComputeError, pa.ArrowInvalid):
                pass  # a file renamed or deleted between listing and reading: look again
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        # Killed after 3-30 batches of a run (500 rows each, 5,000 rows/s) plus up to 50 ms; exactly
        # KILLS kills must land in flight.
        report = crash_mid_stream(
            command,
            verify=verify,
            kills=KILLS,
            kill_after=(3, 30),
            timeout=240.0,
            after_kill=lambda _: check_output(final=False),
        )
    finally:
        stop.set()
        watcher.join(10)
    assert not violations, violations[:3]
    assert max(polls, default=0) > 0, "the watcher never saw a committed bucket"
    assert len(progress) == report.kills
    assert progress[-1] > 0, "no window was committed before the last kill: the restarts resumed nothing"
    assert sorted(progress) == progress  # committed output only grows
