"""SIGTERM/SIGINT on a pipeline process: graceful stop with a final checkpoint; a second signal aborts."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from crash_harness import _Proc, python_command
from crash_helpers import committed_ids

from arrowflow.pipeline import CheckpointStore


def _unbounded(tmp_path: Path, *extra: str) -> list[str]:
    return python_command(
        "crash_pipeline.py",
        "--splits=2",
        "--batch-rows=100",
        "--delay=0.01",
        "--sink=2pc",
        "--guarantee=exactly-once",
        f"--checkpoint-dir={tmp_path / 'ckpt'}",
        f"--out={tmp_path / 'out'}",
        "--interval=600",  # only the final checkpoint
        *extra,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_with_final_checkpoint(tmp_path: Path, sig: signal.Signals) -> None:
    p = _Proc(_unbounded(tmp_path), None, "started")
    assert p.ready.wait(60), p.stderr
    assert CheckpointStore(tmp_path / "ckpt").load() is None
    p.proc.send_signal(sig)
    assert p.wait(60) == 0, p.stderr
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["stopped"] is True
    assert result["checkpoints"] == 1
    cp = CheckpointStore(tmp_path / "ckpt").load()
    assert cp is not None and cp.checkpoint_id == result["last_checkpoint_id"] == 1
    # Positions cover exactly the committed rows: split i's ids start at i * 10**12.
    ids = committed_ids(tmp_path / "out")
    assert len(ids) == result["rows"] > 0
    for i in range(2):
        start = i * 10**12
        mine = ids[(ids >= start) & (ids < start + 10**12)]
        assert cp.positions[f"r{i}"] == start + len(mine)
        assert np.array_equal(mine, np.arange(start, start + len(mine)))

    # A restart resumes from the saved positions: no id is written twice.
    p2 = _Proc(_unbounded(tmp_path), None, "started")
    assert p2.ready.wait(60), p2.stderr
    p2.proc.send_signal(signal.SIGTERM)
    assert p2.wait(60) == 0, p2.stderr
    ids2 = committed_ids(tmp_path / "out")
    assert len(ids2) > len(ids)
    assert len(np.unique(ids2)) == len(ids2)
    assert CheckpointStore(tmp_path / "ckpt").load().checkpoint_id == 2  # type: ignore[union-attr]


def test_second_signal_aborts_without_checkpoint(tmp_path: Path) -> None:
    # The sink's prepare_commit takes 3 s and prints "preparing": the second signal lands inside it.
    p = _Proc(_unbounded(tmp_path, "--prepare-delay=3"), None, "started")
    assert p.ready.wait(60), p.stderr
    p.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    while "preparing\n" not in p.lines and time.monotonic() < deadline and p.proc.poll() is None:
        time.sleep(0.05)
    assert "preparing\n" in p.lines, p.stderr
    p.proc.send_signal(signal.SIGTERM)
    rc = p.wait(60)
    assert rc != 0
    assert "KeyboardInterrupt" in p.stderr
    assert CheckpointStore(tmp_path / "ckpt").load() is None
    assert len(committed_ids(tmp_path / "out")) == 0
