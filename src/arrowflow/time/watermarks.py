"""Watermarks (Flink's ``WatermarkStrategy``): per-split generators, idleness, alignment, the combined value.

A watermark ``W`` is a promise about event time: *no row with an event time before* ``W`` *is still
expected*. A row with event time ``< W`` is **late**. A window ``[start, end)`` is complete once
``W >= end``. (Flink's watermark is one microsecond lower with "late" meaning ``<=``; the rows and
windows it calls late or complete are the same.)

* :class:`WatermarkStrategy` says how to read a row's event time (a column, or a function of the batch)
  and how far rows may arrive out of order: ``bounded_out_of_orderness(ts, max_delay)`` gives, per
  split, ``W = max(event time seen) - max_delay``; ``monotonous(ts)`` is the same with no delay.
  ``with_idleness(timeout)`` excludes a split that produced nothing for ``timeout`` from the minimum
  until it produces again; ``with_alignment(group, max_drift)`` pauses reading a split whose watermark
  is more than ``max_drift`` ahead of the slowest split of ``group`` (FLIP-182/217).
* :class:`WatermarkTracker` keeps one generator per split and combines them: the pipeline watermark is
  the minimum over active splits (idle and finished splits excluded; a split that
  has produced nothing yet holds it at :data:`MIN_WATERMARK` until it is idle). When every split is
  idle it is the lowest watermark among the idle splits that have produced rows (Flink would hold it:
  then the windows of a stream that went quiet never close); once every split has finished it is the
  highest final watermark among them. It never goes backwards. Per batch it does two scalar
  comparisons: the batch's min and max event time come from one ``pc.min_max`` (see
  :func:`~arrowflow.time._units.event_time_bounds`).

The tracker is driven by one thread (the pipeline's reader); only the alignment groups, shared by the
pipelines of a process, take a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from .._arrays import to_arrow_array
from ..config import check_type
from ..errors import ConfigurationError
from ._units import MAX_WATERMARK, MIN_WATERMARK, DurationLike, duration_us, event_time_bounds, event_time_us

__all__ = [
    "AlignmentGroup",
    "TimestampAssigner",
    "TimestampsLike",
    "WatermarkStrategy",
    "WatermarkTracker",
    "lag_seconds",
]

#: A column name, or ``fn(batch) -> array`` of timestamps/dates/int64 epoch milliseconds (pyarrow,
#: numpy, polars or pandas), one per row.
TimestampsLike = str | Callable[[pa.RecordBatch], Any]


@dataclass(frozen=True)
class TimestampAssigner:
    """Reads the event time of every row of a batch: a column, or a function of the whole batch."""

    timestamps: TimestampsLike

    def __post_init__(self) -> None:
        if not (isinstance(self.timestamps, str) or callable(self.timestamps)):
            raise ConfigurationError(
                "timestamps must be a column name or a function batch -> timestamp array",
                option="timestamps",
            )

    @property
    def column(self) -> str | None:
        return self.timestamps if isinstance(self.timestamps, str) else None

    def describe(self) -> str:
        ts = self.timestamps
        return repr(ts) if isinstance(ts, str) else getattr(ts, "__qualname__", repr(ts))

    def raw(self, batch: pa.RecordBatch) -> pa.Array:
        """The event-time values as the batch (or the function) has them."""
        ts = self.timestamps
        if isinstance(ts, str):
            idx = batch.schema.get_field_index(ts)
            if idx < 0:
                raise KeyError(f"event time column {ts!r} is not in the batch ({batch.schema.names})")
            return batch.column(idx)
        return to_arrow_array(ts(batch), batch.num_rows, what=f"timestamp assigner {self.describe()}")

    def micros(self, batch: pa.RecordBatch) -> pa.Array:
        """Event times as int64 microseconds since the epoch (nulls kept)."""
        return self.micros_of(self.raw(batch))

    def micros_of(self, raw: pa.Array) -> pa.Array:
        """:meth:`micros` of values :meth:`raw` already returned: a caller that needs both the raw
        values and the microseconds reads the column (or calls the function) once per batch."""
        return event_time_us(raw, f"event time {self.describe()}")

    def bounds(self, raw: pa.Array) -> tuple[int, int] | None:
        """``(min, max)`` event time of ``raw`` in microseconds, or ``None`` when every value is null."""
        return event_time_bounds(raw, f"event time {self.describe()}")


@dataclass(frozen=True)
class WatermarkStrategy:
    """How event time and watermarks are made; build with the class methods (see the module docstring).

    ``max_delay``/``idleness``/``max_drift`` are durations: ``timedelta``, seconds, or ``"5s"``-style
    strings. The instance is immutable: ``with_idleness``/``with_alignment`` return new strategies.
    """

    assigner: TimestampAssigner
    max_delay_us: int = 0
    idleness_us: int | None = None
    alignment_group: str | None = None
    max_drift_us: int | None = None

    @classmethod
    def bounded_out_of_orderness(
        cls, timestamps: TimestampsLike, max_delay: DurationLike
    ) -> WatermarkStrategy:
        """Rows may arrive up to ``max_delay`` behind the latest event time of their split."""
        return cls(TimestampAssigner(timestamps), duration_us(max_delay, "max_delay"))

    @classmethod
    def monotonous(cls, timestamps: TimestampsLike) -> WatermarkStrategy:
        """Event times never decrease within a split (``bounded_out_of_orderness`` with no delay)."""
        return cls(TimestampAssigner(timestamps), 0)

    def with_timestamps(self, timestamps: TimestampsLike) -> WatermarkStrategy:
        """The same strategy reading event time from another column or function."""
        return replace(self, assigner=TimestampAssigner(timestamps))

    def with_idleness(self, timeout: DurationLike) -> WatermarkStrategy:
        """A split that produced no row for ``timeout`` stops holding the watermark back until it does."""
        return replace(self, idleness_us=duration_us(timeout, "idleness", allow_zero=False))

    def with_alignment(self, group: str, max_drift: DurationLike) -> WatermarkStrategy:
        """Pause splits more than ``max_drift`` ahead of the slowest split of ``group``.

        The group spans every pipeline of this process whose strategy names it (and, within a pipeline,
        all of its splits). A paused split is not read (its rows stay upstream, nothing is dropped) and
        never counts as idle; it resumes as soon as the slowest split catches up.
        """
        check_type("group", group, str)
        if not group:
            raise ConfigurationError("alignment group must be a non-empty name", option="group")
        return replace(self, alignment_group=group, max_drift_us=duration_us(max_drift, "max_drift"))

    @property
    def timestamps(self) -> TimestampsLike:
        return self.assigner.timestamps

    def watermark_for(self, max_event_time: int) -> int:
        """A split's watermark after it has seen ``max_event_time``."""
        return max(max_event_time - self.max_delay_us, MIN_WATERMARK + 1)


