"""Render benchmark JSON reports as the Markdown block between README.md's BENCHMARKS markers.

``python -m benchmarks.readme_table REPORT.json [REPORT.json ...] [--headline] [--write [--readme PATH]]``

One report is the intended use: every number of the block then comes from one run, which the block
names (the JSON's path, its ``run`` name, start time, rows, rounds and machine). Several reports (runs
of different ``--only`` groups) are merged in the order given, a workload present in more than one
taken from the last; each report is then numbered and every row says which run it came from.

The block holds the headline table (per workload: arrowflow's reference method against its idiomatic
baseline, the ratio quoted for the workload) and then every method. The numbers are the reports' own
(medians and ratios); nothing is recomputed. Without ``--write`` the block is printed; with it, the
block between ``<!-- BENCHMARKS:START -->`` and ``<!-- BENCHMARKS:END -->`` of ``--readme`` (default
README.md) is replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .core import ROLE_MARK, format_rate, format_ratio, note_cell, out_cell

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START = "<!-- BENCHMARKS:START -->"
END = "<!-- BENCHMARKS:END -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _shown_path(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(ROOT))
    except ValueError:
        return str(resolved)


def _describe_run(path: Path, report: dict[str, Any]) -> str:
    config, env = report.get("config", {}), report.get("environment", {})
    load = env.get("loadavg")
    load_text = f", load average {load[0]:.2f}" if load else ""
    rows = config.get("rows")
    rows_text = f"{rows:,}" if isinstance(rows, int) else "?"
    return (
        f'`{_shown_path(path)}`, run "{report.get("run", report.get("started", "?"))}" '
        f"(started {report.get('started', '?')}): {rows_text} rows, median of "
        f"{config.get('rounds', '?')} interleaved rounds; Python {env.get('python', '?')}, "
        f"pyarrow {env.get('pyarrow', '?')}, {env.get('cpus', '?')} CPUs{load_text}"
    )


def _summaries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's per-workload headline; an older report without ``summary`` has none."""
    return {s["workload"]: s for s in report.get("summary", [])}


def render(reports: list[tuple[Path, dict[str, Any]]], *, headline_only: bool = False) -> str:
    """The Markdown block (without the markers) for the merged ``(path, report)`` pairs; with
    ``headline_only`` only the per-workload headline table (the README's short form)."""
    by_workload: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    headline: dict[str, tuple[int, dict[str, Any]]] = {}
    described: dict[str, str] = {}
    order: list[str] = []
    for number, (_path, report) in enumerate(reports, start=1):
        described.update(report.get("workloads", {}))
        grouped: dict[str, list[dict[str, Any]]] = {}
        for result in report["results"]:
            grouped.setdefault(result["workload"], []).append(result)
        summaries = _summaries(report)
        for name, results in grouped.items():
            if name not in by_workload:
                order.append(name)
            by_workload[name] = (number, results)
            if name in summaries:
                headline[name] = (number, summaries[name])
            else:
                headline.pop(name, None)
    several = len(reports) > 1
    run_col = " run |" if several else ""
    run_sep = "--:|" if several else ""

    def run_cell(number: int) -> str:
        return f" [{number}] |" if several else ""

    if several:
        head = ["The numbers below come from these `python -m benchmarks` runs (column *run*):", ""]
        head += [f"- [{i}] {_describe_run(path, rep)}" for i, (path, rep) in enumerate(reports, start=1)]
    else:
        head = [
            f"Every number below comes from one `python -m benchmarks` run: {_describe_run(*reports[0])}."
        ]
    head += [
        "",
        "Measured on the development machine (a shared 2-core VM: expect noise of 10-30%; compare "
        "ratios, which come from interleaved rounds of one run). ratio = arrowflow's rows/s / the "
        "method's rows/s. The *baseline* of a workload is the fastest idiomatic use of the same client "
        "(batched or concurrent, the same options and data); the ratio quoted for a workload is the one "
        "against it. *out* = `same`: the method's output was checked against the expected rows.",
        "",
        f"| workload | what (and against which server) | arrowflow | rows/s | idiomatic baseline | rows/s "
        f"| ratio | target | met? |{run_col}",
        f"|---|---|---|--:|---|--:|--:|---|---|{run_sep}",
    ]
    lines = head
    for name in order:
        if name not in headline or headline[name][1].get("baseline") is None:
            continue
        number, s = headline[name]
        met = {True: "yes", False: "**no**", None: "-" if s.get("target") else ""}[s.get("met")]
        lines.append(
            f"| {name} | {_cell(described.get(name, ''))} | {_cell(s['arrowflow'])} | "
            f"{format_rate(s.get('arrowflow_rows_per_s'))} | "
            f"{_cell(s['baseline'])} | {format_rate(s.get('baseline_rows_per_s'))} | "
            f"{format_ratio(s.get('ratio'))} | {_cell(s.get('target') or '')} | {met} |{run_cell(number)}"
        )
    if headline_only:
        return "\n".join(lines)
    lines += [
        "",
        f"| workload | method | role | rows/s | MB/s | ratio | target | met? | out | note |{run_col}",
        f"|---|---|---|--:|--:|--:|---|---|---|---|{run_sep}",
    ]
    for name in order:
        number, results = by_workload[name]
        for r in results:
            met = {True: "yes", False: "**no**", None: "-" if r.get("target") else ""}[r.get("met")]
            mb = "-" if r.get("mb_per_s") is None else f"{r['mb_per_s']:,.0f}"
            out = out_cell(r.get("checked"))
            role = ROLE_MARK.get(r.get("role", ""), "")
            lines.append(
                f"| {name} | {_cell(r['method'])} | {role} | {format_rate(r.get('rows_per_s'))} | {mb} | "
                f"{format_ratio(r.get('ratio'))} | {_cell(r.get('target', ''))} | {met} | {out} | "
                f"{_cell(note_cell(r.get('note', ''), r.get('checked')))} |{run_cell(number)}"
            )
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with the content between the markers replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"the file must hold {START} and {END} exactly once")
    before, rest = text.split(START)
    _, after = rest.split(END)
    return f"{before}{START}\n{block}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--write", action="store_true", help="replace the block in --readme")
    parser.add_argument("--readme", type=Path, default=README, help="file holding the markers (README.md)")
    parser.add_argument("--headline", action="store_true", help="only the per-workload headline table")
    args = parser.parse_args(argv)
    reports = [(path, json.loads(path.read_text())) for path in args.reports]
    block = render(reports, headline_only=args.headline)
    if args.write:
        args.readme.write_text(replace_block(args.readme.read_text(), block))
        print(f"wrote the block of {len(reports)} report(s) into {args.readme}", file=sys.stderr)
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
