"""The kernels share their plumbing (issue 17, item 6): one owned-buffer class and one Arrow buffer
address helper (``ext/_owned.pxi``), one way to start threads (``ext/_threads.h``, fork-join), and a
Python reference for every kernel (``arrowflow._reference``, the tests' oracle). A kernel that grows
its own copy of any of these fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "ext"
REFERENCE = ROOT / "src" / "arrowflow" / "_reference"
KERNELS = sorted(p.stem for p in EXT.glob("*.pyx"))
SOURCES = sorted(p for p in EXT.iterdir() if p.suffix in (".pyx", ".pxi", ".pxd", ".h"))


def test_the_kernels_are_found() -> None:
    assert len(KERNELS) >= 14 and "avro_encode" in KERNELS


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_has_a_python_reference(kernel: str) -> None:
    assert (REFERENCE / f"{kernel}.py").is_file(), f"ext/{kernel}.pyx has no arrowflow/_reference/{kernel}.py"


@pytest.mark.parametrize(
    ("pattern", "allowed", "what"),
    [
        (r"\bpthread_create\s*\(", ["_threads.h"], "starts threads (use af_fork_join)"),
        (r"^cdef\s+class\s+_Owned\b", ["_owned.pxi"], "defines an owned-buffer class (use _own)"),
        (r"^cdef\s+class\s+_OwnedMemory", [], "defines an owned-buffer class (use _own)"),
        (r"^cdef\s+inline[^\n(]*\b_addr\s*\(", ["_owned.pxi"], "defines an Arrow buffer address helper"),
    ],
)
def test_shared_plumbing_lives_in_one_file(pattern: str, allowed: list[str], what: str) -> None:
    found = [p.name for p in SOURCES if re.search(pattern, p.read_text(), re.MULTILINE)]
    assert [n for n in found if n not in allowed] == [], f"{found} {what}"
    assert all(n in found for n in allowed), f"{allowed} no longer hold what the pattern names"


def test_the_architecture_page_lists_every_kernel() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (`[a-z0-9_]+`(?:, `[a-z0-9_]+`)*) \|", text, re.MULTILINE)
    listed = sorted(name for row in rows for name in re.findall(r"`([a-z0-9_]+)`", row))
    assert listed == KERNELS
