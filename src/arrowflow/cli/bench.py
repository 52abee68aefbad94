"""``arrowflow bench sink|source|peers``: throughput of one sink or source, like
``kafka-producer-perf-test``; ``peers`` runs the head-to-head benchmark of a source checkout
(``benchmarks/peers``: arrowflow against Flink, Quix Streams, Bytewax and a plain client loop).

* ``bench sink``: DataGen's bench table (8 columns, see
  :func:`arrowflow.pipeline_spec.bench_fields`) -> the sink. A pool of up to ``--pool-batches``
  distinct batches of ``--batch-rows`` rows is generated *before* the clock starts and written in a
  cycle until ``--rows`` rows were written, so generation is not measured. Each ``write()`` call is
  timed (its latency); ``flush()`` and ``close()`` run inside the measured time, because a sink may
  buffer or send asynchronously. Rows repeat across the cycle: keyed, idempotent sinks may end up
  with fewer distinct rows than written.
* ``bench source``: the source -> a discard loop (what a ``NullSink`` does). Every split is opened
  and read round robin with ``read_batch(--batch-rows, --timeout)``; each call that returns a batch
  is timed. It stops after ``--rows`` rows, ``--duration`` seconds, ``--idle-timeout`` seconds
  without data, or when a bounded source is exhausted. Without ``--source`` it measures DataGen.

Throughput counts Arrow bytes (``RecordBatch.nbytes``), not the bytes on the wire. A live progress
line goes to stderr (``--no-progress`` turns it off), a final table to stdout; ``--json FILE`` saves
the numbers and the timeline, ``--report FILE.png`` draws throughput over time (needs matplotlib:
``pip install 'arrowflow[bench]'``). Configuration errors exit with status 2 naming the option.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

__all__ = [
    "BenchResult",
    "bench_command",
    "bench_peers_command",
    "bench_sink",
    "bench_source",
    "checkout_root",
    "format_table",
    "make_connector",
    "throughput_curve",
    "write_report",
]

#: The least spacing of two timeline points, in seconds. The spacing grows with the run (elapsed /
#: ``TIMELINE_RESOLUTION``), so a short run keeps a point per call (1M rows into a file sink in 0.3 s
#: still has a point per batch) and a long one stays at a few thousand points per decade of run time.
SAMPLE_INTERVAL = 0.001
TIMELINE_RESOLUTION = 2000
#: Points of the throughput curve ``--report`` draws (the timeline resampled on an even grid).
CURVE_POINTS = 60
_PROGRESS_INTERVAL = 0.5


@dataclass
class BenchResult:
    """One measurement. ``latencies`` are seconds per timed call; ``timeline`` holds cumulative
    ``(seconds since start, rows, bytes)`` points, first ``(0, 0, 0)``, last the end of the run."""

    role: str
    target: str
    rows: int = 0
    bytes: int = 0
    batches: int = 0
    seconds: float = 0.0
    flush_seconds: float = 0.0
    empty_polls: int = 0
    latencies: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def percentiles(self) -> dict[str, float]:
        """p50/p95/p99/max of the per-call latencies, in milliseconds (zeros when nothing was timed)."""
        import numpy as np

        if not self.latencies:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        arr = np.asarray(self.latencies) * 1e3
        p50, p95, p99 = np.percentile(arr, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max())}

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "target": self.target,
            "rows": self.rows,
            "bytes": self.bytes,
            "batches": self.batches,
            "seconds": self.seconds,
            "flush_seconds": self.flush_seconds,
            "empty_polls": self.empty_polls,
            "rows_per_second": self.rows_per_second,
            "mb_per_second": self.mb_per_second,
            "latency_ms": self.percentiles(),
            "timeline": [list(p) for p in self.timeline],
        }


class _Meter:
    """Keeps the timeline and refreshes the progress callback, at most every interval."""

    def __init__(self, result: BenchResult, progress: Callable[[BenchResult, float], None] | None) -> None:
        self.result = result
        self.progress = progress
        self.start = time.perf_counter()
        self.next_sample = self.start + SAMPLE_INTERVAL
        self.next_progress = self.start + _PROGRESS_INTERVAL
        result.timeline.append((0.0, 0, 0))

    def tick(self, now: float) -> None:
        if now >= self.next_sample:
            elapsed = now - self.start
            self.result.timeline.append((elapsed, self.result.rows, self.result.bytes))
            self.next_sample = now + max(SAMPLE_INTERVAL, elapsed / TIMELINE_RESOLUTION)
        if self.progress is not None and now >= self.next_progress:
            self.progress(self.result, now - self.start)
            self.next_progress = now + _PROGRESS_INTERVAL

    def finish(self) -> None:
        end = time.perf_counter()
        self.result.seconds = end - self.start
        self.result.timeline.append((self.result.seconds, self.result.rows, self.result.bytes))
        if self.progress is not None:
            self.progress(self.result, self.result.seconds)


def _bench_pool(rows: int, batch_rows: int, pool_batches: int, seed: int) -> list[Any]:
    from arrowflow.connectors.datagen import DataGenSource
    from arrowflow.pipeline_spec import bench_fields

    count = min(rows, batch_rows * pool_batches)
    source = DataGenSource(bench_fields(), count=count, seed=seed, batch_size=batch_rows)
    return list(source.batches(max_rows=batch_rows))


def bench_sink(
    sink: Any,
    *,
    rows: int,
    batch_rows: int,
    pool_batches: int = 8,
    seed: int = 0,
    target: str | None = None,
    progress: Callable[[BenchResult, float], None] | None = None,
) -> BenchResult:
    """Write ``rows`` rows of the bench table to ``sink`` in batches of ``batch_rows``; flush and close it.

    The sink is closed even when a write fails (the error propagates).
    """
    if rows <= 0 or batch_rows <= 0:
        raise click.BadParameter("--rows and --batch-rows must be > 0")
    pool = _bench_pool(rows, batch_rows, pool_batches, seed)
    result = BenchResult(role="sink", target=str(target or getattr(sink, "name", type(sink).__name__)))
    perf = time.perf_counter
    meter = _Meter(result, progress)
    try:
        i = 0
        while result.rows < rows:
            batch = pool[i % len(pool)]
            i += 1
            left = rows - result.rows
            if batch.num_rows > left:
                batch = batch.slice(0, left)
            t0 = perf()
            sink.write(batch)
            t1 = perf()
            result.latencies.append(t1 - t0)
            result.rows += batch.num_rows
            result.bytes += batch.nbytes
            result.batches += 1
            meter.tick(t1)
        t0 = perf()
        sink.flush()
        sink.close()
        result.flush_seconds = perf() - t0
    finally:
        if not getattr(sink, "closed", True):
            sink.close()
    meter.finish()
    return result


def bench_source(
    source: Any,
    *,
    rows: int | None,
    batch_rows: int,
    timeout: float = 1.0,
    duration: float | None = None,
    idle_timeout: float = 5.0,
    target: str | None = None,
    progress: Callable[[BenchResult, float], None] | None = None,
) -> BenchResult:
    """Read ``source`` until ``rows`` rows, ``duration`` seconds, ``idle_timeout`` without data, or its end.

    Readers are closed even when a read fails (the error propagates).
    """
    if batch_rows <= 0 or (rows is not None and rows <= 0):
        raise click.BadParameter("--rows and --batch-rows must be > 0")
    if rows is None and duration is None and not source.bounded:
        raise click.BadParameter("an unbounded source needs --rows or --duration")
    name = target or getattr(source, "name", type(source).__name__)
    result = BenchResult(role="source", target=str(name))
    perf = time.perf_counter
    readers = [source.open(split) for split in source.plan()]
    meter = _Meter(result, progress)
    last_data = meter.start
    try:
        while True:
            active = [r for r in readers if not r.finished]
            if not active:
                break
            now = perf()
            if duration is not None and now - meter.start >= duration:
                break
            if now - last_data >= idle_timeout:
                break
            for reader in active:
                want = batch_rows if rows is None else min(batch_rows, rows - result.rows)
                t0 = perf()
                batch = reader.read_batch(want, timeout)
                t1 = perf()
                if batch is None or batch.num_rows == 0:
                    result.empty_polls += 1
                    meter.tick(t1)
                    continue
                last_data = t1
                result.latencies.append(t1 - t0)
                result.rows += batch.num_rows
                result.bytes += batch.nbytes
                result.batches += 1
                meter.tick(t1)
                if rows is not None and result.rows >= rows:
                    break
            if rows is not None and result.rows >= rows:
                break
    finally:
        for reader in readers:
            reader.close()
    meter.finish()
    return result


def format_table(result: BenchResult) -> str:
    """The final table (plain text; one ``name value`` row per line)."""
    call = "write" if result.role == "sink" else "read_batch"
    pct = result.percentiles()
    rows = [
        ("target", f"{result.target} ({result.role})"),
        ("rows", str(result.rows)),
        ("batches", str(result.batches)),
        ("MB (Arrow)", f"{result.bytes / 1e6:.1f}"),
        ("seconds", f"{result.seconds:.3f}"),
        ("rows/s", f"{result.rows_per_second:,.0f}"),
        ("MB/s", f"{result.mb_per_second:,.1f}"),
        (f"{call} p50 ms", f"{pct['p50']:.3f}"),
        (f"{call} p95 ms", f"{pct['p95']:.3f}"),
        (f"{call} p99 ms", f"{pct['p99']:.3f}"),
        (f"{call} max ms", f"{pct['max']:.3f}"),
    ]
    if result.role == "sink":
        rows.append(("flush+close ms", f"{result.flush_seconds * 1e3:.3f}"))
    else:
        rows.append(("empty polls", str(result.empty_polls)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def throughput_curve(
    timeline: Sequence[tuple[float, int, int]], points: int = CURVE_POINTS
) -> tuple[list[float], list[float], list[float]]:
    """``(times, rows/s, MB/s)`` of a timeline resampled on ``points`` even intervals of the run.

    The cumulative rows and bytes are interpolated linearly between timeline points, so every run with
    a duration draws ``points`` points (a run of one write draws a flat line at its mean rate instead
    of a single dot) and no interval is empty. ``times`` are the intervals' ends. An empty or
    zero-length timeline gives empty lists.
    """
    import numpy as np

    if len(timeline) < 2 or points <= 0:
        return [], [], []
    t = np.asarray([p[0] for p in timeline], dtype=np.float64)
    end = float(t[-1])
    if end <= 0:
        return [], [], []
    grid = np.linspace(0.0, end, points + 1)
    rows = np.interp(grid, t, np.asarray([p[1] for p in timeline], dtype=np.float64))
    nbytes = np.interp(grid, t, np.asarray([p[2] for p in timeline], dtype=np.float64))
    dt = np.diff(grid)
    return grid[1:].tolist(), (np.diff(rows) / dt).tolist(), (np.diff(nbytes) / 1e6 / dt).tolist()


def write_report(result: BenchResult, path: str | Path) -> None:
    """Draw throughput over time (rows/s and MB/s, :func:`throughput_curve`) and per-call latency to a PNG."""
    try:
        import matplotlib
    except ImportError as exc:
        raise click.ClickException(
            "--report needs matplotlib: pip install 'arrowflow[bench]' (or matplotlib)"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    times, rates, mbs = throughput_curve(result.timeline)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), constrained_layout=True)
    try:
        ax1.plot(times, rates, marker=".", color="tab:blue")
        ax1.set_xlabel("seconds")
        ax1.set_ylabel("rows/s", color="tab:blue")
        ax1.set_title(
            f"{result.role} {result.target}: {result.rows:,} rows, {result.rows_per_second:,.0f} rows/s, "
            f"{result.mb_per_second:,.1f} MB/s"
        )
        ax1b = ax1.twinx()
        ax1b.plot(times, mbs, color="tab:orange", alpha=0.6)
        ax1b.set_ylabel("MB/s", color="tab:orange")
        ax2.plot([x * 1e3 for x in result.latencies], ".", markersize=2)
        ax2.set_xlabel("call")
        ax2.set_ylabel(f"{'write' if result.role == 'sink' else 'read_batch'} ms")
        fig.savefig(str(path), format="png")
    finally:
        plt.close(fig)


def make_connector(role: str, type_name: str | None, yaml_file: str | None, options: Sequence[str]) -> Any:
    """Build a sink/source from ``--ROLE TYPE`` + ``--option k=v`` or ``--ROLE-yaml FILE`` (+ options).

    A YAML file holds either the connector mapping (``type: ...``) or a whole pipeline file, whose
    ``source:``/``sink:`` section is used. ``--option`` values are YAML scalars; keys may be dotted
    (``format.type=json``); ``${ENV}`` is expanded and secret-named options become Secrets.
    """
    from arrowflow.pipeline_spec import Node, apply_overrides, build_connector, expand_tree, load_yaml

    if yaml_file is not None and type_name is not None:
        raise click.UsageError(f"give --{role} or --{role}-yaml, not both")
    filename = yaml_file or f"--{role}"
    if yaml_file is not None:
        try:
            text = Path(yaml_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.UsageError(f"{yaml_file}: cannot read: {exc.strerror or exc}") from None
        doc = load_yaml(text, yaml_file, expand=False)
        if isinstance(doc, Node) and role in doc and "type" not in doc:
            doc = doc[role]
        if not isinstance(doc, Node):
            raise click.UsageError(f"{yaml_file}: expected a mapping with type: (or a {role}: section)")
    else:
        doc = Node(type=type_name)
    apply_overrides(doc, options, filename=filename)
    doc = expand_tree(doc, filename)
    return build_connector(doc, role, filename=filename, path=role)


def _progress_printer(enabled: bool) -> Callable[[BenchResult, float], None] | None:
    if not enabled:
        return None

    def show(result: BenchResult, elapsed: float) -> None:
        secs = max(elapsed, 1e-9)
        line = (
            f"\r{result.rows:>14,} rows  {result.rows / secs:>14,.0f} rows/s  "
            f"{result.bytes / 1e6 / secs:>10,.1f} MB/s  {elapsed:7.1f} s"
        )
        click.echo(line, err=True, nl=False)

    return show


def _finish(result: BenchResult, report: str | None, json_file: str | None, progress: bool) -> None:
    if progress:
        click.echo("", err=True)
    click.echo(format_table(result))
    if json_file:
        Path(json_file).write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    if report:
        write_report(result, report)


_common = [
    click.option("--batch-rows", type=int, default=10_000, show_default=True, help="Rows per batch."),
    click.option(
        "--option", "options", multiple=True, metavar="KEY=VALUE", help="A connector option (repeatable)."
    ),
    click.option("--no-progress", is_flag=True, help="No live progress line on stderr."),
    click.option("--report", type=click.Path(dir_okay=False), default=None, help="Draw throughput to a PNG."),
    click.option(
        "--json", "json_file", type=click.Path(dir_okay=False), default=None, help="Save results as JSON."
    ),
]


def _with_common(fn: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(_common):
        fn = decorator(fn)
    return fn


@click.group("bench")
def bench_command() -> None:
    """Measure the throughput of a sink (DataGen -> sink) or a source (source -> discard)."""


@bench_command.command("sink")
@click.option(
    "--sink", "sink_type", default=None, metavar="TYPE", help="Connector name (see `arrowflow connectors`)."
)
@click.option(
    "--sink-yaml", default=None, type=click.Path(dir_okay=False), help="YAML with the sink mapping."
)
@click.option("--rows", type=int, default=1_000_000, show_default=True, help="Rows to write.")
@click.option("--pool-batches", type=int, default=8, show_default=True, help="Distinct batches generated.")
@click.option("--seed", type=int, default=0, show_default=True)
@_with_common
def bench_sink_command(
    sink_type: str | None,
    sink_yaml: str | None,
    rows: int,
    pool_batches: int,
    seed: int,
    batch_rows: int,
    options: tuple[str, ...],
    no_progress: bool,
    report: str | None,
    json_file: str | None,
) -> None:
    """Write DataGen's bench table (8 columns) to a sink and report rows/s, MB/s and write() latency."""
    from arrowflow.errors import ConfigurationError

    if sink_type is None and sink_yaml is None:
        raise click.UsageError("give --sink TYPE (with --option KEY=VALUE ...) or --sink-yaml FILE")
    if pool_batches <= 0:
        raise click.BadParameter("must be > 0", param_hint="--pool-batches")
    try:
        sink = make_connector("sink", sink_type, sink_yaml, options)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    progress = not no_progress
    try:
        result = bench_sink(
            sink,
            rows=rows,
            batch_rows=batch_rows,
            pool_batches=pool_batches,
            seed=seed,
            target=sink_type or getattr(sink, "name", None),
            progress=_progress_printer(progress),
        )
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    _finish(result, report, json_file, progress)


