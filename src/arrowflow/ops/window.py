"""Windowed aggregation over event time or processing time: :class:`Window`.

Each batch is reduced at once to *partial aggregates*, one row per (key, window) present in it (one
pyarrow ``group_by`` over the batch, sliding windows first repeat each row once per window it falls in,
numpy only); partials are kept in a list and merged (another ``group_by``, with ``sum`` of counts and
sums, ``min`` of minimums, ...) when they outgrow the merged state, so the cost per row is constant
and no row is kept for the built-in aggregates. ``approx_distinct`` keeps HyperLogLog registers in long
form (:mod:`.hll`), ``apply`` keeps the rows of its columns until its window fires.

Firing. A window ``[start, end)`` is emitted once, when the watermark reaches ``end + allowed_lateness``
(``on_watermark``; processing-time windows use the wall clock, ``on_processing_time``), as rows
``(keys..., window_start, window_end, aggregates...)`` ordered by window start, then keys.
``window_start``/``window_end`` are ``timestamp[us]`` (with the event-time column's time zone).
The operator forwards ``watermark - allowed_lateness`` downstream: every row it emitted has
``window_end`` at or before that, every row it will emit after it.

Late rows. A row all of whose windows were already emitted (event time behind the watermark by more
than ``allowed_lateness``; for sessions, a session that would have ended by then) goes to ``late_rows``
(``"drop"``, counted in :attr:`Window.late_rows`; ``"fail"``; or a dead-letter sink). So does a row
with a null event time. A sliding-window row whose earlier windows were emitted still counts in its
later ones (as in Flink).

State. ``snapshot_state`` returns the merged partials (``partials``), the sketches (``hll<i>``), the
kept rows (``rows``) and the operator's watermark (``meta``) as Arrow tables; the pipeline writes them
as Arrow IPC files with each checkpoint, so windows survive a crash exactly once together with the
sink's output.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_choice
from ..errors import ConfigurationError
from ..time import MAX_WATERMARK, MIN_WATERMARK
from ..time._late import resolve_late_rows
from ..time._units import DurationLike, duration_us, to_datetime
from ..time.watermarks import TimestampAssigner, TimestampsLike
from ..time.windows import Agg, SessionWindows, SlidingWindows, TumblingWindows, WindowAssigner, as_aggs
from . import hll
from .base import Operator

__all__ = ["Window"]

_WS, _WE, _TS, _N = "__ws", "__we", "__ts", "__n"
_COUNT_ALL = pc.CountOptions(mode="all")
_COUNT_VALID = pc.CountOptions(mode="only_valid")
_KEEP_NULLS = pc.ScalarAggregateOptions(skip_nulls=False)
#: Merge the partials once they hold more rows than this and than the merged state.
_COMPACT_ROWS = 1 << 16
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Window(Operator):
    """Aggregate rows per key and window (see the module docstring).

    ``assigner``: :func:`~arrowflow.time.tumbling`, :func:`~arrowflow.time.sliding` or
    :func:`~arrowflow.time.session`. ``aggs``: a list of :mod:`arrowflow.time.agg` aggregates (or a
    mapping name -> aggregate). ``by``: key column(s) (none: one group). ``on``: the event-time column
    or ``fn(batch) -> timestamps`` (``time="event"``); ``time="processing"`` windows by arrival time.
    ``allowed_lateness``: how long after its end a window still takes rows before it is emitted.
    ``clock``: the wall clock of processing-time windows (seconds since the epoch; for tests).
    """

    name = "window"

    def __init__(
        self,
        assigner: WindowAssigner,
        aggs: Agg | Sequence[Agg] | Mapping[str, Agg],
        *,
        by: str | Sequence[str] = (),
        on: TimestampsLike | None = None,
        allowed_lateness: DurationLike = 0,
        late_rows: Any = "drop",
        time: str = "event",
        clock: Callable[[], float] = _time.time,
    ) -> None:
        if not isinstance(assigner, (TumblingWindows, SlidingWindows, SessionWindows)):
            raise ConfigurationError(
                "assigner must be arrowflow.time.tumbling(...), sliding(...) or session(...)",
                option="assigner",
            )
        self.assigner = assigner
        self.aggs = as_aggs(dict(aggs) if isinstance(aggs, Mapping) else aggs)
        self.by: tuple[str, ...] = (by,) if isinstance(by, str) else tuple(by)
        if not all(isinstance(c, str) for c in self.by):
            raise ConfigurationError("by must be a column name or a list of them", option="by")
        # Parallel subtasks: a key's windows live in the subtask owning the key (no key: subtask 0).
        self.key_columns = self.by
        self.time = check_choice("time", time, ("event", "processing"))
        self.clock = clock
        if self.time == "event":
            if on is None:
                raise ConfigurationError(
                    "an event-time window needs on= (the event-time column or function), or a pipeline "
                    "with watermarks=",
                    option="on",
                )
            self.assigner_ts: TimestampAssigner | None = TimestampAssigner(on)
        else:
            if on is not None:
                raise ConfigurationError("time='processing' windows take no on= column", option="on")
            self.assigner_ts = None
            self.timer_interval = 0.05
        self.lateness_us = duration_us(allowed_lateness, "allowed_lateness")
        self.late_policy = resolve_late_rows(late_rows, allow_keep=False, name="window late rows")
        reserved = {"window_start", "window_end", *self.by}
        clash = sorted(reserved & {a.output_name for a in self.aggs})
        if clash:
            raise ConfigurationError(f"aggregate names {clash} clash with key/window columns", option="aggs")
        self._sort_by_time = any(a.kind in ("first", "last") for a in self.aggs)
        self._hll_aggs = [i for i, a in enumerate(self.aggs) if a.kind == "approx_distinct"]
        self._raw_columns = sorted({c for a in self.aggs if a.kind == "apply" for c in a.columns})
        self._input_columns = sorted({c for a in self.aggs for c in a.input_columns} - set(self.by))
        self._tz: str | None = None
        self._reset()
        #: Rows handed to ``late_rows`` (behind the watermark, or with a null event time).
        self.late_rows = 0

    def _reset(self) -> None:
        self.watermark = MIN_WATERMARK
        self._parts: list[pa.Table] = []
        self._merged_rows = 0
        self._pending_rows = 0
        self._min_end: int | None = None
        self._hll: dict[int, list[pa.Table]] = {i: [] for i in self._hll_aggs}
        self._rows: list[pa.Table] = []

    # -- configuration helpers ---------------------------------------------------------------------

    @property
    def _size(self) -> int:
        a = self.assigner
        return a.size_us if not isinstance(a, SessionWindows) else 0

    def _threshold(self, watermark: int) -> int | None:
        """Windows ending at or before this have been (or are now) emitted; ``None``: none."""
        if watermark == MIN_WATERMARK:
            return None
        if watermark == MAX_WATERMARK:
            return _INT64_MAX
        return max(watermark - self.lateness_us, _INT64_MIN + 1)

    def forward_watermark(self, watermark: int) -> int:
        if watermark in (MIN_WATERMARK, MAX_WATERMARK):
            return watermark
        return max(watermark - self.lateness_us, MIN_WATERMARK + 1)

    # -- input -------------------------------------------------------------------------------------

    def _event_times(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray | None]:
        """``(int64 event times, validity mask or None)`` of every row."""
        if self.assigner_ts is None:
            return np.full(batch.num_rows, int(self.clock() * 1e6), dtype=np.int64), None
        raw = self.assigner_ts.raw(batch)
        if self._tz is None and pa.types.is_timestamp(raw.type) and raw.type.tz:
            self._tz = raw.type.tz
        us = self.assigner_ts.micros_of(raw)  # a function assigner runs once per batch
        if us.null_count:
            valid = us.is_valid().to_numpy(zero_copy_only=False)
            return us.fill_null(0).to_numpy(zero_copy_only=False), valid
        return us.to_numpy(zero_copy_only=False), None

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not batch.num_rows:
            return []
        missing = [c for c in (*self.by, *self._input_columns) if c not in batch.schema.names]
        if missing:
            raise KeyError(f"window: no column(s) {missing} in {batch.schema.names}")
        ts, valid = self._event_times(batch)
        # Processing time: a row's window is the current one, never one already emitted.
        threshold = self._threshold(self.watermark) if self.time == "event" else None
        if isinstance(self.assigner, SessionWindows):
            late = self._add_sessions(batch, ts, valid, threshold)
        else:
            late = self._add_fixed(batch, ts, valid, threshold)
        if late is not None and late.any():
            self._late(batch, late, ts, valid)
        return []

    def _late(
        self, batch: pa.RecordBatch, late: np.ndarray, ts: np.ndarray, valid: np.ndarray | None
    ) -> None:
        n = int(late.sum())
        self.late_rows += n
        if self.late_policy is None:  # pragma: no cover - 'keep' is refused at construction
            return
        rows = batch.filter(pa.array(late))
        wm = to_datetime(self.watermark)
        message = (
            f"late row: all its windows were emitted (watermark {wm}, allowed lateness {self.lateness_us} us)"
        )
        if valid is not None and not valid[late].all():
            null_ts = pa.array(~valid[late])
            errors = pc.if_else(null_ts, pa.scalar("null event time"), pa.scalar(message))
            self.late_policy.handle(rows, errors)
        else:
            self.late_policy.handle(rows, message)

    def _add_fixed(
        self, batch: pa.RecordBatch, ts: np.ndarray, valid: np.ndarray | None, threshold: int | None
    ) -> np.ndarray | None:
        a = self.assigner
        assert not isinstance(a, SessionWindows)
        size, slide, offset = a.size_us, a.slide_us, a.offset_us
        last_start = np.floor_divide(ts - offset, slide) * slide + offset
        late = None if valid is None else ~valid
        if threshold is not None:
            too_old = last_start + size <= threshold  # even the row's latest window was emitted
            late = too_old if late is None else (late | too_old)
        k = -(-size // slide)
        if k == 1:
            keep = None if late is None else ~late
            rows = None if keep is None or keep.all() else np.flatnonzero(keep)
            starts = last_start if rows is None else last_start[rows]
        else:
            base = np.arange(batch.num_rows, dtype=np.int64) if late is None else np.flatnonzero(~late)
            rows = np.repeat(base, k)
            starts = np.repeat(last_start[base], k) - np.tile(np.arange(k, dtype=np.int64) * slide, len(base))
            inside = starts + size > ts[rows]
            if threshold is not None:
                inside &= starts + size > threshold  # a window already emitted gets nothing more
            rows, starts = rows[inside], starts[inside]
        if rows is not None and not len(rows):
            return late
        sub = batch if rows is None else batch.take(pa.array(rows))
        sub_ts = ts if rows is None else ts[rows]
        self._add_rows(sub, sub_ts, starts, starts + size)
        return late

    # -- sessions ----------------------------------------------------------------------------------

    def _add_sessions(
        self, batch: pa.RecordBatch, ts: np.ndarray, valid: np.ndarray | None, threshold: int | None
    ) -> np.ndarray | None:
        a = self.assigner
        assert isinstance(a, SessionWindows)
        n = batch.num_rows
        late = np.zeros(n, dtype=bool) if valid is None else ~valid
        idx = np.flatnonzero(~late)
        if not len(idx):
            return late
        rows_batch = batch if len(idx) == n else batch.take(pa.array(idx))
        rts = ts[idx]
        state = self._merged()
        ns = 0 if state is None else state.num_rows
        if self.by:
            keys_rows = pa.Table.from_batches([rows_batch.select(list(self.by))])
            key_tab = keys_rows if state is None else _concat_keys(state.select(list(self.by)), keys_rows)
            key_ids = _dense_ids(key_tab, list(self.by))
        else:
            key_ids = np.zeros(ns + len(rts), dtype=np.int64)
        starts = np.concatenate([_np(state, _WS), rts]) if state is not None else rts
        ends = np.concatenate([_np(state, _WE), rts + a.gap_us]) if state is not None else rts + a.gap_us
        group = _merge_intervals(key_ids, starts, ends)
        g = int(group.max()) + 1
        new_start = np.full(g, _INT64_MAX, dtype=np.int64)
        new_end = np.full(g, _INT64_MIN, dtype=np.int64)
        np.minimum.at(new_start, group, starts)
        np.maximum.at(new_end, group, ends)
        has_state = np.zeros(g, dtype=bool)
        has_state[group[:ns]] = True
        row_group = group[ns:]
        if threshold is not None:
            dead = ~has_state & (new_end <= threshold)  # a session that would already have been emitted
            row_late = dead[row_group]
            if row_late.any():
                late[idx[row_late]] = True
                keep = ~row_late
                rows_batch = rows_batch.filter(pa.array(keep))
                rts, row_group = rts[keep], row_group[keep]
        if state is not None:
            old_start = _np(state, _WS)
            st_start, st_end = new_start[group[:ns]], new_end[group[:ns]]
            moved = old_start != st_start
            if moved.any():
                self._relabel_side(state.filter(pa.array(moved)), st_start[moved])
            state = state.set_column(state.schema.get_field_index(_WS), _WS, pa.array(st_start))
            state = state.set_column(state.schema.get_field_index(_WE), _WE, pa.array(st_end))
            self._parts = [state]
            self._merged_rows, self._pending_rows = ns, 0
        if rows_batch.num_rows:
            self._add_rows(rows_batch, rts, new_start[row_group], new_end[row_group])
        self._compact(force=True)  # sessions that grew together become one row
        merged = self._parts[0] if self._parts else None
        self._min_end = (
            int(pc.min(merged.column(_WE)).as_py()) if merged is not None and merged.num_rows else None
        )
        return late

    def _relabel_side(self, moved: pa.Table, new_start: np.ndarray) -> None:
        """Sessions whose start moved (merged or extended backwards): re-key their sketches and rows."""
        old = moved.select([*self.by, _WS])

        def relabel(side: pa.Table) -> pa.Table:
            tab = _concat_keys(old, side.select([*self.by, _WS]))
            ids = _dense_ids(tab, [*self.by, _WS])
            old_ids, side_ids = ids[: old.num_rows], ids[old.num_rows :]
            order = np.argsort(old_ids)
            pos = np.searchsorted(old_ids[order], side_ids)
            pos = np.minimum(pos, len(order) - 1)
            hit = old_ids[order][pos] == side_ids
            ws = _np(side, _WS).copy()
            ws[hit] = new_start[order[pos[hit]]]
            return side.set_column(side.schema.get_field_index(_WS), _WS, pa.array(ws))

        for i, parts in self._hll.items():
            # Two sessions that became one may both have a register: merge them into one row.
            self._hll[i] = (
                [_merge_sketch(pa.concat_tables([relabel(t) for t in parts]), list(self.by))] if parts else []
            )
        self._rows = [relabel(t) for t in self._rows]

    # -- partial aggregates ------------------------------------------------------------------------

    def _add_rows(self, rows: pa.RecordBatch, ts: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        cols: dict[str, Any] = {k: rows.column(k) for k in self.by}
        cols[_WS] = pa.array(starts, pa.int64())
        cols[_WE] = pa.array(ends, pa.int64())
        cols[_TS] = pa.array(ts, pa.int64())
        for c in self._input_columns:
            cols[c] = rows.column(c)
        table = pa.table(cols)
        if self._sort_by_time:
            table = table.take(pc.sort_indices(table, [(_TS, "ascending")]))
        part = self._partial(table)
        self._parts.append(part)
        self._pending_rows += part.num_rows
        lo = int(pc.min(part.column(_WE)).as_py())
        self._min_end = lo if self._min_end is None else min(self._min_end, lo)
        for i in self._hll_aggs:
            self._hll[i].append(self._sketch(table, self.aggs[i]))
        if self._raw_columns:
            self._rows.append(table.select([*self.by, _WS, _TS, *self._raw_columns]))
        if self._pending_rows > max(_COMPACT_ROWS, self._merged_rows):
            self._compact()

    def _group_cols(self) -> list[str]:
        return [*self.by, _WS, _WE]

    def _partial(self, table: pa.Table) -> pa.Table:
        """One row per (key, window) of ``table`` with the partial aggregates of every aggregate."""
        cols: dict[str, Any] = {c: table.column(c) for c in self._group_cols()}
        specs: list[tuple[str, str, Any]] = [(_WS + "_n", "count", _COUNT_ALL)]
        cols[_WS + "_n"] = table.column(_WS)
        names = [_N]
        for i, a in enumerate(self.aggs):
            src = table.column(a.column) if a.column is not None else table.column(_WS)
            v, t = f"__v{i}", f"__t{i}"
            if a.kind == "count":
                cols[v] = src
                specs.append((v, "count", _COUNT_VALID if a.column is not None else _COUNT_ALL))
                names.append(f"__p{i}c")
            elif a.kind == "sum":
                cols[v] = src
                specs.append((v, "sum", None))
                names.append(f"__p{i}s")
            elif a.kind == "mean":
                cols[v] = src.cast(pa.float64())
                specs += [(v, "sum", None), (v, "count", _COUNT_VALID)]
                names += [f"__p{i}s", f"__p{i}c"]
            elif a.kind in ("min", "max"):
                cols[v] = src
                specs.append((v, a.kind, None))
                names.append(f"__p{i}v")
            elif a.kind in ("first", "last"):
                cols[v], cols[t] = src, table.column(_TS)
                specs += [(v, a.kind, _KEEP_NULLS), (t, "min" if a.kind == "first" else "max", None)]
                names += [f"__p{i}v", f"__p{i}t"]
        src_table = pa.table(cols)
        out = src_table.group_by(self._group_cols(), use_threads=False).aggregate(
            [(c, f, o) if o is not None else (c, f) for c, f, o in specs]
        )
        return _rename_aggregates(out, self._group_cols(), names)

    def _merge(self, table: pa.Table) -> pa.Table:
        """Merge partial rows of the same (key, window) in ``table`` (oldest rows first)."""
        group = self._group_cols()
        specs: list[tuple[str, str]] = [(_N, "sum")]
        names = [_N]
        ordered: list[tuple[int, Agg]] = []
        for i, a in enumerate(self.aggs):
            if a.kind in ("count", "sum"):
                col = f"__p{i}{'c' if a.kind == 'count' else 's'}"
                specs.append((col, "sum"))
                names.append(col)
            elif a.kind == "mean":
                specs += [(f"__p{i}s", "sum"), (f"__p{i}c", "sum")]
                names += [f"__p{i}s", f"__p{i}c"]
            elif a.kind in ("min", "max"):
                specs.append((f"__p{i}v", a.kind))
                names.append(f"__p{i}v")
            elif a.kind in ("first", "last"):
                ordered.append((i, a))
        merged = _rename_aggregates(table.group_by(group, use_threads=False).aggregate(specs), group, names)
        if not ordered:
            return merged
        # first/last: the value of the partial with the lowest/highest event time; a stable sort by that
        # time keeps ties in arrival order. Each result is aligned with the others by sorting on the group.
        merged = merged.sort_by([(c, "ascending") for c in group])
        for i, a in ordered:
            v, t = f"__p{i}v", f"__p{i}t"
            sub = table.select([*group, v, t])
            sub = sub.take(pc.sort_indices(sub, [(t, "ascending")]))
            fn = "first" if a.kind == "first" else "last"
            got = sub.group_by(group, use_threads=False).aggregate(
                [(v, fn, _KEEP_NULLS), (t, "min" if a.kind == "first" else "max")]
            )
            got = _rename_aggregates(got, group, [v, t]).sort_by([(c, "ascending") for c in group])
            merged = merged.append_column(v, got.column(v)).append_column(t, got.column(t))
        return merged

    def _compact(self, *, force: bool = False) -> None:
        if not self._parts or (not force and self._pending_rows == 0 and len(self._parts) <= 1):
            return
        table = pa.concat_tables(self._parts) if len(self._parts) > 1 else self._parts[0]
        merged = self._merge(table)
        self._parts = [merged]
        self._merged_rows, self._pending_rows = merged.num_rows, 0
        for i in self._hll_aggs:
            parts = self._hll[i]
            if len(parts) > 1:
                self._hll[i] = [_merge_sketch(pa.concat_tables(parts), list(self.by))]

    def _merged(self) -> pa.Table | None:
        if not self._parts:
            return None
        self._compact()
        return self._parts[0]

    def _sketch(self, table: pa.Table, a: Agg) -> pa.Table:
        assert a.column is not None
        values = table.column(a.column)
        reg, rank = hll.registers(hll.hash64(values), a.precision)
        if values.null_count:
            # A null adds nothing, but its (key, window) must still have a row so that every window has
            # a sketch: rank 0 is an empty register.
            nulls = values.is_null().to_numpy(zero_copy_only=False)
            reg[nulls], rank[nulls] = 0, 0
        long = pa.table(
            {**{k: table.column(k) for k in self.by}, _WS: table.column(_WS), "__reg": reg, "__rank": rank}
        )
        return _merge_sketch(long, list(self.by))

    # -- firing ------------------------------------------------------------------------------------

    def on_watermark(self, watermark: int) -> Sequence[pa.RecordBatch]:
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        if self.time == "processing" and watermark != MAX_WATERMARK:
            return []
        return self._fire(self._threshold(watermark))

    def on_processing_time(self, now: float) -> Sequence[pa.RecordBatch]:
        if self.time != "processing":
            return []
        return self._fire(int(now * 1e6))

    def _fire(self, threshold: int | None) -> list[pa.RecordBatch]:
        if threshold is None or self._min_end is None or self._min_end > threshold:
            return []
        state = self._merged()
        assert state is not None
        ends = _np(state, _WE)
        done = ends <= threshold
        if not done.any():
            self._min_end = int(ends.min()) if len(ends) else None
            return []
        fired, rest = state.filter(pa.array(done)), state.filter(pa.array(~done))
        self._parts = [rest] if rest.num_rows else []
        self._merged_rows = rest.num_rows
        self._min_end = int(ends[~done].min()) if rest.num_rows else None
        fired = fired.sort_by([(_WS, "ascending"), *((k, "ascending") for k in self.by)])
        out = self._finish(fired, threshold)
        return out.to_batches() if out.num_rows else []

    def _take_side(self, side: pa.Table, fired: pa.Table, threshold: int) -> tuple[pa.Table, pa.Table]:
        """Split a sketch/rows table into (rows of fired windows, the rest)."""
        if isinstance(self.assigner, SessionWindows):
            tab = _concat_keys(fired.select([*self.by, _WS]), side.select([*self.by, _WS]))
            ids = _dense_ids(tab, [*self.by, _WS])
            mask = np.isin(ids[fired.num_rows :], ids[: fired.num_rows])
        else:
            mask = _np(side, _WS) + self._size <= threshold
        return side.filter(pa.array(mask)), side.filter(pa.array(~mask))

    def _finish(self, fired: pa.Table, threshold: int) -> pa.Table:
        ts_type = pa.timestamp("us", tz=self._tz)
        out: dict[str, Any] = {k: fired.column(k) for k in self.by}
        out["window_start"] = fired.column(_WS).cast(ts_type)
        out["window_end"] = fired.column(_WE).cast(ts_type)
        order = [(_WS, "ascending"), *((k, "ascending") for k in self.by)]
        rows_fired: pa.Table | None = None
        if self._rows:
            table = pa.concat_tables(self._rows) if len(self._rows) > 1 else self._rows[0]
            rows_fired, rest = self._take_side(table, fired, threshold)
            self._rows = [rest] if rest.num_rows else []
        for i, a in enumerate(self.aggs):
            name = a.output_name
            if a.kind == "count":
                out[name] = fired.column(f"__p{i}c")
            elif a.kind == "sum":
                out[name] = fired.column(f"__p{i}s")
            elif a.kind == "mean":
                c = fired.column(f"__p{i}c")
                s = fired.column(f"__p{i}s")
                out[name] = pc.if_else(pc.equal(c, 0), pa.scalar(None, pa.float64()), pc.divide(s, c))
            elif a.kind in ("min", "max", "first", "last"):
                out[name] = fired.column(f"__p{i}v")
            elif a.kind == "approx_distinct":
                parts = self._hll[i]
                sketch = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
                mine, rest = self._take_side(sketch, fired, threshold)
                self._hll[i] = [rest] if rest.num_rows else []
                out[name] = pa.array(self._estimates(mine, a.precision, order, fired.num_rows))
            else:
                assert rows_fired is not None
                out[name] = _apply(a, rows_fired, list(self.by), fired.num_rows)
        return pa.table(out)

    def _estimates(self, sketch: pa.Table, precision: int, order: list[Any], n: int) -> np.ndarray:
        rank = sketch.column("__rank").to_numpy(zero_copy_only=False).astype(np.int64)
        pow_ = np.where(rank > 0, np.ldexp(1.0, -rank), 0.0)
        tab = (
            sketch.select([*self.by, _WS])
            .append_column("__pow", pa.array(pow_))
            .append_column("__nz", pa.array((rank > 0).astype(np.int64)))
        )
        per = tab.group_by([*self.by, _WS], use_threads=False).aggregate([("__pow", "sum"), ("__nz", "sum")])
        per = per.sort_by(order)
        if per.num_rows != n:
            raise AssertionError(f"window: {per.num_rows} sketches for {n} windows")
        return hll.estimate(
            per.column("__pow_sum").combine_chunks(), per.column("__nz_sum").combine_chunks(), precision
        )

    # -- checkpoints -------------------------------------------------------------------------------

    def flush(self) -> Sequence[pa.RecordBatch]:
        if self.late_policy is not None:
            self.late_policy.flush()
        return []

    def snapshot_state(self) -> Mapping[str, pa.Table] | None:
        tables: dict[str, pa.Table] = {
            "meta": pa.table(
                {
                    "watermark": pa.array([self.watermark], pa.int64()),
                    "late_rows": pa.array([self.late_rows], pa.int64()),
                    "tz": pa.array([self._tz], pa.string()),
                }
            )
        }
        state = self._merged()
        if state is not None:
            tables["partials"] = state
        for i in self._hll_aggs:
            if self._hll[i]:
                tables[f"hll{i}"] = pa.concat_tables(self._hll[i])
        if self._rows:
            tables["rows"] = pa.concat_tables(self._rows)
        return tables

    def restore_state(self, tables: Mapping[str, pa.Table]) -> None:
        self._reset()
        meta = tables.get("meta")
        if meta is not None and meta.num_rows:
            self.watermark = int(meta.column("watermark")[0].as_py())
            self.late_rows = int(meta.column("late_rows")[0].as_py())
            self._tz = meta.column("tz")[0].as_py()
        partials = tables.get("partials")
        if partials is not None and partials.num_rows:
            self._parts = [partials]
            self._merged_rows = partials.num_rows
            self._min_end = int(pc.min(partials.column(_WE)).as_py())
        for i in self._hll_aggs:
            t = tables.get(f"hll{i}")
            self._hll[i] = [t] if t is not None and t.num_rows else []
        rows = tables.get("rows")
        self._rows = [rows] if rows is not None and rows.num_rows else []

    def rescale_state(
        self, parts: Sequence[Mapping[str, pa.Table]], keep: Callable[[pa.Table], pa.Table]
    ) -> None:
        """Restore the windows of the keys ``keep`` selects from the states of several subtasks (a
        checkpoint of another parallelism). Every table but ``meta`` is keyed by :attr:`by`, and a key
        lived in one old subtask only, so the kept rows are concatenated as they are. The watermark is
        the lowest of the old subtasks'; late-row counts restart from zero."""
        merged: dict[str, pa.Table] = {}
        names = sorted({name for part in parts for name in part if name != "meta"})
        for name in names:
            tables = [keep(part[name]) for part in parts if name in part]
            if tables:
                merged[name] = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        metas = [part["meta"] for part in parts if "meta" in part and part["meta"].num_rows]
        if metas:
            watermark = min(int(m.column("watermark")[0].as_py()) for m in metas)
            tz = next((m.column("tz")[0].as_py() for m in metas if m.column("tz")[0].is_valid), None)
            merged["meta"] = pa.table(
                {
                    "watermark": pa.array([watermark], pa.int64()),
                    "late_rows": pa.array([0], pa.int64()),
                    "tz": pa.array([tz], pa.string()),
                }
            )
        self.restore_state(merged)


