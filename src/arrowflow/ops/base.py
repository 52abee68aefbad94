"""The operator contract shared by every vectorized operator and the pipeline runner.

An operator turns each incoming batch into zero or more outgoing batches, whole batches at a time
(pyarrow compute, numpy or ``_ext`` kernels; never a Python object per row).

* ``open()`` runs once before the first batch (in the thread that will call ``process``).
* ``process(batch)`` returns the batches ready now. It may keep rows back (``Rebatch`` coalescing,
  ``Enrich`` requests in flight); it may block while its own capacity is full (backpressure).
* ``flush()`` returns every row still held back and blocks until in-flight work has finished. The
  runner calls it before every checkpoint and at the end of a bounded run, so stateless operators
  never carry rows across a checkpoint and need no state of their own in it.
* ``close()`` releases resources; idempotent.

Event time and state (all optional; the defaults suit a stateless operator):

* ``on_watermark(watermark)`` is called, in order with the batches, each time the pipeline's
  watermark (int64 microseconds, see :mod:`arrowflow.time`) advances; it returns batches that became
  ready (a window that closed). ``forward_watermark(watermark)`` is the watermark the operator passes
  on to the next stage afterwards (a window holds it back by its allowed lateness).
* ``timer_interval``/``on_processing_time(now)``: an operator with a ``timer_interval`` (seconds) is
  called about that often with the wall-clock time (processing-time windows), also when no batch flows.
* ``snapshot_state()`` returns the state to keep across a checkpoint as named Arrow tables (taken
  right after ``flush()`` at the barrier; the runner writes them as Arrow IPC files next to the
  checkpoint); ``restore_state(tables)`` gets them back on a restart, before the first batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import pyarrow as pa

__all__ = ["Operator"]


class Operator(ABC):
    """A vectorized batch-to-batches transformation. See the module docstring for the contract."""

    #: Shown in metrics and progress output.
    name: str = "operator"
    #: Seconds between :meth:`on_processing_time` calls; ``None``: the operator has no timers.
    timer_interval: float | None = None
    #: Rows this operator handed to a late-rows policy so far (shown in its stage's metrics).
    late_rows: int = 0

    def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare resources before the first batch."""

    @abstractmethod
    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        """The output batches for ``batch`` that are ready now (possibly none)."""

    def flush(self) -> Sequence[pa.RecordBatch]:
        """Everything held back; blocks until in-flight work is done."""
        return []

    def on_watermark(self, watermark: int) -> Sequence[pa.RecordBatch]:
        """Batches that became ready now that event time reached ``watermark``."""
        return []

    def forward_watermark(self, watermark: int) -> int:
        """The watermark passed downstream after :meth:`on_watermark` (default: unchanged)."""
        return watermark

    def on_processing_time(self, now: float) -> Sequence[pa.RecordBatch]:
        """Batches that became ready at wall-clock time ``now`` (``time.time()``)."""
        return []

    def snapshot_state(self) -> Mapping[str, pa.Table] | None:
        """State to keep across a checkpoint (``None``: stateless)."""
        return None

    def restore_state(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back what :meth:`snapshot_state` returned before a restart."""
        if tables:
            raise TypeError(f"{type(self).__name__} keeps no state but a checkpoint holds some for it")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""
