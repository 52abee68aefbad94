"""``python -m benchmarks.peers`` (also ``make bench-peers`` and ``arrowflow bench peers``).

Needs the Kafka broker and PostgreSQL of tests/services (``make bench-peers`` starts and stops them),
reached at the ports of ``KAFKA_PORT`` and ``PGPORT_TEST`` (or ``POSTGRES_DSN``). Creates the peers'
virtual environments under ``.peers/`` and builds the Flink jobs on first use. Exit status 0 when the
run completed (a failed system is reported, not raised), 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..servers import OPENSEARCH_URL
from .harness import Config, opensearch_node, run_benchmark
from .report import format_table, write_json, write_png
from .systems import DEFAULT_WORKLOADS, SYSTEMS, WORKLOADS, select_systems

RESULTS = Path(__file__).resolve().parents[1] / "results"
QUICK_MESSAGES = 50_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description="arrowflow against Flink, Quix Streams, Bytewax and a plain client loop: the same jobs, "
        "broker, data; outputs verified row by row; interleaved rounds (median).",
    )
    parser.add_argument(
        "--messages", type=int, help="messages per workload (default 1,000,000; --quick 50,000)"
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_MESSAGES:,} messages, 1 round"
    )
    parser.add_argument(
        "--systems", help=f"comma-separated (default: all runnable of {','.join(s.name for s in SYSTEMS)})"
    )
    parser.add_argument(
        "--workloads",
        help=f"comma-separated (default: {','.join(DEFAULT_WORKLOADS)}, and opensearch when a real "
        "OpenSearch 2.x node answers on OPENSEARCH_PORT)",
    )
    parser.add_argument(
        "--checkpoint-interval", type=float, default=2.0, help="seconds (every system; default 2)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one job may run (default 900)")
    parser.add_argument("--flink-heap", default="512m", help="the Flink JVM's -Xmx (default 512m)")
    parser.add_argument("--work-dir", help="keep every run's spec, logs and (failed) outputs here")
    parser.add_argument(
        "--json", type=Path, help=f"also write the JSON report here (always {RESULTS}/peers-latest.json)"
    )
    parser.add_argument(
        "--png", type=Path, help=f"also draw the chart here (always {RESULTS}/peers-latest.png)"
    )
    parser.add_argument("--name", help="a name for this run, stored in the JSON")
    parser.add_argument("--list", action="store_true", help="list the systems and workloads and exit")
    args = parser.parse_args(argv)

    if args.list:
        for s in SYSTEMS:
            state = "" if s.enabled else "  [not runnable yet]"
            print(f"{s.name:14} {s.label}{state}\n{'':15}{s.idiom}")
        for w in WORKLOADS.values():
            print(f"{w.name:14} {w.title}")
        return 0
    try:
        systems = select_systems(
            [s.strip() for s in args.systems.split(",") if s.strip()] if args.systems else None
        )
    except ValueError as exc:
        parser.error(str(exc))
    node = opensearch_node(OPENSEARCH_URL)
    default = ",".join(DEFAULT_WORKLOADS + (("opensearch",) if node else ()))
    workloads = tuple(w.strip() for w in (args.workloads or default).split(",") if w.strip())
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    if "opensearch" in workloads and node is None:
        parser.error(
            f"workload opensearch needs a real OpenSearch 2.x node at {OPENSEARCH_URL} (OPENSEARCH_PORT)"
        )
    messages = args.messages if args.messages is not None else (QUICK_MESSAGES if args.quick else 1_000_000)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if messages <= 0 or rounds <= 0 or args.partitions <= 0:
        parser.error("--messages, --rounds and --partitions must be > 0")
    cfg = Config(
        messages=messages,
        partitions=args.partitions,
        rounds=rounds,
        workloads=workloads,
        systems=tuple(systems),
        checkpoint_interval=args.checkpoint_interval,
        timeout=args.timeout,
        work_dir=args.work_dir,
        flink_heap=args.flink_heap,
        quick=args.quick,
    )
    report = run_benchmark(cfg)
    report["name"] = args.name or f"{report['started']} {report['environment'].get('host', '')}"
    print(format_table(report))
    for path in [RESULTS / "peers-latest.json", *([args.json] if args.json else [])]:
        write_json(report, path)
    for path in [RESULTS / "peers-latest.png", *([args.png] if args.png else [])]:
        write_png(report, path)
    print(f"JSON: {RESULTS / 'peers-latest.json'}  PNG: {RESULTS / 'peers-latest.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
