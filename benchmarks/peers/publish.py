"""Render a peer benchmark report as the Markdown block the documentation publishes.

``python -m benchmarks.peers.publish REPORT.json [--headline] [--write FILE]``

The block sits between ``<!-- PEERS:START -->`` and ``<!-- PEERS:END -->`` of ``docs/benchmarks.md``
(the whole block) and ``README.md`` (``--headline``: one line per workload). Every number in it is
the report's own (medians, the ``af x`` ratios the harness computed, or a quotient of two of its
medians for the targets); nothing is measured here. ``tests/unit/test_published_benchmarks.py``
checks that the published blocks are what this renders from the report they name, and that every
rate or ratio quoted outside a block is in a rendered block.

The targets are issue 18's: on every workload arrowflow at least 3x the fastest Python stream
processor (Quix Streams, Bytewax) and at least Flink's throughput at the same parallelism and
guarantee; on workload (1) a peak RSS at most 1.5x the plain loop's and exactly-once within 15% of
at-least-once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core import format_rate, format_ratio
from .systems import WORKLOADS

__all__ = ["END", "START", "chart_name", "render", "replace_block", "targets"]

ROOT = Path(__file__).resolve().parents[2]
START = "<!-- PEERS:START -->"
END = "<!-- PEERS:END -->"

PYTHON_PEERS = ("quix", "bytewax")
#: (arrowflow system, Flink system) pairs compared at the same parallelism and guarantee.
FLINK_PAIRS = (
    ("arrowflow", "flink-p1"),
    ("arrowflow-eos", "flink-p1-eos"),
    ("arrowflow-p2", "flink-p2"),
    ("arrowflow-p2-eos", "flink-p2-eos"),
)
PYTHON_PEER_TARGET = 3.0
MEMORY_TARGET = 1.5
EXACTLY_ONCE_TARGET = 0.85


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path.resolve())


def _ok(report: dict[str, Any], workload: str) -> dict[str, dict[str, Any]]:
    """The verified rows of a workload, by system."""
    return {
        r["system"]: r
        for r in report["summary"]
        if r["workload"] == workload and r["status"] == "ok" and r.get("messages_per_second")
    }


def _arrowflow_workloads(
    report: dict[str, Any],
) -> Iterator[tuple[str, dict[str, dict[str, Any]], dict[str, Any], dict[str, Any] | None]]:
    """``(workload, verified rows by system, arrowflow's row, the fastest verified Python peer's row)``
    for every workload where arrowflow (at-least-once, p1) has a verified time."""
    for workload in report["config"]["workloads"]:
        rows = _ok(report, workload)
        af = rows.get("arrowflow")
        if af is None:
            continue
        peers = [rows[p] for p in PYTHON_PEERS if p in rows]
        best = max(peers, key=lambda r: r["messages_per_second"]) if peers else None
        yield workload, rows, af, best


def targets(report: dict[str, Any]) -> list[tuple[str, str, str, str, bool | None]]:
    """``(workload, target, measured, ratio, met)`` for every target the report can answer."""
    out: list[tuple[str, str, str, str, bool | None]] = []
    for workload, rows, af, best in _arrowflow_workloads(report):
        rate = af["messages_per_second"]
        if best is not None:
            ratio = rate / best["messages_per_second"]
            out.append(
                (
                    workload,
                    f"arrowflow >= {PYTHON_PEER_TARGET:g}x the fastest Python peer",
                    f"{format_rate(rate)} vs {best['system']} "
                    f"{format_rate(best['messages_per_second'])} msg/s",
                    format_ratio(ratio),
                    ratio >= PYTHON_PEER_TARGET,
                )
            )
        for mine, flink in FLINK_PAIRS:
            if mine in rows and flink in rows:
                a, f = rows[mine]["messages_per_second"], rows[flink]["messages_per_second"]
                out.append(
                    (
                        workload,
                        f"{mine} >= {flink}",
                        f"{format_rate(a)} vs {format_rate(f)} msg/s",
                        format_ratio(a / f),
                        a >= f,
                    )
                )
        if workload == "parquet":
            plain = rows.get("plain")
            if plain is not None and af.get("peak_rss_mb") and plain.get("peak_rss_mb"):
                ratio = af["peak_rss_mb"] / plain["peak_rss_mb"]
                out.append(
                    (
                        workload,
                        f"peak RSS <= {MEMORY_TARGET:g}x the plain loop's",
                        f"{af['peak_rss_mb']:.0f} vs {plain['peak_rss_mb']:.0f} MB",
                        format_ratio(ratio),
                        ratio <= MEMORY_TARGET,
                    )
                )
            eos = rows.get("arrowflow-eos")
            if eos is not None:
                ratio = eos["messages_per_second"] / rate
                out.append(
                    (
                        workload,
                        f"exactly-once >= {EXACTLY_ONCE_TARGET:g}x at-least-once",
                        f"{format_rate(eos['messages_per_second'])} vs {format_rate(rate)} msg/s",
                        format_ratio(ratio),
                        ratio >= EXACTLY_ONCE_TARGET,
                    )
                )
    return out


def _describe(path: Path, report: dict[str, Any]) -> str:
    cfg, env = report["config"], report.get("environment", {})
    load = env.get("loadavg")
    load_text = f", load average {load[0]:.2f} at the start" if load else ""
    name = report.get("name") or report["started"]
    minutes = report.get("seconds", 0) / 60
    return (
        f'`{_shown_path(path)}`, run "{name}" (started {report["started"]}, {minutes:.0f} min): '
        f"{cfg['messages']:,} messages, {cfg['partitions']} partitions, median of {cfg['rounds']} "
        f"interleaved round(s), a checkpoint every {cfg['checkpoint_interval']:g} s; host "
        f"{env.get('host', '?')}, {env.get('cpus', '?')} CPUs{load_text}; Python "
        f"{env.get('python', '?')}, pyarrow {env.get('pyarrow', '?')}; broker: {env.get('broker', '?')}"
    )


def _headline(report: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | arrowflow msg/s | vs fastest Python peer | vs Flink, same parallelism "
        "| vs plain loop |",
        "|---|--:|--:|--:|--:|",
    ]
    for workload, rows, af, best in _arrowflow_workloads(report):
        rate = af["messages_per_second"]
        flink = rows.get("flink-p1")
        plain = rows.get("plain")
        lines.append(
            f"| {WORKLOADS[workload].title} | {format_rate(rate)} | "
            + (f"{format_ratio(rate / best['messages_per_second'])} ({best['system']})" if best else "-")
            + " | "
            + (format_ratio(rate / flink["messages_per_second"]) if flink else "-")
            + " | "
            + (format_ratio(rate / plain["messages_per_second"]) if plain else "-")
            + " |"
        )
    return lines


def chart_name(path: Path) -> str:
    """The chart's file name in ``docs/assets/`` (the harness's PNG, copied there beside the page)."""
    return f"{path.stem}.png"


def render(path: Path, report: dict[str, Any], *, headline_only: bool = False) -> str:
    """The Markdown block (without the markers) for one peers report; the whole block links the chart
    ``assets/<report name>.png`` (relative to ``docs/benchmarks.md``)."""
    lines = [
        f"Run: {_describe(path, report)}. Ratios: arrowflow (at-least-once, parallelism 1) msg/s over the "
        "other system's (> 1: arrowflow is faster).",
        "",
    ]
    lines += _headline(report)
    if headline_only:
        return "\n".join(lines)
    lines += ["", f"![messages/s per system and workload](assets/{chart_name(path)})"]
    for workload in report["config"]["workloads"]:
        lines += [
            "",
            f"**{WORKLOADS[workload].title}**",
            "",
            "| system | status | job s | msg/s | af x | CPU s | peak RSS MB | broker CPU s | db CPU s |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in (r for r in report["summary"] if r["workload"] == workload):
            status = r["status"] if r["status"] == "ok" else f"{r['status']}: {(r.get('error') or '')[:120]}"
            lines.append(
                "| "
                + " | ".join(
                    (
                        r["label"],
                        status.replace("|", "\\|").replace("\n", " "),
                        _num(r.get("seconds"), ".2f"),
                        format_rate(r.get("messages_per_second")),
                        "-" if r.get("arrowflow_speedup") is None else format_ratio(r["arrowflow_speedup"]),
                        _num(r.get("cpu_seconds"), ".1f"),
                        _num(r.get("peak_rss_mb"), ".0f"),
                        _num(r.get("broker_cpu_seconds"), ".1f"),
                        _num(r.get("db_cpu_seconds"), ".1f"),
                    )
                )
                + " |"
            )
    for why in report.get("skipped_workloads", {}).values():
        lines += ["", f"Not run: {why}"]
    found = targets(report)
    if found:
        lines += ["", "| workload | target | measured | ratio | met? |", "|---|---|---|--:|---|"]
        for workload, target, measured, ratio, met in found:
            lines.append(f"| {workload} | {target} | {measured} | {ratio} | {'yes' if met else '**no**'} |")
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"the file has no {START} ... {END} markers")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{START}\n{block}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.publish", description=__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument("--headline", action="store_true", help="only the one-line-per-workload table")
    parser.add_argument("--write", type=Path, help="replace the PEERS block of this file")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    block = render(args.report, report, headline_only=args.headline)
    if args.write:
        args.write.write_text(replace_block(args.write.read_text(encoding="utf-8"), block), encoding="utf-8")
        print(f"wrote the peers block into {args.write}", file=sys.stderr)
    else:
        print(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
