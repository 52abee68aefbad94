"""Raw: the payload is the bytes of one binary or string column, unchanged.

A null value encodes as a null payload (a Kafka tombstone) and a null payload decodes as a null
value: neither is a failure. Decoding into a string type validates UTF-8 (vectorized); payloads
that are not valid UTF-8 fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..config import check_type
from ..errors import ConfigurationError
from .base import Decoded, Encoded, Format, as_binary, concat_batches, isolate, sort_failures

__all__ = ["Raw"]

_TYPES = (pa.binary(), pa.large_binary(), pa.string(), pa.large_string())


@dataclass(frozen=True, kw_only=True)
class Raw(Format):
    """One column (``column``, of ``type``: binary, large_binary, string or large_string) as the payload."""

    column: str = "value"
    type: pa.DataType = pa.binary()  # noqa: RUF009 - DataTypes are immutable

    name = "raw"

    def __post_init__(self) -> None:
        check_type("column", self.column, str)
        if not self.column:
            raise ConfigurationError("column must not be empty", option="column")
        if self.type not in _TYPES:
            raise ConfigurationError(
                f"type={self.type} is not allowed; use binary, large_binary, string or large_string",
                option="type",
            )

    @property
    def schema(self) -> pa.Schema:  # type: ignore[override]
        """The decoded schema: the one column."""
        return pa.schema([pa.field(self.column, self.type)])

    def encode(self, batch: pa.RecordBatch) -> Encoded:
        """The column's bytes, one payload per row (zero-copy for binary and string columns)."""
        if self.column not in batch.schema.names:
            raise ConfigurationError(f"column {self.column!r} is not in the batch", option="column")
        col = batch.column(self.column)
        try:
            payloads = as_binary(col)
        except TypeError as exc:
            raise ConfigurationError(
                f"column {self.column!r} must be binary or string for Raw, not {col.type}", option="column"
            ) from exc
        if not pa.types.is_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        return Encoded(payloads)

    def decode(self, payloads: pa.Array | pa.ChunkedArray) -> Decoded:
        """Each payload as the column's value; string types fail payloads that are not UTF-8."""
        binary = as_binary(payloads)
        n = len(binary)
        schema = self.schema

        def run(block: np.ndarray) -> pa.RecordBatch:
            # Blocks are contiguous ranges: slices, not gathers. The cast validates UTF-8.
            arr = binary.slice(int(block[0]), len(block)).cast(self.type)
            return pa.RecordBatch.from_arrays([arr], schema=schema)

        results, idx, failed, errors = isolate(np.arange(n, dtype=np.int64), run)
        rows = np.concatenate(idx).astype(np.int64) if idx else np.empty(0, np.int64)
        farr, ferr = sort_failures(failed, [f"payload is not valid for {self.type}: {e}" for e in errors])
        return Decoded(concat_batches(results, schema), rows, farr, ferr)
