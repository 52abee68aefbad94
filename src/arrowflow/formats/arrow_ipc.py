"""Arrow IPC: a payload is one Arrow IPC *stream* (schema message, record batches, end marker).

The intended mode is batch-level: :meth:`ArrowIpc.encode_batch` turns a whole batch into one
payload and :meth:`ArrowIpc.decode_batch` turns it back, zero-copy on read. Use it for messages that
carry whole batches (one Kafka message per batch, a Pub/Sub message per batch).

The row API (:meth:`encode` / :meth:`decode`) is implemented for the :class:`Format` contract but is
slow: ``encode`` writes one stream per row (a schema message each; a Python call per row), so only
use it when a consumer really needs one message per row. ``decode`` accepts payloads of any number
of rows, so it also reads batch-level payloads: every row decoded maps to the index of the payload
it came from, and ``row_indices`` may then repeat an index.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ..config import check_choice
from ..errors import SerializationError
from .base import (
    Decoded,
    Encoded,
    Format,
    as_binary,
    check_schema,
    concat_batches,
    merge_encoded,
    sort_failures,
    valid_mask,
)

__all__ = ["ArrowIpc"]


@dataclass(frozen=True)
class ArrowIpc(Format):
    """Batches (or rows) as Arrow IPC streams. ``schema``: when given, decoded payloads must have it
    (else the first payload's schema is used); ``compression``: ``None``, ``"lz4"`` or ``"zstd"``.
    """

    schema: pa.Schema | None = None
    _: KW_ONLY
    compression: str | None = None

    name = "arrow-ipc"

    def __post_init__(self) -> None:
        check_schema("schema", self.schema, allow_none=True)
        check_choice("compression", self.compression, (None, "lz4", "zstd"))

    def encode_batch(self, batch: pa.RecordBatch) -> bytes:
        """``batch`` as one IPC stream."""
        sink = pa.BufferOutputStream()
        options = ipc.IpcWriteOptions(compression=self.compression)
        with ipc.new_stream(sink, batch.schema, options=options) as writer:
            writer.write_batch(batch)
        return sink.getvalue().to_pybytes()

    def decode_batch(self, payload: bytes | pa.Buffer) -> pa.RecordBatch:
        """The rows of one IPC stream as one batch.

        Raises :class:`SerializationError` if the payload is not an IPC stream, its schema differs
        from ``schema``, or its data fails Arrow's full validation: the IPC reader checks only buffer
        sizes, so offsets, dictionary indices and UTF-8 of untrusted bytes are checked here before
        anything (a kernel, an Arrow compute function) reads them.
        """
        try:
            reader = ipc.open_stream(pa.py_buffer(payload) if isinstance(payload, bytes) else payload)
            table = reader.read_all()
            table.validate(full=True)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            # UnicodeDecodeError: a field name that is not UTF-8 (pyarrow decodes names lazily)
            raise SerializationError(f"payload is not a valid Arrow IPC stream: {exc}") from exc
        if self.schema is not None and not table.schema.equals(self.schema):
            raise SerializationError(f"payload schema {table.schema} differs from the expected schema")
        if table.num_rows == 0:
            return pa.RecordBatch.from_pylist([], schema=table.schema)
        batches = table.to_batches()
        return batches[0] if len(batches) == 1 else table.combine_chunks().to_batches()[0]

    def encode(self, batch: pa.RecordBatch) -> Encoded:
        """One IPC stream per row (slow: see the module docstring)."""
        payloads = [self.encode_batch(batch.slice(i, 1)) for i in range(batch.num_rows)]
        good = pa.array(payloads, pa.binary())
        return Encoded(merge_encoded(batch.num_rows, np.arange(batch.num_rows, dtype=np.int64), good))

    def decode(self, payloads: pa.Array | pa.ChunkedArray) -> Decoded:
        """Every row of every payload; each output row maps to its payload's index."""
        binary = as_binary(payloads)
        valid = valid_mask(binary)
        schema = self.schema
        parts: list[pa.RecordBatch] = []
        rows: list[np.ndarray] = []
        failed: list[int] = []
        errors: list[str] = []
        for i in range(len(binary)):
            if not valid[i]:
                failed.append(i)
                errors.append("null payload")
                continue
            try:
                part = self.decode_batch(binary[i].as_buffer())
                if schema is None:
                    schema = part.schema
                elif not part.schema.equals(schema):
                    raise SerializationError(f"payload schema {part.schema} differs from the first payload's")
            except SerializationError as exc:
                failed.append(i)
                errors.append(str(exc))
                continue
            parts.append(part)
            rows.append(np.full(part.num_rows, i, dtype=np.int64))
        farr, ferr = sort_failures(failed, errors)
        batch = concat_batches(parts, schema if schema is not None else pa.schema([]))
        index = np.concatenate(rows) if rows else np.empty(0, np.int64)
        return Decoded(batch, index, farr, ferr)
