"""The fuzz targets' deterministic smoke run (part of the suite) and the replay of the saved corpus.

For every target of ``targets.py``: each input saved under ``tests/fuzz/corpus/<target>/`` (crashes
and findings of ``make fuzz``, kept as regression inputs) runs first, then a fixed number of inputs
made from the target's seeds by the seeded mutator (``mutate.py``): the same inputs on every run.
A failure names the input (hex) so it can be replayed with ``python tests/fuzz/run.py --replay``.
``make fuzz`` runs the same targets coverage-guided with atheris for as long as asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mutate import inputs
from targets import TARGETS

CORPUS = Path(__file__).resolve().parent / "corpus"


def corpus(name: str) -> list[bytes]:
    folder = CORPUS / name
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()] if folder.is_dir() else []


def _run(name: str, data: bytes) -> None:
    try:
        TARGETS[name].run(data)
    except BaseException as exc:
        raise AssertionError(f"{name} failed on input {data.hex()}: {exc!r}") from exc


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_replays(name: str) -> None:
    saved = corpus(name)
    for data in saved:
        _run(name, data)
    # every target has seeds, and they run clean too
    seeds = TARGETS[name].seeds()
    assert seeds
    for data in seeds:
        _run(name, data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_smoke(name: str) -> None:
    target = TARGETS[name]
    count = 0
    for data in inputs(name, target.seeds() + corpus(name), target.smoke):
        _run(name, data)
        count += 1
    assert count == target.smoke
