"""The ``arrowflow`` command line: ``--version``, ``connectors`` (table and JSON), and ``demo`` end to end.

``demo`` runs for real in a subprocess: librdkafka's in-process mock cluster, DataGenSource, the
KafkaSink/KafkaSource pipelines (compiled json and murmur2 kernels, pyarrow's JSON reader) and polars.
Nothing of arrowflow is mocked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pyarrow as pa
import pytest
from click.testing import CliRunner

import arrowflow
from arrowflow.cli import cli
from arrowflow.connectors import registry


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "arrowflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_import_arrowflow_does_not_import_cli_dependencies() -> None:
    code = (
        "import sys, arrowflow; "
        "mods = ('click', 'rich', 'polars', 'confluent_kafka', 'arrowflow.cli'); "
        "bad = [m for m in mods if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert arrowflow.__version__ in result.output


def test_connectors_json_matches_registry() -> None:
    result = CliRunner().invoke(cli, ["connectors", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == [c.name for c in registry.CONNECTORS]
    for row, info in zip(rows, registry.CONNECTORS, strict=True):
        assert row["sources"] == list(info.sources)
        assert row["sinks"] == list(info.sinks)
        assert row["variants"] == dict(info.variants)
        assert row["extra"] == info.extra
        assert row["status"] == info.status
        assert row["tested_against"] == info.tested_against
        assert row["installed"] is registry.available(info)


def test_connectors_table_lists_every_connector() -> None:
    result = CliRunner().invoke(cli, ["connectors"])
    assert result.exit_code == 0, result.output
    for info in registry.CONNECTORS:
        line = next((ln for ln in result.output.splitlines() if f" {info.name} " in ln), None)
        assert line is not None, f"{info.name} missing from:\n{result.output}"
        assert info.status in line
        assert ("yes" if registry.available(info) else "no") in line
        # The pip extra is printed as typed, not eaten as a rich markup tag.
        assert (f"arrowflow[{info.extra}]" if info.extra else "(core)") in line


def test_connectors_via_python_m() -> None:
    proc = _run("connectors", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {r["name"] for r in json.loads(proc.stdout)} == {c.name for c in registry.CONNECTORS}
    table = _run("connectors")
    assert table.returncode == 0, table.stderr
    assert all(info.name in table.stdout for info in registry.CONNECTORS)


def test_unknown_command_fails() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_demo_rejects_zero_rows() -> None:
    result = CliRunner().invoke(cli, ["demo", "--rows", "0", "--no-progress"])
    assert result.exit_code == 2
    assert "--rows" in result.output


def test_demo_round_trip_in_subprocess() -> None:
    rows = 20_000
    proc = _run("demo", "--rows", str(rows), "--batch-size", "7000", "--no-progress")
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    written = re.search(r"^rows written: (\d+)$", out, re.M)
    read = re.search(r"^rows read back: (\d+)$", out, re.M)
    assert written and read, out
    assert int(written.group(1)) == rows
    assert int(read.group(1)) == rows
    assert re.search(r"^id checksum: ok$", out, re.M), out
    assert re.search(r"^offsets: ok$", out, re.M), out
    for stage in (
        "generate + write (DataGenSource -> KafkaSink)",
        "datagen source",
        "kafka sink: json encode + produce",
        "read back (KafkaSource -> MemorySink)",
        "kafka source: consume + json decode",
        "summary",
        "end-to-end",
    ):
        assert stage in out, f"stage {stage!r} missing from the throughput table:\n{out}"
    # The polars summary counts every row read back exactly once across countries.
    counts = [int(m.group(1).replace(",", "")) for m in re.finditer(r"│ [A-Z]{2}\s+│\s+([\d,]+) │", out)]
    assert sum(counts) == rows, out
    assert "checkpoints" not in proc.stderr  # --no-progress: no pipeline progress line


def test_demo_shows_the_pipeline_progress_line_by_default() -> None:
    proc = _run("demo", "--rows", "5000")
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    # The write pipeline's progress line (stderr) ends at the rows generated.
    assert re.search(r"rows 5,000 \| [\d,]+ rows/s", proc.stderr), proc.stderr
    assert re.search(r"^id checksum: ok$", proc.stdout, re.M), proc.stdout


def test_demo_checks_catch_lost_and_duplicated_rows() -> None:
    from arrowflow.cli.demo import ids_exactly_once, offsets_contiguous

    assert ids_exactly_once(pa.chunked_array([[2, 0], [1, 3]]), 4)
    assert not ids_exactly_once(pa.chunked_array([[0, 1, 1, 3]]), 4)  # 2 lost, 1 twice: same count
    assert not ids_exactly_once(pa.chunked_array([[0, 1, 2]]), 4)
    assert not ids_exactly_once(pa.chunked_array([[0, 1, 2, 4]]), 4)
    parts = pa.chunked_array([[1, 0, 1, 0, 1]], pa.int32())
    assert offsets_contiguous(parts, pa.chunked_array([[0, 1, 2, 0, 1]]))
    # Partition 1 starts at offset 1: its first message was deleted before it was read.
    assert not offsets_contiguous(parts, pa.chunked_array([[1, 0, 2, 1, 3]]))
    assert not offsets_contiguous(parts, pa.chunked_array([[0, 0, 0, 1, 2]]))


def test_follow_reader_waits_for_the_reader_and_fails_with_it() -> None:
    import threading
    import time

    from arrowflow.cli.demo import DemoError, FollowReader

    delivered = [0]
    op = FollowReader(lambda: delivered[0], lambda: None, max_lag=10, stall_timeout=5.0)
    batch = pa.record_batch({"id": list(range(8))})
    assert op.process(batch) == [batch]  # 8 ahead <= 10: passes at once
    timer = threading.Timer(0.2, lambda: delivered.__setitem__(0, 8))
    timer.start()
    t0 = time.monotonic()
    assert op.process(batch) == [batch]  # 16 ahead: waits until the reader has 8
    assert time.monotonic() - t0 >= 0.15
    timer.join()
    failing = FollowReader(lambda: 0, lambda: RuntimeError("boom"), max_lag=1, stall_timeout=5.0)
    failing.process(pa.record_batch({"id": [0]}))
    with pytest.raises(DemoError, match="boom"):
        failing.process(pa.record_batch({"id": [1]}))
    stalled = FollowReader(lambda: 0, lambda: None, max_lag=1, stall_timeout=0.1)
    stalled.process(pa.record_batch({"id": [0]}))
    with pytest.raises(DemoError, match="delivered nothing"):
        stalled.process(pa.record_batch({"id": [1]}))
