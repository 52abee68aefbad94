"""Resize batches: :class:`Rebatch` coalesces small batches and splits big ones.

Rows keep their order. Rows that do not yet fill a target batch are held back and returned by
``flush()`` (the runner flushes before every checkpoint, so nothing held is ever lost). ``process``
never blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from ..config import check_positive
from ..errors import ConfigurationError
from .base import Operator

__all__ = ["Rebatch"]


class Rebatch(Operator):
    """Emit batches of ``rows`` rows and/or about ``bytes`` bytes each (at least one must be given).

    With both, a batch ends at whichever limit comes first. The byte size of a row is estimated from
    the buffered data (``nbytes / num_rows``), so byte-limited batches are approximate but never
    hold fewer than one row. Batches are only coalesced when their schemas are equal; a schema
    change first emits what is held under the old schema.
    """

    name = "rebatch"

    def __init__(self, rows: int | None = None, bytes: int | None = None) -> None:
        if rows is None and bytes is None:
            raise ConfigurationError("rebatch needs rows= or bytes=", option="rows")
        check_positive("rows", rows, allow_none=True)
        check_positive("bytes", bytes, allow_none=True)
        self.rows = int(rows) if rows is not None else None
        self.bytes = int(bytes) if bytes is not None else None
        self._held: list[pa.RecordBatch] = []
        self._held_rows = 0
        self._held_bytes = 0

    def _target_rows(self) -> int:
        target = self.rows if self.rows is not None else self._held_rows
        if self.bytes is not None and self._held_rows:
            per_row = max(self._held_bytes / self._held_rows, 1e-9)
            target = min(target, max(1, int(self.bytes // per_row)))
        return max(1, target)

    def _full(self) -> bool:
        if self.rows is not None and self._held_rows >= self.rows:
            return True
        return self.bytes is not None and self._held_bytes >= self.bytes

    def _combined(self) -> pa.RecordBatch:
        held = self._held
        return held[0] if len(held) == 1 else pa.concat_batches(held)

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        out: list[pa.RecordBatch] = []
        if not batch.num_rows:
            return out
        if self._held and not batch.schema.equals(self._held[0].schema, check_metadata=True):
            out.extend(self.flush())
        self._held.append(batch)
        self._held_rows += batch.num_rows
        self._held_bytes += batch.nbytes
        if not self._full():
            return out
        target = self._target_rows()
        combined = self._combined()
        offset = 0
        while combined.num_rows - offset >= target:
            out.append(combined.slice(offset, target))
            offset += target
        rest = combined.slice(offset)
        self._held = [rest] if rest.num_rows else []
        self._held_rows = rest.num_rows
        # Scale the byte count instead of re-measuring: nbytes of a slice of a concatenation is
        # what we would get anyway, and this stays O(1).
        self._held_bytes = int(combined.nbytes * rest.num_rows / max(combined.num_rows, 1))
        return out

    def open(self) -> None:
        # A pipeline restarting in-process reopens its operators: rows held back from before the
        # failure belong to no checkpoint and are read again, so they must not be emitted too.
        self._held, self._held_rows, self._held_bytes = [], 0, 0

    def flush(self) -> Sequence[pa.RecordBatch]:
        if not self._held:
            return []
        combined = self._combined()
        self._held, self._held_rows, self._held_bytes = [], 0, 0
        return [combined]
