"""A time-driven kill-and-restart harness with an RSS curve: the soak's half of crash_harness.py.

:func:`soak_with_crashes` starts ``command`` (a pipeline that prints :class:`crash_helpers.Progress`'s
lines and resumes from its own checkpoint), SIGKILLs each run a random ``kill_every`` seconds after its
``started`` line and starts it again, until ``duration`` seconds have passed; the run alive then is left
to finish (it must exit 0 after printing ``done``). Meanwhile a thread samples the resident set size of
the running process from ``/proc/<pid>/status`` (``VmRSS``) every ``sample_every`` seconds.

A kill counts in ``report.kills_in_flight`` on the same terms as in crash_harness.py: the process died
of it, had printed ``started`` and at least one ``progress`` line and had not printed ``done``. Every
kill the soak sends is scheduled before ``duration`` ends, while the source still has rows to deliver,
so a soak requires all of them to have landed in flight (soak.py checks that, and a minimum count).

:func:`rss_verdict` judges the curve: it fails when memory keeps growing, within a run between restarts
(an *epoch*) or from epoch to epoch across the whole soak.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crash_harness import DONE, PROGRESS, STARTED, CrashReport, _Proc

#: Bytes per kB as /proc reports VmRSS.
KIB = 1024
MIB = 1024 * KIB


def rss_bytes(pid: int) -> int | None:
    """The resident set size of ``pid`` (``VmRSS`` of ``/proc/<pid>/status``), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * KIB
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None  # a zombie has no VmRSS line


@dataclass
class Epoch:
    """One run of the pipeline (from its start to its kill or its end) and its RSS samples."""

    index: int
    killed: bool = False
    #: ``(seconds since the soak started, rss bytes)``, every ``sample_every`` seconds.
    samples: list[tuple[float, int]] = field(default_factory=list)
    progress: int = 0

    def thirds(self) -> tuple[list[int], list[int], list[int]]:
        """The samples' RSS values split in three equal parts of time order (first, middle, last)."""
        values = [rss for _, rss in self.samples]
        n = len(values) // 3
        return values[:n], values[n : len(values) - n], values[len(values) - n :]


@dataclass
class SoakReport(CrashReport):
    """A :class:`CrashReport` plus the soak's epochs (one per run, the final run last)."""

    duration: float = 0.0
    epochs: list[Epoch] = field(default_factory=list)


def _sample(proc: _Proc, epoch: Epoch, t0: float, every: float) -> None:
    while proc.proc.poll() is None:
        rss = rss_bytes(proc.proc.pid)
        if rss is not None:
            epoch.samples.append((time.monotonic() - t0, rss))
        time.sleep(every)


