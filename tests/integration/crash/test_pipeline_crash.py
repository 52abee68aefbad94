"""Crash-resume with real processes: SIGKILL a running pipeline repeatedly, restart it, check the output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from crash_harness import CrashReport, crash_mid_stream, python_command
from crash_helpers import committed_ids

from arrowflow.pipeline import CheckpointStore

ROWS = 30_000
# 200 batches of 150 rows; each run is killed after 1-15 of them: the kills always land mid-stream.
KILL_AFTER = (1, 15)


def _command(tmp_path: Path, sink: str, guarantee: str) -> list[str]:
    return python_command(
        "crash_pipeline.py",
        f"--rows={ROWS}",
        "--splits=3",
        "--batch-rows=150",
        "--delay=0.02",
        f"--sink={sink}",
        f"--guarantee={guarantee}",
        f"--checkpoint-dir={tmp_path / 'ckpt'}",
        f"--out={tmp_path / 'out'}",
        "--interval=0.1",
    )


def test_exactly_once_survives_repeated_sigkill(tmp_path: Path) -> None:
    def verify(report: CrashReport) -> None:
        ids = committed_ids(tmp_path / "out")
        assert len(ids) == ROWS, f"{len(ids)} committed rows, {len(np.unique(ids))} distinct"
        assert np.array_equal(ids, np.arange(ROWS)), "rows lost or duplicated"
        out = tmp_path / "out"
        assert not list(out.glob("inprogress-*")) and not list(out.glob("pending-*"))
        final = json.loads(report.final_stdout.strip().splitlines()[-1])
        assert final["stopped"] is False
        cp = CheckpointStore(tmp_path / "ckpt").load()
        assert cp is not None and sorted(cp.finished) == ["r0", "r1", "r2"]
        assert cp.positions == {"r0": 10_000, "r1": 20_000, "r2": ROWS}

    crash_mid_stream(_command(tmp_path, "2pc", "exactly-once"), verify=verify, kills=6, kill_after=KILL_AFTER)


def test_at_least_once_loses_nothing_under_sigkill(tmp_path: Path) -> None:
    def verify(report: CrashReport) -> None:
        ids = committed_ids(tmp_path / "out")
        assert np.array_equal(np.unique(ids), np.arange(ROWS)), "rows lost"

    crash_mid_stream(
        _command(tmp_path, "append", "at-least-once"),
        verify=verify,
        kills=5,
        kill_after=KILL_AFTER,
    )
