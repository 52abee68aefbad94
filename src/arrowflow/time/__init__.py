"""Event time: watermarks, windows and aggregates (Flink's ``WatermarkStrategy`` and window assigners).

``Pipeline(source, watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", "5s"))`` gives every
split of any source its own watermark generator; the pipeline's watermark is the minimum over active
splits and travels through the stages with the batches. ``.window(tumbling("1m"), by="user",
aggs=[agg.count(), agg.sum("amount")])`` aggregates incrementally and emits each window once the
watermark passes its end (plus ``allowed_lateness``). See :mod:`.watermarks`, :mod:`.windows` and
:mod:`.agg`. All times are int64 microseconds since the epoch (:mod:`._units`).

Importing this package imports pyarrow and numpy only.
"""

from __future__ import annotations

from . import agg
from ._late import LATE_ROWS, resolve_late_rows
from ._units import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    DurationLike,
    duration_us,
    event_time_bounds,
    event_time_us,
    to_datetime,
)
from .watermarks import (
    AlignmentGroup,
    TimestampAssigner,
    TimestampsLike,
    WatermarkStrategy,
    WatermarkTracker,
    lag_seconds,
)
from .windows import (
    AGG_KINDS,
    Agg,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    WindowAssigner,
    as_aggs,
    session,
    sliding,
    tumbling,
)

__all__ = [
    "AGG_KINDS",
    "LATE_ROWS",
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "Agg",
    "AlignmentGroup",
    "DurationLike",
    "SessionWindows",
    "SlidingWindows",
    "TimestampAssigner",
    "TimestampsLike",
    "TumblingWindows",
    "WatermarkStrategy",
    "WatermarkTracker",
    "WindowAssigner",
    "agg",
    "as_aggs",
    "duration_us",
    "event_time_bounds",
    "event_time_us",
    "lag_seconds",
    "resolve_late_rows",
    "session",
    "sliding",
    "to_datetime",
    "tumbling",
]
