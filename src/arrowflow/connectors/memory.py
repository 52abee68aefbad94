"""A sink that keeps every batch in memory (tests, notebooks, small results).

* ``write`` appends the batch (no copy: Arrow batches are immutable) and never blocks.
* ``flush`` has nothing to do: a batch is "acknowledged" as soon as ``write`` returns.
* ``close`` keeps the collected batches readable; writing after ``close`` raises
  :class:`~arrowflow.errors.ArrowflowError`.
* Thread-safe: several threads may write while another reads ``table()``.
* Not idempotent: writing a batch twice keeps it twice.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import ArrowflowError
from ..sink import Sink

if TYPE_CHECKING:
    import pandas
    import polars

__all__ = ["MemorySink"]


class MemorySink(Sink):
    """Collects batches; read them back with :meth:`table`, :meth:`to_polars` or :meth:`to_pandas`."""

    name = "memory"
    idempotent = False

    def __init__(self) -> None:
        self._batches: list[pa.RecordBatch] = []
        self._lock = threading.Lock()
        self._rows = 0
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not isinstance(batch, pa.RecordBatch):
            raise TypeError(f"MemorySink.write() takes a pyarrow.RecordBatch, got {type(batch).__name__}")
        with self._lock:
            if self._closed:
                raise ArrowflowError("MemorySink: write() after close()")
            self._batches.append(batch)
            self._rows += batch.num_rows
            self._bytes += batch.nbytes

    def for_subtask(self, index: int, count: int) -> MemorySink:
        """Thread-safe: every parallel subtask writes to this one instance (batches interleave)."""
        return self

    @property
    def batches(self) -> list[pa.RecordBatch]:
        """A copy of the list of batches written so far, in write order."""
        with self._lock:
            return list(self._batches)

    @property
    def num_rows(self) -> int:
        with self._lock:
            return self._rows

    def table(self) -> pa.Table:
        """Everything written so far as one table.

        Batches with different schemas are unified (missing columns become nulls, types are promoted
        where Arrow can); an empty sink gives an empty table without columns.
        """
        batches = self.batches
        if not batches:
            return pa.table({})
        schema = batches[0].schema
        if all(b.schema == schema for b in batches):
            return pa.Table.from_batches(batches, schema=schema)
        return pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")

    def to_polars(self) -> polars.DataFrame:
        """:meth:`table` as a polars DataFrame (needs ``polars``)."""
        import polars as pl

        return pl.from_arrow(self.table())  # type: ignore[return-value]

    def to_pandas(self) -> pandas.DataFrame:
        """:meth:`table` as a pandas DataFrame (needs ``pandas``)."""
        return self.table().to_pandas()

    def clear(self) -> None:
        """Forget everything collected so far (the counters in :meth:`metrics` keep counting)."""
        with self._lock:
            self._batches = []

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return {"rows": self._rows, "bytes": self._bytes, "batches": len(self._batches)}
