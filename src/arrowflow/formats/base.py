"""The row-codec contract shared by every format, and the error-policy helpers connectors call.

A :class:`Format` converts between a ``pyarrow.RecordBatch`` and one payload per row (what a Kafka
message value, an AMQP body or a Pub/Sub ``data`` field holds):

* ``encode(batch) -> Encoded``: ``payloads`` has exactly ``batch.num_rows`` entries; entry ``i`` is row
  ``i``'s payload, or null when row ``i`` could not be encoded, in which case ``i`` is in ``failed``
  and the matching message is in ``errors`` (same order).
* ``decode(payloads) -> Decoded``: ``batch`` holds the rows of the payloads that decoded, in payload
  order; ``row_indices[j]`` is the index into ``payloads`` of output row ``j``; every other payload
  index is in ``failed`` with its message in ``errors``. ``len(row_indices) + len(failed) ==
  len(payloads)`` always: nothing is dropped or invented.

Neither method raises for bad data; a bad *configuration* raises :class:`ConfigurationError` when
the format is built. :func:`decode_with_policy` / :func:`encode_with_policy` hand the failures to an
:class:`~arrowflow.error_policy.ErrorPolicy` (raise, count, or dead-letter).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ConfigurationError

__all__ = [
    "Decoded",
    "Encoded",
    "Format",
    "decode_with_policy",
    "encode_with_policy",
]

_INDEX = np.dtype(np.int64)


def _empty_index() -> np.ndarray:
    return np.empty(0, dtype=_INDEX)


@dataclass(frozen=True)
class Encoded:
    """The result of :meth:`Format.encode`. See the module docstring."""

    payloads: pa.Array
    failed: np.ndarray = field(default_factory=_empty_index)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        """Indices of the rows that encoded (ascending)."""
        mask = np.ones(len(self.payloads), dtype=bool)
        mask[self.failed] = False
        return np.flatnonzero(mask).astype(_INDEX)


@dataclass(frozen=True)
class Decoded:
    """The result of :meth:`Format.decode`. See the module docstring."""

    batch: pa.RecordBatch
    row_indices: np.ndarray
    failed: np.ndarray = field(default_factory=_empty_index)
    errors: list[str] = field(default_factory=list)


class Format(ABC):
    """A row codec between a batch and one payload per row.

    Subclasses are frozen keyword-only dataclasses validated in ``__post_init__``. ``schema`` is the
    decoded schema (``None`` where the format infers it from the data).
    """

    #: The name :func:`arrowflow.formats.for_name` knows this format by.
    name: str = "format"
    schema: pa.Schema | None

    @abstractmethod
    def encode(self, batch: pa.RecordBatch) -> Encoded:
        """One payload per row of ``batch``; failed rows are null and listed in ``failed``."""

    @abstractmethod
    def decode(self, payloads: pa.Array | pa.ChunkedArray) -> Decoded:
        """Decode one message per entry of ``payloads`` (binary, large_binary, string or large_string)."""


# --------------------------------------------------------------------------------------------------
# Payload arrays as numpy views


def as_binary(payloads: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``payloads`` as a (large_)binary array without copying the data buffer.

    Raises :class:`TypeError` for any other type: what a message carries is bytes.
    """
    if isinstance(payloads, pa.ChunkedArray):
        payloads = payloads.combine_chunks() if payloads.num_chunks != 1 else payloads.chunk(0)
    if not isinstance(payloads, pa.Array):
        raise TypeError(f"payloads must be a pyarrow Array, got {type(payloads).__name__}")
    t = payloads.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return payloads
    if pa.types.is_string(t):
        return payloads.view(pa.binary())
    if pa.types.is_large_string(t):
        return payloads.view(pa.large_binary())
    if pa.types.is_binary_view(t) or pa.types.is_string_view(t):
        return payloads.cast(pa.large_binary())
    raise TypeError(f"payloads must be binary or string, got {t}")


def offsets_and_data(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The int64 offsets (``len(arr) + 1``, starting wherever the slice starts) and the byte buffer."""
    bufs = arr.buffers()
    dtype = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    n = len(arr)
    if bufs[1] is None:
        offsets = np.zeros(n + 1, dtype=np.int64)
    else:
        offsets = np.frombuffer(bufs[1], dtype=dtype)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.empty(0, np.uint8)
    return offsets, data


def valid_mask(arr: pa.Array) -> np.ndarray:
    """A numpy bool array, True where ``arr`` is not null."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def join_lines(arr: pa.Array) -> bytes:
    """Every entry of the binary array ``arr`` followed by ``\\n``, as one buffer (nulls as empty)."""
    offsets, data = offsets_and_data(arr)
    if len(arr) == 0:
        return b""
    seg = data[offsets[0] : offsets[-1]]
    # np.insert places the separator *before* each given index; the end offsets put one after each
    # payload, and several equal indices (empty payloads) insert several separators.
    return np.insert(seg, offsets[1:] - offsets[0], np.uint8(10)).tobytes()


# --------------------------------------------------------------------------------------------------
# Isolating bad entries by bisection

_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    pa.ArrowException,
    ValueError,
    TypeError,
    OverflowError,
    UnicodeError,
    KeyError,
    IndexError,
)


