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

Restarts and parallel subtasks (see :mod:`arrowflow.pipeline.runner`):

* An in-process restart (``run(restart=...)``) calls ``close()``, then ``open()`` and
  ``restore_state()`` again on the same object: ``open()`` must start over with nothing held back
  from before (rows kept for coalescing, requests in flight).
* ``run(parallelism=N)`` runs the chain N times. Subtask 0 uses the operator itself, subtask ``i``
  the one :meth:`Operator.for_subtask` returns (by default a deep copy made before ``open()``; user
  functions, sinks and error policies it holds are shared, not copied).
* ``key_columns``: an operator whose rows (and state) belong to keys declares the key columns; with
  parallel subtasks every row is routed to the subtask owning its key (murmur2 of the key, the
  :class:`~arrowflow.ops.KeyBy` encoding, modulo N) before the operator sees it. ``()`` is one
  global key: everything goes to subtask 0. ``None`` (the default): rows stay in the subtask that
  read them.
* ``rescale_state(parts, keep)``: restoring a checkpoint taken with another parallelism, a keyed
  operator gets the state every old subtask saved and keeps the keys ``keep`` (a table -> the rows
  this subtask owns) selects. The default refuses (the state cannot be redistributed).
"""

from __future__ import annotations

import copy
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa

from ..error_policy import ErrorPolicy
from ..errors import CheckpointError
from ..sink import Sink

__all__ = ["Operator"]


class Operator(ABC):
    """A vectorized batch-to-batches transformation. See the module docstring for the contract."""

    #: Shown in metrics and progress output.
    name: str = "operator"
    #: Seconds between :meth:`on_processing_time` calls; ``None``: the operator has no timers.
    timer_interval: float | None = None
    #: Rows this operator handed to a late-rows policy so far (shown in its stage's metrics).
    late_rows: int = 0
    #: Key columns routing rows to parallel subtasks (``()``: one global key; ``None``: not keyed).
    key_columns: tuple[str, ...] | None = None

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

    def rescale_state(
        self, parts: Sequence[Mapping[str, pa.Table]], keep: Callable[[pa.Table], pa.Table]
    ) -> None:
        """Restore from the states of several subtasks of another parallelism (see the module
        docstring). The default refuses: only a keyed operator's state can be redistributed."""
        raise CheckpointError(
            f"operator {self.name!r} keeps state that is not keyed: it cannot be redistributed to another "
            "parallelism (resume the checkpoint with the parallelism it was taken with)"
        )

    def for_subtask(self, index: int, count: int) -> Operator:
        """The instance of parallel subtask ``index`` (``1 <= index < count``), made before ``open()``.

        By default a deep copy that shares what the operator holds (directly or in a dict, list or
        tuple) that is a user function or callable object, a sink, an error policy or a module (the
        kernels): user functions run in every subtask at once and must be thread-safe. Override when
        the operator holds something else that cannot be copied (a lock, a client)."""
        memo: dict[int, object] = {}

        def share(value: object, depth: int) -> None:
            if isinstance(value, (Sink, ErrorPolicy, types.ModuleType)) or (
                callable(value) and not isinstance(value, (type, Operator))
            ):
                memo[id(value)] = value
            elif depth and isinstance(value, Mapping):
                for v in value.values():
                    share(v, depth - 1)
            elif depth and isinstance(value, (list, tuple)):
                for v in value:
                    share(v, depth - 1)

        for value in vars(self).values():
            share(value, 2)
        return copy.deepcopy(self, memo)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""
