"""The examples of the documentation (README.md, and every page under docs/ once the site exists) as
tests: one parser and one runner for every page, used by ``tests/unit/test_readme.py`` (examples that
need nothing) and ``tests/integration/docs/test_doc_examples.py`` (examples that need servers).

A fenced ````python`` or ````yaml`` block runs unless the last non-blank line before it is a marker:

* ``<!-- needs: redis -->`` (one or more service names of ``tests/integration/conftest.py``'s
  ``SERVICES``, space-separated): the block runs in the integration suite, against the servers
  ``make test`` starts. The page writes the servers' default addresses (``127.0.0.1:6379``, or
  ``port=6379``); the runner rewrites ``127.0.0.1:<default port>``, ``localhost:<default port>`` and
  ``port=<default port>`` of each named service to the port the suite uses (its env var), so
  ``REDIS_PORT=35379`` moves the example too. A needed server that does not answer fails the test.
* ``<!-- no-test -->``: only compiled (a block that runs until stopped, or needs what no test
  machine has: name the reason next to it on the page).

Each block runs as a script in a fresh interpreter in its own temporary directory and must exit 0;
the examples assert their own results.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SKIP_MARK = "<!-- no-test -->"
NEEDS = re.compile(r"^<!--\s*needs:\s*([\w\- ]+?)\s*-->$")
#: Generous: an example takes about a second; a loaded 2-core CI machine may take several.
EXAMPLE_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    """One fenced code block: page, language, first code line (1-based), text and marker."""

    lang: str
    line: int
    code: str
    skipped: bool
    needs: tuple[str, ...] = ()
    page: str = "README.md"

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runs_without_servers(self) -> bool:
        return not self.skipped and not self.needs


def pages() -> list[Path]:
    """README.md and every Markdown page of the documentation site."""
    return [README, *sorted(DOCS.rglob("*.md"))] if DOCS.is_dir() else [README]


def code_blocks(text: str, page: str = "README.md") -> list[Block]:
    """Every fenced block (```lang ... ```) with the marker on the line before it, if any."""
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
            raise AssertionError(f"{page}:{i + 1}: unterminated code block")
        code = "\n".join(lines[start:end]) + "\n"
        needs = NEEDS.match(previous)
        blocks.append(
            Block(
                fence.group(1).lower(),
                start + 1,
                code,
                previous == SKIP_MARK,
                tuple(needs.group(1).split()) if needs else (),
                page,
            )
        )
        previous = ""
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [
        b for p in pages() for b in code_blocks(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix())
    ]


def rewrite_addresses(code: str, ports: Mapping[int, int]) -> str:
    """``127.0.0.1:<default>`` / ``localhost:<default>`` -> ``127.0.0.1:<port>``, and ``port=<default>``
    -> ``port=<port>``, for ``ports`` (default -> actual); a longer number is left alone."""
    for default, actual in ports.items():
        code = re.sub(rf"\b(?:127\.0\.0\.1|localhost):{default}(?!\d)", f"127.0.0.1:{actual}", code)
        code = re.sub(rf"\bport=\s*{default}(?!\d)", f"port={actual}", code)
    return code


def env() -> dict[str, str]:
    out = dict(os.environ)
    # Examples run as a user would run them: no inherited pytest capture or coverage settings, and
    # a fixed width so that tables print the same everywhere.
    # OUT_DIR: the YAML example's ``${OUT_DIR:-out/orders}`` must take its default (the temp dir).
    for key in ("PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS", "COV_CORE_SOURCE", "OUT_DIR"):
        out.pop(key, None)
    out["COLUMNS"] = "120"
    out["PYTHONUNBUFFERED"] = "1"
    return out


def report(proc: subprocess.CompletedProcess[str], code: str) -> str:
    numbered = "\n".join(f"{n:4d}  {line}" for n, line in enumerate(code.splitlines(), 1))
    return (
        f"exit status {proc.returncode}\n--- code ---\n{numbered}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )


def _run(
    block: Block, tmp_path: Path, code: str, file: str, argv: list[str]
) -> subprocess.CompletedProcess[str]:
    """Write ``code`` to ``tmp_path/file``, run ``argv`` there; assert exit 0 and no exception
    swallowed in the child (the suite's tripwire cannot see a child's stderr)."""
    (tmp_path / file).write_text(code, encoding="utf-8")
    proc = subprocess.run(
        argv,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        env=env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id}: {report(proc, code)}"
    assert "Exception ignored" not in proc.stderr, f"{block.id}: {report(proc, code)}"
    return proc


def run_python(block: Block, tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the block (or ``code``, its rewritten text) as a script in ``tmp_path``."""
    return _run(
        block, tmp_path, block.code if code is None else code, "example.py", [sys.executable, "example.py"]
    )


def run_yaml(block: Block, tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """Write the block to ``pipeline.yaml`` in ``tmp_path`` and run it with ``arrowflow run``."""
    argv = [sys.executable, "-m", "arrowflow", "run", "pipeline.yaml", "--no-progress"]
    return _run(block, tmp_path, block.code if code is None else code, "pipeline.yaml", argv)
