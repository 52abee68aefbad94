"""Workload ``bulk``: the benchmark table -> Elasticsearch/OpenSearch ``_bulk`` request bodies.

Every method produces the bodies of ``index`` actions into index ``bench`` with ``_id`` from the
``id`` column (documents = the other 7 columns), in requests of 500 actions. No server is involved.

Methods:

* ``arrowflow encode_bodies``: :func:`arrowflow._ext.bulk.encode_bodies` over the whole table as one
  ``RecordBatch`` (documents by the JSON kernel, action lines + interleaving + cutting in C) ->
  a list of zero-copy body buffers.
* ``elasticsearch.helpers path``: what ``helpers.bulk`` does before sending: ``to_pylist`` per 10k
  rows, one action dict per row, ``expand_action`` + ``_chunk_actions`` with the client's default
  ``JsonSerializer``, bodies joined per chunk, on a subset.
* ``polars concat_str + struct.json_encode``: the action line by ``concat_str`` and the document by
  ``struct.json_encode`` in one polars expression (DataFrame built in setup), bodies cut per 500
  rows as zero-copy slices of the result's buffer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

BATCH = 10_000
CHUNK = 500


def _helpers_path(table: pa.Table, rows: int) -> Callable[[], int] | str:
    try:
        from elasticsearch.helpers.actions import _chunk_actions, expand_action
        from elasticsearch.serializer import JsonSerializer
    except ImportError:
        return "not installed (elasticsearch)"
    serializer = JsonSerializer()
    sub = table.slice(0, rows)

    def run() -> int:
        for start in range(0, rows, BATCH):
            docs = sub.slice(start, BATCH).to_pylist()
            actions = ({"_index": "bench", "_id": d.pop("id"), "_source": d} for d in docs)
            for _, chunk in _chunk_actions(
                map(expand_action, actions), CHUNK, 100 * 1024 * 1024, None, serializer
            ):
                b"\n".join(chunk) + b"\n"
        return rows

    return run


def setup(config: RunConfig) -> Prepared:
    import polars as pl

    table = make_table(config.rows, config.seed).combine_chunks()
    n = table.num_rows
    batch = table.to_batches()[0] if n else pa.RecordBatch.from_pylist([], schema=table.schema)
    methods: dict[str, Method] = {}

    try:
        bulk: Any = importlib.import_module("arrowflow._ext.bulk")
    except ImportError:
        methods["arrowflow encode_bodies"] = Method(skip="not built (arrowflow._ext.bulk)")
    else:

        def run_kernel() -> int:
            _bodies, bounds = bulk.encode_bodies(batch, index="bench", id_column="id", max_actions=CHUNK)
            return int(bounds[-1])

        methods["arrowflow encode_bodies"] = Method(
            run=run_kernel, target=Target(min_rate=2e6), note=f"whole table as one batch, {CHUNK}/request"
        )

    helpers_n = config.subset(5_000 if config.quick else 50_000)
    helpers = _helpers_path(table, helpers_n)
    if isinstance(helpers, str):
        methods["elasticsearch.helpers path"] = Method(skip=helpers)
    else:
        methods["elasticsearch.helpers path"] = Method(
            run=helpers, target=Target(min_speedup=20), note=f"on {helpers_n:,} rows, scaled"
        )

    df = pl.from_arrow(table)
    others = [c for c in table.schema.names if c != "id"]

    def run_polars() -> int:
        entries = df.select(  # type: ignore[union-attr]
            pl.concat_str(
                [
                    pl.lit('{"index":{"_index":"bench","_id":"'),
                    pl.col("id").cast(pl.Utf8),
                    pl.lit('"}}\n'),
                    pl.struct(others).struct.json_encode(),
                    pl.lit("\n"),
                ]
            ).alias("e")
        )
        arr = entries.to_series().to_arrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_string()) if not pa.types.is_large_string(arr.type) else arr
        offsets = arr.buffers()[1]
        data = arr.buffers()[2]
        import numpy as np

        ends = np.frombuffer(offsets, dtype=np.int64)
        [data.slice(int(ends[a]), int(ends[min(a + CHUNK, n)] - ends[a])) for a in range(0, n, CHUNK)]
        return n

    methods["polars concat_str + struct.json_encode"] = Method(
        run=run_polars, target=Target(min_speedup=1.0), note="DataFrame built in setup"
    )
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


WORKLOAD = register(
    Workload(
        name="bulk",
        description="benchmark table -> _bulk bodies (index, _id from a column, 500 actions/request)",
        setup=setup,
        reference="arrowflow encode_bodies",
    )
)
