"""Event time in the reader stage: per-split watermarks, late rows, their metrics and checkpoint state.

:class:`SourceEventTime` is what the runner's reader thread calls for every batch of every split. It
keeps a :class:`~arrowflow.time.WatermarkTracker` (one generator per split, combined as the minimum
over active splits), applies the pipeline's ``late_rows`` policy to rows behind the current watermark,
and tells the reader when a split is paused by watermark alignment. It is deliberately independent of
the runner's threads and queues: a runner with several reader threads can give each its own instance
over its share of the splits, or share one under a lock.

The runner shares one instance between its reader threads (``run(parallelism=N)``): every method
takes the instance's lock, the watermark is the minimum over *all* splits whichever thread reads them,
and each reader emits it into its own channel (:meth:`advance` returns it; the reader remembers what it
emitted). A checkpoint stores, per reader, the watermark that reader had emitted before its barrier
and the event-time state of its own splits (:meth:`snapshot_splits`); :func:`merge_snapshots` makes
the checkpoint's ``watermarks`` from them (the lowest watermark: what every operator had seen), in
the format :meth:`restore` reads.

Without a strategy every method is a cheap no-op, except :data:`~arrowflow.time.MAX_WATERMARK` at the
end of a bounded input, which the runner emits in any case (windows over a bounded source then fire at
the end even without watermarks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..error_policy import ErrorPolicy
from ..time import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    WatermarkStrategy,
    WatermarkTracker,
    lag_seconds,
    resolve_late_rows,
    to_datetime,
)
from .metrics import RunMetrics

__all__ = ["EventTime", "SourceEventTime", "merge_snapshots"]


class EventTime:
    """A pipeline's event-time settings: the strategy (or ``None``) and the ``late_rows`` policy."""

    def __init__(self, strategy: WatermarkStrategy | None = None, late_rows: Any = "keep") -> None:
        from ..errors import ConfigurationError

        if strategy is not None and not isinstance(strategy, WatermarkStrategy):
            raise ConfigurationError(
                f"watermarks must be an arrowflow.time.WatermarkStrategy, got {type(strategy).__name__}",
                option="watermarks",
            )
        if strategy is None and late_rows != "keep":
            raise ConfigurationError("late_rows needs watermarks= (a WatermarkStrategy)", option="late_rows")
        self.strategy = strategy
        self.late_rows = late_rows
        resolve_late_rows(late_rows)  # fail at construction, naming the option

    def __repr__(self) -> str:
        return f"EventTime({self.strategy!r}, late_rows={self.late_rows!r})"


