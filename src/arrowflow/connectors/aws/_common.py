"""Small vectorized helpers shared by the AWS sinks (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import ConfigurationError

__all__ = ["contiguous_bytes", "random_keys", "resolve_keys"]


def contiguous_bytes(arr: pa.Array, skip: int = 0, trim: int = 0) -> bytes:
    """The data of a (sliced) binary array's entries, back to back, minus the first ``skip`` and the
    last ``trim`` bytes."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return b""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=arr.offset + n + 1)
    start, stop = int(offsets[arr.offset]) + skip, int(offsets[arr.offset + n]) - trim
    data = arr.buffers()[2]
    return data.slice(start, stop - start).to_pybytes()


def random_keys(n: int) -> pa.Array:
    """``n`` random partition keys (decimal strings of 62-bit integers), spreading rows over shards."""
    rng = np.random.default_rng()
    return pc.cast(pa.array(rng.integers(0, 2**62, n, dtype=np.int64)), pa.string())


def resolve_keys(
    batch: pa.RecordBatch,
    *,
    column: str | None,
    function: Callable[[pa.RecordBatch], Any] | None,
    option: str,
) -> pa.Array:
    """Partition keys for ``batch``: a column cast to string, a function's result, or random keys."""
    if column is not None:
        if column not in batch.schema.names:
            raise ConfigurationError(
                f"{option}={column!r} is not a column of the batch {batch.schema.names}", option=option
            )
        keys = batch.column(column)
    elif function is not None:
        keys = function(batch)
        if not isinstance(keys, (pa.Array, pa.ChunkedArray)):
            keys = pa.array(keys)
        if len(keys) != batch.num_rows:
            raise ConfigurationError(
                f"{option} returned {len(keys)} keys for {batch.num_rows} rows", option=option
            )
    else:
        return random_keys(batch.num_rows)
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if pa.types.is_dictionary(keys.type):
        keys = pc.cast(keys, keys.type.value_type)
    if not pa.types.is_string(keys.type):
        if (
            pa.types.is_large_string(keys.type)
            or pa.types.is_string_view(keys.type)
            or pa.types.is_binary(keys.type)
            or pa.types.is_large_binary(keys.type)
        ):
            keys = pc.cast(keys, pa.string())
        else:
            keys = pc.cast(keys, pa.string())
    return keys
