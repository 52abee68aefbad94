"""``python -m benchmarks.readme_table``: JSON reports -> the README's Markdown block, numbers unchanged."""

from __future__ import annotations

import pytest

from benchmarks.readme_table import END, START, render, replace_block


def report(started: str, workload: str, rate: float, ratio: float, met: bool | None) -> dict[str, object]:
    return {
        "started": started,
        "config": {"rows": 1_000_000, "rounds": 5},
        "environment": {"python": "3.11.7", "pyarrow": "26.0.1", "cpus": 2, "loadavg": [0.5, 0.4, 0.3]},
        "results": [
            {"workload": workload, "method": "arrowflow", "rows_per_s": rate, "mb_per_s": 12.0,
             "ratio": 1.0, "target": ">= 1M/s", "met": met, "note": "a|b"},
            {"workload": workload, "method": "baseline", "rows_per_s": rate / ratio, "mb_per_s": None,
             "ratio": ratio, "target": "", "met": None, "note": ""},
        ],
    }  # fmt: skip


def test_render_keeps_the_reports_numbers_and_later_reports_win() -> None:
    block = render(
        [
            report("t1", "json", 2_000_000, 4.0, True),
            report("t1", "murmur2", 90_000_000, 200.0, True),
            report("t2", "json", 3_000_000, 5.0, False),
        ]
    )
    rows = [line for line in block.splitlines() if line.startswith("| json") or line.startswith("| murmur2")]
    assert rows == [
        "| json | arrowflow | 3M | 12 | 1.00x | >= 1M/s | **no** | a\\|b |",
        "| json | baseline | 600k | - | 5.00x |  |  |  |",
        "| murmur2 | arrowflow | 90M | 12 | 1.00x | >= 1M/s | yes | a\\|b |",
        "| murmur2 | baseline | 450k | - | 200.00x |  |  |  |",
    ]
    assert "- t1: 1,000,000 rows, median of 5 interleaved rounds" in block
    assert "load average 0.50" in block


def test_replace_block_replaces_only_between_the_markers() -> None:
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert replace_block(text, "new") == f"intro\n{START}\nnew\n{END}\noutro\n"
    with pytest.raises(ValueError, match="exactly once"):
        replace_block("no markers", "new")
