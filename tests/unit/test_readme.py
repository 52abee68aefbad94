"""README.md stays true: every example runs, and the connector table matches the registry.

* Every fenced ````python`` block of the documentation (README.md, docs/ pages: see
  ``tests/doc_examples.py``) runs as a script in a fresh interpreter, in its own temporary working
  directory (so examples that write files are harmless), and must exit 0. A block marked
  ``<!-- needs: SERVICE... -->`` runs in the integration suite against the servers
  (``tests/integration/docs/``) and is only compiled here; a block marked ``<!-- no-test -->`` (runs
  until stopped) is only compiled.
* Every ````yaml`` block (not marked) is a pipeline file: it is written to ``pipeline.yaml`` in a
  temporary directory and run with ``python -m arrowflow run``.
* Every connector of :mod:`arrowflow.connectors.registry` has a row in the "Connectors" table naming
  its source and sink classes; a row may not call an available connector "planned", nor call a
  registry entry "available" unless the registry does.
* The benchmark placeholder the release process fills is present exactly once.

The examples assert their own results; this test checks the exit status and shows the output of
a failing example.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from arrowflow.connectors.registry import CONNECTORS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from doc_examples import README, SKIP_MARK, Block, all_blocks, code_blocks, run_python, run_yaml

BLOCKS = all_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python" and b.runs_without_servers]
YAML = [b for b in BLOCKS if b.lang == "yaml" and b.runs_without_servers]


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


# -- the examples ----------------------------------------------------------------------------------


def test_readme_has_examples_and_few_skips() -> None:
    assert len(PYTHON) >= 15, f"only {len(PYTHON)} runnable python examples found in README.md"
    assert len(YAML) >= 1, "README.md has no runnable YAML pipeline"
    skipped = [b.id for b in BLOCKS if b.skipped]
    # Examples that need a server say which (``needs:``) and run in the integration suite; only a
    # few that run until stopped may be merely compiled.
    assert len(skipped) <= 16, f"too many examples are marked {SKIP_MARK}: {skipped}"
    assert all(b.lang in ("python", "yaml") for b in BLOCKS if b.skipped or b.needs)


def test_compiled_only_python_examples_compile() -> None:
    # A block marked no-test or needs (run elsewhere) must still be valid Python.
    for block in BLOCKS:
        if block.lang == "python" and not block.runs_without_servers:
            compile(block.code, block.id, "exec")


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs(block: Block, tmp_path: Path) -> None:
    run_python(block, tmp_path)


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_yaml_pipeline_runs_with_arrowflow_run(block: Block, tmp_path: Path) -> None:
    proc = run_yaml(block, tmp_path)
    rows = re.search(r"^rows written\s+(\d+)$", proc.stdout, re.MULTILINE)
    assert rows is not None and int(rows.group(1)) > 0, proc.stdout
    # The run wrote something below the temporary directory (a sink path relative to the cwd).
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "pipeline.yaml"]
    assert written, "the pipeline wrote no file"


def test_block_parser_honours_the_markers() -> None:
    text = (
        "intro\n\n```python\nprint(1)\n```\n\n"
        "<!-- no-test -->\n```python\nprint(2)\n```\n```yaml\na: 1\n```\n"
        "<!-- needs: redis kafka -->\n```python\nprint(3)\n```\n"
    )
    blocks = code_blocks(text)
    assert [(b.lang, b.line, b.code, b.skipped, b.needs) for b in blocks] == [
        ("python", 4, "print(1)\n", False, ()),
        ("python", 9, "print(2)\n", True, ()),
        ("yaml", 12, "a: 1\n", False, ()),
        ("python", 16, "print(3)\n", False, ("redis", "kafka")),
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
