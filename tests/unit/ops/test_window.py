"""The Window operator against oracles: polars ``group_by_dynamic`` (tumbling, sliding), a brute-force
session reference, and a one-shot HyperLogLog of each window's rows (approx_distinct)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow import ConfigurationError, agg
from arrowflow.connectors.memory import MemorySink
from arrowflow.ops import Window, hll
from arrowflow.time import MAX_WATERMARK, session, sliding, tumbling

START = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() * 1e6)
SEC = 1_000_000


def make_rows(seed: int, n: int, max_delay: int, step: int, keys: int, null_rate: float) -> pa.Table:
    """Rows in arrival order: event times i*step minus a jitter within max_delay (never late for a
    bounded-out-of-orderness watermark of max_delay), integer values with nulls, some null keys."""
    rng = np.random.default_rng(seed)
    ts = START + np.arange(n, dtype=np.int64) * step - rng.integers(0, max_delay + 1, n)
    k = rng.integers(0, keys, n)
    v = rng.integers(-1000, 1000, n)
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us")),
            "k": pa.array(k, mask=rng.random(n) < 0.05),
            "v": pa.array(v, mask=rng.random(n) < null_rate),
            "f": pa.array(rng.random(n)),
        }
    )


AGGS = [
    agg.count(),
    agg.count("v"),
    agg.sum("v"),
    agg.min("v"),
    agg.max("v"),
    agg.mean("f"),
    agg.first("v"),
    agg.last("v"),
    agg.first("f").alias("ff"),
]


def polars_aggs() -> list[pl.Expr]:
    v = pl.col("v")
    return [
        pl.len().cast(pl.Int64).alias("count"),
        v.count().cast(pl.Int64).alias("v_count"),
        # arrowflow (SQL, pyarrow): the sum of no non-null value is null, not 0.
        pl.when(v.count() > 0).then(v.sum()).otherwise(None).alias("v_sum"),
        v.min().alias("v_min"),
        v.max().alias("v_max"),
        pl.col("f").mean().alias("f_mean"),
        v.first().alias("v_first"),
        v.last().alias("v_last"),
        pl.col("f").first().alias("ff"),
    ]


def drive(
    op: Window,
    table: pa.Table,
    batch_rows: int,
    max_delay: int,
    *,
    restore_at: int | None = None,
    make: Callable[[], Window] | None = None,
) -> tuple[pa.Table, Window]:
    """Feed ``table`` in batches with a bounded-out-of-orderness watermark after each; optionally
    snapshot the operator before batch ``restore_at`` and continue in a new one restored from it
    (through Arrow IPC, as a checkpoint does)."""
    out: list[pa.RecordBatch] = []
    high = None
    for i, batch in enumerate(table.to_batches(max_chunksize=batch_rows)):
        if restore_at is not None and i == restore_at:
            assert make is not None
            state = {name: _ipc_round_trip(t) for name, t in (op.snapshot_state() or {}).items()}
            op = make()
            op.restore_state(state)
        out += op.process(batch)
        mx = int(batch.column("ts").cast(pa.int64()).to_numpy().max())
        high = mx if high is None else max(high, mx)
        out += op.on_watermark(high - max_delay)
    out += op.on_watermark(MAX_WATERMARK)
    result = pa.Table.from_batches(out) if out else None
    assert result is not None
    return result, op


def _ipc_round_trip(table: pa.Table) -> pa.Table:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return ipc.open_file(sink.getvalue()).read_all()


def oracle(table: pa.Table, every: int, period: int) -> pl.DataFrame:
    df = pl.from_arrow(table).sort("ts", maintain_order=True)  # stable: ties stay in arrival order
    k = -(-period // every)
    got = df.group_by_dynamic(
        "ts",
        every=timedelta(microseconds=every),
        period=timedelta(microseconds=period),
        offset=timedelta(microseconds=-(k - 1) * every),
        group_by="k",
        include_boundaries=True,
        closed="left",
        label="left",
    ).agg(polars_aggs())
    return got.rename({"_lower_boundary": "window_start", "_upper_boundary": "window_end"}).drop("ts")


def assert_same(got: pa.Table, expect: pl.DataFrame, approx: Sequence[str] = ("f_mean",)) -> None:
    # Each emission is ordered by (window_start, key); emissions follow window ends (sessions differ).
    g = pl.from_arrow(got).sort(["window_start", "k"], nulls_last=True, maintain_order=True)
    e = expect.select(g.columns).sort(["window_start", "k"], nulls_last=True, maintain_order=True)
    assert g.height == e.height, f"{g.height} windows, the oracle has {e.height}"
    for c in g.columns:
        if c in approx:
            np.testing.assert_allclose(g[c].to_numpy(), e[c].to_numpy(), rtol=1e-9, err_msg=c)
        else:
            assert g[c].to_list() == e[c].to_list(), f"column {c} differs"


window_params = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(1, 2000),  # rows
    st.integers(0, 20).map(lambda x: x * SEC // 4),  # max_delay
    st.sampled_from([1, 2, 5, 10]),  # tumbling size / slide (seconds)
    st.integers(1, 4),  # size / slide ratio
    st.sampled_from([7, 64, 1000]),  # batch rows
)


@given(window_params)
@settings(max_examples=40)
def test_tumbling_equals_polars_group_by_dynamic(params: tuple[int, int, int, int, int, int]) -> None:
    seed, n, delay, size_s, _, batch_rows = params
    table = make_rows(seed, n, delay, SEC // 3, keys=4, null_rate=0.2)
    size = size_s * SEC

    def make() -> Window:
        return Window(tumbling(size_s), AGGS, by="k", on="ts")

    restore_at = seed % max(1, -(-n // batch_rows))
    got, op = drive(make(), table, batch_rows, delay, restore_at=restore_at, make=make)
    assert op.late_rows == 0
    assert got.column_names[:3] == ["k", "window_start", "window_end"]
    assert got.schema.field("window_start").type == pa.timestamp("us")
    assert_same(got, oracle(table, size, size))


@given(window_params)
@settings(max_examples=30)
def test_sliding_equals_polars_group_by_dynamic(params: tuple[int, int, int, int, int, int]) -> None:
    seed, n, delay, slide_s, ratio, batch_rows = params
    table = make_rows(seed, n, delay, SEC // 3, keys=3, null_rate=0.1)
    size_s = slide_s * ratio + (seed % 2) * slide_s // 2  # sometimes not a multiple of the slide
    op = Window(sliding(size_s, slide_s), AGGS, by="k", on="ts")
    got, op = drive(op, table, batch_rows, delay)
    assert op.late_rows == 0
    assert_same(got, oracle(table, slide_s * SEC, size_s * SEC))


def sessions_reference(table: pa.Table, gap: int) -> pl.DataFrame:
    """Per key, rows sorted by time (ties in arrival order); a new session where the gap is >= ``gap``."""
    df = pl.from_arrow(table).with_row_index("arrival").sort(["k", "ts", "arrival"], nulls_last=True)
    ts = df["ts"].cast(pl.Int64).to_numpy()
    keys = df["k"].to_list()
    new = np.ones(len(ts), dtype=bool)
    for i in range(1, len(ts)):
        new[i] = keys[i] != keys[i - 1] or ts[i] - ts[i - 1] >= gap
    df = df.with_columns(pl.Series("sid", np.cumsum(new)))
    out = df.group_by("sid", maintain_order=True).agg(
        pl.col("k").first(),
        pl.col("ts").min().alias("window_start"),
        (pl.col("ts").max() + timedelta(microseconds=gap)).alias("window_end"),
        *polars_aggs(),
    )
    return out.drop("sid")


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 1500),
    st.integers(0, 12).map(lambda x: x * SEC // 4),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([3, 100, 2000]),
)
@settings(max_examples=40)
def test_sessions_equal_a_brute_force_reference(
    seed: int, n: int, delay: int, gap_s: int, batch_rows: int
) -> None:
    rng = np.random.default_rng(seed)
    step = int(rng.choice([SEC // 10, SEC // 2, 2 * SEC]))  # sometimes rows are further apart than the gap
    table = make_rows(seed, n, delay, step, keys=3, null_rate=0.1)

    def make() -> Window:
        return Window(session(gap_s), AGGS, by="k", on="ts")

    got, op = drive(make(), table, batch_rows, delay, restore_at=seed % 3, make=make)
    assert op.late_rows == 0
    assert_same(got, sessions_reference(table, gap_s * SEC))


def sketch_estimate(values: pa.Array, precision: int) -> int:
    """One HyperLogLog over all of a window's values at once (the incremental one must equal it)."""
    valid = values.drop_null()
    if not len(valid):
        return 0
    reg, rank = hll.registers(hll.hash64(valid), precision)
    m = np.zeros(1 << precision, dtype=np.int64)
    np.maximum.at(m, reg, rank.astype(np.int64))
    nz = m > 0
    return int(hll.estimate(np.array([np.ldexp(1.0, -m[nz]).sum()]), np.array([nz.sum()]), precision)[0])


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 4000),
    st.sampled_from([4, 10, 12]),
    st.sampled_from([1, 97, 1000]),
)
@settings(max_examples=25)
def test_approx_distinct_is_the_sketch_of_all_rows_and_close_to_n_unique(
    seed: int, n: int, precision: int, batch_rows: int
) -> None:
    rng = np.random.default_rng(seed)
    table = make_rows(seed, n, 2 * SEC, SEC // 50, keys=2, null_rate=0.05)
    names = pa.array([f"user-{i}" for i in rng.integers(0, max(2, n // 3), n)])
    table = table.append_column("name", names)
    aggs = [agg.approx_distinct("v", precision), agg.approx_distinct("name", precision), agg.count()]
    got, _ = drive(Window(tumbling(10), aggs, by="k", on="ts"), table, batch_rows, 2 * SEC)
    df = pl.from_arrow(table).sort("ts", maintain_order=True)
    exp = (
        df.group_by_dynamic("ts", every="10s", group_by="k", include_boundaries=True)
        .agg(pl.col("v").drop_nulls().n_unique().alias("nv"), pl.col("name").n_unique().alias("nn"), pl.len())
        .sort(["_lower_boundary", "k"], nulls_last=True, maintain_order=True)
    )
    assert got.num_rows == exp.height
    rel = 1.04 / np.sqrt(1 << precision)
    for col, true_col in (("v_approx_distinct", "nv"), ("name_approx_distinct", "nn")):
        est = got.column(col).to_numpy()
        truth = exp[true_col].to_numpy()
        assert np.all(np.abs(est - truth) <= np.maximum(2, 5 * rel * truth)), (col, est, truth)
    # Exactly the sketch of each window's rows taken at once: merging partial sketches loses nothing.
    starts = pl.from_arrow(got)["window_start"].to_list()
    keys = got.column("k").to_pylist()
    for i, (start, key) in enumerate(zip(starts, keys, strict=True)):
        if i % max(1, len(starts) // 20):
            continue  # about 20 windows per example, spread over the run
        rows = df.filter(
            (pl.col("ts") >= start)
            & (pl.col("ts") < start + timedelta(seconds=10))
            & (pl.col("k").is_null() if key is None else pl.col("k") == key)
        )
        assert got.column("v_approx_distinct")[i].as_py() == sketch_estimate(rows["v"].to_arrow(), precision)
        assert got.column("name_approx_distinct")[i].as_py() == sketch_estimate(
            rows["name"].to_arrow(), precision
        )


def test_apply_runs_a_polars_function_per_window_and_key() -> None:
    table = make_rows(7, 2000, 2 * SEC, SEC // 4, keys=3, null_rate=0.0)

    def p90(group: pl.DataFrame) -> float:
        return float(group["f"].quantile(0.9, interpolation="nearest"))

    def spread(group: pa.Table) -> int:
        v = group.column("v").to_numpy()
        return int(v.max() - v.min())

    aggs = [
        agg.apply(p90, "f", "f_p90", batch_format="polars"),
        agg.apply(spread, ["v"], "spread"),
        agg.count(),
    ]
    got, _ = drive(Window(sliding(20, 10), aggs, by="k", on="ts"), table, 333, 2 * SEC)
    exp = (
        pl.from_arrow(table)
        .sort("ts", maintain_order=True)
        .group_by_dynamic(
            "ts", every="10s", period="20s", offset="-10s", group_by="k", include_boundaries=True
        )
        .agg(
            pl.col("f").quantile(0.9, interpolation="nearest").alias("f_p90"),
            (pl.col("v").max() - pl.col("v").min()).alias("spread"),
            pl.len().cast(pl.Int64).alias("count"),
        )
        .rename({"_lower_boundary": "window_start", "_upper_boundary": "window_end"})
    )
    assert_same(got, exp.drop("ts"), approx=())


@given(st.integers(0, 2**32 - 1), st.integers(0, 3), st.sampled_from(["drop", "sink"]))
@settings(max_examples=30)
def test_late_rows_go_to_the_policy(seed: int, lateness_s: int, policy: str) -> None:
    """Rows whose windows were all emitted (event time more than allowed_lateness behind the watermark)
    are dropped and counted, or written to a dead-letter sink; rows within the lateness still count."""
    rng = np.random.default_rng(seed)
    n = 600
    table = make_rows(seed, n, 0, SEC // 5, keys=2, null_rate=0.0)
    ts = table.column("ts").cast(pa.int64()).to_numpy().copy()
    # A tenth of the rows arrive up to 15 s behind (the watermark has no delay).
    behind = rng.random(n) < 0.1
    ts[behind] -= rng.integers(0, 15 * SEC, behind.sum())
    table = table.set_column(0, "ts", pa.array(ts, pa.timestamp("us")))
    dead = MemorySink()
    op = Window(
        tumbling(5),
        [agg.count(), agg.sum("v")],
        by="k",
        on="ts",
        allowed_lateness=lateness_s,
        late_rows="drop" if policy == "drop" else dead,
    )
    # Model: at arrival a row is late iff its window ended at or before watermark - lateness.
    size, lateness = 5 * SEC, lateness_s * SEC
    high, late_model = None, np.zeros(n, dtype=bool)
    out: list[pa.RecordBatch] = []
    offset = 0
    for batch in table.to_batches(max_chunksize=50):
        bts = batch.column("ts").cast(pa.int64()).to_numpy()
        if high is not None:
            ends = (bts // size) * size + size
            late_model[offset : offset + len(bts)] = ends <= high - lateness
        out += op.process(batch)
        high = int(bts.max()) if high is None else max(high, int(bts.max()))
        out += op.on_watermark(high)
        offset += len(bts)
    out += op.on_watermark(MAX_WATERMARK)
    op.flush()
    assert op.late_rows == int(late_model.sum())
    got = pa.Table.from_batches(out)
    kept = table.filter(pa.array(~late_model))
    assert_same(
        got.select(["k", "window_start", "window_end", "count", "v_sum"]),
        oracle(kept, size, size).select(["k", "window_start", "window_end", "count", "v_sum"]),
        approx=(),
    )
    if policy == "sink":
        dl = dead.table() if late_model.any() else None
        assert (dl.num_rows if dl is not None else 0) == int(late_model.sum())
        if dl is not None:
            assert dl.column_names == [*table.column_names, "error"]
            assert sorted(dl.column("ts").cast(pa.int64()).to_pylist()) == sorted(ts[late_model].tolist())
            assert all(e.startswith("late row") for e in dl.column("error").to_pylist())


def test_null_event_times_are_late_rows() -> None:
    dead = MemorySink()
    op = Window(tumbling(1), [agg.count()], on="ts", late_rows=dead)
    batch = pa.record_batch({"ts": pa.array([START, None, START + 1], pa.timestamp("us"))})
    op.process(batch)
    op.flush()
    assert op.late_rows == 1
    assert dead.table().column("error").to_pylist() == ["null event time"]
    out = op.on_watermark(MAX_WATERMARK)
    assert pa.Table.from_batches(out).column("count").to_pylist() == [2]


def test_event_time_column_types_and_time_zone() -> None:
    for arr, tz in (
        (pa.array([START * 1000, (START + SEC) * 1000], pa.timestamp("ns", tz="Asia/Tokyo")), "Asia/Tokyo"),
        (pa.array([START // 1000, START // 1000 + 1000], pa.int64()), None),
        (pa.array([START // 86_400_000_000] * 2, pa.date32()), None),
    ):
        op = Window(tumbling("1d"), [agg.count()], on="ts")
        op.process(pa.record_batch({"ts": arr}))
        out = pa.Table.from_batches(op.on_watermark(MAX_WATERMARK))
        assert out.schema.field("window_start").type == pa.timestamp("us", tz=tz)
        assert out.column("window_start").cast(pa.int64()).to_pylist() == [START]
        assert out.column("count").to_pylist() == [2]


def test_watermark_forwarded_is_held_back_by_the_lateness() -> None:
    op = Window(tumbling(1), [agg.count()], on="ts", allowed_lateness="3s")
    assert op.forward_watermark(10 * SEC) == 7 * SEC
    assert op.forward_watermark(MAX_WATERMARK) == MAX_WATERMARK


def test_processing_time_windows_fire_on_the_clock() -> None:
    now = [1_000.2]
    op = Window(tumbling(1), [agg.count(), agg.sum("v")], time="processing", clock=lambda: now[0])
    assert op.timer_interval is not None
    op.process(pa.record_batch({"v": [1, 2]}))
    assert op.on_processing_time(1_000.9) == []
    now[0] = 1_001.5
    op.process(pa.record_batch({"v": [10]}))
    first = pa.Table.from_batches(op.on_processing_time(1_001.0))
    assert first.column("count").to_pylist() == [2] and first.column("v_sum").to_pylist() == [3]
    assert first.column("window_start").cast(pa.int64()).to_pylist() == [1_000 * SEC]
    rest = pa.Table.from_batches(op.on_watermark(MAX_WATERMARK))  # end of input: everything fires
    assert rest.column("v_sum").to_pylist() == [10]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"aggs": []}, "aggs"),
        ({"aggs": [agg.sum("v"), agg.sum("v")]}, "aggs"),
        ({"aggs": [agg.count().alias("window_start")]}, "aggs"),
        ({"on": None}, "on"),
        ({"late_rows": "keep"}, "late_rows"),
        ({"late_rows": "bogus"}, "late_rows"),
        ({"allowed_lateness": "-1s"}, "allowed_lateness"),
        ({"time": "wall"}, "time"),
        ({"assigner": "1m"}, "assigner"),
    ],
)
def test_bad_configuration_names_the_option(kwargs: dict[str, Any], option: str) -> None:
    args: dict[str, Any] = {"assigner": tumbling(1), "aggs": [agg.count()], "on": "ts", **kwargs}
    with pytest.raises(ConfigurationError) as info:
        Window(args.pop("assigner"), args.pop("aggs"), **args)
    assert info.value.option == option


def test_bad_assigners_and_aggregates() -> None:
    for make, option in (
        (lambda: sliding(1, 2), "slide"),
        (lambda: tumbling(0), "size"),
        (lambda: session("0s"), "gap"),
        (lambda: agg.approx_distinct("x", 30), "precision"),
        (lambda: agg.apply(len, [], "n"), "columns"),
        (lambda: agg.sum(None), "column"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigurationError) as info:
            make()
        assert info.value.option == option


def test_window_boundaries_are_half_open() -> None:
    """[start, end): a window fires when the watermark (minus lateness) reaches its end exactly, and a
    row arriving for it afterwards is late; a row at the end belongs to the next window."""
    op = Window(tumbling(1), [agg.count()], on="ts", allowed_lateness="500ms")

    def rows(*offsets_ms: int) -> pa.RecordBatch:
        return pa.record_batch({"ts": pa.array([START + o * 1000 for o in offsets_ms], pa.timestamp("us"))})

    op.process(rows(1000, 1999))
    assert op.on_watermark(START + 2_499_999) == []  # end + lateness not reached
    fired = pa.Table.from_batches(op.on_watermark(START + 2_500_000))
    assert fired.column("count").to_pylist() == [2]
    assert fired.column("window_end").cast(pa.int64()).to_pylist() == [START + 2 * SEC]
    op.process(rows(1500, 2000, 2999))  # 1500 is late (its window was emitted); 2000 starts [2 s, 3 s)
    assert op.late_rows == 1
    rest = pa.Table.from_batches(op.on_watermark(MAX_WATERMARK))
    assert rest.column("window_start").cast(pa.int64()).to_pylist() == [START + 2 * SEC]
    assert rest.column("count").to_pylist() == [2]
