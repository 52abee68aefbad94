"""Crash-resume of FileSink / FileSource pipelines in real processes, SIGKILLed at random moments.

Reuses the pipeline engineer's harness (tests/integration/crash/crash_harness.py): the pipeline runs
as a child process, is killed at least five times and restarted from its checkpoint directory, then
run to completion; the committed output is then checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))

from crash_harness import CrashReport, crash_mid_stream
from crash_helpers import committed_ids

from arrowflow.testing import make_table

ROWS = 30_000
# 200 batches of 150 rows, a checkpoint every ~3 batches: each run is killed after 1-15 batches.
KILL_AFTER = (1, 15)
SCRIPT = str(Path(__file__).resolve().parent / "fs_crash_pipeline.py")


def _command(tmp_path: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        SCRIPT,
        *args,
        f"--checkpoint-dir={tmp_path / 'ckpt'}",
        f"--out={tmp_path / 'out'}",
        f"--rows={ROWS}",
    ]


def _filesink_ids(out: Path) -> np.ndarray:
    """Every id a directory reader sees in the FileSink's output (hidden files ignored)."""
    table = ds.dataset(str(out), format="parquet", partitioning="hive").to_table(columns=["id"])
    return np.sort(table.column("id").to_numpy())


def _check_filesink_output(out: Path) -> None:
    ids = _filesink_ids(out)
    assert len(ids) == ROWS, f"{len(ids)} committed rows, {len(np.unique(ids))} distinct"
    assert np.array_equal(ids, np.arange(ROWS)), "rows lost or duplicated"
    leftovers = [p for p in out.rglob(".*")]
    assert not leftovers, f"in-progress/pending files left behind: {leftovers[:5]}"
    for part in out.rglob("part-*.parquet"):  # routed by id & 3 into hive directories
        bucket = int(part.parent.name.split("=")[1])
        assert np.all(pq.read_table(part).column("id").to_numpy() % 4 == bucket)


def _write_input(directory: Path) -> None:
    directory.mkdir()
    data = make_table(ROWS)
    for i in range(20):
        part = data.slice(i * (ROWS // 20), ROWS // 20)
        pq.write_table(part, directory / f"in-{i:02d}.parquet", row_group_size=500)


def test_range_to_filesink_exactly_once_under_sigkill(tmp_path: Path) -> None:
    def verify(report: CrashReport) -> None:
        _check_filesink_output(tmp_path / "out")
        assert json.loads(report.final_stdout.strip().splitlines()[-1])["stopped"] is False

    crash_mid_stream(
        _command(tmp_path, "--source=range", "--sink=filesink", "--guarantee=exactly-once"),
        verify=verify,
        kills=6,
        kill_after=KILL_AFTER,
    )


def test_filesource_to_filesink_exactly_once_under_sigkill(tmp_path: Path) -> None:
    _write_input(tmp_path / "in")

    def verify(report: CrashReport) -> None:
        _check_filesink_output(tmp_path / "out")

    crash_mid_stream(
        _command(
            tmp_path,
            "--source=files",
            f"--input={tmp_path / 'in'}",
            "--sink=filesink",
            "--guarantee=exactly-once",
        ),
        verify=verify,
        kills=5,
        kill_after=KILL_AFTER,
    )


def test_filesource_at_least_once_loses_nothing_under_sigkill(tmp_path: Path) -> None:
    _write_input(tmp_path / "in")

    def verify(report: CrashReport) -> None:
        ids = committed_ids(tmp_path / "out")
        assert np.array_equal(np.unique(ids), np.arange(ROWS)), "rows lost"

    crash_mid_stream(
        _command(
            tmp_path,
            "--source=files",
            f"--input={tmp_path / 'in'}",
            "--sink=append",
            "--guarantee=at-least-once",
        ),
        verify=verify,
        kills=5,
        kill_after=KILL_AFTER,
    )
