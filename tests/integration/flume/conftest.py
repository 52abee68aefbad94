"""The Flume suite's agent fixture: the real Apache Flume agent of ``tests/services/flume.sh``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flume_agent import FlumeAgent


@pytest.fixture(scope="session")
def agent(service: Callable[[str], tuple[str, int]]) -> FlumeAgent:
    """The running agent; fails (never skips) when one of its four sources does not answer."""
    for name in ("flume", "flume-http", "flume-reject-avro", "flume-reject-http"):
        service(name)
    return FlumeAgent()