class SourceEventTime:
    """The reader threads' event time (see the module docstring). Thread-safe (one lock)."""

    def __init__(self, config: EventTime | None, metrics: RunMetrics) -> None:
        self.strategy = config.strategy if config is not None else None
        self.policy: ErrorPolicy | None = (
            resolve_late_rows(config.late_rows, name="late rows") if config is not None else None
        )
        self.metrics = metrics
        self.tracker = WatermarkTracker(self.strategy) if self.strategy is not None else None
        self._lock = threading.RLock()

    @property
    def enabled(self) -> bool:
        return self.tracker is not None

    @property
    def aligned(self) -> bool:
        """True when the strategy has watermark alignment (pauses are decided after every batch)."""
        return self.strategy is not None and self.strategy.max_drift_us is not None

    def end_of_input(self) -> None:
        """The bounded input was read to its end: the watermark is final (:data:`MAX_WATERMARK`)."""
        if self.tracker is not None:
            with self._lock:
                self.tracker.current = MAX_WATERMARK
                self.metrics.watermark = MAX_WATERMARK

    def open(self) -> None:
        if self.tracker is not None:
            self.tracker.open()

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()

    def add_split(self, split_id: str) -> None:
        if self.tracker is not None:
            with self._lock:
                self.tracker.add_split(split_id)

    def finish_split(self, split_id: str) -> None:
        if self.tracker is not None:
            with self._lock:
                self.tracker.finish_split(split_id)

    def paused(self, split_id: str) -> bool:
        if self.tracker is None:
            return False
        with self._lock:
            return self.tracker.paused(split_id)

    def on_batch(self, split_id: str, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        """Advance ``split_id``'s watermark with ``batch``; return what remains after the late policy."""
        if self.tracker is None:
            return batch
        with self._lock:
            return self._on_batch(split_id, batch)

    def _on_batch(self, split_id: str, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        tracker = self.tracker
        assert tracker is not None
        assigner = tracker.strategy.assigner
        raw = assigner.raw(batch)
        bounds = assigner.bounds(raw)
        watermark = tracker.current
        late_possible = raw.null_count > 0 or (
            watermark > MIN_WATERMARK and bounds is not None and bounds[0] < watermark
        )
        tracker.observe(split_id, bounds)
        if not late_possible:
            return batch
        us = assigner.micros_of(raw)  # not micros(batch): a function assigner runs once per batch
        late = pc.fill_null(pc.less(us, pa.scalar(watermark, pa.int64())), True)  # null event time: late
        n_late = pc.sum(late).as_py() or 0
        if not n_late:
            return batch
        self.metrics.late_rows += n_late
        if self.policy is None:  # keep
            return batch
        reason = pc.if_else(
            us.is_null(),
            pa.scalar("null event time"),
            pa.scalar(f"late row: event time before the watermark {to_datetime(watermark)}"),
        )
        self.policy.handle(batch.filter(late), reason.filter(late))
        kept = batch.filter(pc.invert(late))
        return kept if kept.num_rows else None

    def advance(self) -> int | None:
        """Recompute the pipeline watermark (idleness and alignment included) and return it (``None``
        without a strategy). A reader emits it when it is above what it emitted last."""
        if self.tracker is None:
            return None
        with self._lock:
            moved = self.tracker.advance()
            if moved is not None:
                self.metrics.watermark = moved
            return self.tracker.current

    def flush(self) -> None:
        """Make the late rows handed to a dead-letter sink durable (before a checkpoint)."""
        if self.policy is not None:
            with self._lock:
                self.policy.flush()

    def update_metrics(self) -> None:
        """Per-split watermarks and event-time lags (a new dict each time: readers never see it change)."""
        tracker = self.tracker
        if tracker is None:
            return
        now = time.time()
        with self._lock:
            watermarks = {sid: tracker.split_watermark(sid) for sid in tracker.splits}
        self.metrics.split_watermarks = watermarks
        self.metrics.split_event_time_lag = {sid: lag_seconds(w, now) for sid, w in watermarks.items()}

    def snapshot_splits(self, split_ids: Iterable[str], watermark: int) -> dict[str, Any] | None:
        """One reader's part of a checkpoint: ``watermark`` (what it emitted before its barrier) and
        the event-time state of its splits ``split_ids`` (``None`` without a strategy)."""
        if self.tracker is None:
            return None
        with self._lock:
            state = self.tracker.snapshot()
        wanted = set(split_ids)
        return {
            "watermark": watermark,
            "splits": {sid: ts for sid, ts in state["splits"].items() if sid in wanted},
        }

    def restore(self, snapshot: Mapping[str, Any] | None) -> None:
        if self.tracker is not None and snapshot:
            with self._lock:
                self.tracker.restore(snapshot)
                self.metrics.watermark = self.tracker.current

    @property
    def current(self) -> int:
        """The pipeline watermark (``MIN_WATERMARK`` before any, or without a strategy)."""
        return self.tracker.current if self.tracker is not None else MIN_WATERMARK


def merge_snapshots(parts: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """The checkpoint's event-time state from the readers' parts (:meth:`SourceEventTime.snapshot_splits`):
    the lowest of their watermarks and every split's state (empty without a strategy)."""
    present = [p for p in parts if p]
    if not present:
        return {}
    splits: dict[str, Any] = {}
    for p in present:
        splits.update(p.get("splits", {}))
    return {"watermark": min(int(p["watermark"]) for p in present), "splits": splits}
