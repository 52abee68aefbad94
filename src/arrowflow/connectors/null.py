"""A sink that discards everything and counts it (Flink's ``DiscardingSink``).

Useful to measure a source or a pipeline without a target. ``write`` never blocks, ``flush`` has
nothing to wait for, writing after ``close`` raises :class:`~arrowflow.errors.ArrowflowError`.
Idempotent: there is nothing to duplicate. Thread-safe.
"""

from __future__ import annotations

import threading

import pyarrow as pa

from ..errors import ArrowflowError
from ..sink import Sink

__all__ = ["NullSink"]


class NullSink(Sink):
    """Discards batches; :meth:`metrics` reports ``rows``, ``bytes`` (Arrow buffer sizes) and ``batches``."""

    name = "null"
    idempotent = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows = 0
        self.bytes = 0
        self.batches = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not isinstance(batch, pa.RecordBatch):
            raise TypeError(f"NullSink.write() takes a pyarrow.RecordBatch, got {type(batch).__name__}")
        with self._lock:
            if self._closed:
                raise ArrowflowError("NullSink: write() after close()")
            self.rows += batch.num_rows
            self.bytes += batch.nbytes
            self.batches += 1

    def for_subtask(self, index: int, count: int) -> NullSink:
        """Thread-safe: every parallel subtask writes to this one instance (its counters count all)."""
        return self

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return {"rows": self.rows, "bytes": self.bytes, "batches": self.batches}
