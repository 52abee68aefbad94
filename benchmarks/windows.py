"""Workloads ``window`` (windowed aggregation vs polars) and ``watermarks`` (what event time costs).

``window``: the 8-column table sorted by ``ts`` (a year of event time), tumbling 1-hour windows keyed
by ``active`` with ``count``, ``sum(qty)``, ``mean(price)``, ``min(score)``, ``max(score)`` - about 17,500
windows of ~57 rows.

* ``Window operator, 64k batches``: :class:`arrowflow.ops.Window` fed the table's 64k-row batches with a
  watermark after each (bounded out-of-orderness of 0: the data is in order), then the end-of-input
  watermark: incremental partial aggregates, windows emitted as the watermark passes them. The
  reference (what the pipeline's operator thread runs).
* ``Pipeline.window -> NullSink``: the same through ``Pipeline.run`` with a watermark strategy (reader
  and writer threads, watermark items in the queues; thread start-up included).
* ``polars group_by_dynamic``: ``pl.from_arrow(table).group_by_dynamic("ts", every="1h",
  group_by="active").agg(...)`` over the whole table at once (not incremental; the idiomatic batch
  answer). Target: the Window operator reaches at least its rate.

``watermarks``: the ``pipeline`` workload's pipeline (filter + projection -> NullSink, 64k batches) over
the table sorted by ``ts`` and repeated 4 times (the copies shifted by a year each, so event time keeps
going forward; 4M rows, other columns zero-copy), with and without
``watermarks=WatermarkStrategy.bounded_out_of_orderness("ts", "1s")``. Target: with watermarks >= 0.95x
of without (event time costs < 5%). A 5% difference is below the noise of one ~0.2 s call on a loaded
machine, so this workload runs at least ``WM_ROUNDS`` interleaved rounds of samples of at least
``WM_SAMPLE_S`` seconds (calls back to back) whatever ``--rounds`` says (not under ``--quick``); the
table's ``cpu us/row`` and ``cpu ratio`` (this process's CPU time, all threads) show the cost that
waiting for a core does not blur.

``watermarks_parquet``: the same pipeline and rows read from Parquet files by ``FileSource`` (the
event-time column is decoded by the reader just before the watermark pass, as in a source that
parses its input; in ``watermarks`` the collection hands out slices of a table in memory, so the pass
over ``ts`` is the only read of that column: the worst case). Same target.

Every method's output is checked: window results equal polars' (keys, bounds, counts and sums exactly,
means to 1e-9); both watermark pipelines deliver the same rows and Arrow bytes.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

BATCH_ROWS = 65_536
WINDOW_OP = "Window operator, 64k batches"
WINDOW_PIPELINE = "Pipeline.window -> NullSink"
POLARS = "polars group_by_dynamic"
WITH_WM = "Pipeline with watermarks"
WITHOUT_WM = "Pipeline without watermarks"
WITH_WM_PARQUET = "Parquet pipeline with watermarks"
WITHOUT_WM_PARQUET = "Parquet pipeline without watermarks"
REPEAT = 4
WM_ROUNDS = 9
WM_SAMPLE_S = 2.0
YEAR_US = 365 * 24 * 3600 * 1_000_000


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _sorted_table(config: RunConfig) -> pa.Table:
    table = make_table(config.rows, config.seed)
    return table.take(pc.sort_indices(table, [("ts", "ascending")])).combine_chunks()


def setup_window(config: RunConfig) -> Prepared:
    table = _sorted_table(config)
    n = table.num_rows
    af = _optional("arrowflow")
    pl = _optional("polars")
    methods: dict[str, Method] = {}

    def aggs() -> list[Any]:
        return [
            af.agg.count(),
            af.agg.sum("qty"),
            af.agg.mean("price"),
            af.agg.min("score"),
            af.agg.max("score"),
        ]

    def run_window_op() -> pa.Table:
        from arrowflow.ops import Window
        from arrowflow.time import MAX_WATERMARK

        op = Window(af.tumbling("1h"), aggs(), by="active", on="ts")
        out: list[pa.RecordBatch] = []
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            out += op.process(batch)
            # The strategy's watermark for in-order data: the batch's last (= max) event time.
            out += op.on_watermark(int(batch.column("ts")[-1].value))
        out += op.on_watermark(MAX_WATERMARK)
        return pa.Table.from_batches(out)

    def run_pipeline(sink: Any) -> Any:
        from arrowflow.connectors.collection import CollectionSource

        return (
            af.Pipeline(
                CollectionSource(table, batch_size=BATCH_ROWS),
                watermarks=af.WatermarkStrategy.monotonous("ts"),
            )
            .window(af.tumbling("1h"), aggs(), by="active")
            .to(sink)
            .run(progress=False)
        )

    def run_polars() -> Any:
        return (
            pl.from_arrow(table)
            .group_by_dynamic("ts", every="1h", group_by="active")
            .agg(
                pl.len().alias("count"),
                pl.col("qty").sum().alias("qty_sum"),
                pl.col("price").mean().alias("price_mean"),
                pl.col("score").min().alias("score_min"),
                pl.col("score").max().alias("score_max"),
            )
        )

    def same(got: pa.Table, what: str) -> str:
        exp = run_polars().sort(["ts", "active"])
        g = pl.from_arrow(got).sort(["window_start", "active"])
        if g.height != exp.height:
            raise AssertionError(f"{what}: {g.height} windows, polars has {exp.height}")
        checks = [
            (g["active"], exp["active"]),
            (g["window_start"], exp["ts"]),
            (g["count"], exp["count"].cast(pl.Int64)),
            (g["qty_sum"], exp["qty_sum"].cast(pl.Int64)),
            (g["score_min"], exp["score_min"]),
            (g["score_max"], exp["score_max"]),
        ]
        for a, b in checks:
            if a.to_list() != b.to_list():
                raise AssertionError(f"{what}: column {a.name} differs from polars")
        if not np.allclose(g["price_mean"].to_numpy(), exp["price_mean"].to_numpy(), rtol=1e-9):
            raise AssertionError(f"{what}: price_mean differs from polars")
        return f"{g.height:,} windows: keys, bounds, count, sum, min, max exact; mean to 1e-9"

    if af is None or pl is None:
        for label in (WINDOW_OP, WINDOW_PIPELINE, POLARS):
            methods[label] = Method(skip="arrowflow or polars not installed")
    else:
        from arrowflow.connectors.memory import MemorySink
        from arrowflow.connectors.null import NullSink

        def op_rows() -> int:
            run_window_op()
            return n

        def pipeline_rows() -> int:
            result = run_pipeline(NullSink())
            if result.rows != n:
                raise AssertionError(f"Pipeline.window read {result.rows} rows, expected {n}")
            return n

        def polars_rows() -> int:
            run_polars()
            return n

        def pipeline_check() -> str:
            sink = MemorySink()
            run_pipeline(sink)
            return same(sink.table(), WINDOW_PIPELINE)

        methods[WINDOW_OP] = Method(
            run=op_rows,
            note="incremental: partial aggregates per batch, merged; emitted on the watermark",
            check=lambda: same(run_window_op(), WINDOW_OP),
        )
        methods[WINDOW_PIPELINE] = Method(
            run=pipeline_rows,
            note="CollectionSource -> window -> NullSink through Pipeline.run, start-up included",
            check=pipeline_check,
        )
        methods[POLARS] = Method(
            run=polars_rows,
            target=Target(min_speedup=1.0),
            note="whole table at once (from_arrow included); target: Window operator >= 1x",
            check=lambda: f"{run_polars().height:,} windows (the oracle of the other checks)",
        )
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


def _watermarks_table(config: RunConfig) -> tuple[pa.Table, int]:
    """The ts-sorted table repeated ``REPEAT`` times, each copy a year later (event time keeps going
    forward); the other columns are shared buffers (zero-copy). Also the rows of one copy."""
    base = _sorted_table(config)
    ts_index = base.schema.get_field_index("ts")
    ts_us = base.column("ts").cast(pa.int64()).to_numpy()
    copies = [
        base.set_column(ts_index, "ts", pa.array(ts_us + i * YEAR_US, pa.timestamp("us")))
        for i in range(REPEAT)
    ]
    return pa.concat_tables(copies), base.num_rows


def _watermark_methods(
    source: Any, n: int, note: str, labels: tuple[str, str] = (WITH_WM, WITHOUT_WM)
) -> dict[str, Method]:
    """The with/without pair over ``source()`` (a new source per run): filter + projection -> sink."""
    af = _optional("arrowflow")
    with_label, without_label = labels
    if af is None:
        return {label: Method(skip="arrowflow not installed") for label in labels}
    from arrowflow.connectors.memory import MemorySink
    from arrowflow.connectors.null import NullSink

    predicate = pc.field("price") < 5000.0
    total = pc.field("price") * pc.field("qty")
    expected: dict[str, Any] = {}

    def pipeline(sink: Any, watermarks: bool) -> Any:
        strategy = af.WatermarkStrategy.bounded_out_of_orderness("ts", "1s") if watermarks else None
        return (
            af.Pipeline(source(), watermarks=strategy)
            .filter(predicate)
            .with_columns(total=total)
            .to(sink)
            .run(progress=False)
        )

    def timed(watermarks: bool) -> int:
        result = pipeline(NullSink(), watermarks)
        got = (result.rows_written, result.bytes_written)
        if expected.setdefault("out", got) != got:
            raise AssertionError(f"{got} rows/bytes reached the sink, expected {expected['out']}")
        if watermarks and (result.late_rows or result.watermark is None):
            raise AssertionError("the watermark pipeline saw late rows or no watermark")
        return n

    def check(watermarks: bool) -> str:
        sink = MemorySink()
        pipeline(sink, watermarks)
        other = MemorySink()
        pipeline(other, not watermarks)
        if not sink.table().equals(other.table()):
            raise AssertionError("the pipelines with and without watermarks delivered different rows")
        return f"{sink.table().num_rows:,} rows x {sink.table().num_columns} columns, same both ways"

    return {
        with_label: Method(run=lambda: timed(True), note=note, check=lambda: check(True)),
        without_label: Method(
            run=lambda: timed(False),
            target=Target(min_speedup=0.95),
            note="the same pipeline without event time; target: with watermarks >= 0.95x (< 5% cost)",
            check=lambda: check(False),
        ),
    }


def setup_watermarks(config: RunConfig) -> Prepared:
    table, n0 = _watermarks_table(config)

    def source() -> Any:
        from arrowflow.connectors.collection import CollectionSource

        return CollectionSource(table, batch_size=BATCH_ROWS)

    note = f"bounded_out_of_orderness('ts', 1s); table sorted by ts x{REPEAT} ({n0:,} rows each)"
    methods = _watermark_methods(source, table.num_rows, note)
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(table.num_rows, 1))


def setup_watermarks_parquet(config: RunConfig) -> Prepared:
    import tempfile

    import pyarrow.parquet as pq

    table, _ = _watermarks_table(config)
    tmp = tempfile.TemporaryDirectory(prefix="af-bench-wm-")
    files = REPEAT * 2
    step = -(-table.num_rows // files)
    for i in range(files):
        pq.write_table(
            table.slice(i * step, step), f"{tmp.name}/part-{i:02d}.parquet", row_group_size=BATCH_ROWS
        )

    def source() -> Any:
        from arrowflow.connectors.filesystem import FileSource

        return FileSource(tmp.name, format="parquet", batch_size=BATCH_ROWS)

    note = f"the same over {files} Parquet files ({table.num_rows:,} rows, row groups of {BATCH_ROWS:,})"
    methods = _watermark_methods(source, table.num_rows, note, (WITH_WM_PARQUET, WITHOUT_WM_PARQUET))
    return Prepared(
        methods=methods, bytes_per_row=table.nbytes / max(table.num_rows, 1), teardown=tmp.cleanup
    )


WINDOW = register(
    Workload(
        name="window",
        description="Tumbling 1h windows by key (count/sum/mean/min/max) over the ts-sorted table vs polars",
        setup=setup_window,
        reference=WINDOW_OP,
        idiomatic=(POLARS,),
    )
)


def _watermarks_workload(name: str, description: str, setup: Any, labels: tuple[str, str]) -> Workload:
    with_label, without_label = labels
    return register(
        Workload(
            name=name,
            description=description,
            setup=setup,
            reference=with_label,
            idiomatic=(without_label,),
            min_rounds=WM_ROUNDS,
            min_sample_s=WM_SAMPLE_S,
        )
    )


WATERMARKS = _watermarks_workload(
    "watermarks",
    "Pipeline filter + projection -> NullSink with vs without a WatermarkStrategy (4M rows)",
    setup_watermarks,
    (WITH_WM, WITHOUT_WM),
)
WATERMARKS_PARQUET = _watermarks_workload(
    "watermarks_parquet",
    "The watermarks pipeline reading Parquet files (FileSource) with vs without watermarks",
    setup_watermarks_parquet,
    (WITH_WM_PARQUET, WITHOUT_WM_PARQUET),
)
