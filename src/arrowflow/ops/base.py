"""The operator contract shared by every vectorized operator and the pipeline runner.

An operator turns each incoming batch into zero or more outgoing batches, whole batches at a time
(pyarrow compute, numpy or ``_ext`` kernels; never a Python object per row).

* ``open()`` runs once before the first batch (in the thread that will call ``process``).
* ``process(batch)`` returns the batches ready now. It may keep rows back (``Rebatch`` coalescing,
  ``Enrich`` requests in flight); it may block while its own capacity is full (backpressure).
* ``flush()`` returns every row still held back and blocks until in-flight work has finished. The
  runner calls it before every checkpoint and at the end of a bounded run, so operators never carry
  rows across a checkpoint and need no state of their own in it.
* ``close()`` releases resources; idempotent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import pyarrow as pa

__all__ = ["Operator"]


class Operator(ABC):
    """A vectorized batch-to-batches transformation. See the module docstring for the contract."""

    #: Shown in metrics and progress output.
    name: str = "operator"

    def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare resources before the first batch."""

    @abstractmethod
    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        """The output batches for ``batch`` that are ready now (possibly none)."""

    def flush(self) -> Sequence[pa.RecordBatch]:
        """Everything held back; blocks until in-flight work is done."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""
