"""The runner's data channels: bounded FIFO channels between pipeline tasks, with barrier alignment.

A :class:`Gate` is the input of one task (a reader's chain, an operator subtask, a writer): one FIFO
channel per upstream task that sends to it, each holding at most ``capacity`` items (a full channel
blocks its sender: backpressure). The task takes items from the channels round robin. An
:class:`Output` is how a task sends: to one gate (*forward*: the next task of the same subtask;
*merge*: the single task fed by every subtask) or, routed by key, to every subtask's gate (*hash*:
rows go to the subtask owning their key; watermarks, barriers and the end are broadcast).

:class:`Inputs` is what a receiving task keeps per channel: the latest watermark (the task's event time
is the minimum over its channels, as in Flink) and the barrier alignment of a checkpoint (a channel
that delivered barrier ``n`` is blocked until every channel has, so that nothing after the barrier is
processed before the checkpoint). Items: ``(batch, nbytes)`` tuples, :class:`Watermark`,
:class:`Barrier` and :data:`END` (after the final barrier, once per channel).

Every blocking wait polls the run's abort flag every ``POLL`` seconds and raises :class:`Aborted`
when it is set, so a failing task never leaves the others hanging.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..ops.partition import KeyRouter
from ..time import MIN_WATERMARK

__all__ = ["END", "POLL", "Aborted", "Barrier", "Gate", "Inputs", "Output", "Watermark"]

#: How long a blocked put/get waits before re-checking the abort flag.
POLL = 0.05


class Aborted(Exception):
    """Raised inside a task when another one failed (or the run aborts); the task just exits."""


@dataclass(frozen=True)
class Barrier:
    """Checkpoint ``checkpoint_id`` (``final``: the last one of the run); travels in order with batches."""

    checkpoint_id: int
    final: bool = False


@dataclass(frozen=True)
class Watermark:
    """The sender's watermark advanced to ``value`` (int64 microseconds); travels in order with batches."""

    value: int


class _End:
    """Marks the end of a channel (after the final barrier)."""

    def __repr__(self) -> str:
        return "END"


END = _End()


class Gate:
    """The input channels of one task (see the module docstring). Thread-safe."""

    def __init__(self, channels: int, capacity: int, abort: threading.Event) -> None:
        self._cond = threading.Condition()
        self._queues: list[deque[Any]] = [deque() for _ in range(channels)]
        self._blocked = [False] * channels
        self._capacity = capacity
        self._abort = abort
        self._next = 0

    @property
    def channels(self) -> int:
        return len(self._queues)

    def put(self, channel: int, item: Any) -> None:
        """Append ``item`` to ``channel``; blocks while the channel is full."""
        q = self._queues[channel]
        with self._cond:
            while len(q) >= self._capacity:
                if self._abort.is_set():
                    raise Aborted()
                self._cond.wait(POLL)
            q.append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> tuple[int, Any] | None:
        """``(channel, item)`` from the next unblocked channel with an item (round robin); ``None`` after
        ``timeout`` seconds without one (``None``: wait as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        queues, blocked = self._queues, self._blocked
        n = len(queues)
        with self._cond:
            while True:
                for k in range(n):
                    ch = (self._next + k) % n
                    if queues[ch] and not blocked[ch]:
                        self._next = (ch + 1) % n
                        item = queues[ch].popleft()
                        self._cond.notify_all()
                        return ch, item
                if self._abort.is_set():
                    raise Aborted()
                wait = POLL
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = min(wait, left)
                self._cond.wait(wait)

    def block(self, channel: int) -> None:
        with self._cond:
            self._blocked[channel] = True

    def unblock_all(self) -> None:
        with self._cond:
            self._blocked = [False] * len(self._queues)
            self._cond.notify_all()


class Output:
    """Where a task sends its items (see the module docstring).

    ``mode``: ``"forward"`` (to ``gates[index]``, its only channel), ``"merge"`` (to ``gates[0]``, channel
    ``index``) or ``"hash"`` (rows to ``gates[owner]`` by ``router``, control items to every gate;
    channel ``index`` everywhere).
    """

    def __init__(self, gates: Sequence[Gate], index: int, mode: str, router: KeyRouter | None = None):
        self.index = index
        self.mode = mode
        self.router = router
        if mode == "forward":
            self._targets = [(gates[index], 0)]
        elif mode == "merge":
            self._targets = [(gates[0], index)]
        else:
            assert router is not None, "a hash output needs a router"
            self._targets = [(g, index) for g in gates]

    def data(self, batch: pa.RecordBatch, nbytes: int) -> None:
        if self.router is None:
            gate, ch = self._targets[0]
            gate.put(ch, (batch, nbytes))
            return
        n = batch.num_rows
        for owner, rows in self.router.split(batch):
            # Bytes are for metrics only: share them out by rows rather than walk every buffer again.
            share = nbytes if rows.num_rows == n else nbytes * rows.num_rows // max(n, 1)
            gate, ch = self._targets[owner]
            gate.put(ch, (rows, share))

    def control(self, item: Any) -> None:
        """A watermark, barrier or END: to every target, behind the data sent before it."""
        for gate, ch in self._targets:
            gate.put(ch, item)


class Inputs:
    """Per-channel watermarks and barrier alignment of one receiving task (see the module docstring)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._watermarks = [MIN_WATERMARK] * channels
        #: The task's watermark: the minimum over its channels (never goes back).
        self.current = MIN_WATERMARK
        self._arrived: set[int] = set()
        self._barrier: int | None = None
        self._ended: set[int] = set()

    def watermark(self, channel: int, value: int) -> int | None:
        """Record ``channel``'s watermark; the task's new watermark when it advanced, else ``None``."""
        if value > self._watermarks[channel]:
            self._watermarks[channel] = value
        low = min(self._watermarks)
        if low > self.current:
            self.current = low
            return low
        return None

    def barrier(self, channel: int, barrier: Barrier, gate: Gate) -> bool:
        """True once every channel delivered ``barrier`` (then the task checkpoints and forwards it);
        until then the channels that delivered it are blocked."""
        if self.channels == 1:
            return True
        if self._barrier is None:
            self._barrier = barrier.checkpoint_id
        elif self._barrier != barrier.checkpoint_id:  # pragma: no cover - channels are FIFO
            raise AssertionError(f"barrier {barrier.checkpoint_id} while aligning {self._barrier}")
        self._arrived.add(channel)
        if len(self._arrived) < self.channels:
            gate.block(channel)
            return False
        self._arrived.clear()
        self._barrier = None
        gate.unblock_all()
        return True

    def end(self, channel: int) -> bool:
        """True once every channel has ended."""
        self._ended.add(channel)
        return len(self._ended) == self.channels