class AlignmentGroup:
    """The watermarks of every member (one per running pipeline) of a named group, in this process."""

    _groups: dict[str, AlignmentGroup] = {}
    _lock = threading.Lock()

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[int, int] = {}

    @classmethod
    def join(cls, name: str, member: int) -> AlignmentGroup:
        with cls._lock:
            group = cls._groups.setdefault(name, AlignmentGroup(name))
            group.members[member] = MIN_WATERMARK
            return group

    def leave(self, member: int) -> None:
        with AlignmentGroup._lock:
            self.members.pop(member, None)
            if not self.members:
                AlignmentGroup._groups.pop(self.name, None)

    def report(self, member: int, watermark: int) -> int:
        """Record ``member``'s watermark; return the group's minimum."""
        with AlignmentGroup._lock:
            self.members[member] = watermark
            return min(self.members.values())


@dataclass
class _Split:
    max_ts: int | None = None
    last_active: float = 0.0
    idle: bool = False
    finished: bool = False
    paused: bool = False

    def watermark(self, strategy: WatermarkStrategy) -> int:
        return MIN_WATERMARK if self.max_ts is None else strategy.watermark_for(self.max_ts)


@dataclass
class WatermarkTracker:
    """Per-split watermark generators and their combination (see the module docstring).

    Call :meth:`add_split` for every split opened, :meth:`observe` for every batch's event-time bounds,
    :meth:`finish_split` when a bounded split ends, and :meth:`advance` to get the new pipeline
    watermark when it moved (``None`` otherwise). :meth:`snapshot`/:meth:`restore` carry the state
    through checkpoints (JSON).
    """

    strategy: WatermarkStrategy
    clock: Callable[[], float] = time.monotonic
    splits: dict[str, _Split] = field(default_factory=dict)
    current: int = MIN_WATERMARK
    _group: AlignmentGroup | None = None
    _group_min: int = MIN_WATERMARK

    def open(self) -> None:
        """Join the alignment group (if any). Pair with :meth:`close`."""
        if self.strategy.alignment_group is not None and self._group is None:
            self._group = AlignmentGroup.join(self.strategy.alignment_group, id(self))

    def close(self) -> None:
        if self._group is not None:
            self._group.leave(id(self))
            self._group = None

    def add_split(self, split_id: str) -> None:
        state = self.splits.get(split_id)
        if state is None:
            self.splits[split_id] = _Split(last_active=self.clock())
        else:  # restored from a checkpoint: reopened now
            state.last_active = self.clock()
            state.idle = state.finished = state.paused = False

    def finish_split(self, split_id: str) -> None:
        state = self.splits.get(split_id)
        if state is not None:
            state.finished = True

    def observe(self, split_id: str, bounds: tuple[int, int] | None) -> None:
        """A batch of ``split_id`` with event times ``bounds`` (``(min, max)``; ``None``: all null)."""
        state = self.splits[split_id]
        state.last_active = self.clock()
        state.idle = False
        if bounds is not None and (state.max_ts is None or bounds[1] > state.max_ts):
            state.max_ts = bounds[1]

    def split_watermark(self, split_id: str) -> int:
        return self.splits[split_id].watermark(self.strategy)

    def advance(self) -> int | None:
        """Recompute idleness, pauses and the combined watermark; the new value if it moved up."""
        strategy, now = self.strategy, self.clock()
        active: list[int] = []
        finished: list[int] = []
        idle: list[int] = []
        for state in self.splits.values():
            if state.finished:
                finished.append(state.watermark(strategy))
                continue
            if strategy.idleness_us is not None and not state.paused:
                state.idle = (now - state.last_active) * 1e6 >= strategy.idleness_us
            if not state.idle:
                active.append(state.watermark(strategy))
            elif state.max_ts is not None:
                idle.append(state.watermark(strategy))
        if active:
            combined = min(active)
        elif finished and len(finished) == len(self.splits):
            combined = max(finished)
        else:
            # Every split is idle (or finished): the slowest idle split that has produced rows. (Flink
            # holds the watermark here, so windows of a stream that went quiet would never close.)
            combined = min(idle) if idle else self.current
        moved = combined > self.current
        if moved:
            self.current = combined
        self._align(now)
        return self.current if moved else None

    def _align(self, now: float) -> None:
        drift = self.strategy.max_drift_us
        if drift is None:
            return
        local_min = self.current
        group_min = self._group.report(id(self), local_min) if self._group is not None else local_min
        self._group_min = group_min
        limit = group_min + drift if group_min > MIN_WATERMARK else None
        for state in self.splits.values():
            paused = limit is not None and not state.finished and state.watermark(self.strategy) > limit
            if state.paused and not paused:
                state.last_active = now  # resumed: idleness counts from now, not from before the pause
            state.paused = paused

    def paused(self, split_id: str) -> bool:
        """True while alignment holds ``split_id`` back (it must not be read)."""
        state = self.splits.get(split_id)
        return state is not None and state.paused

    def snapshot(self) -> dict[str, Any]:
        return {
            "watermark": self.current,
            "splits": {sid: s.max_ts for sid, s in self.splits.items() if s.max_ts is not None},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self.current = int(snapshot.get("watermark", MIN_WATERMARK))
        for sid, max_ts in dict(snapshot.get("splits", {})).items():
            self.splits.setdefault(sid, _Split(last_active=self.clock())).max_ts = int(max_ts)


def lag_seconds(watermark: int | None, wall_clock: float | None = None) -> float | None:
    """Event-time lag: wall-clock time minus ``watermark``, in seconds (``None`` before any / at the end)."""
    if watermark is None or watermark in (MIN_WATERMARK, MAX_WATERMARK):
        return None
    now = time.time() if wall_clock is None else wall_clock
    return now - watermark / 1e6
