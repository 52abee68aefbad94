"""``arrowflow run`` and ``arrowflow bench`` through click's CliRunner and as real subprocesses.

Assertions are on row counts and files, never on speeds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from arrowflow.cli import cli
from arrowflow.cli.bench import bench_sink, bench_source, format_table
from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.null import NullSink
from arrowflow.pipeline_spec import BENCH_FIELDS, build_connector

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arrowflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def _table_value(output: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}\s+(\S+)", output, re.MULTILINE)
    assert m is not None, output
    return m.group(1)


def _pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "source: {type: datagen, count: 20000, seed: 1, batch_size: 2000,\n"
        "         fields: {id: {sequence: {start: 0}}, name: {random_string: {length: [5, 10]}}}}\n"
        "operators:\n"
        '  - filter: "id % 2 == 0"\n'
        "  - select: [id, name]\n"
        "  - rename: {name: user}\n"
        f"sink: {{type: file, path: '{tmp_path / 'out'}', format: parquet}}\n"
        f"run: {{guarantee: exactly-once, checkpoint_dir: '{tmp_path / 'ckpt'}', checkpoint_interval: 5}}\n"
    )
    return path


# -- run ---------------------------------------------------------------------------------------------------


def test_run_subprocess_writes_the_filtered_rows(tmp_path: Path) -> None:
    proc = _cli("run", str(_pipeline(tmp_path)), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert _table_value(proc.stdout, "rows read") == "20000"
    assert _table_value(proc.stdout, "rows written") == "10000"
    table = ds.dataset(str(tmp_path / "out"), format="parquet").to_table()
    assert table.column_names == ["id", "user"]
    assert sorted(table.column("id").to_pylist()) == list(range(0, 20000, 2))
    assert (tmp_path / "ckpt" / "checkpoint.json").exists()


def test_run_cli_runner_set_and_max_rows(tmp_path: Path) -> None:
    path = _pipeline(tmp_path)
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(path),
            "--no-progress",
            "--set",
            "source.count=6000",
            "--max-rows",
            "4000",
            "--guarantee",
            "at-least-once",
            "--checkpoint-dir",
            str(tmp_path / "ckpt2"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert _table_value(result.output, "rows read") == "4000"
    assert _table_value(result.output, "rows written") == "2000"
    assert (tmp_path / "ckpt2" / "checkpoint.json").exists()


def test_run_check_builds_without_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(_pipeline(tmp_path)), "--check"])
    assert result.exit_code == 0, result.output
    assert "datagen -> filter -> select -> rename -> filesystem" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_run_bad_file_exits_2_naming_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "source: {type: datagen, count: 5, fields: {id: sequence}}\nsink:\n  type: null\n  fromat: x\n"
    )
    proc = _cli("run", str(path))
    assert proc.returncode == 2
    assert "bad.yaml:4: sink.fromat: unknown option" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_runtime_error_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "source: {type: datagen, count: 5, fields: {id: sequence}}\n"
        "operators: [{select: [nope]}]\nsink: {type: null}\nrun: {guarantee: none}\n"
    )
    result = CliRunner().invoke(cli, ["run", str(path), "--no-progress"])
    assert result.exit_code == 1
    assert "nope" in result.output


# -- bench -------------------------------------------------------------------------------------------------


def test_bench_sink_null_subprocess(tmp_path: Path) -> None:
    proc = _cli(
        "bench",
        "sink",
        "--sink",
        "null",
        "--rows",
        "200000",
        "--batch-rows",
        "10000",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert proc.returncode == 0, proc.stderr
    assert _table_value(proc.stdout, "rows") == "200000"
    assert _table_value(proc.stdout, "batches") == "20"
    for name in ("rows/s", "MB/s", "write p50 ms", "write p95 ms", "write p99 ms", "write max ms"):
        assert float(_table_value(proc.stdout, name).replace(",", "")) >= 0
    assert "rows/s" in proc.stderr  # the live progress line
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows"] == 200000 and report["role"] == "sink" and report["batches"] == 20
    assert report["timeline"][0] == [0.0, 0, 0] and report["timeline"][-1][1] == 200000
    assert set(report["latency_ms"]) == {"p50", "p95", "p99", "max"}


def test_bench_sink_report_png_and_partial_batch(tmp_path: Path) -> None:
    png = tmp_path / "throughput.png"
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "sink",
            "--sink",
            "null",
            "--rows",
            "25000",
            "--batch-rows",
            "10000",
            "--no-progress",
            "--report",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert _table_value(result.output, "rows") == "25000"
    assert _table_value(result.output, "batches") == "3"
    assert png.read_bytes()[:8] == PNG_SIGNATURE


def test_bench_sink_from_yaml_with_options(tmp_path: Path) -> None:
    spec = tmp_path / "sink.yaml"
    spec.write_text(f"sink:\n  type: file\n  path: '{tmp_path / 'out'}'\n")
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "sink",
            "--sink-yaml",
            str(spec),
            "--option",
            "format=arrow",
            "--rows",
            "30000",
            "--batch-rows",
            "5000",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert _table_value(result.output, "rows") == "30000"
    table = ds.dataset(str(tmp_path / "out"), format="arrow").to_table()
    assert table.num_rows == 30000 and table.column_names == list(BENCH_FIELDS)


def test_bench_bad_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli, ["bench", "sink", "--sink", "null", "--option", "bogus=1", "--rows", "10"]
    )
    assert result.exit_code == 2
    assert "sink.bogus: unknown option" in result.output
    result = CliRunner().invoke(cli, ["bench", "sink", "--rows", "10"])
    assert result.exit_code == 2 and "--sink" in result.output


def test_bench_source_default_datagen_and_file_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["bench", "source", "--rows", "50000", "--batch-rows", "10000", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert _table_value(result.output, "rows") == "50000"
    assert "read_batch p99 ms" in result.output
    # a file source written by the previous bench
    CliRunner().invoke(
        cli,
        [
            "bench",
            "sink",
            "--sink",
            "file",
            "--option",
            f"path={tmp_path / 'd'}",
            "--rows",
            "12000",
            "--batch-rows",
            "4000",
            "--no-progress",
        ],
    )
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "source",
            "--source",
            "file",
            "--option",
            f"path={tmp_path / 'd'}",
            "--no-progress",
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert _table_value(result.output, "rows") == "12000"
    assert json.loads((tmp_path / "s.json").read_text())["role"] == "source"


def test_bench_functions_directly() -> None:
    sink = MemorySink()
    result = bench_sink(sink, rows=2500, batch_rows=1000)
    assert result.rows == 2500 and sink.closed and sink.table().num_rows == 2500
    assert [b.num_rows for b in sink.batches] == [1000, 1000, 500]
    assert len(result.latencies) == 3
    null = NullSink()
    bench_sink(null, rows=100, batch_rows=7)
    assert null.metrics()["rows"] == 100 and null.metrics()["batches"] == 15
    source = build_connector(
        {"type": "datagen", "count": 900, "batch_size": 100, "fields": "bench"}, "source"
    )
    res = bench_source(source, rows=None, batch_rows=250)
    assert res.rows == 900 and res.batches == 9  # batches never cross a 100-row DataGen block
    assert _table_value(format_table(res), "rows") == "900"


def test_throughput_curve_draws_a_curve_for_a_short_run() -> None:
    """A 0.3 s run whose meter saw only its start and end (1M rows into a file sink) still draws a
    curve of CURVE_POINTS points at its mean rate, not one dot."""
    from arrowflow.cli.bench import CURVE_POINTS, throughput_curve

    times, rates, mbs = throughput_curve([(0.0, 0, 0), (0.3, 1_000_000, 72_000_000)])
    assert len(times) == len(rates) == len(mbs) == CURVE_POINTS >= 20
    assert times[-1] == pytest.approx(0.3)
    assert rates == pytest.approx([1_000_000 / 0.3] * CURVE_POINTS)
    assert mbs == pytest.approx([240.0] * CURVE_POINTS)


def test_throughput_curve_follows_the_timeline() -> None:
    """Resampling keeps the shape: a stall in the middle third of the run shows as zero throughput
    there, and the curve integrates to the rows of the run."""
    from arrowflow.cli.bench import throughput_curve

    timeline = [(0.0, 0, 0), (0.1, 100, 1000), (0.2, 100, 1000), (0.3, 200, 2000)]
    _times, rates, _ = throughput_curve(timeline, points=30)
    assert len(rates) == 30
    assert rates[:10] == pytest.approx([1000.0] * 10)
    assert rates[10:20] == pytest.approx([0.0] * 10, abs=1e-6)
    assert rates[20:] == pytest.approx([1000.0] * 10)
    assert sum(r * 0.01 for r in rates) == pytest.approx(200.0)
    assert throughput_curve([(0.0, 0, 0)]) == ([], [], [])


def test_bench_timeline_keeps_a_point_per_call_of_a_short_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of 0.1 s (20 writes of 5 ms, on a fake clock) keeps a timeline point per write: the
    spacing starts at SAMPLE_INTERVAL (1 ms) and grows with the run, so a short run is not one dot."""
    from arrowflow.cli import bench

    clock = [100.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])

    class FiveMsSink:
        name = "five-ms"
        closed = False

        def write(self, batch: object) -> None:
            clock[0] += 0.005

        def flush(self) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    result = bench.bench_sink(FiveMsSink(), rows=20_000, batch_rows=1_000)
    assert result.batches == 20
    assert result.seconds == pytest.approx(0.1)
    # the start, one point per write, the end
    assert len(result.timeline) == 22
    assert [p[1] for p in result.timeline[1:-1]] == list(range(1_000, 21_000, 1_000))
    times, rates, _ = bench.throughput_curve(result.timeline)
    assert rates == pytest.approx([200_000.0] * len(times))


def test_bench_peers_runs_the_checkouts_harness(tmp_path: Path) -> None:
    """``arrowflow bench peers`` passes its options to ``python -m benchmarks.peers`` in the source
    checkout, from any working directory (``--list`` needs no server)."""
    from arrowflow.cli.bench import checkout_root

    root = checkout_root(tmp_path)
    assert root is not None and (root / "benchmarks" / "peers" / "__main__.py").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "arrowflow", "bench", "peers", "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("arrowflow-eos", "flink-p2-eos", "quix", "bytewax", "plain", "parquet", "opensearch"):
        assert name in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "arrowflow", "bench", "peers", "--systems", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown system(s) nope" in bad.stderr
