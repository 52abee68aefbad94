"""Workload ``pipeline``: what the runner costs on a pipeline that reads every column of every row.

The pipeline (64k-row batches of the 1M-row table, default ``run`` options apart from
``progress=False``)::

    Pipeline(CollectionSource(table, batch_size=65536))
        .filter(pc.field("price") < 5000)                        # ~50% kept: copies all 8 columns
        .with_columns(total=pc.field("price") * pc.field("qty"))  # projection: a computed column
        .to(NullSink()).run(progress=False)

The filter materialises every column of the kept rows (``RecordBatch.filter``), so every column of the
table is read; the sink counts the rows and the Arrow bytes it received (all 9 columns). Rows/s count
source rows. (This replaces a "CollectionSource -> NullSink" measurement that moved batch references
without touching a byte: 2.57G rows/s said nothing about data.)

Methods:

* ``Pipeline.run filter + projection``: the pipeline above, through :class:`arrowflow.pipeline.Pipeline`
  (stage threads, bounded queues, metrics; thread start-up included). The reference.
* ``contracts + operators, one thread``: the same source, the same ``Filter`` and ``WithColumns``
  operator objects and the same sink driven by a minimal loop in this thread
  (``plan``/``open``/``read_batch`` -> ``process`` -> ``write``): the runner's floor.
* ``pyarrow loop (hand-written)``: what a user writes without arrowflow: ``table.to_batches(65536)``,
  ``batch.filter(pc.less(price, 5000))``, ``append_column("total", pc.multiply(price, qty))``. The
  idiomatic baseline; target: the pipeline reaches >= 0.8x of it (the runner costs <= 20%).

Every call checks the rows and Arrow bytes that reached its end against the hand-written result
(computed in setup); each method's output check compares the batches themselves with it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

BATCH_ROWS = 65_536
PIPELINE = "Pipeline.run filter + projection"
HAND_WRITTEN = "pyarrow loop (hand-written)"


def _optional(module: str, attr: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def _hand_written(table: pa.Table) -> list[pa.RecordBatch]:
    out = []
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        kept = batch.filter(pc.less(batch.column("price"), 5000.0))
        out.append(kept.append_column("total", pc.multiply(kept.column("price"), kept.column("qty"))))
    return out


def setup(config: RunConfig) -> Prepared:
    table = make_table(config.rows, config.seed).combine_chunks()
    n = table.num_rows
    predicate = pc.field("price") < 5000.0
    total = pc.field("price") * pc.field("qty")
    expected = pa.Table.from_batches(_hand_written(table))
    expected_rows, expected_bytes = expected.num_rows, expected.nbytes
    source_cls = _optional("arrowflow.connectors.collection", "CollectionSource")
    null_sink = _optional("arrowflow.connectors.null", "NullSink")
    memory_sink = _optional("arrowflow.connectors.memory", "MemorySink")
    pipeline_cls = _optional("arrowflow.pipeline", "Pipeline")
    ops = importlib.import_module("arrowflow.ops") if pipeline_cls is not None else None

    def verify(rows: int, nbytes: int, what: str) -> int:
        if (rows, nbytes) != (expected_rows, expected_bytes):
            raise AssertionError(
                f"{what}: {rows:,} rows / {nbytes:,} bytes reached the end, "
                f"expected {expected_rows:,} / {expected_bytes:,}"
            )
        return n

    def same_output(batches: list[pa.RecordBatch], what: str) -> str:
        got = pa.Table.from_batches(batches, schema=expected.schema) if batches else None
        if got is None or not got.equals(expected):
            raise AssertionError(f"{what}: the output differs from the hand-written filter + projection")
        return f"{expected_rows:,} rows x {expected.num_columns} columns, in order"

    methods: dict[str, Method] = {}
    if source_cls is None or null_sink is None or memory_sink is None or pipeline_cls is None or ops is None:
        missing = "not built (arrowflow.pipeline / ops / connectors.collection / .null / .memory)"
        methods[PIPELINE] = Method(skip=missing)
        methods["contracts + operators, one thread"] = Method(skip=missing)
    else:

        def pipeline_into(sink: Any) -> Any:
            (
                pipeline_cls(source_cls(table, batch_size=BATCH_ROWS))
                .filter(predicate)
                .with_columns(total=total)
                .to(sink)
                .run(progress=False)
            )
            return sink

        def run_pipeline() -> int:
            m = pipeline_into(null_sink()).metrics()
            return verify(int(m["rows"]), int(m["bytes"]), "Pipeline.run")

        def contracts_into(sink: Any) -> Any:
            chain = [ops.Filter(predicate), ops.WithColumns(total=total)]
            source = source_cls(table, batch_size=BATCH_ROWS)
            for split in source.plan():
                reader = source.open(split)
                try:
                    while not reader.finished:
                        batch = reader.read_batch(BATCH_ROWS, 0.0)
                        if batch is None:
                            continue
                        current = [batch]
                        for op in chain:
                            current = [r for b in current for r in op.process(b)]
                        for b in current:
                            sink.write(b)
                finally:
                    reader.close()
            sink.close()
            return sink

        def run_contracts() -> int:
            m = contracts_into(null_sink()).metrics()
            return verify(int(m["rows"]), int(m["bytes"]), "contracts loop")

        def output_of(into: Callable[[Any], Any], what: str) -> Callable[[], str]:
            return lambda: same_output(into(memory_sink()).batches, what)

        methods[PIPELINE] = Method(
            run=run_pipeline,
            note="filter copies all 8 columns; stage threads + queues; includes thread start-up",
            check=output_of(pipeline_into, PIPELINE),
        )
        methods["contracts + operators, one thread"] = Method(
            run=run_contracts,
            note="same source/operators/sink in a plain loop: the runner's floor",
            check=output_of(contracts_into, "contracts loop"),
        )

    def run_hand_written() -> int:
        out = _hand_written(table)
        return verify(sum(b.num_rows for b in out), sum(b.nbytes for b in out), "hand-written loop")

    methods[HAND_WRITTEN] = Method(
        run=run_hand_written,
        target=Target(min_speedup=0.8),
        note="to_batches + filter + append_column; target: pipeline >= 0.8x of it",
        check=lambda: same_output(_hand_written(table), HAND_WRITTEN),
    )
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


WORKLOAD = register(
    Workload(
        name="pipeline",
        description="Pipeline: filter (reads all 8 columns) + projection -> NullSink, 64k-row batches",
        setup=setup,
        reference=PIPELINE,
        idiomatic=(HAND_WRITTEN,),
    )
)
