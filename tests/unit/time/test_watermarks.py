"""Watermark generators and their combination (arrowflow.time), checked against a small model."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow import ConfigurationError, WatermarkStrategy
from arrowflow.time import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    AlignmentGroup,
    WatermarkTracker,
    duration_us,
    event_time_bounds,
    event_time_us,
    lag_seconds,
    to_datetime,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- units ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "us"),
    [
        ("500ms", 500_000),
        ("10s", 10_000_000),
        ("1m", 60_000_000),
        ("1h30m", 5_400_000_000),
        ("1d", 86_400_000_000),
        ("1w", 604_800_000_000),
        ("2000ns", 2),
        ("7us", 7),
        (5, 5_000_000),
        (0.25, 250_000),
        (timedelta(minutes=2, microseconds=3), 120_000_003),
    ],
)
def test_durations(value: object, us: int) -> None:
    assert duration_us(value, "d") == us


@pytest.mark.parametrize("value", ["1mo", "1y", "", "5", "1500ns", "-1s", -1, True, None, float("inf"), [1]])
def test_bad_durations_name_the_option(value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        duration_us(value, "max_delay")
    assert info.value.option == "max_delay"


@given(
    st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=1, max_size=50),
    st.sampled_from(["s", "ms", "us", "ns", "date32", "date64", "int64"]),
)
@settings(max_examples=200, deadline=None)
def test_event_time_us_and_bounds(values: list[int | None], unit: str) -> None:
    if unit == "date32":
        arr = pa.array([None if v is None else v % 100_000 for v in values], pa.date32())
        scale = 86_400_000_000
        expect = [None if v is None else (v % 100_000) * scale for v in values]
    elif unit == "date64":
        arr = pa.array([None if v is None else (v % 100_000) * 86_400_000 for v in values], pa.date64())
        expect = [None if v is None else (v % 100_000) * 86_400_000_000 for v in values]
    elif unit == "int64":
        arr = pa.array(values, pa.int64())
        expect = [None if v is None else v * 1000 for v in values]
    else:
        arr = pa.array(values, pa.timestamp(unit, tz="Europe/Paris" if unit == "ms" else None))
        factor = {"s": 1_000_000, "ms": 1000, "us": 1}.get(unit)
        expect = [None if v is None else (v * factor if factor else v // 1000) for v in values]
    assert event_time_us(arr).to_pylist() == expect
    present = [v for v in expect if v is not None]
    assert event_time_bounds(arr) == ((min(present), max(present)) if present else None)


def test_event_time_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="timestamp, date or int64"):
        event_time_us(pa.array(["2026-01-01"]), "ts")


def test_to_datetime_and_lag() -> None:
    assert to_datetime(0) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert to_datetime(MIN_WATERMARK) is None and to_datetime(MAX_WATERMARK) is None
    assert lag_seconds(10_000_000, wall_clock=12.5) == pytest.approx(2.5)
    assert lag_seconds(None) is None and lag_seconds(MAX_WATERMARK) is None


def test_assigner_reads_a_column_or_a_function() -> None:
    batch = pa.record_batch({"d": pa.array([date(2026, 1, 2), date(2026, 1, 1)]), "x": [1, 2]})
    col = WatermarkStrategy.monotonous("d").assigner
    day = 86_400_000_000
    start = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000
    assert col.micros(batch).to_pylist() == [start + day, start]
    fn = WatermarkStrategy.monotonous(lambda b: np.array([5, 7], dtype=np.int64)).assigner
    assert fn.micros(batch).to_pylist() == [5000, 7000]
    with pytest.raises(KeyError, match="'nope'"):
        WatermarkStrategy.monotonous("nope").assigner.raw(batch)
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        WatermarkStrategy.monotonous(lambda b: [1, 2, 3]).assigner.raw(batch)
    with pytest.raises(ConfigurationError) as info:
        WatermarkStrategy.monotonous(3)  # type: ignore[arg-type]
    assert info.value.option == "timestamps"


# -- the tracker against a model -----------------------------------------------------------------------

# One step: ("batch", split, min offset, max offset) | ("tick", seconds) | ("finish", split)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.integers(0, 3), st.integers(-50, 50), st.integers(0, 200)),
        st.tuples(st.just("tick"), st.floats(0.0, 4.0)),
        st.tuples(st.just("finish"), st.integers(0, 3)),
    ),
    max_size=60,
)


@given(_steps, st.integers(0, 40), st.one_of(st.none(), st.floats(0.5, 3.0)))
@settings(max_examples=300, deadline=None)
def test_watermark_never_goes_backwards_and_is_the_min_over_active_splits(
    steps: list[tuple], delay: int, idleness: float | None
) -> None:
    strategy = WatermarkStrategy.bounded_out_of_orderness("ts", timedelta(microseconds=delay))
    if idleness is not None:
        strategy = strategy.with_idleness(idleness)
    clock = FakeClock()
    tracker = WatermarkTracker(strategy, clock=clock)
    sids = [f"s{i}" for i in range(4)]
    for sid in sids:
        tracker.add_split(sid)
    # The model: per split max event time, last activity, finished.
    max_ts: dict[str, int | None] = dict.fromkeys(sids)
    active_at = dict.fromkeys(sids, clock.now)
    finished: set[str] = set()
    emitted: list[int] = []
    current = MIN_WATERMARK
    t = 0
    for step in steps:
        if step[0] == "batch":
            sid = sids[step[1]]
            if sid in finished:
                continue
            t += step[3]
            lo, hi = t + step[2] - step[3], t
            tracker.observe(sid, (min(lo, hi), hi))
            max_ts[sid] = hi if max_ts[sid] is None else max(max_ts[sid], hi)  # type: ignore[type-var]
            active_at[sid] = clock.now
        elif step[0] == "tick":
            clock.now += step[1]
        else:
            tracker.finish_split(sids[step[1]])
            finished.add(sids[step[1]])
        got = tracker.advance()
        marks = {s: MIN_WATERMARK if max_ts[s] is None else max_ts[s] - delay for s in sids}

        def idle(s: str) -> bool:  # the tracker's own boundary: whole microseconds of silence
            return idleness is not None and (clock.now - active_at[s]) * 1e6 >= strategy.idleness_us  # type: ignore[operator]

        active = [marks[s] for s in sids if s not in finished and not idle(s)]
        idle_with_rows = [marks[s] for s in sids if s not in finished and max_ts[s] is not None and idle(s)]
        if active:
            model = min(active)
        elif len(finished) == len(sids):
            model = max(marks[s] for s in sids)
        elif idle_with_rows:
            model = min(idle_with_rows)
        else:
            model = current
        expect = max(current, model)
        assert tracker.current == expect
        assert got == (expect if expect > current else None)
        if got is not None:
            emitted.append(got)
        current = expect
    assert emitted == sorted(set(emitted)), "a watermark went backwards or repeated"


def test_an_idle_split_stops_holding_the_watermark_until_it_produces_again() -> None:
    clock = FakeClock()
    tracker = WatermarkTracker(WatermarkStrategy.monotonous("ts").with_idleness("2s"), clock=clock)
    tracker.add_split("busy")
    tracker.add_split("quiet")
    tracker.observe("busy", (100, 1_000))
    assert tracker.advance() is None  # "quiet" has produced nothing: it holds the watermark at MIN
    clock.now += 2.0
    tracker.observe("busy", (1_000, 5_000))
    assert tracker.advance() == 5_000  # "quiet" is idle now
    tracker.observe("quiet", (3_000, 3_000))  # back, behind the watermark: active again ...
    tracker.observe("busy", (6_000, 9_000))
    assert tracker.advance() is None  # ... and holds the watermark (which never goes back)
    assert tracker.current == 5_000
    tracker.observe("quiet", (9_500, 9_500))
    assert tracker.advance() == 9_000


def test_without_idleness_a_silent_split_holds_the_watermark() -> None:
    clock = FakeClock()
    tracker = WatermarkTracker(WatermarkStrategy.monotonous("ts"), clock=clock)
    tracker.add_split("busy")
    tracker.add_split("quiet")
    for i in range(10):
        clock.now += 100
        tracker.observe("busy", (i * 1000, i * 1000 + 999))
        assert tracker.advance() is None
    assert tracker.current == MIN_WATERMARK


def test_alignment_pauses_the_split_ahead_and_resumes_it() -> None:
    clock = FakeClock()
    strategy = WatermarkStrategy.monotonous("ts").with_alignment("g-local", timedelta(microseconds=100))
    tracker = WatermarkTracker(strategy, clock=clock)
    tracker.open()
    try:
        tracker.add_split("fast")
        tracker.add_split("slow")
        tracker.observe("fast", (0, 1_000))
        tracker.observe("slow", (0, 10))
        tracker.advance()
        assert tracker.current == 10
        assert tracker.paused("fast") and not tracker.paused("slow")
        tracker.observe("slow", (10, 950))
        tracker.advance()
        assert not tracker.paused("fast")  # 1000 - 950 <= 100: resumed
        tracker.observe("fast", (1_000, 1_200))
        tracker.advance()
        assert tracker.paused("fast") and not tracker.paused("slow")
    finally:
        tracker.close()
    assert "g-local" not in AlignmentGroup._groups


def test_a_paused_split_never_counts_as_idle() -> None:
    clock = FakeClock()
    strategy = WatermarkStrategy.monotonous("ts").with_idleness("1s").with_alignment("g-idle", "1ms")
    tracker = WatermarkTracker(strategy, clock=clock)
    tracker.add_split("fast")
    tracker.add_split("slow")
    tracker.observe("fast", (0, 1_000_000))
    tracker.observe("slow", (0, 10))
    tracker.advance()
    assert tracker.paused("fast")
    clock.now += 10  # "fast" is not read while paused: that is not idleness
    tracker.observe("slow", (10, 20))
    tracker.advance()
    assert tracker.current == 20 and tracker.paused("fast")


def test_alignment_group_spans_pipelines_of_the_process() -> None:
    clock = FakeClock()
    strategy = WatermarkStrategy.monotonous("ts").with_alignment("g-shared", "1ms")
    a, b = WatermarkTracker(strategy, clock=clock), WatermarkTracker(strategy, clock=clock)
    a.open()
    b.open()
    try:
        a.add_split("x")
        b.add_split("y")
        a.observe("x", (0, 5_000))
        b.observe("y", (0, 1_000))
        b.advance()
        a.advance()
        assert a.paused("x") and not b.paused("y")  # 5000 > min(5000, 1000) + 1000
        b.observe("y", (1_000, 4_500))
        b.advance()
        a.advance()
        assert not a.paused("x")
    finally:
        a.close()
        b.close()


def test_snapshot_and_restore() -> None:
    clock = FakeClock()
    strategy = WatermarkStrategy.bounded_out_of_orderness("ts", timedelta(microseconds=5))
    t1 = WatermarkTracker(strategy, clock=clock)
    for sid in ("a", "b"):
        t1.add_split(sid)
    t1.observe("a", (0, 100))
    t1.observe("b", (0, 50))
    assert t1.advance() == 45
    snap = t1.snapshot()
    assert snap == {"watermark": 45, "splits": {"a": 100, "b": 50}}
    t2 = WatermarkTracker(strategy, clock=clock)
    t2.restore(snap)
    for sid in ("a", "b"):
        t2.add_split(sid)
    assert t2.current == 45
    t2.observe("b", (0, 30))  # replayed rows: the split's watermark does not go back
    assert t2.advance() is None and t2.split_watermark("b") == 45


def test_when_every_split_is_idle_the_slowest_one_with_rows_sets_the_watermark() -> None:
    clock = FakeClock()
    tracker = WatermarkTracker(WatermarkStrategy.monotonous("ts").with_idleness("1s"), clock=clock)
    for sid in ("a", "b", "never"):
        tracker.add_split(sid)
    tracker.observe("a", (0, 700))
    tracker.observe("b", (0, 400))
    assert tracker.advance() is None  # "never" has produced nothing and is not idle yet
    clock.now += 1.0  # all three idle: "never" does not count, the slowest with rows does
    assert tracker.advance() == 400
    tracker.observe("b", (400, 900))  # b is back: it alone is active now
    assert tracker.advance() == 900


def test_progress_line_shows_the_watermark_lag_and_late_rows() -> None:
    from arrowflow.pipeline import RunMetrics
    from arrowflow.pipeline.progress import format_progress

    m = RunMetrics(rows=10, watermark=int((time.time() - 90) * 1e6), late_rows=3)
    text = format_progress(m, now=m.started + 1.0)
    assert "watermark 9" in text and "s behind" in text and "late 3" in text
    assert "watermark" not in format_progress(RunMetrics(watermark=MAX_WATERMARK), now=1e9)
