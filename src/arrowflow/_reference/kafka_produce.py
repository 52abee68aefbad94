"""Pure-Python reference of :mod:`arrowflow._ext.kafka_produce` (a test oracle, never used at run time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa


def produce_rows(
    produce: Callable[..., Any],
    topic: str,
    values: pa.Array,
    keys: pa.Array | None,
    partitions: np.ndarray,
    start: int = 0,
    stop: int | None = None,
) -> tuple[int, Exception | None]:
    """Same contract as the kernel: rows ``start..stop`` in order, stopping at the first that raises."""
    vals = values.to_pylist()
    ks = keys.to_pylist() if keys is not None else [None] * len(vals)
    parts = [int(p) for p in partitions]
    end = len(vals) if stop is None else stop
    for i in range(start, end):
        try:
            produce(topic, vals[i], ks[i], parts[i])
        except Exception as exc:
            return i, exc
    return end, None
