"""Paths, file systems and Hive-style partition directories shared by the file source and sink.

* :func:`resolve` turns a user path (``"/data/x"``, ``"relative/dir"``, ``"s3://bucket/key"``,
  ``"file:///tmp/x"``) plus an optional file system (a ``pyarrow.fs.FileSystem`` or an fsspec one) into a
  ``(pyarrow FileSystem, path on it)`` pair. Without a file system, a URI is resolved with
  ``pyarrow.fs.FileSystem.from_uri`` and anything else is a local path (made absolute).
* Hidden files: any path segment starting with ``.`` or ``_`` (the convention of
  ``pyarrow.dataset``'s ``ignore_prefixes`` and of Hadoop), so in-progress and pending files of the
  sink are never read.
* Hive segments are ``key=value`` with the value percent-encoded (``/``, ``=``, ``%`` and non-ASCII are
  escaped), and ``__HIVE_DEFAULT_PARTITION__`` for null, as ``pyarrow.dataset`` writes and reads them.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, unquote

from ...errors import ConfigurationError

__all__ = [
    "NULL_PARTITION",
    "decode_hive_segment",
    "encode_hive_segment",
    "is_hidden",
    "is_local",
    "join",
    "relative",
    "resolve",
]

#: The directory value of a null partition key (Hive's and pyarrow's default).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def resolve(path: str | os.PathLike[str], filesystem: Any = None, *, option: str = "path") -> tuple[Any, str]:
    """``(pyarrow FileSystem, normalized path)`` for ``path`` (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ConfigurationError(f"{option} must be a non-empty path, got {path!r}", option=option)
    if filesystem is None:
        if "://" in path:
            try:
                fs, inner = pafs.FileSystem.from_uri(path)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
                raise ConfigurationError(f"{option}: cannot resolve {path!r}: {exc}", option=option) from exc
            return fs, inner.rstrip("/") or "/"
        return pafs.LocalFileSystem(), os.path.abspath(path)
    if not isinstance(filesystem, pafs.FileSystem):
        # An fsspec file system: pyarrow drives it through its FSSpecHandler.
        if not hasattr(filesystem, "protocol"):
            raise ConfigurationError(
                f"filesystem must be a pyarrow.fs.FileSystem or an fsspec file system, "
                f"got {type(filesystem).__name__}",
                option="filesystem",
            )
        filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
    if isinstance(filesystem, pafs.LocalFileSystem):
        path = os.path.abspath(path)
    return filesystem, path.rstrip("/") or "/"


def is_local(fs: Any) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def join(*parts: str) -> str:
    """Join path segments with ``/`` (pyarrow file systems use ``/`` everywhere)."""
    out = ""
    for part in parts:
        if not part:
            continue
        out = part if not out else f"{out.rstrip('/')}/{part.lstrip('/')}"
    return out


def relative(path: str, base: str) -> str:
    """``path`` relative to directory ``base`` (both as the file system spells them)."""
    if path == base:
        return ""
    prefix = base.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def is_hidden(rel_path: str) -> bool:
    """True when any segment of ``rel_path`` starts with ``.`` or ``_``."""
    return any(seg.startswith((".", "_")) for seg in rel_path.split("/") if seg)


def encode_hive_segment(key: str, value: Any) -> str:
    """``key=value`` with the value percent-encoded, or the null partition for ``None``."""
    text = NULL_PARTITION if value is None else quote(_format_value(value), safe="")
    return f"{key}={text}"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def decode_hive_segment(segment: str) -> tuple[str, str | None] | None:
    """``(key, value or None for null)`` of a ``key=value`` segment, else ``None``."""
    key, sep, value = segment.partition("=")
    if not sep or not key:
        return None
    if value == NULL_PARTITION:
        return key, None
    return key, unquote(value)
