"""The benchmark runner: workloads, interleaved timing rounds, the table and the JSON report.

A workload family is one module in this package that calls :func:`register` at import time with a
:class:`Workload`. ``Workload.setup(config)`` builds the data (untimed) and returns a :class:`Prepared`
holding the methods to time; every method is a zero-argument callable that processes its rows and
returns how many it processed (a slow baseline may process a subset and say so in its ``note``;
its rate is then per row of that subset, which is how it is "scaled" to the full workload).

Timing: one untimed warm-up call per method (lazy imports, caches, first-touch page faults), then
``rounds`` rounds in which every method runs once, in turn, in one process. A method faster than
``min_sample_s`` per call is called back to back within its sample until the sample lasts that long
(``times_s`` are per call). The reported figure is the median per method. Interleaving makes the
ratios hold even when the machine drifts, which it does here (2 cores shared by many processes).
Each sample also records this process's CPU time (``time.process_time``: every thread of the
process, so a client library's I/O threads count, a server's work does not). On a loaded machine a
short call's wall time is mostly waiting for a core; its CPU time is not, so ``cpu_ratio`` (the
method's median CPU per row / arrowflow's) compares the client-side work of two methods when the
wall-time ratio is noise. Where the server is the bottleneck the wall-time ratio is what a user sees.

Ratios compare against the workload's ``reference`` method (the arrowflow one): ``ratio`` is
``reference rows/s / method rows/s``, i.e. "arrowflow is N x faster than this method". Targets are
per method: ``min_rate`` (rows/s of that method) or ``min_speedup`` (the ratio on that method's row).

The ratio a workload is quoted by is the one against its *idiomatic baseline*: ``Workload.idiomatic``
names the methods that are the fastest use of the same client a competent user would write (batched,
concurrent, the same options and data shape as the arrowflow method); the fastest of them that ran is
marked ``role="baseline"`` (the arrowflow reference is ``role="arrowflow"``) and summarised in the
report's ``summary``. Naive per-row methods may stay beside it, unmarked, for context; min_speedup
targets belong on the idiomatic rows.

Output checks: a method's ``check`` runs once, untimed, right after its warm-up call and verifies that
the call landed the same rows as the arrowflow method (or the expected output of its subset). A method
whose check fails is reported with the failure and not timed, so a baseline that silently does less
work can neither win nor lose.
"""

from __future__ import annotations

import gc
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "APPROX",
    "Method",
    "Prepared",
    "Result",
    "RunConfig",
    "Summary",
    "Target",
    "Workload",
    "format_rate",
    "format_ratio",
    "note_cell",
    "out_cell",
    "register",
    "registry",
    "run",
]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Options of one run. ``rows`` is the full workload size; ``quick`` asks for smoke-test sizes."""

    rows: int = 1_000_000
    rounds: int = 5
    quick: bool = False
    seed: int = 20261123
    #: A timed sample repeats a method back to back until it lasts at least this long.
    min_sample_s: float = 0.05

    def __post_init__(self) -> None:
        if self.rows <= 0:
            raise ValueError(f"rows must be > 0, got {self.rows}")
        if self.rounds <= 0:
            raise ValueError(f"rounds must be > 0, got {self.rounds}")

    def subset(self, n: int) -> int:
        """The size of a slow baseline's subset: ``n`` rows, never more than the workload."""
        return max(1, min(n, self.rows))


@dataclass(frozen=True, kw_only=True)
class Target:
    """What a method must reach. ``min_rate``: rows/s of the method itself; ``min_speedup``: the
    reference method must be at least this many times faster than the method (1.0: at least as fast).
    """

    min_rate: float | None = None
    min_speedup: float | None = None

    def describe(self) -> str:
        if self.min_rate is not None:
            return f">= {format_rate(self.min_rate)}/s"
        if self.min_speedup is not None:
            return f"af >= {self.min_speedup:g}x"
        return ""


