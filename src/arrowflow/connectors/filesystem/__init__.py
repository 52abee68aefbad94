"""The FileSystem connector: :class:`FileSource` and the exactly-once :class:`FileSink`.

Formats: Parquet, Arrow IPC/Feather, CSV, NDJSON and text lines (:mod:`.file_formats`), on any
``pyarrow.fs`` or fsspec file system (local by default, ``s3://`` etc. resolved from the URI).
See :mod:`.source` and :mod:`.sink` for the contracts (positions, monitoring, the rename protocol).
"""

from __future__ import annotations

from .config import CommittedPartition, FileSinkConfig, FileSourceConfig, PartitionCommit, RollingPolicy
from .file_formats import FORMAT_ALIASES, FileFormat, file_format
from .sink import FileSink
from .source import FileSource

__all__ = [
    "FORMAT_ALIASES",
    "CommittedPartition",
    "FileFormat",
    "FileSink",
    "FileSinkConfig",
    "FileSource",
    "FileSourceConfig",
    "PartitionCommit",
    "RollingPolicy",
    "file_format",
]
