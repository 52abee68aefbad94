"""README.md stays true: every example runs, and the connector table matches the registry.

* Every fenced ````python`` block of README.md runs as a script in a fresh interpreter, in its own
  temporary working directory (so examples that write files are harmless), and must exit 0. A block
  whose preceding non-blank line is ``<!-- no-test -->`` (the few that need a server or run until
  stopped) is only compiled.
* Every ````yaml`` block (not marked ``no-test``) is a pipeline file: it is written to
  ``pipeline.yaml`` in a temporary directory and run with ``python -m arrowflow run``.
* Every connector of :mod:`arrowflow.connectors.registry` has a row in the "Connectors" table naming
  its source and sink classes; a row may not call an available connector "planned", nor call a
  registry entry "available" unless the registry does.
* The benchmark placeholder the release process fills is present exactly once.

The examples assert their own results; this test checks the exit status and shows the output of
a failing example.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from arrowflow.connectors.registry import CONNECTORS

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP_MARK = "<!-- no-test -->"
#: Generous: an example takes about a second; a loaded 2-core CI machine may take several.
EXAMPLE_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, first code line (1-based), text and skip mark."""

    lang: str
    line: int
    code: str
    skipped: bool

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[Block]:
    """Every fenced block (```lang ... ```), with whether the line before it says ``no-test``."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence is None:
            if line.strip():
                previous = line.strip()
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise AssertionError(f"README.md:{i + 1}: unterminated code block")
        code = "\n".join(lines[start:end]) + "\n"
        blocks.append(Block(fence.group(1).lower(), start + 1, code, previous == SKIP_MARK))
        previous = ""
        i = end + 1
    return blocks


BLOCKS = code_blocks(readme_text())
PYTHON = [b for b in BLOCKS if b.lang == "python" and not b.skipped]
YAML = [b for b in BLOCKS if b.lang == "yaml" and not b.skipped]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Examples run as a user would run them: no inherited pytest capture or coverage settings, and
    # a fixed width so that tables print the same everywhere.
    # OUT_DIR: the YAML example's ``${OUT_DIR:-out/orders}`` must take its default (the temp dir).
    for key in ("PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS", "COV_CORE_SOURCE", "OUT_DIR"):
        env.pop(key, None)
    env["COLUMNS"] = "120"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _report(proc: subprocess.CompletedProcess[str], code: str) -> str:
    numbered = "\n".join(f"{n:4d}  {line}" for n, line in enumerate(code.splitlines(), 1))
    return (
        f"exit status {proc.returncode}\n--- code ---\n{numbered}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )


# -- the examples ----------------------------------------------------------------------------------


def test_readme_has_examples_and_few_skips() -> None:
    assert len(PYTHON) >= 15, f"only {len(PYTHON)} runnable python examples found in README.md"
    assert len(YAML) >= 1, "README.md has no runnable YAML pipeline"
    skipped = [b.id for b in BLOCKS if b.skipped]
    # One no-test example per server-backed connector at most; everything else must run.
    assert len(skipped) <= 16, f"too many examples are marked {SKIP_MARK}: {skipped}"
    assert all(b.lang in ("python", "yaml") for b in BLOCKS if b.skipped)


def test_skipped_python_examples_compile() -> None:
    # A block marked no-test (it needs a server, or runs until stopped) must still be valid Python.
    for block in BLOCKS:
        if block.lang == "python" and block.skipped:
            compile(block.code, block.id, "exec")


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id}: {_report(proc, block.code)}"
    # The suite's tripwire (tests/conftest.py) cannot see a child's stderr: apply it here.
    assert "Exception ignored" not in proc.stderr, f"{block.id}: {_report(proc, block.code)}"


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_yaml_pipeline_runs_with_arrowflow_run(block: Block, tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(block.code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "arrowflow", "run", "pipeline.yaml", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id}: {_report(proc, block.code)}"
    assert "Exception ignored" not in proc.stderr, f"{block.id}: {_report(proc, block.code)}"
    rows = re.search(r"^rows written\s+(\d+)$", proc.stdout, re.MULTILINE)
    assert rows is not None and int(rows.group(1)) > 0, proc.stdout
    # The run wrote something below the temporary directory (a sink path relative to the cwd).
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "pipeline.yaml"]
    assert written, "the pipeline wrote no file"


def test_block_parser_honours_the_skip_mark() -> None:
    text = (
        "intro\n\n```python\nprint(1)\n```\n\n"
        "<!-- no-test -->\n```python\nprint(2)\n```\n```yaml\na: 1\n```\n"
    )
    blocks = code_blocks(text)
    assert [(b.lang, b.line, b.code, b.skipped) for b in blocks] == [
        ("python", 4, "print(1)\n", False),
        ("python", 9, "print(2)\n", True),
        ("yaml", 12, "a: 1\n", False),
    ]


# -- the connector table ---------------------------------------------------------------------------


def connector_rows(text: str) -> dict[str, str]:
    """The rows of the table in the "## Connectors" section, keyed by the name in the first cell."""
    section = re.search(r"^## Connectors\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section is not None, "README.md has no '## Connectors' section"
    rows: dict[str, str] = {}
    for line in section.group(1).splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        first = line.strip("|").split("|")[0].strip()
        rows[first.strip("`").strip()] = line
    return rows


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_every_registry_connector_is_in_the_table() -> None:
    rows = connector_rows(readme_text())
    header = _cells(next(iter(rows.values())))
    assert header[:2] == ["Connector", "Source"], header
    status_col = header.index("Status")
    for info in CONNECTORS:
        assert info.name in rows, f"connector {info.name!r} of registry.py is missing from README.md's table"
        row = rows[info.name]
        for cls in (*info.sources, *info.sinks):
            assert f"`{cls}`" in row, f"README.md's row for {info.name!r} does not name {cls}"
        status = _cells(row)[status_col]
        if info.status == "available":
            assert "planned" not in status, f"{info.name!r} is available but README.md says {status!r}"
        else:
            assert "available" not in status, f"{info.name!r} is {info.status} but README.md says {status!r}"
        if info.extra:
            assert info.extra in row, f"README.md's row for {info.name!r} does not name extra {info.extra!r}"


def test_table_lists_the_planned_connectors() -> None:
    rows = connector_rows(readme_text())
    # A system counts as listed when its name is in a row (the name column or its description).
    names = " ".join(f"{name} {row}" for name, row in rows.items())
    for system in (
        "kafka",
        "Cassandra",
        "DynamoDB",
        "Kinesis",
        "Firehose",
        "Elasticsearch",
        "OpenSearch",
        "RabbitMQ",
        "Pub/Sub",
        "Pulsar",
        "JDBC",
        "MongoDB",
        "Prometheus",
        "ActiveMQ",
        "Flume",
        "Redis",
        "MQTT",
        "NATS",
        "queue",
        "push",
        "Ray Data",
    ):
        assert system.lower() in names.lower(), f"{system} is missing from README.md's connector table"
    registered = {info.name for info in CONNECTORS}
    for name, row in rows.items():
        if name in ("Connector", *registered):
            continue
        # Anything not in the registry cannot claim to be available.
        status = _cells(row)[4]
        assert "available" not in status, f"{name!r} is not in registry.py but README.md says {status!r}"


# -- the benchmark placeholder ---------------------------------------------------------------------


def test_benchmark_placeholder_is_present_once() -> None:
    text = readme_text()
    assert text.count("<!-- BENCHMARKS:START -->") == 1
    assert text.count("<!-- BENCHMARKS:END -->") == 1
    start = text.index("<!-- BENCHMARKS:START -->")
    end = text.index("<!-- BENCHMARKS:END -->")
    assert start < end and text[start:end].count("\n") >= 2, (
        "the placeholder needs a line between its markers"
    )
    assert "python -m benchmarks" in text[end:]
