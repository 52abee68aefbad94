"""CSV: one CSV record per payload.

Encoding writes the whole batch with ``pyarrow.csv.write_csv`` (strings quoted, ``"`` doubled) and
cuts the output at every newline outside quotes, found with numpy over the buffer: a string value
holding a newline stays quoted inside its payload. No payload carries a trailing newline.

Decoding strips one trailing ``\\n`` / ``\\r\\n`` per payload, joins the payloads with newlines and
parses them with ``pyarrow.csv.read_csv`` against the schema's types; a payload that is not exactly
one record of the schema fails, isolated by bisection (one parse in the common path). Nulls: an
unquoted empty field is null, a quoted empty field (``""``) is the empty string, so string nulls
round-trip. ``header=True`` puts the header line in front of every payload on encode and expects
(and checks) it on decode.

Only flat columns of primitive, string, decimal, date and timestamp types are supported; binary and
nested types raise :class:`ConfigurationError` at construction (use ``Json`` or ``Avro``).
"""

from __future__ import annotations

import io
from dataclasses import KW_ONLY, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_type
from ..errors import ConfigurationError
from .base import (
    Decoded,
    Encoded,
    Format,
    as_binary,
    check_schema,
    concat_batches,
    isolate,
    join_lines,
    merge_encoded,
    offsets_and_data,
    sort_failures,
    valid_mask,
)

__all__ = ["Csv"]


