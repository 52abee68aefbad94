"""0.1.0's module of the file formats, now :mod:`arrowflow.connectors.filesystem.file_formats` (the old
name read like :mod:`arrowflow.formats`, the row codecs); a re-export kept for old imports."""

from __future__ import annotations

from .file_formats import FORMAT_ALIASES, FileFormat, FileWriter, file_format

__all__ = ["FORMAT_ALIASES", "FileFormat", "FileWriter", "file_format"]
