"""The peers report's published block: the targets it judges and the rows it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.peers import publish


def _row(
    system: str, rate: float, *, rss: float = 100.0, status: str = "ok", workload: str = "parquet"
) -> dict[str, Any]:
    return {
        "workload": workload,
        "system": system,
        "label": f"{system} (label)",
        "status": status,
        "error": None if status == "ok" else "3 rows, expected 5",
        "seconds": 1_000_000 / rate,
        "messages_per_second": rate,
        "cpu_seconds": 1.0,
        "peak_rss_mb": rss,
        "broker_cpu_seconds": 0.5,
        "db_cpu_seconds": None,
        "arrowflow_speedup": None,
    }


def _report(rows: list[dict[str, Any]], workloads: tuple[str, ...] = ("parquet",)) -> dict[str, Any]:
    return {
        "name": "synthetic",
        "started": "2026-12-07T00:00:00+0000",
        "seconds": 600,
        "config": {
            "messages": 1_000_000,
            "partitions": 4,
            "rounds": 1,
            "checkpoint_interval": 2.0,
            "workloads": list(workloads),
        },
        "environment": {
            "host": "vm",
            "cpus": 2,
            "loadavg": [0.5, 0.5, 0.5],
            "python": "3.11",
            "pyarrow": "26",
        },
        "summary": rows,
    }


def test_targets_judge_each_issue_target_from_the_medians() -> None:
    report = _report(
        [
            _row("arrowflow", 300_000, rss=450),
            _row("arrowflow-eos", 240_000),
            _row("flink-p1", 100_000),
            _row("flink-p1-eos", 250_000),
            _row("quix", 50_000),
            _row("bytewax", 90_000),
            _row("plain", 150_000, rss=290),
        ]
    )
    found = {(w, t): (ratio, met) for w, t, _m, ratio, met in publish.targets(report)}
    assert found[("parquet", "arrowflow >= 3x the fastest Python peer")] == ("3.33x", True)
    assert found[("parquet", "arrowflow >= flink-p1")] == ("3.00x", True)
    assert found[("parquet", "arrowflow-eos >= flink-p1-eos")] == ("0.96x", False)
    assert found[("parquet", "peak RSS <= 1.5x the plain loop's")] == ("1.55x", False)
    assert found[("parquet", "exactly-once >= 0.85x at-least-once")] == ("0.80x", False)
    assert ("parquet", "arrowflow-p2 >= flink-p2") not in found  # neither ran


def test_a_failed_run_is_shown_but_never_judged() -> None:
    # bytewax's output check failed: the fastest verified Python peer is quix, and the table says why.
    report = _report(
        [_row("arrowflow", 300_000), _row("bytewax", 900_000, status="failed"), _row("quix", 60_000)]
    )
    found = {t: (measured, met) for _w, t, measured, _r, met in publish.targets(report)}
    assert found["arrowflow >= 3x the fastest Python peer"] == ("300k vs quix 60k msg/s", True)
    block = publish.render(Path("benchmarks/results/x.json"), report)
    assert "| failed: 3 rows, expected 5 |" in block
    assert "![messages/s per system and workload](assets/x.png)" in block


def test_headline_is_a_prefix_of_the_whole_block() -> None:
    report = _report([_row("arrowflow", 300_000), _row("bytewax", 100_000)])
    path = Path("benchmarks/results/x.json")
    headline = publish.render(path, report, headline_only=True)
    assert publish.render(path, report).startswith(headline)
    assert "| 300k | 3.00x (bytewax) | - | - |" in headline
