"""Workload ``pipeline_ops``: ``Pipeline.run`` with operators, against the same work without a runner.

The pipeline under test (64k-row batches, default ``run`` options apart from ``progress=False``)::

    Pipeline(CollectionSource(table, batch_size=65536))
        .filter(pc.field("price") < 5000)             # keeps ~50% of the rows
        .select(["id", "price", "qty", "name"])
        .with_columns(total=pc.field("price") * pc.field("qty"))
        .to(NullSink()).run(progress=False)

Methods (rows/s always count *source* rows, so every row of the table is one unit of work):

* ``Pipeline ops, table x10``: the pipeline over 10M rows (the 1M-row table's batches ten times,
  zero-copy), so starting three threads is noise. The reference.
* ``Pipeline ops, table once``: the same over the table once (thread start-up included).
* ``operators in a bare loop (floor)``: the same three operator objects applied to the same batches
  in a plain ``for`` loop in this thread: the runner's floor; target: the pipeline (10M) reaches at
  least 0.8x of it (i.e. the runner costs <= 20%).
* ``pyarrow compute loop (hand-written)``: what a user would write without arrowflow
  (``pc.less`` mask + ``RecordBatch.filter`` + ``select`` + ``pc.multiply``), for context.
* ``Pipeline no operators, table x10 / once``: ``CollectionSource -> NullSink`` through ``Pipeline.run``;
  the foundation target is >= 50M rows/s.

Every method checks the rows it produced against the expected count (computed in setup).
"""

from __future__ import annotations

import importlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

BATCH_ROWS = 65_536
REPEAT = 10
COLUMNS = ["id", "price", "qty", "name"]
OPS_BIG = "Pipeline ops, table x10"
OPS_ONCE = "Pipeline ops, table once"
PLAIN_BIG = "Pipeline no operators, table x10"
PLAIN_ONCE = "Pipeline no operators, table once"


def _optional(module: str, attr: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def setup(config: RunConfig) -> Prepared:
    table = make_table(config.rows, config.seed).combine_chunks()
    n = table.num_rows
    batches = table.to_batches(max_chunksize=BATCH_ROWS)
    repeat = REPEAT
    big = pa.Table.from_batches(batches * repeat, schema=table.schema)  # zero-copy
    predicate = pc.field("price") < 5000.0
    total = pc.field("price") * pc.field("qty")
    kept = int(pc.sum(pc.less(table.column("price"), 5000.0)).as_py())

    source_cls = _optional("arrowflow.connectors.collection", "CollectionSource")
    sink_cls = _optional("arrowflow.connectors.null", "NullSink")
    pipeline_cls = _optional("arrowflow.pipeline", "Pipeline")
    ops = importlib.import_module("arrowflow.ops") if pipeline_cls is not None else None
    methods: dict[str, Method] = {}

    def check(rows_out: int, expected: int, what: str) -> None:
        if rows_out != expected:
            raise AssertionError(f"{what}: {rows_out} rows reached the sink, expected {expected}")

    if source_cls is None or sink_cls is None or pipeline_cls is None or ops is None:
        missing = "not built (arrowflow.pipeline / connectors.collection / connectors.null)"
        for label in (OPS_BIG, OPS_ONCE, "operators in a bare loop (floor)"):
            methods[label] = Method(skip=missing)
    else:

        def run_ops(data: pa.Table, times: int) -> int:
            sink = sink_cls()
            (
                pipeline_cls(source_cls(data, batch_size=BATCH_ROWS))
                .filter(predicate)
                .select(COLUMNS)
                .with_columns(total=total)
                .to(sink)
                .run(progress=False)
            )
            check(int(sink.metrics()["rows"]), kept * times, "pipeline with operators")
            return data.num_rows

        def run_bare_ops() -> int:
            chain = [ops.Filter(predicate), ops.Select(COLUMNS), ops.WithColumns(total=total)]
            out = 0
            for batch in batches:
                current = [batch]
                for op in chain:
                    current = [r for b in current for r in op.process(b)]
                out += sum(b.num_rows for b in current)
            check(out, kept, "bare operator loop")
            return n

        methods[OPS_BIG] = Method(
            run=lambda: run_ops(big, repeat),
            note=f"filter/select/with_columns, {big.num_rows:,} rows (table x{repeat})",
        )
        methods[OPS_ONCE] = Method(
            run=lambda: run_ops(table, 1), note=f"{n:,} rows, includes thread start-up"
        )
        methods["operators in a bare loop (floor)"] = Method(
            run=run_bare_ops,
            target=Target(min_speedup=0.8),
            note="same Operator objects, one thread; target: pipeline >= 0.8x of it",
        )

    def run_hand_written() -> int:
        out = 0
        for batch in batches:
            kept_batch = batch.filter(pc.less(batch.column("price"), 5000.0)).select(COLUMNS)
            kept_batch = kept_batch.append_column(
                "total", pc.multiply(kept_batch.column("price"), kept_batch.column("qty"))
            )
            out += kept_batch.num_rows
        check(out, kept, "hand-written loop")
        return n

    methods["pyarrow compute loop (hand-written)"] = Method(
        run=run_hand_written, note="pc mask filter + select + pc.multiply"
    )

    if source_cls is None or sink_cls is None or pipeline_cls is None:
        methods[PLAIN_BIG] = Method(skip="not built", target=Target(min_rate=50e6))
    else:

        def run_plain(data: pa.Table) -> int:
            sink = sink_cls()
            pipeline_cls(source_cls(data, batch_size=BATCH_ROWS)).to(sink).run(progress=False)
            check(int(sink.metrics()["rows"]), data.num_rows, "pipeline without operators")
            return data.num_rows

        methods[PLAIN_BIG] = Method(
            run=lambda: run_plain(big),
            target=Target(min_rate=50e6),
            note=f"CollectionSource -> NullSink, {big.num_rows:,} rows",
        )
        methods[PLAIN_ONCE] = Method(
            run=lambda: run_plain(table),
            target=Target(min_rate=50e6),
            note=f"{n:,} rows, includes thread start-up",
        )

    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


WORKLOAD = register(
    Workload(
        name="pipeline_ops",
        description="Pipeline.run with filter/select/with_columns vs the same operators in a bare loop",
        setup=setup,
        reference=OPS_BIG,
        idiomatic=("pyarrow compute loop (hand-written)",),
    )
)
