"""Fixtures for the Cassandra tests (see ``cassandra_target.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cassandra_target import Target, proxy_target, real_target


@pytest.fixture(scope="session")
def cassandra(service: Callable[[str], tuple[str, int]]) -> Iterator[Target]:
    """The real Cassandra of ``tests/services/cassandra.sh`` (fails, never skips, when it is down)."""
    target = real_target(*service("cassandra"))
    yield target
    target.close()


@pytest.fixture
def cql_proxy(service: Callable[[str], tuple[str, int]]) -> Iterator[Target]:
    """The same server behind a fresh fault-injecting proxy (one per test: its faults and counters)."""
    target = proxy_target(*service("cassandra"))
    yield target
    target.close()
