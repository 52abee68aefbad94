"""Text lines over TCP (Flink's ``socketTextStream``): :class:`SocketSource` reads delimited lines from
a TCP peer, :class:`SocketSink` writes rows to one. The contracts are in :mod:`.source` and
:mod:`.sink`, the options in :mod:`.config`, the vectorized line framing both use in :mod:`._lines`.
Inside this package ``import socket`` is absolute and still finds the standard library's module.
"""

from __future__ import annotations

from ._lines import find_delimiters, split_lines
from .config import SocketSinkConfig, SocketSourceConfig
from .sink import SocketSink
from .source import SocketSource

__all__ = [
    "SocketSink",
    "SocketSinkConfig",
    "SocketSource",
    "SocketSourceConfig",
    "find_delimiters",
    "split_lines",
]
