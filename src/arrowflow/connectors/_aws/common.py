"""Small helpers shared by the AWS connectors (no I/O): vectorized pieces of the sinks and reading a
batch call's per-record outcome."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import ConfigurationError, ConnectorError
from ...formats import Encoded as EncodedPayloads
from ...writer import SubmitResult

__all__ = ["binary_payloads", "contiguous_bytes", "random_keys", "record_outcomes", "resolve_keys"]


def binary_payloads(encoded: EncodedPayloads) -> pa.Array:
    """A format's encoded payloads as one ``binary`` array."""
    payloads = encoded.payloads
    if isinstance(payloads, pa.ChunkedArray):
        payloads = payloads.combine_chunks()
    if not pa.types.is_binary(payloads.type):
        payloads = pc.cast(payloads, pa.binary())
    return payloads


def record_outcomes(
    response: Mapping[str, Any], n: int, retryable_codes: frozenset[str], *, records_key: str, failed_key: str
) -> SubmitResult:
    """Read a PutRecords / PutRecordBatch answer for ``n`` records into a :class:`SubmitResult`.

    Only a response with failures is walked record by record.
    """
    if not response.get(failed_key):
        return SubmitResult.ok()
    results = response.get(records_key) or []
    if len(results) != n:
        raise ConnectorError(f"{records_key}: {len(results)} results for {n} records", retryable=False)
    failed: list[int] = []
    errors: list[str] = []
    retryable: list[bool] = []
    for i, r in enumerate(results):
        code = r.get("ErrorCode")
        if code:
            failed.append(i)
            errors.append(f"{code}: {r.get('ErrorMessage', '')}")
            retryable.append(code in retryable_codes)
    if not failed:
        return SubmitResult.ok()
    return SubmitResult(
        failed=np.asarray(failed, dtype=np.int64), errors=errors, retryable=np.asarray(retryable, dtype=bool)
    )


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
