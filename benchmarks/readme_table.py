"""Render benchmark JSON reports as the Markdown table between README.md's BENCHMARKS markers.

``python -m benchmarks.readme_table REPORT.json [REPORT.json ...] [--write]``

Several reports (runs of different ``--only`` groups) are merged in the order given; a workload that
appears in more than one report is taken from the last. Without ``--write`` the block is printed;
with it, README.md's block between ``<!-- BENCHMARKS:START -->`` and ``<!-- BENCHMARKS:END -->`` is
replaced. The numbers are the reports' own (medians and ratios); nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .core import format_rate

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- BENCHMARKS:START -->"
END = "<!-- BENCHMARKS:END -->"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(reports: list[dict[str, Any]]) -> str:
    """The Markdown block (without the markers) for the merged ``reports``."""
    by_workload: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []
    environments = []
    for report in reports:
        environments.append(
            (report.get("started", "?"), report.get("config", {}), report.get("environment", {}))
        )
        grouped: dict[str, list[dict[str, Any]]] = {}
        for result in report["results"]:
            grouped.setdefault(result["workload"], []).append(result)
        for name, results in grouped.items():
            if name not in by_workload:
                order.append(name)
            by_workload[name] = results
    lines = [
        "| workload | method | rows/s | MB/s | ratio | target | met? | note |",
        "|---|---|--:|--:|--:|---|---|---|",
    ]
    for name in order:
        for r in by_workload[name]:
            met = {True: "yes", False: "**no**", None: "-" if r.get("target") else ""}[r.get("met")]
            mb = "-" if r.get("mb_per_s") is None else f"{r['mb_per_s']:,.0f}"
            lines.append(
                f"| {name} | {_cell(r['method'])} | {format_rate(r.get('rows_per_s'))} | {mb} | "
                f"{_ratio(r.get('ratio'))} | {_cell(r.get('target', ''))} | {met} | "
                f"{_cell(r.get('note', ''))} |"
            )
    runs = []
    for started, config, env in environments:
        load = env.get("loadavg")
        load_text = f", load average {load[0]:.2f}" if load else ""
        runs.append(
            f"{started}: {config.get('rows', '?'):,} rows, median of {config.get('rounds', '?')} interleaved "
            f"rounds; Python {env.get('python', '?')}, pyarrow {env.get('pyarrow', '?')}, "
            f"{env.get('cpus', '?')} CPUs{load_text}"
        )
    head = [
        "Measured with `python -m benchmarks` on the development machine (a shared 2-core VM: expect "
        "noise of 10-30%; compare ratios, which come from interleaved rounds of one run). "
        "ratio = arrowflow's rows/s / the method's rows/s.",
        "",
        *(f"- {run}" for run in runs),
        "",
    ]
    return "\n".join([*head, *lines])


def replace_block(text: str, block: str) -> str:
    """``text`` with the content between the markers replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"README.md must hold {START} and {END} exactly once")
    before, rest = text.split(START)
    _, after = rest.split(END)
    return f"{before}{START}\n{block}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--write", action="store_true", help="replace the block in README.md")
    args = parser.parse_args(argv)
    reports = [json.loads(path.read_text()) for path in args.reports]
    block = render(reports)
    if args.write:
        README.write_text(replace_block(README.read_text(), block))
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
