"""Fixtures the fault tests share with the connectors' own integration tests (imported, not copied),
and the fault proxy's modules (``tests/faults``) on the path."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE.parents[1] / "faults", HERE.parent / "redis", HERE.parent / "nats"):
    sys.path.insert(0, str(folder))

from test_nats import _js, stream  # noqa: E402, F401  (stream: a fresh JetStream stream, deleted after)
from test_redis import r  # noqa: E402, F401  (r: a Redis client and a key prefix, keys deleted after)
