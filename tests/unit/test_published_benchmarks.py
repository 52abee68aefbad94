"""The benchmark numbers the project publishes (README.md, docs/benchmarks.md) are named runs':
the block between the BENCHMARKS markers is exactly what ``python -m benchmarks.readme_table`` renders
from the committed report(s) it names, the block between the PEERS markers is what
``python -m benchmarks.peers.publish`` renders from the committed peers report it names, and every
rate or ratio quoted elsewhere in those files is in one of those runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.peers import publish
from benchmarks.readme_table import END, START, render

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = [ROOT / "README.md", ROOT / "docs" / "benchmarks.md"]
NAMED_REPORT = re.compile(r"`(benchmarks/results/[^`]+\.json)`")
# A number the prose may quote from a run: a rate ("1.2M rows/s", "98.8M/s") or a ratio ("4.21x").
QUOTED_NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?(?:[kMG](?: rows)?/s|x))(?![\w])")


def _published_block(path: Path, start: str = START, end: str = END) -> str:
    text = path.read_text(encoding="utf-8")
    return text.split(start)[1].split(end)[0].strip("\n")


def _outside_blocks(text: str) -> str:
    for start, end in ((START, END), (publish.START, publish.END)):
        if start in text:
            before, rest = text.split(start, 1)
            text = before + rest.split(end, 1)[1]
    return text


def _peers_report(path: Path) -> tuple[Path, dict[str, object]]:
    block = _published_block(path, publish.START, publish.END)
    names = list(dict.fromkeys(NAMED_REPORT.findall(block)))
    assert len(names) == 1, f"the peers block of {path.name} must name one committed report, names {names}"
    report = ROOT / names[0]
    assert report.is_file(), f"{path.name} quotes {names[0]}, which is not in the repository"
    return report, json.loads(report.read_text(encoding="utf-8"))


def _named_reports(block: str, path: Path) -> list[tuple[Path, dict[str, object]]]:
    names = list(dict.fromkeys(NAMED_REPORT.findall(block)))
    assert names, f"the benchmark block of {path.name} names no committed report (benchmarks/results/*.json)"
    missing = [n for n in names if not (ROOT / n).is_file()]
    assert not missing, f"{path.name} quotes {missing}, which are not in the repository"
    # Rendered with the same relative paths the block shows.
    return [(ROOT / n, json.loads((ROOT / n).read_text(encoding="utf-8"))) for n in names]


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.name)
def test_published_block_is_the_named_run_rendered(path: Path) -> None:
    # Every number between the markers is what readme_table renders from the reports the block
    # names: an edited, stale or hand-written number fails here.
    block = _published_block(path)
    reports = _named_reports(block, path)
    assert block in (render(reports), render(reports, headline_only=True)), (
        f"the benchmark block of {path.name} is not what `python -m benchmarks.readme_table` renders "
        f"from {[str(p.relative_to(ROOT)) for p, _ in reports]}: regenerate it"
    )


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.name)
def test_published_peers_block_is_the_named_run_rendered(path: Path) -> None:
    # The head-to-head numbers (python -m benchmarks.peers) are one committed run's, rendered.
    assert publish.START in path.read_text(encoding="utf-8"), f"{path.name} has no peers block"
    block = _published_block(path, publish.START, publish.END)
    report_path, report = _peers_report(path)
    assert block in (
        publish.render(report_path, report),
        publish.render(report_path, report, headline_only=True),
    ), (
        f"the peers block of {path.name} is not what `python -m benchmarks.peers.publish` renders: "
        "regenerate it"
    )
    if block == publish.render(report_path, report):
        chart = ROOT / "docs" / "assets" / publish.chart_name(report_path)
        assert chart.is_file(), f"the peers block of {path.name} links {chart}, which is missing"


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.name)
def test_numbers_quoted_outside_the_block_are_in_the_named_run(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    outside = _outside_blocks(text)
    rendered = render(_named_reports(_published_block(path), path))
    if publish.START in text:
        rendered += "\n" + publish.render(*_peers_report(path))
    for number in QUOTED_NUMBER.findall(outside):
        assert number.replace(" rows", "") in rendered, (
            f"{path.name} quotes {number!r}, which is not in the benchmark runs its blocks name"
        )


def test_quoted_number_pattern_finds_rates_and_ratios() -> None:
    found = QUOTED_NUMBER.findall("at 1.2M rows/s (98.8M/s), 4.21x faster; 2 cores, v0.1.0, 10x")
    assert found == ["1.2M rows/s", "98.8M/s", "4.21x", "10x"]
