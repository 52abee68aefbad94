"""Type stubs for the compiled ``arrowflow._ext.kafka_produce`` kernel (source: ``ext/kafka_produce.pyx``)."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["produce_rows"]

def produce_rows(
    produce: Callable[..., Any],
    topic: str,
    values: pa.Array,
    keys: pa.Array | None,
    partitions: np.ndarray,
    start: int = 0,
    stop: int | None = None,
) -> tuple[int, Exception | None]:
    """Call ``produce(topic, value_bytes, key_bytes_or_None, partition)`` for rows ``start..stop``
    (``stop`` defaults to ``len(values)``; the GIL is held throughout).

    Stops at the first row whose call raises and returns ``(row, exception)`` (nothing after ``row``
    was produced); ``(stop, None)`` when all were. ``values``/``keys``: binary arrays without
    nulls (``TypeError`` otherwise); ``partitions``: int32 per row.
    """
