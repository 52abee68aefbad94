"""A generic kill-and-restart harness for crash tests of real processes.

:func:`run_with_crashes` starts ``command``, waits for ``ready_line`` on its stdout (or just for the
process to start), SIGKILLs it, and repeats until ``kills`` SIGKILLs have landed while data was in
flight; then it runs the command once more to completion (exit status 0 required) and calls
``verify(report)``. The command must resume from its own durable state (a checkpoint directory) on
every start. Reusable for any sink or source: pass the command line and a verification of the
external system's final state.

When does a kill count? A SIGKILL *lands in flight* when the process died of it (it had not exited on
its own), had printed ``ready_line`` (its first batch passed) and had not yet printed ``done_line``
(the work is over; what follows is only its exit). Only those are counted in
``report.kills_in_flight``; a test asserts that number exactly, so a pipeline that finishes before
its kills fails the test instead of passing with none. With ``progress_line`` the kill moment is
counted in batches, not seconds: each run is killed after its n-th progress line (n drawn from
``kill_after``) plus a random ``[min_delay, max_delay]`` pause, so the kill lands mid-stream however
fast or loaded the machine is. Without it the pause alone (from the ready line) decides, as before.
A run that prints ``stalled`` (:func:`crash_helpers.stalling`: rows acknowledged by the target, their
checkpoint not yet saved) is killed then, without waiting for more progress lines (such a run prints
none, so that no progress count ends it before its stall: ``Progress(quiet=True)``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[3] / "src")
HERE = str(Path(__file__).resolve().parent)

#: The lines :class:`crash_helpers.Progress` prints: the ready line (first batch) and one per batch.
STARTED = "started"
PROGRESS = "progress"
STALLED = "stalled"
DONE = "done"


@dataclass
class CrashReport:
    """What happened: one entry per SIGKILL sent, whether it landed in flight, the final run's output.

    ``kill_delays`` holds, for every SIGKILL sent, the pause in seconds before it (after the ready line,
    or after the chosen progress line); ``in_flight`` says, for the same kills, which ones landed while
    data was in flight (see the module docstring); ``kill_progress`` how many progress lines each killed
    run had printed, ``killed_stdouts`` everything each killed run had printed on stdout.
    ``early_exits`` counts runs that finished on their own before their kill.
    """

    seed: int
    kill_delays: list[float] = field(default_factory=list)
    in_flight: list[bool] = field(default_factory=list)
    kill_progress: list[int] = field(default_factory=list)
    early_exits: int = 0
    final_stdout: str = ""
    final_stderr: str = ""
    killed_stdouts: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        """SIGKILLs sent (landed in flight or not)."""
        return len(self.kill_delays)

    @property
    def kills_in_flight(self) -> int:
        """SIGKILLs that killed a run with data in flight: the number a crash test asserts."""
        return sum(self.in_flight)

    @property
    def late_kills(self) -> int:
        """SIGKILLs that came after the run had finished its work (or before it started): not counted."""
        return self.kills - self.kills_in_flight


class _Proc:
    """A child process whose stdout lines are collected by a thread (so pipes never fill up).

    ``progress`` counts the lines equal to ``progress_line``; ``wait_progress(n)`` blocks until the
    n-th one, a ``stalled`` line, ``done_line``, or the end of the output.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str] | None,
        ready_line: str | None,
        progress_line: str | None = None,
        done_line: str | None = None,
    ):
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([SRC, HERE, full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.progress = 0
        self._progress_line = progress_line
        self._changed = threading.Condition()
        self._eof = False
        self.stalled = False
        self.done = False
        self._done_line = done_line
        self.proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self._ready_line = ready_line
        self._out = threading.Thread(target=self._pump, daemon=True)
        self._out.start()
        self.stderr = ""
        self._err = threading.Thread(target=self._pump_err, daemon=True)
        self._err.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self._ready_line is None or line.strip() == self._ready_line:
                self.ready.set()
            if self._progress_line is not None and line.strip() == self._progress_line:
                with self._changed:
                    self.progress += 1
                    self._changed.notify_all()
            if line.strip() in (STALLED, self._done_line):
                with self._changed:
                    self.stalled = self.stalled or line.strip() == STALLED
                    self.done = self.done or line.strip() == self._done_line
                    self._changed.notify_all()
        self.ready.set()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_progress(self, n: int, timeout: float) -> bool:
        """Wait for the n-th progress line, a ``stalled`` line or the done line (the run has nothing
        left to kill); False if the output ended or ``timeout`` passed first."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.progress >= n or self.stalled or self.done or self._eof, timeout
            )
            return self.progress >= n or self.stalled or self.done

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._out.join(10)
        self._err.join(10)
        return rc

    def has_line(self, line: str | None) -> bool:
        return line is not None and any(x.strip() == line for x in self.lines)

    @property
    def stdout(self) -> str:
        return "".join(self.lines)


def run_with_crashes(
    command: Sequence[str],
    *,
    verify: Callable[[CrashReport], None],
    kills: int = 5,
    min_delay: float = 0.05,
    max_delay: float = 0.8,
    ready_line: str | None = None,
    env: Mapping[str, str] | None = None,
    seed: int | None = None,
    timeout: float = 120.0,
    progress_line: str | None = None,
    kill_after: tuple[int, int] = (1, 10),
    done_line: str | None = None,
    max_runs: int | None = None,
    after_kill: Callable[[CrashReport], None] | None = None,
) -> CrashReport:
    """Kill ``command`` until ``kills`` SIGKILLs landed in flight, then run it to the end and ``verify``.

    Each run is killed after a pause uniform in ``[min_delay, max_delay]`` seconds, counted from the
    moment ``ready_line`` appeared on stdout (from the start without it), or, with ``progress_line``,
    from its n-th progress line, n uniform in ``kill_after`` (inclusive). A kill counts in
    ``report.kills_in_flight`` only if it killed the process, after ``ready_line`` (and a progress line)
    and before ``done_line`` (module docstring); a kill that did not count is followed by another run,
    up to ``max_runs`` runs (default ``3 * kills``). If a run finishes on its own before its kill, it
    must exit 0 and counts as the final run (``report.early_exits``): no more kills can land, and the
    caller's exact count of ``kills_in_flight`` then fails. Failures include the seed to reproduce.
    ``after_kill(report)`` runs after each kill, before the restart (to inspect the durable state a
    crash left behind).
    """
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    report = CrashReport(seed=seed)
    max_runs = 3 * kills if max_runs is None else max_runs
    finished = False
    while report.kills_in_flight < kills and report.kills < max_runs:
        p = _Proc(command, env, ready_line, progress_line, done_line)
        if ready_line is not None:
            start_deadline = time.monotonic() + timeout
            while not p.ready.wait(0.05):
                if p.proc.poll() is not None or time.monotonic() > start_deadline:
                    break
        if progress_line is not None:
            p.wait_progress(rng.randint(*kill_after), timeout)
        delay = rng.uniform(min_delay, max_delay)
        try:
            rc = p.proc.wait(delay)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            os.kill(p.proc.pid, signal.SIGKILL)
            rc = p.wait(timeout)
            report.kill_delays.append(delay)
            report.killed_stdouts.append(p.stdout)
            report.kill_progress.append(p.progress)
            # Read after death: every line the run printed is in, so "not done yet" is certain.
            report.in_flight.append(
                rc == -signal.SIGKILL
                and (ready_line is None or p.has_line(ready_line))
                and (progress_line is None or p.progress > 0 or p.stalled)
                and not p.has_line(done_line)
            )
            if rc != -signal.SIGKILL and rc != 0:
                raise AssertionError(f"run exited with {rc} before its kill (seed {seed}):\n{p.stderr}")
            if after_kill is not None:
                try:
                    after_kill(report)
                except AssertionError as exc:
                    raise AssertionError(f"after kill {report.kills}: {exc} (seed {seed})") from exc
            continue
        p.wait(timeout)
        if rc != 0:
            raise AssertionError(f"run exited with {rc} before its kill (seed {seed}):\n{p.stderr}")
        report.early_exits += 1
        report.final_stdout, report.final_stderr = p.stdout, p.stderr
        finished = True
        break
    if not finished:
        p = _Proc(command, env, None)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.proc.pid, signal.SIGKILL)
            p.wait(timeout)
            raise AssertionError(f"final run did not finish in {timeout}s (seed {seed})") from None
        if rc != 0:
            raise AssertionError(f"final run exited with {rc} (seed {seed}):\n{p.stderr}")
        report.final_stdout, report.final_stderr = p.stdout, p.stderr
    try:
        verify(report)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (seed {seed}, {_describe(report)})") from exc
    return report


def _describe(report: CrashReport) -> str:
    return (
        f"{report.kills_in_flight} kill(s) in flight of {report.kills} sent, delays {report.kill_delays},"
        f" progress lines at each kill {report.kill_progress}, early exits {report.early_exits}"
    )


def crash_mid_stream(
    command: Sequence[str],
    *,
    verify: Callable[[CrashReport], None],
    kills: int,
    kill_after: tuple[int, int],
    seed: int | None = None,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    after_kill: Callable[[CrashReport], None] | None = None,
) -> CrashReport:
    """:func:`run_with_crashes` for a pipeline that prints :class:`crash_helpers.Progress`'s lines
    (``started``, ``progress`` per batch, ``done``): each run is killed after n batches, n drawn from
    ``kill_after`` (plus up to 50 ms); then exactly ``kills`` kills must have landed in flight.
    ``kill_after`` should reach past a checkpoint interval (so that some kills find a checkpoint to
    resume from) and ``kills * kill_after[1]`` stay below the batches of the whole run."""
    report = run_with_crashes(
        command,
        verify=verify,
        kills=kills,
        min_delay=0.0,
        max_delay=0.05,
        ready_line=STARTED,
        progress_line=PROGRESS,
        kill_after=kill_after,
        done_line=DONE,
        seed=seed,
        timeout=timeout,
        env=env,
        after_kill=after_kill,
    )
    assert_kills_in_flight(report, kills)
    return report


def assert_kills_in_flight(report: CrashReport, expected: int) -> None:
    """The exact number of SIGKILLs that landed in flight (a finished pipeline cannot be crashed)."""
    assert report.kills_in_flight == expected, (
        f"expected {expected} kill(s) while data was in flight: {_describe(report)}"
    )


def python_command(script: str, *args: str) -> list[str]:
    """``[sys.executable, <this directory>/script, *args]``."""
    return [sys.executable, str(Path(HERE) / script), *args]