# -- helpers -----------------------------------------------------------------------------------------


def _np(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy()


def _rename_aggregates(out: pa.Table, group: list[str], names: list[str]) -> pa.Table:
    """Keys first, then the aggregate columns (in the order asked for) renamed to ``names``."""
    aggs = [c for c in out.column_names if c not in group]
    if len(aggs) != len(names):
        raise AssertionError(f"{len(aggs)} aggregate columns for {len(names)} names")
    columns = [out.column(c) for c in group] + [out.column(c) for c in aggs]
    return pa.Table.from_arrays(columns, names=[*group, *names])


def _merge_sketch(long: pa.Table, by: list[str]) -> pa.Table:
    group = [*by, _WS, "__reg"]
    out = long.group_by(group, use_threads=False).aggregate([("__rank", "max")])
    return _rename_aggregates(out, group, ["__rank"])


def _concat_keys(a: pa.Table, b: pa.RecordBatch | pa.Table) -> pa.Table:
    tb = pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
    return pa.concat_tables([a, tb.select(a.column_names)], promote_options="default")


def _dense_ids(table: pa.Table, columns: list[str]) -> np.ndarray:
    """A dense int64 id per row: equal for rows whose ``columns`` are all equal (nulls equal nulls)."""
    n = table.num_rows
    codes = np.zeros(n, dtype=np.int64)
    for c in columns:
        col = table.column(c).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        enc = pc.dictionary_encode(col)
        card = len(enc.dictionary) + 1
        idx = enc.indices.fill_null(card - 1).to_numpy(zero_copy_only=False).astype(np.int64)
        _, codes = np.unique(codes * card + idx, return_inverse=True)
        codes = codes.astype(np.int64)
    return codes


def _merge_intervals(key_ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Group id per half-open interval: intervals of one key that overlap (transitively) share one."""
    order = np.lexsort((starts, key_ids))
    k, s, e = key_ids[order], starts[order], ends[order]
    # Running maximum of the end within each key: ends ranked, offset by key so that a new key never
    # inherits the previous key's maximum (key * rank-count + rank is increasing in key).
    uniq, rank = np.unique(e, return_inverse=True)
    span = np.int64(len(uniq))
    run = np.maximum.accumulate(k * span + rank) - k * span
    run_end = uniq[run]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (s[1:] >= run_end[:-1])
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    return group


def _apply(a: Agg, rows: pa.Table, by: list[str], n: int) -> pa.Array:
    """``a.fn`` over each (key, window) group of ``rows``, in (window start, keys) order."""
    order = [(_WS, "ascending"), *((k, "ascending") for k in by), (_TS, "ascending")]
    rows = rows.take(pc.sort_indices(rows, order))
    ids = _dense_ids(rows, [*by, _WS])
    bounds = np.flatnonzero(np.diff(ids)) + 1 if rows.num_rows else np.empty(0, np.int64)
    starts = np.concatenate([[0], bounds]).astype(np.int64) if rows.num_rows else bounds
    stops = np.concatenate([bounds, [rows.num_rows]]).astype(np.int64) if rows.num_rows else bounds
    if len(starts) != n:
        raise AssertionError(f"window: {len(starts)} row groups for {n} windows")
    frame = rows.select(list(a.columns))
    if a.batch_format == "polars":
        import polars as pl

        df = pl.from_arrow(frame)
        results = [a.fn(df.slice(int(lo), int(hi - lo))) for lo, hi in zip(starts, stops, strict=True)]  # type: ignore[misc, union-attr]
    else:
        results = [a.fn(frame.slice(int(lo), int(hi - lo))) for lo, hi in zip(starts, stops, strict=True)]  # type: ignore[misc]
    return pa.array([r.as_py() if isinstance(r, pa.Scalar) else r for r in results])
