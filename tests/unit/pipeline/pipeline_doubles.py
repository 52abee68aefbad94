"""In-process test doubles of external systems for the pipeline unit tests.

* :class:`IdSource` - replayable id ranges per split (position = next id), optionally unbounded,
  slow, failing, with discovery; it records every ``open`` and ``commit`` (the "upstream" view).
* :class:`Upstream` / :class:`TxSink` - a transactional external store (staged -> pending -> committed)
  and a two-phase sink writing to it; a new sink object over the same ``Upstream`` is a restarted
  process.
* :class:`CountingSink` - a plain sink recording writes and flushes, with optional slowness/failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from arrowflow import Sink, Source, Split, SplitReader, TwoPhaseSink

SCHEMA = pa.schema([("id", pa.int64())])


def ids_batch(start: int, stop: int) -> pa.RecordBatch:
    return pa.record_batch([pa.array(np.arange(start, stop, dtype=np.int64))], schema=SCHEMA)


def all_ids(batches: Sequence[pa.RecordBatch]) -> np.ndarray:
    if not batches:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate([b.column("id").to_numpy() for b in batches]))


class IdReader(SplitReader):
    def __init__(self, split: Split, position: Any, source: IdSource) -> None:
        super().__init__(split, position)
        self.src = source
        self.end: int | None = split.params.get("end")
        self.next = int(split.params["start"]) if position is None else int(position)
        self.closed = False

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self.src.fail_after is not None and self.src.read_batches >= self.src.fail_after:
            raise RuntimeError("source exploded")
        if self.src.delay:
            time.sleep(min(self.src.delay, timeout))
        if self.finished:
            return None
        stop = self.next + min(max_rows, self.src.batch_rows)
        if self.end is not None:
            stop = min(stop, self.end)
        batch = ids_batch(self.next, stop)
        self.next = stop
        self.src.read_batches += 1
        return batch

    @property
    def finished(self) -> bool:
        return self.end is not None and self.next >= self.end

    def snapshot(self) -> Any:
        return self.next

    def commit(self, snapshot: Any) -> None:
        if self.src.on_commit is not None:
            self.src.on_commit(self.split.split_id, snapshot)
        self.src.commits.append((self.split.split_id, snapshot))

    def lag(self) -> int | None:
        return None if self.end is None else self.end - self.next

    def close(self) -> None:
        self.closed = True


class IdSource(Source):
    """Splits ``{split_id: (start, end_or_None)}``; a position is the next id of the split."""

    name = "ids"
    replayable = True

    def __init__(
        self,
        ranges: dict[str, tuple[int, int | None]],
        *,
        batch_rows: int = 100,
        delay: float = 0.0,
        fail_after: int | None = None,
        discovered: dict[str, tuple[int, int | None]] | None = None,
        discovery_interval: float | None = None,
    ) -> None:
        self.ranges = ranges
        self.batch_rows = batch_rows
        self.delay = delay
        self.fail_after = fail_after
        self.discovered = discovered or {}
        self.discovery_interval = discovery_interval
        self.read_batches = 0
        self.opened: list[tuple[str, Any]] = []
        self.commits: list[tuple[str, Any]] = []
        self.on_commit: Callable[[str, Any], None] | None = None
        self.readers: list[IdReader] = []

    @property
    def bounded(self) -> bool:
        return all(end is not None for _, end in self.ranges.values())

    @staticmethod
    def _split(sid: str, rng: tuple[int, int | None]) -> Split:
        start, end = rng
        params: dict[str, Any] = {"start": start}
        if end is not None:
            params["end"] = end
        return Split(split_id=sid, bounded=end is not None, params=params)

    def plan(self) -> list[Split]:
        return [self._split(sid, rng) for sid, rng in self.ranges.items()]

    def discover(self, known: Sequence[Split]) -> list[Split]:
        ids = {s.split_id for s in known}
        return [self._split(sid, rng) for sid, rng in self.discovered.items() if sid not in ids]

    def open(self, split: Split, position: Any = None) -> IdReader:
        self.opened.append((split.split_id, position))
        reader = IdReader(split, position, self)
        self.readers.append(reader)
        return reader


@dataclass
class Upstream:
    """The external transactional system: what is pending (prepared) and what is visible."""

    pending: dict[str, list[pa.RecordBatch]] = field(default_factory=dict)
    committed: list[pa.RecordBatch] = field(default_factory=list)
    committed_names: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class TxSink(TwoPhaseSink):
    """A two-phase sink over :class:`Upstream`. ``fail_commit_at`` makes the n-th commit raise."""

    name = "tx"

    def __init__(self, upstream: Upstream, *, fail_commit_at: int | None = None) -> None:
        self.up = upstream
        self.staged: list[pa.RecordBatch] = []
        self.prepared = 0
        self.commits = 0
        self.aborted = 0
        self.recovered: list[list[Any]] = []
        self.fail_commit_at = fail_commit_at

    def write(self, batch: pa.RecordBatch) -> None:
        self.staged.append(batch)

    def prepare_commit(self) -> list[Any]:
        if not self.staged:
            return []
        self.prepared += 1
        name = f"txn-{id(self)}-{self.prepared}"
        with self.up.lock:
            self.up.pending[name] = self.staged
        self.staged = []
        return [name]

    def commit(self, committables: Sequence[Any]) -> None:
        self.commits += 1
        if self.fail_commit_at is not None and self.commits == self.fail_commit_at:
            raise ConnectionError("commit failed")
        with self.up.lock:
            for name in committables:
                if name in self.up.committed_names:
                    continue
                self.up.committed.extend(self.up.pending.pop(name))
                self.up.committed_names.add(name)

    def abort(self) -> None:
        self.aborted += 1
        self.staged = []

    def recover(self, committables: Sequence[Any]) -> None:
        self.recovered.append(list(committables))
        self.commit(committables)
        with self.up.lock:
            self.up.pending.clear()  # prepared by a run that died before its checkpoint


class CountingSink(Sink):
    """Records batches and flushes; ``delay`` slows each write, ``fail_at`` makes the n-th write raise."""

    name = "counting"

    def __init__(self, *, delay: float = 0.0, fail_at: int | None = None, idempotent: bool = False) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.flushes = 0
        self.delay = delay
        self.fail_at = fail_at
        self.idempotent = idempotent
        self.on_write: Callable[[pa.RecordBatch], None] | None = None
        self.sink_metrics: dict[str, int] = {}

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fail_at is not None and len(self.batches) + 1 >= self.fail_at:
            raise OSError("disk on fire")
        if self.on_write is not None:
            self.on_write(batch)
        if self.delay:
            time.sleep(self.delay)
        self.batches.append(batch)

    def flush(self) -> None:
        self.flushes += 1

    def metrics(self) -> dict[str, int]:
        return dict(self.sink_metrics)

    @property
    def ids(self) -> np.ndarray:
        return all_ids(self.batches)
