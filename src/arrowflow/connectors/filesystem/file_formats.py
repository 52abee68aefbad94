"""Batch-level file formats of the FileSystem connector: Parquet, Arrow IPC (Feather v2), CSV, NDJSON, text.

Every format is a :class:`FileFormat` with two halves:

* :meth:`FileFormat.open_reader` returns an iterator of ``RecordBatch`` es over one file (or, for Parquet,
  some of its row groups) that *starts after* ``skip`` rows. Parquet and Arrow IPC seek: whole row
  groups / record batches before ``skip`` are never decoded (their row counts come from metadata);
  CSV, NDJSON and text are read streaming and the first ``skip`` rows are dropped by slicing decoded
  blocks (no per-row Python work). Reads block on the file system only.
* :meth:`FileFormat.open_writer` returns a :class:`FileWriter` that appends batches to an output stream
  and reports the bytes written so far (for size-based rolling). ``close`` finishes the file (footer,
  buffered row group) and closes the stream; after a failure the partial file is garbage and the caller
  deletes it.

Text files hold one string column (``line`` unless the schema names another): reading splits on ``\\n``
(a trailing ``\\r`` is dropped) with numpy over the raw bytes; writing joins the values with ``\\n``
(nulls become empty lines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ...errors import ConfigurationError, SerializationError

__all__ = [
    "FORMAT_ALIASES",
    "FileFormat",
    "FileWriter",
    "file_format",
]

#: Bytes read per block by the streaming readers (CSV, NDJSON, text).
BLOCK_SIZE = 1 << 20


class FileWriter:
    """Appends batches to one file. Not thread-safe; ``close`` is idempotent."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.rows = 0
        self._closed = False

    def write(self, batch: pa.RecordBatch) -> None:
        self._write(batch)
        self.rows += batch.num_rows

    def _write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    @property
    def bytes_written(self) -> int:
        """Bytes in the file so far, including data a writer still buffers (an estimate then)."""
        return int(self.stream.tell())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
        finally:
            self.stream.close()

    def _finish(self) -> None:
        """Write the footer / buffered data (the stream is closed afterwards)."""


class _ParquetWriter(FileWriter):
    """Buffers small batches into row groups of ``row_group_size`` rows (tiny row groups read slowly)."""

    def __init__(self, stream: Any, schema: pa.Schema, compression: Any, options: Mapping[str, Any]) -> None:
        import pyarrow.parquet as pq

        super().__init__(stream)
        opts = dict(options)
        self.row_group_size = int(opts.pop("row_group_size", 1 << 20))
        self._writer = pq.ParquetWriter(
            stream, schema, compression="snappy" if compression is None else compression, **opts
        )
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    def _write(self, batch: pa.RecordBatch) -> None:
        self._buffer.append(batch)
        self._buffered_rows += batch.num_rows
        self._buffered_bytes += batch.nbytes
        if self._buffered_rows >= self.row_group_size:
            self._drain()

    def _drain(self) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer)
        self._buffer, self._buffered_rows, self._buffered_bytes = [], 0, 0
        self._writer.write_table(table, row_group_size=self.row_group_size)

    @property
    def bytes_written(self) -> int:
        return int(self.stream.tell()) + self._buffered_bytes

    def _finish(self) -> None:
        self._drain()
        self._writer.close()


class _IpcWriter(FileWriter):
    def __init__(self, stream: Any, schema: pa.Schema, compression: Any, options: Mapping[str, Any]) -> None:
        import pyarrow.ipc as ipc

        super().__init__(stream)
        write_options = ipc.IpcWriteOptions(compression=compression, **dict(options))
        self._writer = ipc.new_file(stream, schema, options=write_options)

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def _finish(self) -> None:
        self._writer.close()


class _CsvWriter(FileWriter):
    def __init__(self, stream: Any, schema: pa.Schema, compression: Any, options: Mapping[str, Any]) -> None:
        import pyarrow.csv as pacsv

        super().__init__(stream)
        self._writer = pacsv.CSVWriter(stream, schema, write_options=pacsv.WriteOptions(**dict(options)))

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def _finish(self) -> None:
        self._writer.close()


class _NdjsonWriter(FileWriter):
    """One JSON object per line through the compiled JSON kernel (``writer_options`` go to it)."""

    def __init__(self, stream: Any, schema: pa.Schema, compression: Any, options: Mapping[str, Any]) -> None:
        from ..._ext import load

        super().__init__(stream)
        self._encode = load("json_encode").encode_ndjson
        self._options = {"nan": "null", **dict(options)}

    def _write(self, batch: pa.RecordBatch) -> None:
        try:
            buf = self._encode(batch, **self._options)
        except ValueError as exc:
            raise SerializationError(f"ndjson: {exc}") from exc
        self.stream.write(buf)


def _text_column(batch: pa.RecordBatch) -> pa.Array:
    if batch.num_columns != 1 or not (
        pa.types.is_string(batch.schema.field(0).type) or pa.types.is_large_string(batch.schema.field(0).type)
    ):
        raise SerializationError(
            f"text format needs batches of exactly one string column, got {batch.schema.names} "
            f"({[str(t) for t in batch.schema.types]})"
        )
    return batch.column(0)


