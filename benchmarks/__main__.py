"""``python -m benchmarks``: run the workloads, print the table, write the JSON report.

Run from the repository root (the ``benchmarks`` package is not installed). Exit status 0 when the
run completed (targets missed are reported, not failures), 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import load_workloads
from .core import RunConfig, registry, run

RESULTS = Path(__file__).parent / "results" / "latest.json"
QUICK_ROWS = 20_000


def main(argv: list[str] | None = None) -> int:
    load_workloads()
    names = list(registry())
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="arrowflow vs its baselines, side by side, interleaved rounds (median).",
    )
    parser.add_argument("--only", help=f"comma-separated workloads (default: all of {','.join(names)})")
    parser.add_argument("--rounds", type=int, help="timed rounds per workload (default 5; --quick: 2)")
    parser.add_argument("--rows", type=int, help="rows (keys) per workload (default 1_000_000)")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke test: {QUICK_ROWS:,} rows, 2 rounds, small subsets"
    )
    parser.add_argument("--json", type=Path, help=f"also write the JSON report here (always: {RESULTS})")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument(
        "--name",
        help="name of this run, stored in the JSON and quoted by readme_table (default: start time + host)",
    )
    args = parser.parse_args(argv)

    if args.list:
        for name, workload in registry().items():
            baseline = f" [baseline: {' | '.join(workload.idiomatic)}]" if workload.idiomatic else ""
            print(f"{name:12} {workload.description}{baseline}")
        return 0
    selected = names
    if args.only:
        selected = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in selected if s not in names]
        if unknown:
            parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(names)}")
    try:
        config = RunConfig(
            rows=args.rows if args.rows is not None else (QUICK_ROWS if args.quick else 1_000_000),
            rounds=args.rounds if args.rounds is not None else (2 if args.quick else 5),
            quick=args.quick,
            min_sample_s=0.01 if args.quick else 0.05,
        )
    except ValueError as exc:
        parser.error(str(exc))
    paths = [RESULTS]
    if args.json is not None:
        paths.append(args.json)
    run(selected, config, paths, run_name=args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
