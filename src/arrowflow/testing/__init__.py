"""Test support for connector authors: the conformance suite (needs ``pytest``).

Subclass :class:`SourceConformance` / :class:`SinkConformance` in a test module; see
:mod:`arrowflow.testing.conformance`.
"""

from __future__ import annotations

from .conformance import (
    CollectingServer,
    ConformanceBase,
    SinkConformance,
    SourceConformance,
    TcpServer,
    assert_same_rows,
    make_table,
    row_counter,
    serve_bytes,
)

__all__ = [
    "CollectingServer",
    "ConformanceBase",
    "SinkConformance",
    "SourceConformance",
    "TcpServer",
    "assert_same_rows",
    "make_table",
    "row_counter",
    "serve_bytes",
]
