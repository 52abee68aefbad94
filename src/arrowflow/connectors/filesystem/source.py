"""Files and directories as a source (Flink's FileSource): :class:`FileSource`.

What is read. ``path`` is a file, a directory (every non-hidden file under it, recursively unless
``recursive=False``) or a glob (``"/data/*/part-*.parquet"``: the directory before the first wildcard
segment is listed and relative paths are matched with :func:`fnmatch.fnmatchcase`, where ``*`` also
matches ``/``). ``glob=`` filters a directory listing the same way. Hidden files - any path segment below
the base starting with ``.`` or ``_`` - are skipped, so a :class:`~arrowflow.connectors.filesystem.FileSink`
writing into the same directory is never read half-written. ``filesystem`` is any ``pyarrow.fs``
file system or an fsspec one; by default ``s3://``/``gs://``/``file://`` URIs are resolved with
``pyarrow.fs.FileSystem.from_uri`` and anything else is local.

Splits. One split per file, ``split_id`` = the path relative to the base. A Parquet file with more than
one row group is planned as one split per row group (``"<rel>#<i>"``) when ``split_row_groups``; this
reads the footer of each Parquet file at planning time. Files are planned in sorted path order.

Positions. A position is the number of rows of the split already read past (delivered, or dropped by
``filter``). Reopening from it neither re-reads nor skips a row: Parquet skips whole row groups from
the footer's row counts and Arrow IPC skips whole record batches, then slices; CSV, NDJSON and text are
decoded streaming and the first rows dropped by slicing. A file must not change after it was planned:
a resumed read of a rewritten file is undefined.

Monitoring. With ``monitor_interval`` the source is unbounded (splits stay bounded and finish): the
runner calls :meth:`FileSource.discover` every ``monitor_interval`` seconds, which lists the path again
and returns splits for files whose relative path no known split has. The set of seen files is thus the
split list a checkpoint stores, so after a restart files already read are not read again. Files must
appear atomically (written elsewhere, or hidden, then renamed); a file appended to after discovery is
not re-read.

Partitions. With ``partitioning="hive"`` (the default), ``key=value`` directory segments become
columns appended after the file's columns (unless the file already has the column): typed by the
``partitioning`` schema when one is given (``partitioning=pa.schema([...])``), else by ``schema`` when it
names the key, else ``string``. Values are percent-decoded and ``__HIVE_DEFAULT_PARTITION__`` is null.

``read_batch`` returns at most ``max_rows`` rows and blocks only on file reads; with a ``filter`` it keeps
reading until a non-empty batch or ``timeout``. A read error propagates (the pipeline fails; the
position is unchanged, so a restart retries the same rows).
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ...config import REQUIRED, resolve_config
from ...errors import ConfigurationError
from ...source import Position, Source, Split, SplitReader
from .config import FileSourceConfig
from .paths import decode_hive_segment, is_hidden, join, relative, resolve

__all__ = ["FileSource", "FileSourceConfig"]

_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class _FileEntry:
    path: str
    rel: str
    size: int
    mtime_ns: int


class FileSource(Source):
    """Reads Parquet, Arrow IPC, CSV, NDJSON or text files (see the module docstring)."""

    name = "filesystem"
    replayable = True

    def __init__(
        self,
        path: str | os.PathLike[str] = REQUIRED,
        *,
        format: str = "parquet",
        schema: pa.Schema | None = None,
        recursive: bool = True,
        glob: str | None = None,
        partitioning: str | pa.Schema | None = "hive",
        monitor_interval: float | None = None,
        batch_size: int = 65536,
        split_row_groups: bool = True,
        columns: Sequence[str] | None = None,
        filter: Any = None,
        filesystem: Any = None,
        config: FileSourceConfig | None = None,
    ) -> None:
        self.config = config = resolve_config(FileSourceConfig, config, locals())
        path, filesystem = config.path, config.filesystem
        self.fs, full = resolve(path, filesystem)
        self.base, self.pattern = _split_glob(full)
        if self.config.glob is not None:
            self.pattern = self.config.glob if self.pattern is None else self.pattern
        self.discovery_interval = monitor_interval

    @property
    def bounded(self) -> bool:
        return self.config.monitor_interval is None

    @property
    def schema(self) -> pa.Schema | None:
        return self.config.schema

    # -- planning ----------------------------------------------------------------------------------

    def list_files(self) -> list[_FileEntry]:
        """Every readable file under the path, sorted by relative path."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.base)
        if info.type == pafs.FileType.File and self.pattern is None:
            return [_FileEntry(info.path, info.base_name, info.size or 0, info.mtime_ns or 0)]
        if info.type == pafs.FileType.NotFound:
            if self.config.monitor_interval is not None:
                return []  # a monitored directory may appear later
            raise ConfigurationError(f"path: {self.base!r} does not exist", option="path")
        if info.type != pafs.FileType.Directory:
            raise ConfigurationError(f"path: {self.base!r} is neither a file nor a directory", option="path")
        selector = pafs.FileSelector(self.base, recursive=self.config.recursive or self.pattern is not None)
        out = []
        for f in self.fs.get_file_info(selector):
            if f.type != pafs.FileType.File:
                continue
            rel = relative(f.path, self.base)
            if is_hidden(rel):
                continue
            if self.pattern is not None and not fnmatch.fnmatchcase(rel, self.pattern):
                continue
            out.append(_FileEntry(f.path, rel, f.size or 0, f.mtime_ns or 0))
        out.sort(key=lambda e: e.rel)
        return out

    def _splits_for(self, entry: _FileEntry) -> list[Split]:
        bounded_split = True  # every file ends, even when the source is monitored
        params: dict[str, Any] = {
            "path": entry.path,
            "rel": entry.rel,
            "size": entry.size,
            "mtime_ns": entry.mtime_ns,
            "partitions": self._partition_values(entry.rel),
        }
        if self.config.file_format.name == "parquet" and self.config.split_row_groups:
            import pyarrow.parquet as pq

            with self.fs.open_input_file(entry.path) as f:
                meta = pq.ParquetFile(f).metadata
            if meta.num_row_groups > 1:
                return [
                    Split(
                        split_id=f"{entry.rel}#{i}",
                        bounded=bounded_split,
                        params={**params, "row_groups": [i], "rows": meta.row_group(i).num_rows},
                    )
                    for i in range(meta.num_row_groups)
                ]
            params["rows"] = meta.num_rows
        return [Split(split_id=entry.rel, bounded=bounded_split, params=params)]

    def _partition_values(self, rel: str) -> dict[str, str | None]:
        if self.config.partitioning is None:
            return {}
        values: dict[str, str | None] = {}
        for segment in rel.split("/")[:-1]:
            kv = decode_hive_segment(segment)
            if kv is not None:
                values[kv[0]] = kv[1]
        return values

    def plan(self) -> list[Split]:
        return [s for entry in self.list_files() for s in self._splits_for(entry)]

    def discover(self, known: Sequence[Split]) -> list[Split]:
        """Splits of files no split in ``known`` covers (new files since planning or the checkpoint)."""
        if self.config.monitor_interval is None:
            return []
        seen = {s.params.get("rel", s.split_id) for s in known}
        return [s for entry in self.list_files() if entry.rel not in seen for s in self._splits_for(entry)]

    def open(self, split: Split, position: Position = None) -> FileSplitReader:
        return FileSplitReader(self, split, position)

    def partition_type(self, key: str) -> pa.DataType:
        part = self.config.partitioning
        if isinstance(part, pa.Schema) and key in part.names:
            return part.field(key).type
        schema = self.config.schema
        if schema is not None and key in schema.names:
            return schema.field(key).type
        return pa.string()

    def hybrid_end_state(self, splits: Sequence[Split], positions: Mapping[str, Position]) -> dict[str, Any]:
        """What a :class:`~arrowflow.connectors.hybrid.HybridSource` passes to the next source's factory.

        ``{"files": number of files read, "rows": rows read, "max_mtime_ns": newest file's mtime}``
        (e.g. start a Kafka source at ``max_mtime_ns``).
        """
        files = {s.params.get("rel", s.split_id) for s in splits}
        return {
            "files": len(files),
            "rows": int(sum(int(p or 0) for p in positions.values())),
            "max_mtime_ns": max((int(s.params.get("mtime_ns", 0)) for s in splits), default=0),
        }


