"""A generic kill-and-restart harness for crash tests of real processes.

:func:`run_with_crashes` starts ``command``, waits for ``ready_line`` on its stdout (or just for the
process to start), SIGKILLs it after a random delay, and repeats ``kills`` times; then it runs the
command once more to completion (exit status 0 required) and calls ``verify(report)``. The command must
resume from its own durable state (a checkpoint directory) on every start. Reusable for any sink or
source: pass the command line and a verification of the external system's final state.
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


@dataclass
class CrashReport:
    """What happened: kill delays (seconds after ready), the final run's output."""

    seed: int
    kill_delays: list[float] = field(default_factory=list)
    early_exits: int = 0
    final_stdout: str = ""
    final_stderr: str = ""

    @property
    def kills(self) -> int:
        return len(self.kill_delays)


class _Proc:
    """A child process whose stdout lines are collected by a thread (so pipes never fill up)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None, ready_line: str | None):
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([SRC, HERE, full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        self.ready = threading.Event()
        self.lines: list[str] = []
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
        self.ready.set()

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._out.join(10)
        self._err.join(10)
        return rc

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
    after_kill: Callable[[CrashReport], None] | None = None,
) -> CrashReport:
    """Kill ``command`` ``kills`` times at random moments, then run it to the end and ``verify``.

    The delay before each SIGKILL is uniform in ``[min_delay, max_delay]`` seconds, counted from the
    moment ``ready_line`` appeared on stdout (from the start without it). If a run finishes on its own
    before its kill, it must exit 0 and counts as the final run (``report.early_exits``); the caller
    decides whether fewer kills are acceptable. Failures include the seed to reproduce the delays.
    ``after_kill(report)`` runs after each kill, before the restart (to inspect the durable state a
    crash left behind).
    """
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    report = CrashReport(seed=seed)
    finished = False
    while report.kills < kills:
        p = _Proc(command, env, ready_line)
        if ready_line is not None:
            start_deadline = time.monotonic() + timeout
            while not p.ready.wait(0.05):
                if p.proc.poll() is not None or time.monotonic() > start_deadline:
                    break
        delay = rng.uniform(min_delay, max_delay)
        try:
            rc = p.proc.wait(delay)
        except subprocess.TimeoutExpired:
            os.kill(p.proc.pid, signal.SIGKILL)
            p.wait(timeout)
            report.kill_delays.append(delay)
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
        raise AssertionError(f"{exc} (seed {seed}, kills after {report.kill_delays})") from exc
    return report


def python_command(script: str, *args: str) -> list[str]:
    """``[sys.executable, <this directory>/script, *args]``."""
    return [sys.executable, str(Path(HERE) / script), *args]
