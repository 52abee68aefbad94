"""Fixtures for the Cassandra tests (see ``cassandra_target.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cassandra_target import Target, start_target


@pytest.fixture(scope="session")
def cassandra() -> Iterator[Target]:
    """The server under test: real Cassandra with ``ARROWFLOW_CASSANDRA_HOSTS``, else the test server."""
    target = start_target()
    yield target
    target.close()


@pytest.fixture(scope="session")
def cql_server() -> Iterator[Target]:
    """Always the protocol test server (for tests that inject faults)."""
    target = start_target(force_test_server=True)
    yield target
    target.close()
