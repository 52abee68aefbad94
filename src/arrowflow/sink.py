"""Sink contracts.

* ``write(batch)`` hands a batch to the sink. It may buffer; it may block (backpressure) while the
  sink's buffers are full. Rows that cannot be delivered go to the sink's error policy.
* ``flush()`` returns once everything written so far is acknowledged by the external system (or was
  handed to the error policy). A pipeline calls it at every checkpoint of an at-least-once run.
* ``close()`` flushes and releases resources; it is idempotent. It may not run after a crash.
* ``on_watermark(watermark)`` (optional): a pipeline with event time calls it, in order with the
  batches, whenever its watermark (int64 microseconds since the epoch, see :mod:`arrowflow.time`)
  advances; everything written afterwards is at or after it in event time, except late rows kept on
  purpose. :class:`~arrowflow.connectors.filesystem.FileSink` commits finished partitions on it.

Two-phase (transactional) sinks subclass :class:`TwoPhaseSink`: ``prepare_commit()`` makes the data
written so far durable but invisible and returns JSON-serializable committables; the pipeline stores
them in the checkpoint, then calls ``commit(committables)``, which makes them visible. ``commit`` must
be idempotent: after a crash the pipeline calls ``recover(committables)`` with the committables of the
last durable checkpoint, which may already have been committed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["Committable", "Sink", "TwoPhaseSink"]

#: A JSON-serializable description of prepared, not yet visible, output.
Committable = Any


class Sink(ABC):
    """Consumes record batches. See the module docstring for the contract."""

    #: A short name shown in metrics and the CLI.
    name: str = "sink"
    #: True when writing the same rows twice leaves the target as if written once (keyed upserts).
    #: Such sinks can run in exactly-once pipelines.
    idempotent: bool = False
    #: True for :class:`TwoPhaseSink` s.
    transactional: bool = False

    _closed: bool = False

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> None:
        """Accept a batch. May buffer, and may block while buffers are full."""

    def write_table(self, table: pa.Table) -> None:
        """Write every batch of ``table``."""
        for batch in table.to_batches():
            self.write(batch)

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Return once everything written so far is acknowledged or handed to the error policy."""

    def on_watermark(self, watermark: int) -> None:  # noqa: B027 - optional hook
        """The pipeline's event time reached ``watermark`` (see the module docstring)."""

    def close(self) -> None:
        """Flush and release resources. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._close()

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (called once by :meth:`close`)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def metrics(self) -> dict[str, int]:
        """Counters a runner exposes (rows written, retries, errors, ...)."""
        return {}

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None and isinstance(self, TwoPhaseSink):
            self.abort()
            self._closed = True
            self._close()
            return
        self.close()


class TwoPhaseSink(Sink):
    """A sink whose output becomes visible only when a checkpoint commits it."""

    transactional = True
    #: True when a fresh instance (same options, maybe another process) can commit the committables
    #: another instance prepared (file renames, database transactions by id). False when only the
    #: preparing instance can (a Kafka transaction belongs to its producer): such sinks cannot have
    #: their output committed elsewhere, e.g. by a Ray job's driver.
    commits_from_any_instance: bool = True

    @abstractmethod
    def prepare_commit(self) -> list[Committable]:
        """Make everything written so far durable but not yet visible; return its committables."""

    @abstractmethod
    def commit(self, committables: Sequence[Committable]) -> None:
        """Make the prepared output visible. Idempotent: committing twice is harmless."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything written since the last ``prepare_commit``."""

    def attach_state_dir(self, directory: Path) -> None:
        """A directory that survives crashes, owned by this sink, next to the pipeline's checkpoints.

        A pipeline with a checkpoint store calls this once, before :meth:`recover`. A sink that must
        keep local state to finish a prepared commit after a crash (e.g. a write-ahead journal) keeps
        it there and must have it durable when :meth:`prepare_commit` returns."""

    def recover(self, committables: Sequence[Committable]) -> None:
        """After a restart: finish committing what the last durable checkpoint prepared."""
        self.commit(committables)

    def close(self) -> None:
        """Without a pipeline, closing a two-phase sink prepares and commits what was written."""
        if self._closed:
            return
        try:
            self.commit(self.prepare_commit())
        finally:
            self._closed = True
            self._close()