@bench_command.command("source")
@click.option(
    "--source", "source_type", default=None, metavar="TYPE", help="Connector name (default: datagen)."
)
@click.option(
    "--source-yaml", default=None, type=click.Path(dir_okay=False), help="YAML with the source mapping."
)
@click.option(
    "--rows", type=int, default=None, help="Stop after this many rows (DataGen default: 1,000,000)."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--timeout", type=float, default=1.0, show_default=True, help="read_batch timeout (seconds).")
@click.option(
    "--idle-timeout", type=float, default=5.0, show_default=True, help="Stop after this long without data."
)
@_with_common
def bench_source_command(
    source_type: str | None,
    source_yaml: str | None,
    rows: int | None,
    duration: float | None,
    timeout: float,
    idle_timeout: float,
    batch_rows: int,
    options: tuple[str, ...],
    no_progress: bool,
    report: str | None,
    json_file: str | None,
) -> None:
    """Read a source as fast as it goes and report rows/s, MB/s and read_batch() latency."""
    from arrowflow.errors import ConfigurationError

    opts = list(options)
    if source_type is None and source_yaml is None:
        source_type = "datagen"
        if rows is None:
            rows = 1_000_000
        given = {o.partition("=")[0] for o in opts}
        if "fields" not in given and "generator" not in given:
            opts.append("fields=bench")
        if "count" not in given:
            opts.append(f"count={rows}")
        if "batch_size" not in given:
            opts.append(f"batch_size={batch_rows}")
    try:
        source = make_connector("source", source_type, source_yaml, opts)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    progress = not no_progress
    try:
        result = bench_source(
            source,
            rows=rows,
            batch_rows=batch_rows,
            timeout=timeout,
            duration=duration,
            idle_timeout=idle_timeout,
            target=source_type or getattr(source, "name", None),
            progress=_progress_printer(progress),
        )
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    _finish(result, report, json_file, progress)


def checkout_root(start: Path | None = None) -> Path | None:
    """The source checkout holding ``benchmarks/peers`` (``start`` or the working directory and their
    parents, then the checkout of an editable install), or ``None``."""
    import arrowflow

    here = (start or Path.cwd()).resolve()
    candidates = [here, *here.parents, Path(arrowflow.__file__).resolve().parents[2]]
    for root in candidates:
        if (root / "benchmarks" / "peers" / "__main__.py").is_file():
            return root
    return None


@bench_command.command(
    "peers",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_peers_command(args: tuple[str, ...]) -> None:
    """Head to head with Flink, Quix Streams, Bytewax and a plain client loop (benchmarks/peers).

    Runs ``python -m benchmarks.peers ARGS`` in the source checkout (the benchmark is not part of the
    installed package); every option passes through (``arrowflow bench peers --help`` lists them).
    Needs the Kafka broker and PostgreSQL of tests/services (``make bench-peers`` starts them).
    """
    import subprocess

    root = checkout_root()
    if root is None:
        raise click.ClickException(
            "arrowflow bench peers runs from a source checkout of arrowflow (benchmarks/peers); "
            "run it inside one, or use `make bench-peers` there"
        )
    sys.exit(subprocess.call([sys.executable, "-m", "benchmarks.peers", *args], cwd=root))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(bench_command())
