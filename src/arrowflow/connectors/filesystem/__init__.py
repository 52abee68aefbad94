"""The FileSystem connector: :class:`FileSource` and the exactly-once :class:`FileSink`.

Formats: Parquet, Arrow IPC/Feather, CSV, NDJSON and text lines (:mod:`.formats`), on any
``pyarrow.fs`` or fsspec file system (local by default, ``s3://`` etc. resolved from the URI).
See :mod:`.source` and :mod:`.sink` for the contracts (positions, monitoring, the rename protocol).
"""

from __future__ import annotations

from .formats import FORMAT_ALIASES, FileFormat, file_format
from .sink import FileSink, FileSinkConfig, RollingPolicy
from .source import FileSource, FileSourceConfig

__all__ = [
    "FORMAT_ALIASES",
    "FileFormat",
    "FileSink",
    "FileSinkConfig",
    "FileSource",
    "FileSourceConfig",
    "RollingPolicy",
    "file_format",
]
