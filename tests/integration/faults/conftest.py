"""Fixtures the fault tests share with the connectors' own integration tests (imported, not copied),
and the fault proxy's modules (``tests/faults``) on the path."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
for folder in (
    HERE.parents[1] / "faults",
    HERE.parent / "redis",
    HERE.parent / "nats",
    HERE.parent / "search",
    HERE.parent / "aws",
    HERE.parent / "kafka",
    HERE.parent / "rabbitmq",
):
    sys.path.insert(0, str(folder))

from proxy import FaultProxy  # noqa: E402
from test_nats import _js, stream  # noqa: E402, F401  (stream: a fresh JetStream stream, deleted after)
from test_rabbitmq import queue  # noqa: E402, F401  (queue: a fresh durable queue, deleted after)
from test_redis import r  # noqa: E402, F401  (r: a Redis client and a key prefix, keys deleted after)


@pytest.fixture
def proxy(request: pytest.FixtureRequest, service: Callable[[str], Any]) -> Iterator[FaultProxy]:
    """A fault proxy in front of the server the test module names in ``SERVICE``, listening on the
    module's ``PROXY_PORT`` if it has one (a Kafka listener advertises that port), else any port."""
    port = getattr(request.module, "PROXY_PORT", 0)
    with FaultProxy(service(request.module.SERVICE), listen_port=port) as p:
        yield p
