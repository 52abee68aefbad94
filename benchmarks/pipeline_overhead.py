"""Workload ``pipeline``: the per-batch overhead of moving the benchmark table from a source to a sink.

Methods (64k-row batches, no transformation, so only the framework's cost is measured):

* ``CollectionSource -> NullSink (contracts)``: ``source.plan()`` / ``open()`` / ``read_batch()``
  until ``finished`` -> ``sink.write()``, then ``flush()``: the source and sink contracts driven by a
  minimal loop in this thread.
* ``Pipeline.run -> NullSink``: the same through :class:`arrowflow.pipeline.Pipeline` (its stage
  threads, bounded queues and metrics; ``guarantee="none"``, no progress line).
* ``Table.to_batches loop (floor)``: plain pyarrow slicing into 64k-row batches, what any framework
  costs at least.

``arrowflow.connectors.collection`` / ``.null`` / ``arrowflow.pipeline`` are imported lazily; a
missing one shows its row as "not built".
"""

from __future__ import annotations

import importlib
from typing import Any

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

BATCH_ROWS = 65_536


def _optional(module: str, attr: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def setup(config: RunConfig) -> Prepared:
    table = make_table(config.rows, config.seed).combine_chunks()
    n = table.num_rows
    collection_source = _optional("arrowflow.connectors.collection", "CollectionSource")
    null_sink = _optional("arrowflow.connectors.null", "NullSink")
    pipeline = _optional("arrowflow.pipeline", "Pipeline")
    methods: dict[str, Method] = {}

    if collection_source is None or null_sink is None:
        methods["CollectionSource -> NullSink (contracts)"] = Method(
            skip="not built (arrowflow.connectors.collection / .null)", target=Target(min_rate=50e6)
        )
    else:

        def run_contracts() -> int:
            source = collection_source(table, batch_size=BATCH_ROWS)
            sink = null_sink()
            rows = 0
            for split in source.plan():
                reader = source.open(split)
                try:
                    while not reader.finished:
                        batch = reader.read_batch(BATCH_ROWS, 0.0)
                        if batch is not None:
                            sink.write(batch)
                            rows += batch.num_rows
                finally:
                    reader.close()
            sink.close()
            if rows != n:
                raise AssertionError(f"moved {rows} rows, expected {n}")
            return rows

        methods["CollectionSource -> NullSink (contracts)"] = Method(
            run=run_contracts, target=Target(min_rate=50e6), note="plan/open/read_batch -> write, one thread"
        )

    if pipeline is None or collection_source is None or null_sink is None:
        methods["Pipeline.run -> NullSink"] = Method(skip="not built (arrowflow.pipeline)")
    else:

        def run_pipeline() -> int:
            sink = null_sink()
            pipeline(collection_source(table, batch_size=BATCH_ROWS)).to(sink).run(
                guarantee="none", progress=False, max_batch_rows=BATCH_ROWS
            )
            rows = int(sink.metrics()["rows"])
            if rows != n:
                raise AssertionError(f"moved {rows} rows, expected {n}")
            return rows

        methods["Pipeline.run -> NullSink"] = Method(
            run=run_pipeline, note="stage threads + queues, guarantee=none; includes thread start-up"
        )

    def run_floor() -> int:
        rows = 0
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            rows += batch.num_rows
        return rows

    methods["Table.to_batches loop (floor)"] = Method(run=run_floor, note="pyarrow slicing only")
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


WORKLOAD = register(
    Workload(
        name="pipeline",
        description="CollectionSource -> NullSink in 64k-row batches (framework overhead)",
        setup=setup,
        reference="CollectionSource -> NullSink (contracts)",
    )
)
