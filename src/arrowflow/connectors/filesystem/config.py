"""The options of the file sink and source, checked in one place."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from ...config import check_positive, check_type
from ...errors import ConfigurationError
from ...time import DurationLike, duration_us
from .file_formats import FileFormat, file_format

__all__ = ["CommittedPartition", "FileSinkConfig", "FileSourceConfig", "PartitionCommit", "RollingPolicy"]

_INPROGRESS = ".inprogress"
_PENDING = ".pending"
_COMPRESSED_EXT = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst", "lz4": ".lz4", "brotli": ".br"}


@dataclass(frozen=True, kw_only=True)
class RollingPolicy:
    """When an in-progress file is closed and a new one started (within a checkpoint epoch).

    ``max_rows``: at most this many rows per file (batches are sliced to fit exactly).
    ``max_bytes``: roll once the file reached this size (checked after each write, so a file may exceed
    it by one batch; a Parquet file's size counts its buffered row group). ``max_age_s``: roll files
    opened this long ago; ``inactivity_s``: roll files not written to for this long (both checked on
    ``write``). ``None`` disables a limit. Every checkpoint rolls every file regardless.
    """

    max_rows: int | None = None
    max_bytes: int | None = 128 * 1024 * 1024
    max_age_s: float | None = None
    inactivity_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_bytes"):
            value = getattr(self, name)
            check_type(f"rolling.{name}", value, int, allow_none=True)
            check_positive(f"rolling.{name}", value, allow_none=True)
        check_positive("rolling.max_age_s", self.max_age_s, allow_none=True)
        check_positive("rolling.inactivity_s", self.inactivity_s, allow_none=True)


#: strftime directives -> the period they name, finest first (calendar months and years have none).
_TEMPLATE_PERIODS: tuple[tuple[str, str], ...] = (
    *(("%S", "1s"), ("%T", "1s"), ("%M", "1m"), ("%R", "1m"), ("%H", "1h"), ("%I", "1h")),
    *(("%d", "1d"), ("%e", "1d"), ("%j", "1d"), ("%F", "1d"), ("%D", "1d")),
)


@dataclass(frozen=True)
class CommittedPartition:
    """What a partition-commit callback receives: the directory (absolute on the sink's file system and
    relative to its base), the end of its event-time period, and the Hive ``key=value`` pairs of its path."""

    path: str
    directory: str
    end: datetime | None
    values: Mapping[str, str | None]
    filesystem: Any = field(repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class PartitionCommit:
    """Commit event-time partitions once the watermark passes their end (see the module docstring).

    ``every``: the length of a partition's period (a duration: ``"1h"``, seconds, ``timedelta``);
    inferred from a ``bucket`` template's finest field (``%H`` -> 1 hour, ``%M`` -> 1 minute, ``%d`` ->
    1 day, ``%S`` -> 1 second) when not given. ``time_column``: the event-time column the period is
    taken from (default: ``bucket_column``). ``delay``: how long after the period's end to wait. Window
    results need none when bucketed by ``window_end``, nor by ``window_start`` for tumbling windows
    (the last window starting in a period ends with it: a window emits its rows before the watermark
    passes its end); sliding windows bucketed by ``window_start`` need ``size - slide``; sessions
    bucketed by ``window_start`` cannot be bounded (bucket them by ``window_end``). ``success_file``:
    the marker file name, or ``None`` for none. ``callback``: ``fn(CommittedPartition)``, or ``None``.
    """

    every: DurationLike | None = None
    time_column: str | None = None
    delay: DurationLike = 0
    success_file: str | None = "_SUCCESS"
    callback: Callable[[CommittedPartition], Any] | None = None

    def __post_init__(self) -> None:
        if self.every is not None:
            duration_us(self.every, "partition_commit.every", allow_zero=False)
        duration_us(self.delay, "partition_commit.delay")
        check_type("partition_commit.time_column", self.time_column, str, allow_none=True)
        check_type("partition_commit.success_file", self.success_file, str, allow_none=True)
        if self.success_file is not None and (
            not self.success_file or "/" in self.success_file or self.success_file[0] not in "._"
        ):
            raise ConfigurationError(
                "partition_commit.success_file must be a file name starting with '_' or '.' (hidden from "
                f"readers), got {self.success_file!r}",
                option="partition_commit.success_file",
            )
        if self.callback is not None and not callable(self.callback):
            raise ConfigurationError(
                "partition_commit.callback must be callable", option="partition_commit.callback"
            )
        if self.success_file is None and self.callback is None:
            raise ConfigurationError(
                "partition_commit needs a success_file, a callback, or both", option="partition_commit"
            )


@dataclass(frozen=True, kw_only=True)
class FileSinkConfig:
    """Options of :class:`FileSink` (see the module docstring)."""

    path: str | os.PathLike[str]
    """Base directory (local path, or a URI such as ``s3://bucket/prefix`` resolved by ``pyarrow.fs``)."""
    format: str = "parquet"
    """``"parquet"``, ``"arrow"``/``"ipc"``/``"feather"``, ``"csv"``, ``"ndjson"`` or ``"text"``."""
    partition_by: Sequence[str] | None = None
    """Column(s) written as Hive directories ``col=value`` and dropped from the rows."""
    bucket: str | None = None
    """A ``strftime`` template of the bucket directory (e.g. ``"%Y-%m-%d"``), over ``bucket_column`` or the
    current UTC time."""
    bucket_column: str | None = None
    """A timestamp/date column the ``bucket`` template is applied to, per row."""
    rolling: RollingPolicy = field(default_factory=RollingPolicy)
    """When a new file starts within a checkpoint (``RollingPolicy``: rows, bytes, age, inactivity)."""
    prefix: str = "part"
    """File names are ``<prefix>-<run id>-<n><suffix>``; one base directory and prefix belong to one
    pipeline."""
    suffix: str | None = None
    """File name suffix (default from the format and compression, e.g. ``.parquet``, ``.ndjson.gz``)."""
    compression: Any = None
    """Parquet/IPC codec name, or for csv/ndjson/text a stream codec: ``gzip``, ``bz2``, ``zstd``, ``lz4``,
    ``brotli``."""
    writer_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the pyarrow writer."""
    filesystem: Any = None
    """A ``pyarrow.fs`` or fsspec file system (default: from the path)."""
    fsync: bool = True
    """Fsync files and directories before a checkpoint counts (local file systems); ``False`` trades
    durability for speed."""
    partition_commit: PartitionCommit | None = None
    """Commit event-time partitions (``_SUCCESS``, a callback) once the watermark passes their end."""
    file_format: FileFormat = field(init=False)
    #: Resolved from ``partition_commit``: (time column, period, delay) in microseconds.
    commit_period: tuple[str, int, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        check_type("path", self.path, (str, os.PathLike))
        object.__setattr__(self, "file_format", file_format(self.format))
        if self.partition_by is not None:
            if isinstance(self.partition_by, str):
                object.__setattr__(self, "partition_by", (self.partition_by,))
            elif not self.partition_by or not all(isinstance(c, str) for c in self.partition_by):
                raise ConfigurationError(
                    "partition_by must be a column name or a list of them", option="partition_by"
                )
            else:
                object.__setattr__(self, "partition_by", tuple(self.partition_by))
        check_type("bucket", self.bucket, str, allow_none=True)
        check_type("bucket_column", self.bucket_column, str, allow_none=True)
        if self.bucket_column is not None and self.bucket is None:
            raise ConfigurationError(
                "bucket_column needs a bucket template (e.g. '%Y-%m-%d--%H')", option="bucket_column"
            )
        if self.bucket is not None and (not self.bucket or "%" not in self.bucket):
            raise ConfigurationError(
                f"bucket must be a strftime template, got {self.bucket!r}", option="bucket"
            )
        if self.rolling is None:  # 0.1.0's FileSink(rolling=None): the default policy
            object.__setattr__(self, "rolling", RollingPolicy())
        check_type("rolling", self.rolling, RollingPolicy)
        check_type("prefix", self.prefix, str)
        if not self.prefix or self.prefix[0] in "._" or "/" in self.prefix:
            raise ConfigurationError(
                f"prefix must be non-empty, not start with '.' or '_' and hold no '/'; got {self.prefix!r}",
                option="prefix",
            )
        check_type("suffix", self.suffix, str, allow_none=True)
        if self.suffix is not None and ("/" in self.suffix or self.suffix.endswith((_INPROGRESS, _PENDING))):
            raise ConfigurationError(f"suffix {self.suffix!r} is not allowed", option="suffix")
        check_type("writer_options", self.writer_options, Mapping, allow_none=True)
        object.__setattr__(self, "writer_options", dict(self.writer_options or {}))
        check_type("fsync", self.fsync, bool)
        if (
            self.file_format.name in ("csv", "ndjson", "text")
            and self.compression is not None
            and self.compression not in _COMPRESSED_EXT
        ):
            raise ConfigurationError(
                f"compression={self.compression!r} for {self.file_format.name}: choose one of "
                f"{', '.join(map(repr, _COMPRESSED_EXT))} or None",
                option="compression",
            )

        check_type("partition_commit", self.partition_commit, PartitionCommit, allow_none=True)
        pc_ = self.partition_commit
        if pc_ is not None:
            column = pc_.time_column or self.bucket_column
            if column is None:
                raise ConfigurationError(
                    "partition_commit needs an event-time column: bucket_column or "
                    "partition_commit.time_column",
                    option="partition_commit",
                )
            every = pc_.every
            if every is None:
                every = _template_period(self.bucket) if pc_.time_column is None else None
                if every is None:
                    raise ConfigurationError(
                        "partition_commit.every is needed (it cannot be read from the bucket template)",
                        option="partition_commit.every",
                    )
            object.__setattr__(
                self,
                "commit_period",
                (
                    column,
                    duration_us(every, "partition_commit.every", allow_zero=False),
                    duration_us(pc_.delay, "partition_commit.delay"),
                ),
            )

    @property
    def default_suffix(self) -> str:
        suffix = self.file_format.suffix
        if self.file_format.name in ("csv", "ndjson", "text") and self.compression is not None:
            suffix += _COMPRESSED_EXT[self.compression]
        return suffix


@dataclass(frozen=True, kw_only=True)
class FileSourceConfig:
    """Options of :class:`FileSource` (see the module docstring)."""

    path: str | os.PathLike[str]
    """A file, a directory (every non-hidden file below it) or a glob such as ``"/data/*/part-*.parquet"``."""
    format: str = "parquet"
    """``"parquet"``, ``"arrow"``/``"ipc"``/``"feather"``, ``"csv"``, ``"ndjson"`` or ``"text"``."""
    schema: pa.Schema | None = None
    """The schema to read with (default: the files' own, or inferred for CSV/NDJSON)."""
    recursive: bool = True
    """List directories recursively."""
    glob: str | None = None
    """Keep only listed files whose relative path matches this pattern (``*`` also matches ``/``)."""
    partitioning: str | pa.Schema | None = "hive"
    """``"hive"`` (``key=value`` segments become columns), a ``pyarrow.Schema`` typing the keys, or
    ``None``."""
    monitor_interval: float | None = None
    """Seconds between listings for new files: makes the source unbounded."""
    batch_size: int = 65536
    """Rows per batch read from a file."""
    split_row_groups: bool = True
    """One split per Parquet row group (reads each footer while planning) instead of one per file."""
    columns: Sequence[str] | None = None
    """Columns to read (projection pushed down to the reader)."""
    filter: Any = None
    """A ``pyarrow.compute`` expression pushed down; rows it drops still advance the position."""
    filesystem: Any = None
    """A ``pyarrow.fs`` or fsspec file system (default: from the path)."""
    file_format: FileFormat = field(init=False)

    def __post_init__(self) -> None:
        check_type("path", self.path, (str, os.PathLike))
        object.__setattr__(self, "file_format", file_format(self.format))
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_type("recursive", self.recursive, bool)
        check_type("glob", self.glob, str, allow_none=True)
        if not (
            self.partitioning is None
            or self.partitioning == "hive"
            or isinstance(self.partitioning, pa.Schema)
        ):
            raise ConfigurationError(
                f"partitioning must be 'hive', a pyarrow.Schema of the partition keys, or None; "
                f"got {self.partitioning!r}",
                option="partitioning",
            )
        check_positive("monitor_interval", self.monitor_interval, allow_none=True)
        check_type("batch_size", self.batch_size, int)
        check_positive("batch_size", self.batch_size)
        check_type("split_row_groups", self.split_row_groups, bool)
        if self.columns is not None:
            if isinstance(self.columns, str) or not all(isinstance(c, str) for c in self.columns):
                raise ConfigurationError("columns must be a list of column names", option="columns")
            object.__setattr__(self, "columns", tuple(self.columns))
        if self.filter is not None:
            import pyarrow.compute as pc

            check_type("filter", self.filter, pc.Expression)
        if (
            self.file_format.name == "text"
            and self.schema is not None
            and (len(self.schema) != 1 or not pa.types.is_string(self.schema.field(0).type))
        ):
            raise ConfigurationError("schema: the text format has exactly one string column", option="schema")


def _template_period(template: str | None) -> str | None:
    """The period a bucket template names by its finest field (``None``: none with a fixed length)."""
    if template is None:
        return None
    found = set(re.findall(r"%[A-Za-z]", template))
    for directive, period in _TEMPLATE_PERIODS:
        if directive in found:
            return period
    return None
