"""The crash harness counts only the SIGKILLs that land while data is in flight.

Tiny stand-in processes (no pipeline) print the harness's lines: a kill after ``done`` (the work was
over) or before ``started`` does not count, a run that finishes before its kill ends the killing, and
``assert_kills_in_flight`` then fails.
"""

from __future__ import annotations

import sys

import pytest
from crash_harness import DONE, PROGRESS, STARTED, CrashReport, assert_kills_in_flight, run_with_crashes


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", "import sys, time\n" + body]


def _ok(report: CrashReport) -> None:
    assert report.final_stdout


def _streaming(batches: int, then: str = "") -> list[str]:
    return _script(
        f"print({STARTED!r}, flush=True)\n"
        f"for _ in range({batches}):\n"
        f"    time.sleep(0.005)\n"
        f"    print({PROGRESS!r}, flush=True)\n"
        f"print({DONE!r}, flush=True)\n{then}"
    )


def _crash(
    command: list[str], *, kills: int, delay: float, kill_after: tuple[int, int], seed: int
) -> CrashReport:
    """At most ``kills`` killed runs, each after its ``kill_after`` progress lines and ``delay`` s."""
    return run_with_crashes(
        command,
        verify=_ok,
        kills=kills,
        min_delay=delay,
        max_delay=delay,
        ready_line=STARTED,
        progress_line=PROGRESS,
        kill_after=kill_after,
        done_line=DONE,
        seed=seed,
        max_runs=kills,
        timeout=60,
    )


def test_kills_mid_stream_are_counted() -> None:
    report = _crash(_streaming(1000), kills=3, delay=0.01, kill_after=(1, 20), seed=1)
    assert_kills_in_flight(report, 3)
    assert report.kills == 3 and report.early_exits == 0
    assert all(n >= 1 for n in report.kill_progress)


def test_a_kill_after_done_does_not_count() -> None:
    # The work is over (``done``) and the process lingers: every kill comes too late. The fifth
    # progress line never comes: ``done`` ends the wait, the harness kills after the pause.
    report = _crash(_streaming(1, "time.sleep(2)\n"), kills=2, delay=0.2, kill_after=(5, 5), seed=2)
    assert report.kills == 2 and report.kills_in_flight == 0 and report.late_kills == 2
    assert report.early_exits == 0  # the final run (unkilled) exits on its own after its pause
    with pytest.raises(AssertionError, match="expected 2 kill"):
        assert_kills_in_flight(report, 2)


def test_a_run_that_finishes_before_its_kill_ends_the_killing() -> None:
    # Killed after its 5th batch, but it has 3: it ends first and is the final run.
    report = _crash(_streaming(3, "time.sleep(0.5)\n"), kills=3, delay=5.0, kill_after=(5, 5), seed=3)
    assert report.early_exits == 1 and report.kills == 0
    with pytest.raises(AssertionError, match="expected 3 kill"):
        assert_kills_in_flight(report, 3)
