"""The checkpoint store survives SIGKILL at any moment: the current checkpoint is always complete."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from checkpoint_writer import make
from crash_harness import _Proc, python_command

from arrowflow.pipeline import CheckpointStore


def _assert_valid(store: CheckpointStore) -> int:
    cp = store.load()
    assert cp is not None
    expected = make(cp.checkpoint_id)
    assert cp.positions == expected.positions
    assert list(cp.committables) == list(expected.committables)
    assert list(cp.finished) == list(expected.finished)
    assert [s.to_json() for s in cp.splits] == [s.to_json() for s in expected.splits]
    return cp.checkpoint_id


def test_random_sigkills_always_leave_a_complete_checkpoint(tmp_path: Path) -> None:
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    store = CheckpointStore(tmp_path)
    last_id = 0
    for _ in range(12):
        p = _Proc(python_command("checkpoint_writer.py", str(tmp_path), "loop"), None, "ready")
        assert p.ready.wait(60), p.stderr
        assert p.proc.poll() is None, p.stderr
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(p.proc.pid, signal.SIGKILL)
        assert p.wait(30) == -signal.SIGKILL
        cp_id = _assert_valid(store)
        # Each run saved at least one checkpoint after the previous one, and none went backwards.
        assert cp_id > last_id, f"seed {seed}"
        last_id = cp_id
    assert last_id >= 12


def _inject(tmp_path: Path, stage: str, crash_id: int) -> None:
    cmd = python_command("checkpoint_writer.py", str(tmp_path), "inject", stage, str(crash_id))
    p = _Proc(cmd, None, None)
    assert p.wait(60) == -signal.SIGKILL, p.stderr


def test_crash_between_temp_write_and_rename_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    _inject(tmp_path, "temp-written", 7)
    # The complete new document sits in a temporary file, but the current checkpoint is still 6.
    temps = list(tmp_path.glob(".checkpoint-*.tmp"))
    assert len(temps) == 1
    store = CheckpointStore(tmp_path)
    assert _assert_valid(store) == 6
    assert store.load_previous() is not None and store.load_previous().checkpoint_id == 5  # type: ignore[union-attr]
    # The next save cleans the leftover up.
    store.save(make(7))
    assert _assert_valid(store) == 7
    assert not list(tmp_path.glob(".checkpoint-*.tmp"))


def test_crash_right_after_rename_has_the_new_checkpoint(tmp_path: Path) -> None:
    _inject(tmp_path, "renamed", 4)
    store = CheckpointStore(tmp_path)
    assert _assert_valid(store) == 4
    assert not list(tmp_path.glob(".checkpoint-*.tmp"))


def test_writer_script_completes_without_injection(tmp_path: Path) -> None:
    # Sanity check of the injection script itself: a stage name that never occurs means no crash.
    cmd = python_command("checkpoint_writer.py", str(tmp_path), "inject", "never", "3")
    p = _Proc(cmd, None, None)
    assert p.wait(60) == 0, p.stderr
    assert _assert_valid(CheckpointStore(tmp_path)) == 3
