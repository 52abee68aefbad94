"""``QueueSource``: a push source that other Python code sends rows, dicts or batches into.

The Python counterpart of Bahir's Akka connector (whose source receives the messages actors send to
it): there is no actor runtime here, so any thread, asyncio task or in-process actor (a Ray actor's
method running in this process, a callback of another client library) pushes into a bounded
in-memory buffer, and the pipeline reads batches out of it.

* ``put(item, timeout=None)`` (thread-safe): ``item`` is a ``pa.RecordBatch``, a ``pa.Table``, a
  dict (one row) or a list of dicts (rows). Rows are turned into a batch in the *calling* thread
  (``RecordBatch.from_pylist``; with ``schema`` set, everything is cast to it, and a row that does not
  fit raises ``SerializationError`` there, so the producer learns about it). Returns True when the
  item was accepted, False when it was dropped (``overflow`` policy) or ``timeout`` expired.
* ``await aput(item, timeout=None)``: the same from asyncio, waiting without blocking the loop.
* ``put_nowait(item)``: never waits.
* ``close()``: end of stream. The reader returns what is buffered, then reports ``finished``, and
  :attr:`QueueSource.bounded` becomes True, so a pipeline run ends. ``put`` after ``close`` raises.

Capacity and overflow (``capacity`` rows): ``"block"`` (default) makes producers wait until the
reader makes room (backpressure); ``"drop_newest"`` refuses the new item, ``"drop_oldest"`` evicts
the oldest buffered rows to make room; ``"error"`` raises :class:`QueueFull`. Dropped rows are
counted (:meth:`QueueSource.metrics`). An item larger than ``capacity`` is accepted only into an
empty buffer (it could never fit otherwise).

Guarantee: at-most-once. Rows live only in memory: what is buffered when the process dies is lost,
and a restart from a checkpoint does not replay anything (``snapshot()`` is a count of rows read, for
information). One split, ``"queue"``; read it with one reader.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ...config import resolve_config
from ...source import Position, Source, Split, SplitReader
from .buffer import BufferReader, PushBuffer, to_batch
from .config import QueueSourceConfig


class QueueSource(Source):
    """A bounded in-memory queue that producers push into. See the module docstring."""

    name = "queue"

    def __init__(
        self,
        *,
        schema: pa.Schema | None = None,
        capacity: int = 100_000,
        overflow: str = "block",
        config: QueueSourceConfig | None = None,
    ) -> None:
        self.config = config = resolve_config(QueueSourceConfig, config, locals())
        self._schema = config.schema
        self.buffer = PushBuffer(config.capacity, config.overflow)

    @property
    def bounded(self) -> bool:
        """False while producers may push; True once :meth:`close` was called (the stream ends)."""
        return self.buffer.closed

    @property
    def schema(self) -> pa.Schema | None:
        return self._schema

    def plan(self) -> list[Split]:
        return [Split(split_id="queue", bounded=False)]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return BufferReader(split, self.buffer, position)

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Push rows or a batch; see the module docstring. Thread-safe; may block (``"block"``)."""
        return self.buffer.offer(to_batch(item, self._schema), timeout)

    def put_nowait(self, item: Any) -> bool:
        """Push without waiting: False if it did not fit (or was dropped)."""
        return self.buffer.offer_nowait(to_batch(item, self._schema))

    async def aput(self, item: Any, timeout: float | None = None) -> bool:
        """Push from a coroutine: waits for room without blocking the event loop."""
        return await self.buffer.offer_async(to_batch(item, self._schema), timeout)

    def close(self) -> None:
        """End of stream: nothing more may be pushed; readers finish once the buffer is drained."""
        self.buffer.close()

    def metrics(self) -> dict[str, int]:
        """accepted_rows, dropped_rows, read_rows, buffered_rows."""
        return self.buffer.metrics()
