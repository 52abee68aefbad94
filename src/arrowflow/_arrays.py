"""Turning what user code returns (pyarrow, numpy, polars, pandas, lists) into Arrow arrays, and
array helpers several layers share.

Shared by the operators (:mod:`arrowflow.ops`), event time (:mod:`arrowflow.time`) and the connectors
(:func:`dedupe_last`: the SQL and Flume sinks' keep-the-last-row-per-key); imports pyarrow
and numpy only (polars/pandas values are recognised by their module, never imported).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["as_array", "dedupe_last", "is_binary_like", "to_arrow_array"]


def is_binary_like(t: pa.DataType) -> bool:
    """``t`` is binary or string, 32- or 64-bit offsets: its values are byte strings as they stand
    (a message key, a partitioning key)."""
    return (
        pa.types.is_binary(t)
        or pa.types.is_string(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_large_string(t)
    )


def as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One ``pa.Array`` for an array or a chunked array (chunks concatenated when there are several)."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return values.chunk(0)
        return values.combine_chunks() if values.num_chunks else pa.array([], type=values.type)
    return values


def to_arrow_array(values: Any, length: int, *, what: str) -> pa.Array:
    """Turn what a user callable returned (pyarrow, numpy, polars, pandas, list) into a ``pa.Array``.

    Raises ``ValueError`` naming ``what`` when the length is not ``length``.
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = as_array(values)
    elif isinstance(values, np.ndarray):
        arr = pa.array(values)
    elif hasattr(values, "to_arrow") and type(values).__module__.startswith("polars"):
        arr = as_array(values.to_arrow())
    elif type(values).__module__.startswith("pandas"):
        arr = pa.Array.from_pandas(values)
    else:
        arr = pa.array(values)
    if len(arr) != length:
        raise ValueError(f"{what} returned {len(arr)} values for a batch of {length} rows")
    return arr


def dedupe_last(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """``table`` keeping only the last row of each key (input order preserved), without a per-row loop."""
    n = table.num_rows
    if n < 2:
        return table
    idx_name = "__arrowflow_row"
    indexed = table.select(list(keys)).append_column(idx_name, pa.array(np.arange(n, dtype=np.int64)))
    last = indexed.group_by(list(keys), use_threads=False).aggregate([(idx_name, "max")])
    if last.num_rows == n:
        return table
    keep = np.sort(last.column(f"{idx_name}_max").to_numpy())
    return table.take(pa.array(keep))