def _supported(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_decimal(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_null(t)
    )


@dataclass(frozen=True)
class Csv(Format):
    """Rows as CSV records against ``schema``. See the module docstring."""

    schema: pa.Schema
    _: KW_ONLY
    delimiter: str = ","
    header: bool = False
    threads: bool = True

    name = "csv"

    def __post_init__(self) -> None:
        check_schema("schema", self.schema)
        check_type("delimiter", self.delimiter, str)
        if len(self.delimiter) != 1 or self.delimiter in '"\r\n':
            raise ConfigurationError(
                "delimiter must be one character other than a quote or a newline", option="delimiter"
            )
        check_type("header", self.header, bool)
        check_type("threads", self.threads, bool)
        if len(self.schema) == 0:
            raise ConfigurationError("schema must have at least one field", option="schema")
        for f in self.schema:
            if not _supported(f.type):
                raise ConfigurationError(
                    f"Csv cannot hold field {f.name!r} of type {f.type}; use Json or Avro", option="schema"
                )

    def _header_line(self) -> bytes:
        import pyarrow.csv as pcsv

        out = io.BytesIO()
        empty = pa.RecordBatch.from_pylist([], schema=self.schema)
        pcsv.write_csv(empty, out, pcsv.WriteOptions(include_header=True, delimiter=self.delimiter))
        return out.getvalue()

    # -- encode ------------------------------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> Encoded:
        """One CSV record per row of ``batch`` (its columns named by the schema, in schema order)."""
        import pyarrow.csv as pcsv

        missing = [c for c in self.schema.names if c not in batch.schema.names]
        if missing:
            raise ConfigurationError(f"columns {missing} are not in the batch", option="schema")
        n = batch.num_rows
        selected = batch.select(self.schema.names)
        options = pcsv.WriteOptions(include_header=False, delimiter=self.delimiter)

        def run(block: np.ndarray) -> pa.Array:
            part = selected.slice(int(block[0]), len(block))
            out = io.BytesIO()
            pcsv.write_csv(part, out, options)
            return _split_records(out.getvalue(), len(block))

        results, idx, failed, errors = isolate(np.arange(n, dtype=np.int64), run)
        payloads = (
            (results[0] if len(results) == 1 else pa.concat_arrays(results))
            if results
            else pa.array([], pa.binary())
        )
        if self.header and len(payloads):
            payloads = pc.binary_join_element_wise(pa.scalar(self._header_line(), pa.binary()), payloads, b"")
        ok = np.concatenate(idx).astype(np.int64) if idx else np.empty(0, np.int64)
        farr, ferr = sort_failures(failed, errors)
        return Encoded(merge_encoded(n, ok, payloads), farr, ferr)

    # -- decode ------------------------------------------------------------------------------------

    def decode(self, payloads: pa.Array | pa.ChunkedArray) -> Decoded:
        """Parse each payload as one CSV record of the schema. See the module docstring."""
        import pyarrow.csv as pcsv

        binary = as_binary(payloads)
        n = len(binary)
        failed: list[int] = []
        errors: list[str] = []
        valid = valid_mask(binary)
        for i in np.flatnonzero(~valid):
            failed.append(int(i))
            errors.append("null payload")
        body, ok_header = _strip(binary, self._header_line() if self.header else None)
        for i in np.flatnonzero(valid & ~ok_header):
            failed.append(int(i))
            errors.append("payload does not start with the expected header line")
        cand = np.flatnonzero(valid & ok_header).astype(np.int64)
        offsets, data = offsets_and_data(body)
        seg = data[offsets[0] : offsets[-1]] if n else data[:0]
        multiline = bool(np.any((seg == 10) | (seg == 13)))
        max_len = int(np.diff(offsets).max()) if n else 0
        read_schema = pa.schema([pa.field(f.name, f.type) for f in self.schema])

        def run(block: np.ndarray) -> pa.RecordBatch:
            buf = pa.py_buffer(join_lines(body.take(pa.array(block))))
            table = pcsv.read_csv(
                pa.BufferReader(buf),
                read_options=pcsv.ReadOptions(
                    column_names=self.schema.names,
                    use_threads=self.threads,
                    block_size=max(1 << 20, max_len + 16),
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=self.delimiter, newlines_in_values=multiline, ignore_empty_lines=False
                ),
                convert_options=pcsv.ConvertOptions(
                    column_types=read_schema,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
            if table.num_rows != len(block):
                raise ValueError("payload holds more than one CSV record")
            out = pa.RecordBatch.from_arrays(
                [table.column(i).combine_chunks() for i in range(table.num_columns)], schema=read_schema
            )
            for i, f in enumerate(self.schema):
                if not f.nullable and out.column(i).null_count:
                    raise ValueError(f"field {f.name!r} is null")
            return out.cast(self.schema) if out.schema != self.schema else out

        results, idx, bfailed, berrors = isolate(cand, run)
        failed.extend(bfailed)
        errors.extend(berrors)
        rows = np.concatenate(idx).astype(np.int64) if idx else np.empty(0, np.int64)
        farr, ferr = sort_failures(failed, errors)
        return Decoded(concat_batches(results, self.schema), rows, farr, ferr)


def _split_records(text: bytes, expected: int) -> pa.Array:
    """Cut ``write_csv`` output into one binary entry per record, newlines inside quotes kept."""
    data = np.frombuffer(text, dtype=np.uint8)
    inside = (np.cumsum(data == ord('"'), dtype=np.int64) & 1).astype(bool)
    ends = np.flatnonzero((data == 10) & ~inside)
    if len(ends) != expected:
        raise ValueError(f"CSV writer produced {len(ends)} records for {expected} rows")
    keep = np.ones(len(data), dtype=bool)
    keep[ends] = False
    starts = np.concatenate(([0], ends[:-1] + 1)) if expected else np.empty(0, np.int64)
    offsets = np.zeros(expected + 1, dtype=np.int32)
    np.cumsum(ends - starts, out=offsets[1:])
    body = data[keep].tobytes()
    return pa.BinaryArray.from_buffers(
        pa.binary(), expected, [None, pa.py_buffer(offsets), pa.py_buffer(body)]
    )


def _strip(binary: pa.Array, header: bytes | None) -> tuple[pa.Array, np.ndarray]:
    """Remove one trailing ``\\n``/``\\r\\n`` per payload and, with ``header``, the header line.

    Returns the new payloads (same length, nulls as empty) and a mask of payloads whose header was
    present (all True without ``header``).
    """
    offsets, data = offsets_and_data(binary)
    n = len(binary)
    starts = offsets[:-1].copy()
    ends = offsets[1:].copy()
    ok = np.ones(n, dtype=bool)
    if n == 0:
        return pa.array([], pa.binary()), ok
    # Null slots may point anywhere: give them an empty range.
    valid = valid_mask(binary)
    ends[~valid] = starts[~valid]
    if len(data) == 0:
        data = np.zeros(1, dtype=np.uint8)  # every payload empty: nothing to strip, nothing to index
    has_nl = (ends > starts) & (data[np.maximum(ends - 1, 0)] == 10)
    ends[has_nl] -= 1
    has_cr = (ends > starts) & has_nl & (data[np.maximum(ends - 1, 0)] == 13)
    ends[has_cr] -= 1
    if header is not None:
        h = np.frombuffer(header, dtype=np.uint8)
        long_enough = ends - starts >= len(h)
        probe = np.flatnonzero(long_enough)
        if len(probe):
            window = data[starts[probe, None] + np.arange(len(h))[None, :]]
            match = np.all(window == h[None, :], axis=1)
            ok[probe[~match]] = False
        ok[~long_enough] = False
        starts[ok] += len(h)
    lengths = np.where(ok, ends - starts, 0)
    # Gather the kept ranges in one pass: mark range starts/ends in a difference array.
    delta = np.zeros(len(data) + 1, dtype=np.int64)
    np.add.at(delta, starts[lengths > 0], 1)
    np.add.at(delta, ends[lengths > 0], -1)
    keep = np.cumsum(delta[:-1]) > 0
    body = data[keep].tobytes()
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    out = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(new_offsets), pa.py_buffer(body)]
    )
    return out, ok