def encode_lines(arr: pa.Array) -> bytes | np.ndarray:
    """The values of a string array, each followed by ``\\n`` (nulls as empty lines), vectorized."""
    n = len(arr)
    if n == 0:
        return b""
    if arr.null_count:
        arr = arr.fill_null("")
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=width, count=n + 1 + arr.offset)[arr.offset :].astype(np.int64)
    lengths = np.diff(offsets)
    data = (
        np.frombuffer(bufs[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        if bufs[2] is not None
        else np.empty(0, np.uint8)
    )
    out = np.empty(len(data) + n, dtype=np.uint8)
    newline_at = np.cumsum(lengths + 1) - 1
    is_data = np.ones(len(out), dtype=bool)
    is_data[newline_at] = False
    out[newline_at] = 10
    out[is_data] = data
    return out


class _TextWriter(FileWriter):
    def __init__(self, stream: Any, schema: pa.Schema, compression: Any, options: Mapping[str, Any]) -> None:
        super().__init__(stream)
        _text_column(pa.RecordBatch.from_pylist([], schema=schema))

    def _write(self, batch: pa.RecordBatch) -> None:
        out = encode_lines(_text_column(batch))
        self.stream.write(pa.py_buffer(out))


# -- readers ----------------------------------------------------------------------------------------


def _skip_rows(batches: Iterator[pa.RecordBatch], skip: int) -> Iterator[pa.RecordBatch]:
    """Drop the first ``skip`` rows of a batch stream by slicing."""
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        if skip:
            batch = batch.slice(skip)
            skip = 0
        yield batch


def _split_lines(data: np.ndarray, name: str) -> pa.RecordBatch:
    """Complete lines (``data`` ends after a ``\\n`` or at end of file) to a one-column batch."""
    newlines = np.flatnonzero(data == 10)
    ends = newlines
    if len(data) and data[-1] != 10:
        ends = np.append(newlines, len(data))  # last line without a newline
    starts = np.concatenate(([0], newlines + 1))[: len(ends)]
    has_cr = np.zeros(len(ends), dtype=bool)
    nonempty = ends > starts
    has_cr[nonempty] = data[ends[nonempty] - 1] == 13
    ends = ends - has_cr
    keep = np.ones(len(data), dtype=bool)
    keep[newlines] = False
    keep[ends[has_cr]] = False
    values = data[keep]
    lengths = ends - starts
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if len(values) < 2**31 - 1:
        arr = pa.StringArray.from_buffers(
            len(lengths), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(values)
        )
    else:  # pragma: no cover - >2 GiB of text in one block cannot happen with BLOCK_SIZE
        arr = pa.LargeStringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(values))
    try:
        arr.validate(full=True)  # the bytes must be UTF-8
    except pa.ArrowInvalid as exc:
        raise SerializationError(f"text: a line is not valid UTF-8 ({exc})") from exc
    return pa.record_batch([arr], names=[name])


def _iter_text(stream: Any, name: str, block_size: int) -> Iterator[pa.RecordBatch]:
    carry = np.empty(0, dtype=np.uint8)
    while True:
        chunk = stream.read(block_size)
        if not chunk:
            break
        data = np.frombuffer(chunk, dtype=np.uint8)
        if len(carry):
            data = np.concatenate((carry, data))
        last = np.flatnonzero(data == 10)
        if not len(last):
            carry = data.copy()
            continue
        cut = int(last[-1]) + 1
        carry = data[cut:].copy()
        yield _split_lines(data[:cut], name)
    if len(carry):
        yield _split_lines(carry, name)


# -- the formats ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFormat:
    """One file format: its canonical name, default file suffix and reader/writer."""

    name: str
    suffix: str

    def open_writer(
        self,
        stream: Any,
        schema: pa.Schema,
        *,
        compression: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> FileWriter:
        """A writer of ``schema`` batches into ``stream`` (a pyarrow output stream it will close)."""
        cls = _WRITERS[self.name]
        try:
            return cls(stream, schema, compression, options or {})
        except TypeError as exc:
            stream.close()
            raise ConfigurationError(f"writer_options: {exc}", option="writer_options") from exc

    def open_reader(
        self,
        fs: Any,
        path: str,
        *,
        schema: pa.Schema | None,
        columns: Sequence[str] | None,
        batch_size: int,
        skip: int,
        row_groups: Sequence[int] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Batches of the file at ``path`` on pyarrow file system ``fs``, after the first ``skip`` rows.

        ``columns`` projects the file's columns (Parquet reads only those); ``schema`` fixes the types
        of text formats (else inferred from the first block of each file). ``row_groups`` restricts a
        Parquet read to those row groups, ``skip`` then counts rows within them.
        """
        if self.name == "parquet":
            return self._read_parquet(fs, path, columns, batch_size, skip, row_groups)
        if self.name == "arrow":
            return self._read_ipc(fs, path, columns, skip)
        if self.name == "csv":
            return self._read_csv(fs, path, schema, columns, skip)
        if self.name == "ndjson":
            return self._read_ndjson(fs, path, schema, columns, skip)
        name = schema.names[0] if schema is not None and len(schema) == 1 else "line"
        stream = fs.open_input_stream(path)
        return _closing(_skip_rows(_iter_text(stream, name, BLOCK_SIZE), skip), stream)

    @staticmethod
    def _read_parquet(
        fs: Any,
        path: str,
        columns: Sequence[str] | None,
        batch_size: int,
        skip: int,
        row_groups: Sequence[int] | None,
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        f = fs.open_input_file(path)
        pf = pq.ParquetFile(f)
        groups = list(range(pf.num_row_groups)) if row_groups is None else list(row_groups)
        # Row-group-aware seek: whole groups before the position are never read.
        while groups and skip >= pf.metadata.row_group(groups[0]).num_rows:
            skip -= pf.metadata.row_group(groups[0]).num_rows
            groups.pop(0)
        if not groups:
            f.close()
            return iter(())
        it = pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=columns, use_threads=False)
        return _closing(_skip_rows(it, skip), f)

    @staticmethod
    def _read_ipc(fs: Any, path: str, columns: Sequence[str] | None, skip: int) -> Iterator[pa.RecordBatch]:
        import pyarrow.ipc as ipc

        f = fs.open_input_file(path)
        try:
            reader = ipc.open_file(f)
        except pa.ArrowInvalid:
            # Not the IPC *file* format: read it as an IPC stream (no random access).
            f.seek(0)
            stream_reader = ipc.open_stream(f)
            it: Iterator[pa.RecordBatch] = _skip_rows(iter(stream_reader), skip)
            return _closing(_project(it, columns), f)

        def batches() -> Iterator[pa.RecordBatch]:
            remaining = skip
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)  # zero-copy on a memory-mapped or buffered local file
                if remaining >= batch.num_rows:
                    remaining -= batch.num_rows
                    continue
                if remaining:
                    batch = batch.slice(remaining)
                    remaining = 0
                yield batch

        return _closing(_project(batches(), columns), f)

    @staticmethod
    def _read_csv(
        fs: Any, path: str, schema: pa.Schema | None, columns: Sequence[str] | None, skip: int
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(
            column_types=dict(zip(schema.names, schema.types, strict=True)) if schema is not None else None,
            include_columns=list(columns) if columns is not None else None,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        stream = fs.open_input_stream(path)
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=False),
            convert_options=convert,
        )
        return _closing(_skip_rows(iter(reader), skip), stream)

    @staticmethod
    def _read_ndjson(
        fs: Any, path: str, schema: pa.Schema | None, columns: Sequence[str] | None, skip: int
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow.json as pajson

        parse = pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore" if schema else "infer"
        )
        stream = fs.open_input_stream(path)
        reader = pajson.open_json(
            stream,
            read_options=pajson.ReadOptions(block_size=BLOCK_SIZE, use_threads=False),
            parse_options=parse,
        )
        return _closing(_project(_skip_rows(iter(reader), skip), columns), stream)


def _project(batches: Iterator[pa.RecordBatch], columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
    if columns is None:
        yield from batches
        return
    for batch in batches:
        yield batch.select([c for c in columns if c in batch.schema.names])


def _closing(batches: Iterator[pa.RecordBatch], handle: Any) -> Iterator[pa.RecordBatch]:
    """``batches``, closing ``handle`` once exhausted or when the generator is closed."""
    try:
        yield from batches
    finally:
        handle.close()


_WRITERS: dict[str, Callable[..., FileWriter]] = {
    "parquet": _ParquetWriter,
    "arrow": _IpcWriter,
    "csv": _CsvWriter,
    "ndjson": _NdjsonWriter,
    "text": _TextWriter,
}

_FORMATS: dict[str, FileFormat] = {
    "parquet": FileFormat("parquet", ".parquet"),
    "arrow": FileFormat("arrow", ".arrow"),
    "csv": FileFormat("csv", ".csv"),
    "ndjson": FileFormat("ndjson", ".ndjson"),
    "text": FileFormat("text", ".txt"),
}

#: Accepted names -> canonical format name.
FORMAT_ALIASES: dict[str, str] = {
    "parquet": "parquet",
    "arrow": "arrow",
    "ipc": "arrow",
    "arrow-ipc": "arrow",
    "feather": "arrow",
    "csv": "csv",
    "ndjson": "ndjson",
    "jsonl": "ndjson",
    "json": "ndjson",
    "text": "text",
    "txt": "text",
}


def file_format(name: str, *, option: str = "format") -> FileFormat:
    """The :class:`FileFormat` called ``name`` (see :data:`FORMAT_ALIASES`), else ConfigurationError."""
    canonical = FORMAT_ALIASES.get(name) if isinstance(name, str) else None
    if canonical is None:
        choices = ", ".join(repr(a) for a in FORMAT_ALIASES)
        raise ConfigurationError(
            f"{option}={name!r} is not a file format; choose one of {choices}", option=option
        )
    return _FORMATS[canonical]