@dataclass(frozen=True, kw_only=True)
class Method:
    """One timed method. ``run()`` processes its rows and returns how many; ``skip`` (when set)
    means the method cannot run here ("not built", "not installed") and is listed but not timed.
    """

    run: Callable[[], int] | None = None
    note: str = ""
    skip: str | None = None
    target: Target | None = None
    #: Called once, untimed, after the warm-up call of ``run``: raises when what that call produced or
    #: landed (rows in a table, messages in a topic, documents in an index) differs from the expected
    #: output; returns a short description of what it compared ("50,000 rows, all columns").
    check: Callable[[], str] | None = None


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """What ``Workload.setup`` returns: the methods (in table order) and the bytes of one input row."""

    methods: dict[str, Method]
    bytes_per_row: float
    note: str = ""
    #: Called once after the rounds (or when they fail): releases clients and servers the setup made,
    #: so they do not outlive the workload and disturb the next one.
    teardown: Callable[[], None] | None = None


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A workload family member. ``reference`` names the arrowflow method ratios are taken against;
    ``idiomatic`` the methods that are the fastest idiomatic use of the same client (the fastest of
    them that ran is the baseline the workload's ratio is quoted against); empty: no baseline.
    """

    name: str
    description: str
    setup: Callable[[RunConfig], Prepared]
    reference: str
    idiomatic: tuple[str, ...] = ()
    #: At least this many rounds and this long a sample (seconds) outside ``--quick``: for a workload
    #: whose ratio is a few percent, where 3-5 short samples on a loaded machine are mostly noise.
    min_rounds: int = 1
    min_sample_s: float = 0.0


@dataclass(kw_only=True)
class Result:
    """One row of the table (and of the JSON report)."""

    workload: str
    method: str
    #: ``"arrowflow"`` (the reference), ``"baseline"`` (the idiomatic baseline the workload's ratio
    #: is quoted against), ``"idiomatic"`` (an idiomatic candidate that was slower) or ``""``.
    role: str = ""
    rows_per_s: float | None = None
    mb_per_s: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    median_s: float | None = None
    rows_per_call: int | None = None
    calls_per_sample: int | None = None
    times_s: list[float] = field(default_factory=list)
    #: What the output check compared (``None``: the method has no check).
    checked: str | None = None
    #: CPU seconds per call of this process (all its threads: the client's work, not a server's).
    cpu_times_s: list[float] = field(default_factory=list)
    #: Median CPU microseconds per row (this process).
    cpu_us_per_row: float | None = None
    #: This method's CPU per row / arrowflow's: how many times less client CPU arrowflow spends per
    #: row. Unlike ``ratio`` it holds on a loaded machine (waiting for a core costs no CPU time).
    cpu_ratio: float | None = None


@dataclass(kw_only=True)
class Summary:
    """One workload's headline: arrowflow's reference method against its idiomatic baseline."""

    workload: str
    arrowflow: str
    arrowflow_rows_per_s: float | None
    baseline: str | None
    baseline_rows_per_s: float | None
    ratio: float | None
    target: str = ""
    met: bool | None = None
    #: The baseline's client CPU per row / arrowflow's (see :attr:`Result.cpu_ratio`).
    cpu_ratio: float | None = None


_REGISTRY: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    """Add a workload to the registry (module import time). Names must be unique."""
    if workload.name in _REGISTRY:
        raise ValueError(f"benchmark workload {workload.name!r} registered twice")
    _REGISTRY[workload.name] = workload
    return workload


def registry() -> dict[str, Workload]:
    """The registered workloads, in registration order."""
    return dict(_REGISTRY)


def format_rate(rate: float | None) -> str:
    """``12.3M`` / ``456k`` / ``789``: rows per second in a column a human can scan."""
    if rate is None or math.isnan(rate):
        return "-"
    if rate >= 1e9:
        return f"{rate / 1e9:.3g}G"
    if rate >= 1e6:
        return f"{rate / 1e6:.3g}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.3g}k"
    return f"{rate:.3g}"


def _time_once(fn: Callable[[], int], repeat: int = 1) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (this process, all its threads) and rows per call of ``fn``, over
    ``repeat`` back-to-back calls."""
    # The collector is paused so a cycle collection triggered by one method's garbage is not
    # billed to the next one.
    gc.collect()
    gc.disable()
    try:
        rows = 0
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(repeat):
            rows = fn()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    finally:
        gc.enable()
    return elapsed / repeat, cpu / repeat, int(rows)


def _repeat_for(seconds_per_call: float, min_sample_s: float) -> int:
    """Calls per timed sample so that a sample lasts at least ``min_sample_s`` (timer resolution,
    cold caches and page faults of one very short call would otherwise dominate it)."""
    if seconds_per_call <= 0:
        return 1000
    return max(1, min(1000, math.ceil(min_sample_s / seconds_per_call)))


def run_workload(workload: Workload, config: RunConfig, log: Callable[[str], None]) -> list[Result]:
    """Set up and time one workload. A method that raises is reported with its error, not fatal."""
    log(f"[{workload.name}] setting up ({config.rows:,} rows)")
    prepared = workload.setup(config)
    try:
        return _run_prepared(workload, config, prepared, log)
    finally:
        if prepared.teardown is not None:
            prepared.teardown()


def _run_prepared(
    workload: Workload, config: RunConfig, prepared: Prepared, log: Callable[[str], None]
) -> list[Result]:
    unknown = [n for n in (workload.reference, *workload.idiomatic) if n not in prepared.methods]
    if unknown:
        raise ValueError(f"workload {workload.name!r} names methods its setup did not return: {unknown}")
    results: dict[str, Result] = {}
    rounds, min_sample_s = config.rounds, config.min_sample_s
    if not config.quick:
        rounds = max(rounds, workload.min_rounds)
        min_sample_s = max(min_sample_s, workload.min_sample_s)
    live: dict[str, Callable[[], int]] = {}
    rows_per_call: dict[str, int] = {}
    repeats: dict[str, int] = {}
    for name, method in prepared.methods.items():
        target = method.target.describe() if method.target else ""
        results[name] = Result(workload=workload.name, method=name, target=target, note=method.note)
        if method.skip is not None or method.run is None:
            results[name].note = "; ".join(x for x in (method.skip or "skipped", method.note) if x)
            continue
        try:
            warm_s, _cpu, rows_per_call[name] = _time_once(method.run)  # warm-up, untimed
        except Exception as exc:
            results[name].note = f"error: {type(exc).__name__}: {exc}"[:160]
            continue
        if method.check is not None:
            try:
                results[name].checked = method.check()
            except Exception as exc:
                results[name].note = f"output check failed: {type(exc).__name__}: {exc}"[:240]
                log(f"[{workload.name}] {name}: {results[name].note}")
                continue
        live[name] = method.run
        if min_sample_s > config.min_sample_s:
            # The workload asked for long samples: size them by a second call, not by the warm-up one
            # (imports, first-touch page faults), else the method whose warm-up was slow gets samples
            # several times shorter than the others'.
            warm_s = min(warm_s, _time_once(method.run)[0])
        repeats[name] = _repeat_for(warm_s, min_sample_s)
    times: dict[str, list[float]] = {name: [] for name in live}
    cpu_times: dict[str, list[float]] = {name: [] for name in live}
    for round_no in range(rounds):
        log(f"[{workload.name}] round {round_no + 1}/{rounds}")
        # Each round starts one method later: whatever state one method leaves for the next (busy
        # thread pools, a fragmented heap) then falls on a different method every round, and the
        # median drops it, instead of always billing the method that follows the same neighbour.
        names = list(live)
        shift = round_no % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            fn = live.get(name)
            if fn is None:
                continue
            try:
                elapsed, cpu, rows = _time_once(fn, repeats[name])
            except Exception as exc:
                results[name].note = f"error: {type(exc).__name__}: {exc}"[:160]
                del live[name]
                times.pop(name, None)
                continue
            times[name].append(elapsed)
            cpu_times[name].append(cpu)
            rows_per_call[name] = rows
    for name, samples in times.items():
        res = results[name]
        median = statistics.median(samples)
        res.times_s = samples
        res.median_s = median
        res.rows_per_call = rows_per_call[name]
        res.calls_per_sample = repeats[name]
        res.rows_per_s = rows_per_call[name] / median if median > 0 else float("inf")
        res.mb_per_s = res.rows_per_s * prepared.bytes_per_row / 1e6
        res.cpu_times_s = cpu_times[name]
        if rows_per_call[name]:
            res.cpu_us_per_row = statistics.median(cpu_times[name]) / rows_per_call[name] * 1e6
    ref = results.get(workload.reference)
    ref_rate = ref.rows_per_s if ref is not None else None
    if ref is not None:
        ref.role = "arrowflow"
    timed = [results[n] for n in workload.idiomatic if results[n].rows_per_s is not None]
    for res in timed:
        res.role = "idiomatic"
    if timed:
        max(timed, key=lambda r: r.rows_per_s or 0.0).role = "baseline"
    for name, res in results.items():
        method = prepared.methods[name]
        if res.rows_per_s is not None and ref_rate is not None:
            res.ratio = ref_rate / res.rows_per_s
        if res.cpu_us_per_row is not None and ref is not None and ref.cpu_us_per_row:
            res.cpu_ratio = res.cpu_us_per_row / ref.cpu_us_per_row
        tgt = method.target
        if tgt is None:
            continue
        if tgt.min_rate is not None and res.rows_per_s is not None:
            res.met = res.rows_per_s >= tgt.min_rate
        elif tgt.min_speedup is not None and res.ratio is not None:
            res.met = res.ratio >= tgt.min_speedup
    return list(results.values())


#: How the table shows a result's role.
ROLE_MARK = {"arrowflow": "arrowflow", "baseline": "BASELINE", "idiomatic": "idiomatic", "": ""}


def format_ratio(value: float | None) -> str:
    """``1.56x`` / ``0.062x``: a ratio as the table shows it."""
    if value is None:
        return "-"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def summarise(workload: Workload, results: list[Result]) -> Summary:
    """The workload's headline: its reference method against the baseline its ratio is quoted by."""
    ref = next((r for r in results if r.method == workload.reference), None)
    base = next((r for r in results if r.role == "baseline"), None)
    return Summary(
        workload=workload.name,
        arrowflow=workload.reference,
        arrowflow_rows_per_s=ref.rows_per_s if ref is not None else None,
        baseline=base.method if base is not None else None,
        baseline_rows_per_s=base.rows_per_s if base is not None else None,
        ratio=base.ratio if base is not None else None,
        target=base.target if base is not None else "",
        met=base.met if base is not None else None,
        cpu_ratio=base.cpu_ratio if base is not None else None,
    )


def render_summary(summaries: list[dict[str, Any]]) -> list[str]:
    """One line per workload (from :class:`Summary` dicts): arrowflow vs its idiomatic baseline."""
    lines, none = [], []
    for s in summaries:
        if s["baseline"] is None:
            none.append(s["workload"])
            continue
        met = {True: "yes", False: "NO", None: "-"}[s["met"]]
        target = f" (target {s['target']}: {met})" if s["target"] else ""
        cpu = f"; client CPU per row {format_ratio(s['cpu_ratio'])}" if s.get("cpu_ratio") else ""
        lines.append(
            f"  {s['workload']}: {s['arrowflow']} {format_rate(s['arrowflow_rows_per_s'])}/s vs "
            f"{s['baseline']} {format_rate(s['baseline_rows_per_s'])}/s -> {format_ratio(s['ratio'])}{target}"
            f"{cpu}"
        )
    if none:
        lines.append(f"  no idiomatic baseline (named or timed): {', '.join(none)}")
    return lines


#: A check description starting with this passed with a stated shortfall (a server known to drop
#: acknowledged rows). No check states one any more (the last, moto's Kinesis race, went with the
#: move to kinesalite); kept to render published runs that hold one.
APPROX = "approx: "


def out_cell(checked: str | None) -> str:
    """The *out* cell: ``same`` (checked), ``~same`` (checked, with a stated shortfall) or empty."""
    if checked is None:
        return ""
    return "~same" if checked.startswith(APPROX) else "same"


def note_cell(note: str, checked: str | None) -> str:
    """``note``, plus the shortfall an approximate check stated."""
    if checked is None or not checked.startswith(APPROX):
        return note
    return "; ".join(x for x in (note, checked[len(APPROX) :]) if x)


def _render_table(results: list[Result]) -> str:
    headers = [
        "workload", "method", "role", "rows/s", "MB/s", "ratio", "cpu us/row", "cpu ratio", "target", "met?",
        "out", "note",
    ]  # fmt: skip
    rows = []
    for r in results:
        rows.append(
            [
                r.workload,
                r.method,
                ROLE_MARK[r.role],
                format_rate(r.rows_per_s),
                "-" if r.mb_per_s is None else f"{r.mb_per_s:,.0f}",
                format_ratio(r.ratio),
                "-" if r.cpu_us_per_row is None else f"{r.cpu_us_per_row:.3g}",
                format_ratio(r.cpu_ratio),
                r.target,
                {True: "yes", False: "NO", None: "-" if r.target else ""}[r.met],
                out_cell(r.checked),
                note_cell(r.note, r.checked),
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    # The note column is last and left unpadded so long notes do not widen every line.
    widths[-1] = len(headers[-1])
    right = {3, 4, 5, 6, 7}

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if i == len(cells) - 1:
                out.append(cell)
            else:
                out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    body = [line(headers), sep]
    last_workload = None
    for r, row in zip(results, rows, strict=True):
        if last_workload is not None and r.workload != last_workload:
            body.append("")
        last_workload = r.workload
        body.append(line(row))
    return "\n".join(body)


def _environment() -> dict[str, Any]:
    import numpy
    import pyarrow

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
    }
    for mod in ("polars", "duckdb", "orjson"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = None
    try:
        import os

        env["cpus"] = os.cpu_count()
        env["loadavg"] = os.getloadavg()
    except OSError:
        pass
    return env


def run(
    names: list[str],
    config: RunConfig,
    json_paths: list[Path],
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    run_name: str | None = None,
) -> list[Result]:
    """Run the named workloads, print the table on stdout and write the JSON report to each path."""
    workloads = registry()
    unknown = [n for n in names if n not in workloads]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; known: {sorted(workloads)}")
    started = time.time()
    results: list[Result] = []
    summaries: list[Summary] = []
    for name in names:
        found = run_workload(workloads[name], config, log)
        results.extend(found)
        summaries.append(summarise(workloads[name], found))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))
    report = {
        "run": run_name or f"{stamp} on {platform.node() or 'unknown host'}",
        "started": stamp,
        "duration_s": round(time.time() - started, 2),
        "config": asdict(config),
        "environment": _environment(),
        "workloads": {n: workloads[n].description for n in names},
        "results": [asdict(r) for r in results],
        "summary": [asdict(s) for s in summaries],
    }
    for path in json_paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"wrote {path}")
    # Printed after the report is saved, so a closed stdout (``| head``) cannot lose the results.
    print(f"run: {report['run']}")
    print(_render_table(results))
    print(
        "\nratio = arrowflow rows/s / method rows/s (median of "
        f"{config.rounds} interleaved round(s), more where a workload asks for them: see times_s in "
        "the JSON); MB/s counts input bytes; cpu us/row = this process's "
        "CPU time per row (all threads; a server's work is not in it), cpu ratio = the method's / "
        "arrowflow's (holds on a loaded machine); role BASELINE = the idiomatic baseline the workload's "
        "ratio is quoted against; out = same output as expected"
    )
    headline = render_summary([asdict(s) for s in summaries])
    if headline:
        print("\narrowflow vs the idiomatic baseline:")
        print("\n".join(headline))
    return results