def isolate(
    indices: np.ndarray,
    run: Callable[[np.ndarray], Any],
    catch: tuple[type[BaseException], ...] = _DECODE_ERRORS,
) -> tuple[list[Any], list[np.ndarray], list[int], list[str]]:
    """Run ``run`` over ``indices`` as one block; on failure split it in halves until single bad
    indices are isolated.

    Returns ``(results, result_indices, failed, errors)`` in index order. ``run`` must raise one of
    the decode errors (Arrow, value, type, unicode ...) when any entry of its block is bad. The
    common path (no bad entry) is one call; each bad entry costs ``O(log n)`` more calls.
    """
    results: list[Any] = []
    result_idx: list[np.ndarray] = []
    failed: list[int] = []
    errors: list[str] = []
    # An explicit stack keeps the index order without recursion-depth limits.
    stack = [indices]
    while stack:
        block = stack.pop()
        if len(block) == 0:
            continue
        try:
            results.append(run(block))
            result_idx.append(block)
        except catch as exc:
            if len(block) == 1:
                failed.append(int(block[0]))
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                mid = len(block) // 2
                stack.append(block[mid:])
                stack.append(block[:mid])
    return results, result_idx, failed, errors


def sort_failures(failed: Sequence[int], errors: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``failed`` as an ascending int64 array, with ``errors`` permuted alongside."""
    arr = np.asarray(failed, dtype=_INDEX)
    if len(arr) == 0:
        return _empty_index(), []
    order = np.argsort(arr, kind="stable")
    return arr[order], [errors[i] for i in order]


def concat_batches(batches: Sequence[pa.RecordBatch | pa.Table], schema: pa.Schema) -> pa.RecordBatch:
    """One batch of ``schema`` from ``batches`` (tables or batches), in order."""
    parts: list[pa.RecordBatch] = []
    for b in batches:
        if isinstance(b, pa.Table):
            parts.extend(b.to_batches())
        else:
            parts.append(b)
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return pa.RecordBatch.from_pylist([], schema=schema)
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts, schema=schema).combine_chunks().to_batches()[0]


def null_payloads(n: int) -> pa.Array:
    """A binary array of ``n`` nulls."""
    return pa.nulls(n, pa.binary())


def merge_encoded(n: int, ok: np.ndarray, good: pa.Array) -> pa.Array:
    """A binary array of length ``n`` holding ``good[j]`` at ``ok[j]`` and null elsewhere."""
    if len(ok) == n:
        return good
    # Build the index into ``good`` per output row (-> null where the row failed) and take with it:
    # a single vectorized gather.
    take = np.full(n, -1, dtype=np.int64)
    take[ok] = np.arange(len(ok), dtype=np.int64)
    indices = pa.array(take, mask=take < 0)
    return good.take(indices)


def check_schema(option: str, schema: Any, *, allow_none: bool = False) -> None:
    """Raise :class:`ConfigurationError` unless ``schema`` is a ``pa.Schema``."""
    if schema is None and allow_none:
        return
    if not isinstance(schema, pa.Schema):
        raise ConfigurationError(
            f"{option} must be a pyarrow.Schema, got {type(schema).__name__}", option=option
        )


# --------------------------------------------------------------------------------------------------
# Error policy helpers


def decode_with_policy(
    fmt: Format,
    payloads: pa.Array | pa.ChunkedArray,
    policy: ErrorPolicyLike,
    metadata: pa.RecordBatch | Callable[[], pa.RecordBatch] | None = None,
) -> tuple[pa.RecordBatch, np.ndarray]:
    """Decode ``payloads`` and give every payload that failed to ``policy``.

    The failed payloads go to the policy as one batch: a ``payload`` binary column, then the
    ``metadata`` columns of those rows (``metadata`` must have one row per payload; a function
    returning it is called only when a payload failed), then the policy's error column. With
    ``"fail"`` this raises :class:`~arrowflow.errors.SerializationError` naming the first error.
    Returns the good rows and, per good row, its index into ``payloads`` (use it to take the
    matching metadata rows).
    """
    resolved = ErrorPolicy.resolve(policy)

    def rows_of(meta: pa.RecordBatch) -> pa.RecordBatch:
        if meta.num_rows != len(payloads):
            raise ValueError(f"metadata has {meta.num_rows} rows for {len(payloads)} payloads")
        return meta

    if isinstance(metadata, pa.RecordBatch):
        rows_of(metadata)
    decoded = fmt.decode(payloads)
    if len(decoded.failed):
        meta_rows = rows_of(metadata()) if callable(metadata) else metadata
        binary = as_binary(payloads)
        idx = pa.array(decoded.failed, pa.int64())
        bad = binary.take(idx)
        if pa.types.is_large_binary(bad.type):
            bad = bad.cast(pa.binary())
        arrays = [bad]
        fields = [pa.field("payload", pa.binary())]
        if meta_rows is not None:
            meta = meta_rows.take(idx)
            arrays.extend(meta.columns)
            fields.extend(meta.schema)
        rows = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
        resolved.handle(rows, decoded.errors)
    return decoded.batch, decoded.row_indices


def encode_with_policy(
    fmt: Format, batch: pa.RecordBatch, policy: ErrorPolicyLike
) -> tuple[pa.Array, np.ndarray]:
    """Encode ``batch`` and give every row that failed (its own columns) to ``policy``.

    Returns the payloads of the good rows (no nulls introduced by failures) and their row indices
    into ``batch``.
    """
    resolved = ErrorPolicy.resolve(policy)
    encoded = fmt.encode(batch)
    ok = encoded.ok
    if len(encoded.failed):
        resolved.handle(batch.take(pa.array(encoded.failed, pa.int64())), encoded.errors)
        payloads = encoded.payloads.take(pa.array(ok, pa.int64()))
    else:
        payloads = encoded.payloads
    return payloads, ok


def filter_rows(batch: pa.RecordBatch, mask: np.ndarray) -> pa.RecordBatch:
    """The rows of ``batch`` where ``mask`` is True."""
    if mask.all():
        return batch
    return batch.filter(pa.array(mask))


def is_null_or_empty(arr: pa.Array) -> np.ndarray:
    """True where a binary entry is null or has length 0."""
    lengths = pc.binary_length(arr).fill_null(0)
    return np.asarray(lengths.to_numpy(zero_copy_only=False)) == 0