def soak_with_crashes(
    command: Sequence[str],
    *,
    duration: float,
    kill_every: tuple[float, float],
    sample_every: float = 0.5,
    seed: int | None = None,
    start_timeout: float = 180.0,
    final_timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> SoakReport:
    """Run ``command`` for ``duration`` seconds, SIGKILLing each run ``uniform(*kill_every)`` seconds
    after its ``started`` line (a kill that would fall after ``duration`` is not sent; a run that exits
    before its kill is the last one, counted in ``early_exits``), then wait for the last run to finish
    (``final_timeout``; exit status 0 and a ``done`` line required). Waits are on conditions (a line,
    the process's exit) with caps; failures name the seed to reproduce."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    report = SoakReport(seed=seed, duration=duration)
    t0 = time.monotonic()
    deadline = t0 + duration
    while True:
        p = _Proc(command, env, STARTED, PROGRESS, DONE)
        epoch = Epoch(index=len(report.epochs))
        report.epochs.append(epoch)
        sampler = threading.Thread(target=_sample, args=(p, epoch, t0, sample_every), daemon=True)
        sampler.start()
        if not p.ready.wait(start_timeout):
            os.kill(p.proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"run {epoch.index} printed no {STARTED!r} in {start_timeout}s (seed {seed})"
            )
        kill_at = time.monotonic() + rng.uniform(*kill_every)
        if kill_at >= deadline:
            break  # this run is the last one: it finishes once the source has delivered everything
        try:
            rc: int | None = p.proc.wait(kill_at - time.monotonic())
        except subprocess.TimeoutExpired:
            rc = None
        if rc is not None:
            # Finished before its kill (the work ran out early): this is the last run, checked below;
            # the caller's count of kills in flight then shows the kills that could not land.
            report.early_exits += 1
            break
        os.kill(p.proc.pid, signal.SIGKILL)
        rc = p.wait(start_timeout)
        sampler.join(10)
        epoch.killed, epoch.progress = True, p.progress
        report.kill_delays.append(kill_at - t0)
        report.killed_stdouts.append(p.stdout)
        report.kill_progress.append(p.progress)
        # Read after death: every line the run printed is in, so "not done yet" is certain.
        report.in_flight.append(
            rc == -signal.SIGKILL and p.has_line(STARTED) and p.progress > 0 and not p.has_line(DONE)
        )
    try:
        rc = p.wait(max(deadline - time.monotonic(), 0.0) + final_timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.proc.pid, signal.SIGKILL)
        p.wait(10)
        raise AssertionError(
            f"final run did not finish {final_timeout}s after the soak (seed {seed})"
        ) from None
    sampler.join(10)
    epoch.progress = p.progress
    if rc != 0 or not p.has_line(DONE):
        raise AssertionError(f"final run exited with {rc} (seed {seed}):\n{p.stderr}")
    report.final_stdout, report.final_stderr = p.stdout, p.stderr
    return report


@dataclass(frozen=True)
class RssVerdict:
    """What :func:`rss_verdict` found; ``growing`` lists the reasons the curve did not plateau."""

    start: int
    plateau: int
    end: int
    peak: int
    #: Per judged epoch: median RSS of its last third minus median RSS of its middle third (bytes).
    epoch_growth: dict[int, int]
    #: Median plateau of the last third of the judged epochs minus that of their first third.
    run_growth: int | None
    tolerance: int
    run_tolerance: int
    growing: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "start_bytes": self.start,
            "plateau_bytes": self.plateau,
            "end_bytes": self.end,
            "peak_bytes": self.peak,
            "epoch_growth_bytes": {str(k): v for k, v in self.epoch_growth.items()},
            "run_growth_bytes": self.run_growth,
            "tolerance_bytes": self.tolerance,
            "run_tolerance_bytes": self.run_tolerance,
            "growing": self.growing,
        }


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def rss_verdict(
    epochs: Sequence[Epoch], *, tolerance: int, run_tolerance: int, min_samples: int = 15
) -> RssVerdict:
    """Does the RSS plateau? Epochs with fewer than ``min_samples`` samples are not judged (too short
    to have a middle and a last third past the start-up, which the first third absorbs). Medians, not
    maxima, of each third: a short burst (a batch being decoded, an allocator not yet returning pages)
    moves a maximum by several MiB, while a leak moves the whole third. Two checks:

    * within runs: ``median(last third) - median(middle third)`` per judged epoch; growing when the
      median of that over the judged epochs exceeds ``tolerance`` (a leak grows in every run, one run's
      late burst does not);
    * across the soak: each judged epoch's plateau (the median of its last third); the median plateau
      of the last third of the epochs against that of the first third exceeds ``run_tolerance`` (needs
      3 judged epochs): memory that survives restarts (state or a listing that keeps growing). The
      first epochs count: their plateaus are past their own start-up already, and with the 3-5 runs of
      a short soak the middle third would leave a single run to compare with the last.

    ``start``: the max of the first judged epoch's first third (start-up included); ``plateau``: the
    median of the judged epochs' middle-third medians; ``end``: the last judged epoch's plateau."""
    judged = [e for e in epochs if len(e.samples) >= min_samples]
    if not judged:
        peak = max((rss for e in epochs for _, rss in e.samples), default=0)
        short = f"no run has {min_samples} RSS samples: too short to judge the memory"
        return RssVerdict(peak, peak, peak, peak, {}, None, tolerance, run_tolerance, [short])
    mid = {e.index: statistics.median(e.thirds()[1]) for e in judged}
    last = {e.index: statistics.median(e.thirds()[2]) for e in judged}
    growth = {i: int(last[i] - mid[i]) for i in mid}
    growing: list[str] = []
    median = statistics.median(growth.values())
    if median > tolerance:
        per_run = ", ".join(f"{_mib(g)}" for g in growth.values())
        growing.append(
            f"RSS grows within runs: median growth from the middle to the last third {_mib(median)}"
            f" > {_mib(tolerance)} (per run: {per_run})"
        )
    plateaus = list(last.values())
    run_growth = None
    if len(plateaus) >= 3:
        n = len(plateaus) // 3
        run_growth = int(statistics.median(plateaus[len(plateaus) - n :]) - statistics.median(plateaus[:n]))
        if run_growth > run_tolerance:
            growing.append(
                f"RSS grows across restarts: the plateau of the last third of the runs is {_mib(run_growth)}"
                f" above the first third's (> {_mib(run_tolerance)})"
            )
    return RssVerdict(
        start=max(judged[0].thirds()[0]),
        plateau=int(statistics.median(mid.values())),
        end=int(plateaus[-1]),
        peak=max(rss for e in epochs for _, rss in e.samples),
        epoch_growth=growth,
        run_growth=run_growth,
        tolerance=tolerance,
        run_tolerance=run_tolerance,
        growing=growing,
    )
