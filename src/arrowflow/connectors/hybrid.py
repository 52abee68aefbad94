"""A sequence of sources read one after another (Flink's HybridSource): :class:`HybridSource`.

``HybridSource([history, lambda end: KafkaSource(..., start_timestamp=end["state"]["max_mtime_ns"])])``
reads ``history`` (bounded) to its end, then switches to the source the function builds. Every entry
but the last must be bounded; the hybrid is bounded iff its last source is (for a factory last entry,
say so with ``bounded=``, default ``False``).

Entries. A :class:`~arrowflow.source.Source`, or a *factory*: a callable ``fn(end) -> Source``, called when
the previous source has finished (and again on a restart that resumes inside that source, with the same
``end``, so it must be deterministic). ``end`` is a JSON-serializable dict describing how the previous
source ended::

    {"index": k,                  # the previous source's position in the sequence
     "positions": {split_id: p},  # the final position of each of its splits
     "state": ...}                # previous_source.hybrid_end_state(splits, positions) if it has one

``hybrid_end_state(splits, positions) -> JSON`` is an optional, duck-typed hook a source may define
(FileSource returns ``{"files", "rows", "max_mtime_ns"}``); ``state`` is ``None`` without it.
A factory may also take no argument.

Splits and positions. The hybrid has a single split, ``"hybrid"``; its reader drives the active inner
source's readers round robin (and calls the inner source's ``discover`` every
``discovery_interval`` seconds when it has one). A position is::

    {"index": k, "end": end passed to source k's factory (or None),
     "splits": [inner Split JSON...], "positions": {inner split_id: position},
     "finished": [inner split_ids read to the end]}

Reopening from it rebuilds source ``k`` (calling its factory with ``end`` again), reopens its unfinished
splits from their positions, and so neither re-reads nor skips rows of replayable inner sources.

``commit(snapshot)`` forwards the positions to the inner readers of that snapshot's source; readers of
a source already left are committed their final positions and closed once a snapshot taken after the
switch is committed. ``read_batch`` never blocks longer than ``timeout`` (it shares it among inner
readers, each of which keeps the same contract).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from ..errors import ArrowflowError, ConfigurationError
from ..source import Position, Source, Split, SplitReader

__all__ = ["HybridReader", "HybridSource", "SourceFactory"]

#: ``fn(end) -> Source`` (or ``fn() -> Source``): builds the next source from how the previous one ended.
SourceFactory = Callable[..., Source]

_SPLIT_ID = "hybrid"


class HybridSource(Source):
    """Reads its sources in order, switching when one finishes (see the module docstring)."""

    name = "hybrid"

    def __init__(self, sources: Sequence[Source | SourceFactory], *, bounded: bool | None = None) -> None:
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence) or not sources:
            raise ConfigurationError(
                "sources must be a non-empty list of sources or factories", option="sources"
            )
        entries = list(sources)
        for i, entry in enumerate(entries):
            if not isinstance(entry, Source) and not callable(entry):
                raise ConfigurationError(
                    f"sources[{i}] must be a Source or a callable returning one, got {type(entry).__name__}",
                    option="sources",
                )
            if isinstance(entry, Source) and i < len(entries) - 1 and not entry.bounded:
                raise ConfigurationError(
                    f"sources[{i}] ({type(entry).__name__}) is unbounded; only the last source may be",
                    option="sources",
                )
        last = entries[-1]
        if isinstance(last, Source):
            if bounded is not None and bounded != last.bounded:
                raise ConfigurationError(
                    f"bounded={bounded} contradicts the last source (bounded={last.bounded})",
                    option="bounded",
                )
            self._bounded = last.bounded
        else:
            if bounded is not None and not isinstance(bounded, bool):
                raise ConfigurationError("bounded must be True, False or None", option="bounded")
            self._bounded = bool(bounded)
        self.entries = entries

    @property
    def bounded(self) -> bool:
        return self._bounded

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        """Every source entry is replayable. A factory cannot be inspected before it runs: the source
        it returns is taken to be replayable (returning a non-replayable one from a factory of an
        exactly-once pipeline is not detected)."""
        return all(e.replayable for e in self.entries if isinstance(e, Source))

    @property
    def schema(self) -> pa.Schema | None:
        first = self.entries[0]
        return first.schema if isinstance(first, Source) else None

    def plan(self) -> list[Split]:
        return [Split(split_id=_SPLIT_ID, bounded=self._bounded, params={"sources": len(self.entries)})]

    def open(self, split: Split, position: Position = None) -> HybridReader:
        if split.split_id != _SPLIT_ID:
            raise ArrowflowError(f"HybridSource has no split {split.split_id!r}")
        return HybridReader(self, split, position)

    def build(self, index: int, end: Mapping[str, Any] | None) -> Source:
        """Source number ``index``: the entry itself, or what its factory returns for ``end``."""
        entry = self.entries[index]
        if isinstance(entry, Source):
            return entry
        try:
            takes_arg = bool(inspect.signature(entry).parameters)
        except (TypeError, ValueError):
            takes_arg = True
        source = entry(end) if takes_arg else entry()
        if not isinstance(source, Source):
            raise ArrowflowError(
                f"the factory of sources[{index}] returned {type(source).__name__}, not a Source"
            )
        if index < len(self.entries) - 1 and not source.bounded:
            raise ArrowflowError(
                f"the factory of sources[{index}] built an unbounded source; only the last may be"
            )
        return source


class HybridReader(SplitReader):
    """Drives the active inner source's readers (see the module docstring for the position)."""

    def __init__(self, source: HybridSource, split: Split, position: Position = None) -> None:
        super().__init__(split, position)
        self.hybrid = source
        if position is not None and not (isinstance(position, Mapping) and "index" in position):
            raise ConfigurationError(f"not a HybridSource position: {position!r}", option="position")
        self._restore = position
        self.index = int(position["index"]) if position is not None else 0
        self._end: Any = position.get("end") if position is not None else None
        self._source: Source | None = None
        self._splits: dict[str, Split] = {}
        self._readers: dict[str, SplitReader] = {}
        self._positions: dict[str, Position] = {}
        self._finished: set[str] = set()
        self._retired: list[tuple[int, dict[str, SplitReader], dict[str, Position]]] = []
        self._next_discovery: float | None = None
        self._rr = 0
        self._done = False
        self._closed = False

    # -- inner source lifecycle --------------------------------------------------------------------

    def _activate(self) -> Source:
        if self._source is not None:
            return self._source
        source = self.hybrid.build(self.index, self._end)
        self._source = source
        restore = (
            self._restore if self._restore is not None and int(self._restore["index"]) == self.index else None
        )
        self._splits = {s.split_id: s for s in source.plan()}
        if restore is not None:
            for data in restore.get("splits", ()):
                s = Split.from_json(data)
                self._splits.setdefault(s.split_id, s)
            self._positions = dict(restore.get("positions") or {})
            self._finished = set(restore.get("finished") or ())
        for sid, s in self._splits.items():
            if sid not in self._finished:
                self._readers[sid] = source.open(s, self._positions.get(sid))
        if source.discovery_interval is not None:
            self._next_discovery = time.monotonic() + source.discovery_interval
        return source

    def _switch(self) -> None:
        """The active bounded source finished: remember how it ended and move to the next one."""
        assert self._source is not None
        positions = self._all_positions()
        hook = getattr(self._source, "hybrid_end_state", None)
        state = hook(list(self._splits.values()), positions) if callable(hook) else None
        end = {"index": self.index, "positions": positions, "state": state}
        self._retired.append((self.index, dict(self._readers), positions))
        self.index += 1
        self._end = end
        self._source = None
        self._splits, self._readers, self._positions, self._finished = {}, {}, {}, set()
        self._next_discovery = None

    def _all_positions(self) -> dict[str, Position]:
        positions = dict(self._positions)
        for sid, reader in self._readers.items():
            positions[sid] = reader.snapshot()
        return positions

    # -- SplitReader ---------------------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._done or self._closed:
            return None
        deadline = time.monotonic() + timeout
        while True:
            source = self._activate()
            self._restore_used()
            now = time.monotonic()
            if self._next_discovery is not None and now >= self._next_discovery:
                for s in source.discover(list(self._splits.values())):
                    if s.split_id not in self._splits:
                        self._splits[s.split_id] = s
                        self._readers[s.split_id] = source.open(s, None)
                self._next_discovery = now + (source.discovery_interval or 0.0)
            active = [sid for sid, r in self._readers.items() if not (r.split.bounded and r.finished)]
            if not active:
                if source.bounded:
                    if self.index == len(self.hybrid.entries) - 1:
                        self._done = True
                        return None
                    self._switch()
                    continue
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    time.sleep(min(remaining, 0.05))
                return None
            share = max(deadline - time.monotonic(), 0.0) / len(active)
            for i in range(len(active)):
                sid = active[(self._rr + i) % len(active)]
                reader = self._readers[sid]
                batch = reader.read_batch(max_rows, share)
                if reader.split.bounded and reader.finished:
                    self._finished.add(sid)
                    self._positions[sid] = reader.snapshot()
                if batch is not None and batch.num_rows:
                    self._rr = (self._rr + i + 1) % max(len(active), 1)
                    return batch if batch.num_rows <= max_rows else batch.slice(0, max_rows)
            if time.monotonic() >= deadline:
                return None

    def _restore_used(self) -> None:
        # The saved position applies to the first activation only.
        if self._restore is not None and self._source is not None:
            self._restore = None

    @property
    def finished(self) -> bool:
        return self._done

    def snapshot(self) -> Position:
        if self._source is None and self._restore is not None:
            return dict(self._restore)  # not read yet: exactly the position it was opened at
        positions = self._all_positions() if self._source is not None else {}
        return {
            "index": self.index,
            "end": self._end,
            "splits": [s.to_json() for s in self._splits.values()],
            "positions": positions,
            "finished": sorted(self._finished),
        }

    def commit(self, snapshot: Position) -> None:
        if not isinstance(snapshot, Mapping) or "index" not in snapshot:
            return
        index = int(snapshot["index"])
        still: list[tuple[int, dict[str, SplitReader], dict[str, Position]]] = []
        for old_index, readers, final in self._retired:
            if old_index < index:
                for sid, reader in readers.items():
                    reader.commit(final.get(sid))
                    reader.close()
            else:
                still.append((old_index, readers, final))
        self._retired = still
        if index == self.index:
            for sid, pos in (snapshot.get("positions") or {}).items():
                active = self._readers.get(sid)
                if active is not None:
                    active.commit(pos)

    def lag(self) -> int | None:
        lags = [lag for lag in (r.lag() for r in self._readers.values()) if lag is not None]
        return sum(lags) if lags else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _, readers, _final in self._retired:
            for reader in readers.values():
                reader.close()
        for reader in self._readers.values():
            reader.close()
        self._retired = []
