"""The bounded in-memory buffer behind :class:`~.source.QueueSource` and the push sources
(:mod:`arrowflow.connectors.push`): :class:`PushBuffer` with its overflow policies, turning pushed
items into batches (:func:`to_batch`), and the reader that drains it (:class:`BufferReader`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...errors import ConnectorError, SerializationError
from ...source import Position, Split, SplitReader

OVERFLOW_POLICIES = ("block", "drop_newest", "drop_oldest", "error")


class QueueFull(ConnectorError):
    """The buffer is full and the overflow policy is ``"error"``."""


def to_batch(item: Any, schema: pa.Schema | None) -> pa.RecordBatch:
    """A batch from a batch, table, row dict or list of row dicts (cast to ``schema`` when given)."""
    try:
        if isinstance(item, pa.RecordBatch):
            batch = item
        elif isinstance(item, pa.Table):
            batch = (
                item.combine_chunks().to_batches()[0]
                if item.num_rows
                else pa.RecordBatch.from_pylist([], schema=item.schema)
            )
        elif isinstance(item, Mapping):
            batch = pa.RecordBatch.from_pylist([item], schema=schema)
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)):
            batch = pa.RecordBatch.from_pylist(list(item), schema=schema)
        else:
            raise TypeError(
                f"cannot push a {type(item).__name__}: use a RecordBatch, Table, dict or list of dicts"
            )
        if schema is not None and batch.schema != schema:
            batch = batch.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError) as exc:
        raise SerializationError(f"rows do not fit the schema: {exc}") from exc
    return batch


class PushBuffer:
    """A bounded, thread-safe FIFO of record batches measured in rows (shared by the push sources).

    ``offer`` adds a batch following the overflow policy; ``take`` removes up to ``max_rows`` rows
    (consecutive batches of one schema are concatenated); ``close`` ends the stream.
    """

    def __init__(self, capacity: int, overflow: str = "block") -> None:
        self.capacity = capacity
        self.overflow = overflow
        self._batches: deque[pa.RecordBatch] = deque()
        self._rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.accepted_rows = 0
        self.dropped_rows = 0
        self.taken_rows = 0

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def closed(self) -> bool:
        return self._closed

    def _fits(self, n: int) -> bool:
        return self._rows + n <= self.capacity or self._rows == 0

    def _add(self, batch: pa.RecordBatch) -> None:
        self._batches.append(batch)
        self._rows += batch.num_rows
        self.accepted_rows += batch.num_rows
        self._cond.notify_all()

    def _try(self, batch: pa.RecordBatch) -> bool | None:
        """Accept, drop (False) or say "must wait" (None). Caller holds the lock."""
        if self._closed:
            raise ConnectorError("the push source is closed")
        n = batch.num_rows
        if self._fits(n):
            self._add(batch)
            return True
        if self.overflow == "drop_newest":
            self.dropped_rows += n
            return False
        if self.overflow == "drop_oldest":
            while self._batches and not self._fits(n):
                old = self._batches.popleft()
                self._rows -= old.num_rows
                self.dropped_rows += old.num_rows
            self._add(batch)
            return True
        if self.overflow == "error":
            raise QueueFull(f"push buffer full ({self._rows} of {self.capacity} rows)")
        return None

    def offer(self, batch: pa.RecordBatch, timeout: float | None = None) -> bool:
        """Add ``batch``; under ``"block"`` wait up to ``timeout`` seconds (None: forever)."""
        if batch.num_rows == 0:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                result = self._try(batch)
                if result is not None:
                    return result
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def offer_nowait(self, batch: pa.RecordBatch) -> bool:
        if batch.num_rows == 0:
            return True
        with self._cond:
            return bool(self._try(batch))

    async def offer_async(self, batch: pa.RecordBatch, timeout: float | None = None) -> bool:
        """Like :meth:`offer`, waiting on the running event loop instead of blocking it."""
        if batch.num_rows == 0:
            return True
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._cond:
                result = self._try(batch)
                if result is not None:
                    return result
                # Registered under the lock: a take() that frees room after this point wakes us.
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                return False

    def _wake(self) -> None:
        """Wake blocked producers (caller holds the lock)."""
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

    def take(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        """Up to ``max_rows`` rows, waiting up to ``timeout`` for the first; None if none came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._batches:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            parts: list[pa.RecordBatch] = []
            got = 0
            schema = self._batches[0].schema
            while self._batches and got < max_rows and self._batches[0].schema == schema:
                head = self._batches[0]
                k = min(head.num_rows, max_rows - got)
                if k == head.num_rows:
                    self._batches.popleft()
                    parts.append(head)
                else:
                    parts.append(head.slice(0, k))
                    self._batches[0] = head.slice(k)
                got += k
            self._rows -= got
            self.taken_rows += got
            self._wake()
        return parts[0] if len(parts) == 1 else pa.concat_batches(parts)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._wake()

    def metrics(self) -> dict[str, int]:
        with self._cond:
            return {
                "accepted_rows": self.accepted_rows,
                "dropped_rows": self.dropped_rows,
                "read_rows": self.taken_rows,
                "buffered_rows": self._rows,
            }


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class BufferReader(SplitReader):
    """Reads a :class:`PushBuffer`; finished once the buffer is closed and drained."""

    def __init__(self, split: Split, buffer: PushBuffer, position: Position = None) -> None:
        super().__init__(split, position)
        self._buffer = buffer
        self._read = int(position["rows"]) if isinstance(position, Mapping) and "rows" in position else 0

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        batch = self._buffer.take(max_rows, timeout)
        if batch is not None:
            self._read += batch.num_rows
        return batch

    @property
    def finished(self) -> bool:
        return self._buffer.closed and self._buffer.rows == 0

    def snapshot(self) -> Position:
        return {"rows": self._read}

    def lag(self) -> int | None:
        return self._buffer.rows
