"""The benchmark runner's bookkeeping and ``python -m benchmarks.readme_table``: which row is the
idiomatic baseline, what an output check does to a method, and the README block (numbers unchanged,
the run named)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from benchmarks.checks import same_rows
from benchmarks.core import Method, Prepared, RunConfig, Workload, run_workload, summarise
from benchmarks.readme_table import END, START, render, replace_block


def report(started: str, workload: str, rate: float, ratio: float, met: bool | None) -> dict[str, object]:
    return {
        "run": f"run at {started}",
        "started": started,
        "config": {"rows": 1_000_000, "rounds": 5},
        "environment": {"python": "3.11.7", "pyarrow": "26.0.1", "cpus": 2, "loadavg": [0.5, 0.4, 0.3]},
        "workloads": {workload: f"{workload} into a server"},
        "results": [
            {"workload": workload, "method": "arrowflow", "role": "arrowflow", "rows_per_s": rate,
             "mb_per_s": 12.0, "ratio": 1.0, "target": ">= 1M/s", "met": met, "note": "a|b",
             "checked": "10 rows"},
            {"workload": workload, "method": "baseline", "role": "baseline", "rows_per_s": rate / ratio,
             "mb_per_s": None, "ratio": ratio, "target": "af >= 2x", "met": ratio >= 2, "note": "",
             "checked": None},
        ],
        "summary": [
            {"workload": workload, "arrowflow": "arrowflow", "arrowflow_rows_per_s": rate,
             "baseline": "baseline", "baseline_rows_per_s": rate / ratio, "ratio": ratio,
             "target": "af >= 2x", "met": ratio >= 2},
        ],
    }  # fmt: skip


def test_one_report_is_named_and_its_numbers_kept() -> None:
    block = render([(Path("/tmp/run.json"), report("t1", "json", 2_000_000, 4.0, True))])
    assert 'one `python -m benchmarks` run: `/tmp/run.json`, run "run at t1" (started t1)' in block
    assert "1,000,000 rows, median of 5 interleaved rounds" in block and "load average 0.50" in block
    rows = [line for line in block.splitlines() if line.startswith("| json")]
    assert rows == [
        "| json | json into a server | arrowflow | 2M | baseline | 500k | 4.00x | af >= 2x | yes |",
        "| json | arrowflow | arrowflow | 2M | 12 | 1.00x | >= 1M/s | yes | same | a\\|b |",
        "| json | baseline | BASELINE | 500k | - | 4.00x | af >= 2x | yes |  |  |",
    ]


def test_several_reports_name_the_run_of_every_row_and_later_reports_win() -> None:
    block = render(
        [
            (Path("/tmp/a.json"), report("t1", "json", 2_000_000, 4.0, True)),
            (Path("/tmp/a.json"), report("t1", "murmur2", 90_000_000, 200.0, True)),
            (Path("/tmp/b.json"), report("t2", "json", 3_000_000, 1.5, False)),
        ]
    )
    assert '- [3] `/tmp/b.json`, run "run at t2" (started t2)' in block
    rows = [line for line in block.splitlines() if line.startswith(("| json", "| murmur2"))]
    assert rows == [
        "| json | json into a server | arrowflow | 3M | baseline | 2M | 1.50x | af >= 2x | **no** | [3] |",
        (
            "| murmur2 | murmur2 into a server | arrowflow | 90M | baseline | 450k | 200.00x | af >= 2x "
            "| yes | [2] |"
        ),
        "| json | arrowflow | arrowflow | 3M | 12 | 1.00x | >= 1M/s | **no** | same | a\\|b | [3] |",
        "| json | baseline | BASELINE | 2M | - | 1.50x | af >= 2x | **no** |  |  | [3] |",
        "| murmur2 | arrowflow | arrowflow | 90M | 12 | 1.00x | >= 1M/s | yes | same | a\\|b | [2] |",
        "| murmur2 | baseline | BASELINE | 450k | - | 200.00x | af >= 2x | yes |  |  | [2] |",
    ]


def test_replace_block_replaces_only_between_the_markers() -> None:
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert replace_block(text, "new") == f"intro\n{START}\nnew\n{END}\noutro\n"
    with pytest.raises(ValueError, match="exactly once"):
        replace_block("no markers", "new")


# -- the runner: roles and output checks -------------------------------------------------------------


def _workload(methods: dict[str, Method], idiomatic: tuple[str, ...]) -> tuple[Workload, Prepared]:
    prepared = Prepared(methods=methods, bytes_per_row=8.0)
    workload = Workload(
        name="w", description="", setup=lambda c: prepared, reference="af", idiomatic=idiomatic
    )
    return workload, prepared


def test_fastest_idiomatic_method_is_the_baseline_and_a_failed_check_is_not_timed() -> None:
    table = pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"]})
    landed: dict[str, pa.Table] = {}

    def method(name: str, rows: pa.Table, repeat: int) -> Method:
        def run() -> int:
            for _ in range(repeat):  # slower methods do the same work several times
                landed[name] = rows
            return 3

        return Method(run=run, check=lambda: same_rows(landed[name], table, name))

    workload, _ = _workload(
        {
            "af": method("af", table, 1),
            "slow": method("slow", table, 20_000),
            "fast": method("fast", table, 2_000),
            "short": method("short", table.slice(0, 2), 1),  # lands a row less: must not be timed
            "naive": method("naive", table, 200_000),
        },
        idiomatic=("slow", "fast", "short"),
    )
    config = RunConfig(rows=3, rounds=3, min_sample_s=0)
    results = {r.method: r for r in run_workload(workload, config, print)}
    assert [results[n].role for n in ("af", "slow", "fast", "short", "naive")] == [
        "arrowflow",
        "idiomatic",
        "baseline",
        "",
        "",
    ]
    assert results["short"].rows_per_s is None and results["short"].times_s == []
    assert "output check failed" in results["short"].note
    assert "2 rows landed, expected 3" in results["short"].note
    assert results["fast"].checked == "3 rows x 2 columns"
    summary = summarise(workload, list(results.values()))
    assert (summary.baseline, summary.ratio) == ("fast", results["fast"].ratio)


def test_cpu_time_is_recorded_per_sample_apart_from_wall_time() -> None:
    import statistics
    import time

    def busy() -> int:
        sum(range(20_000))
        return 4

    def waits() -> int:
        time.sleep(0.02)  # waiting (on a server, for a core) costs wall time, not CPU time
        return 4

    workload, _ = _workload({"af": Method(run=busy), "sleeper": Method(run=waits)}, idiomatic=("sleeper",))
    config = RunConfig(rows=4, rounds=3, min_sample_s=0)
    results = {r.method: r for r in run_workload(workload, config, print)}
    for r in results.values():
        assert len(r.cpu_times_s) == len(r.times_s) == 3
        assert r.cpu_us_per_row == statistics.median(r.cpu_times_s) / 4 * 1e6
    sleeper, af = results["sleeper"], results["af"]
    assert all(cpu < wall for cpu, wall in zip(sleeper.cpu_times_s, sleeper.times_s, strict=True))
    assert sleeper.cpu_us_per_row is not None and af.cpu_us_per_row
    assert sleeper.cpu_ratio == sleeper.cpu_us_per_row / af.cpu_us_per_row
    assert summarise(workload, list(results.values())).cpu_ratio == sleeper.cpu_ratio


def test_a_workload_naming_a_method_its_setup_lacks_is_refused() -> None:
    workload, _ = _workload({"af": Method(run=lambda: 1)}, idiomatic=("missing",))
    with pytest.raises(ValueError, match="missing"):
        run_workload(workload, RunConfig(rows=1, rounds=1), print)


def test_same_rows_is_exact() -> None:
    table = pa.table({"id": list(range(100)), "v": [float(i) for i in range(100)]})
    assert same_rows(table, table, "t") == "100 rows x 2 columns"
    with pytest.raises(AssertionError, match="99 rows landed, expected 100"):
        same_rows(table.slice(1), table, "t")
    changed = pa.table({"id": list(range(100)), "v": [0.5] + [float(i) for i in range(1, 100)]})
    with pytest.raises(AssertionError, match=r"column 'v' differs, e\.g\. at id=0: 0\.5 != 0\.0"):
        same_rows(changed, table, "t")
    shifted = pa.table({"id": list(range(1, 101)), "v": [float(i) for i in range(1, 101)]})
    with pytest.raises(AssertionError, match="id values differ"):
        same_rows(shifted, table, "t")
    twice = pa.concat_tables([table.slice(0, 99), table.slice(0, 1)])  # id 0 twice, id 99 lost
    with pytest.raises(AssertionError, match="id values differ"):
        same_rows(twice, table, "t")


def test_a_workload_can_ask_for_more_rounds_and_longer_samples_except_under_quick() -> None:
    calls: list[str] = []

    def method(name: str) -> Method:
        def run() -> int:
            calls.append(name)
            return 1

        return Method(run=run)

    methods = {"af": method("af"), "base": method("base")}
    prepared = Prepared(methods=methods, bytes_per_row=8.0)

    def workload(min_rounds: int = 1, min_sample_s: float = 0.0) -> Workload:
        return Workload(
            name="w",
            description="",
            setup=lambda c: prepared,
            reference="af",
            idiomatic=("base",),
            min_rounds=min_rounds,
            min_sample_s=min_sample_s,
        )

    config = RunConfig(rows=1, rounds=2, min_sample_s=0)
    results = {r.method: r for r in run_workload(workload(min_rounds=7), config, print)}
    assert len(results["af"].times_s) == len(results["base"].times_s) == 7
    assert results["af"].calls_per_sample == 1
    # A call takes microseconds: a sample of at least 0.02 s repeats it many times.
    results = {r.method: r for r in run_workload(workload(min_sample_s=0.02), config, print)}
    assert len(results["af"].times_s) == 2 and (results["af"].calls_per_sample or 0) > 1
    quick = RunConfig(rows=1, rounds=2, min_sample_s=0, quick=True)
    results = {r.method: r for r in run_workload(workload(min_rounds=7, min_sample_s=0.02), quick, print)}
    assert len(results["af"].times_s) == 2 and results["af"].calls_per_sample == 1