def _split_glob(path: str) -> tuple[str, str | None]:
    """``(base directory, pattern relative to it or None)`` for a path that may contain wildcards."""
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if any(c in seg for c in _GLOB_CHARS):
            base = "/".join(segments[:i]) or "/"
            return base, "/".join(segments[i:])
    return path, None


class FileSplitReader(SplitReader):
    """Reads one file (or Parquet row group). Position: rows read past (see the module docstring)."""

    def __init__(self, source: FileSource, split: Split, position: Position = None) -> None:
        super().__init__(split, position)
        if position is not None and (
            isinstance(position, bool) or not isinstance(position, int) or position < 0
        ):
            raise ConfigurationError(
                f"position of {split.split_id!r} must be a row count, got {position!r}", option="position"
            )
        self.source = source
        self.position = int(position or 0)
        self._iter: Iterator[pa.RecordBatch] | None = None
        self._buf: pa.RecordBatch | None = None
        self._off = 0
        self._done = False
        rows = split.params.get("rows")
        if rows is not None and self.position >= int(rows):
            self._done = True
        cfg = source.config
        parts = dict(split.params.get("partitions") or {})
        self._partitions = {k: v for k, v in parts.items()}
        self._file_columns: list[str] | None = None
        if cfg.columns is not None and cfg.filter is None:
            self._file_columns = [c for c in cfg.columns if c not in self._partitions]

    # -- reading -----------------------------------------------------------------------------------

    def _open(self) -> Iterator[pa.RecordBatch]:
        cfg = self.source.config
        row_groups = self.split.params.get("row_groups")
        return cfg.file_format.open_reader(
            self.source.fs,
            str(self.split.params.get("path", join(self.source.base, self.split.split_id))),
            schema=self._file_schema(),
            columns=self._file_columns,
            batch_size=cfg.batch_size,
            skip=self.position,
            row_groups=row_groups,
        )

    def _file_schema(self) -> pa.Schema | None:
        schema = self.source.config.schema
        if schema is None:
            return None
        keep = [f for f in schema if f.name not in self._partitions]
        return pa.schema(keep) if keep else schema

    def _fill(self) -> bool:
        """Make the buffer hold unread rows; False (and finished) at end of file."""
        while self._buf is None or self._off >= self._buf.num_rows:
            if self._done:
                return False
            if self._iter is None:
                self._iter = self._open()
            try:
                self._buf = next(self._iter)
            except StopIteration:
                self._buf = None
                self._finish()
                return False
            self._off = 0
        return True

    def _finish(self) -> None:
        self._done = True
        if self._iter is not None:
            close = getattr(self._iter, "close", None)
            if close is not None:
                close()
            self._iter = None

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        deadline = time.monotonic() + timeout
        while self._fill():
            assert self._buf is not None
            n = min(max_rows, self._buf.num_rows - self._off)
            out = self._buf.slice(self._off, n)
            self._off += n
            self.position += n
            if self._off >= self._buf.num_rows:
                self._fill()  # read ahead so ``finished`` turns true with the last batch
            out = self._transform(out)
            if out.num_rows or time.monotonic() >= deadline:
                return out if out.num_rows else None
        return None

    def _transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        src = self.source
        cfg = src.config
        file_schema = self._file_schema()
        if file_schema is not None:
            fields = [f for f in file_schema if f.name in batch.schema.names]
            batch = batch.select([f.name for f in fields])
            target = pa.schema(fields)
            if batch.schema != target:
                batch = batch.cast(target)
        if self._partitions:
            arrays, names = list(batch.columns), list(batch.schema.names)
            for key, value in self._partitions.items():
                if key in names:
                    continue
                typ = src.partition_type(key)
                scalar = pa.scalar(value, pa.string())
                if typ != pa.string():
                    scalar = scalar.cast(typ)
                arrays.append(pa.repeat(scalar, batch.num_rows))
                names.append(key)
            batch = pa.RecordBatch.from_arrays(arrays, names=names)
        if cfg.filter is not None:
            batch = batch.filter(cfg.filter)
        if cfg.columns is not None:
            batch = batch.select(list(cfg.columns))
        return batch

    @property
    def finished(self) -> bool:
        return self._done and (self._buf is None or self._off >= self._buf.num_rows)

    def snapshot(self) -> Position:
        return self.position

    def close(self) -> None:
        self._finish()
        self._buf = None
