"""Workload ``json``: the benchmark table -> one JSON document per row (and NDJSON).

Methods:

* ``arrowflow encode_rows``: :func:`arrowflow._ext.json.encode_rows` over the whole table as one
  ``RecordBatch`` -> a binary array with one document per row. ``arrowflow encode_ndjson``: the
  same kernel's newline-delimited buffer. Listed as "not built" while the kernel is missing.
* ``to_pylist + json.dumps per row``: per 10k-row slice, ``to_pylist()`` then ``json.dumps`` per row
  (``default=isoformat`` for timestamps), on a subset.
* ``to_pylist + orjson.dumps per row``: the same with orjson, per 10k-row batch, on a subset.
* ``to_pylist alone``: the ceiling of any path that builds a Python dict per row, on a subset.
* ``polars write_ndjson``: the table as a polars DataFrame (converted during setup, untimed), written
  into one in-memory buffer.
* ``duckdb to_json(t)``: ``SELECT to_json(t) FROM t`` over the registered Arrow table, fetched back as
  an Arrow string column (duckdb uses its default thread count).
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register
from .data import make_table

BATCH = 10_000


def _iso(value: Any) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _kernel(name: str) -> Callable[..., Any] | str:
    """The named function of ``arrowflow._ext.json``, or why it is unavailable."""
    try:
        module = importlib.import_module("arrowflow._ext.json")
    except ImportError:
        return "not built (arrowflow._ext.json)"
    fn = getattr(module, name, None)
    if fn is None:
        return f"not built (arrowflow._ext.json.{name})"
    return fn  # type: ignore[no-any-return]


def _per_row(table: pa.Table, rows: int, encode: Callable[[Any], Any]) -> Callable[[], int]:
    sub = table.slice(0, rows)

    def run() -> int:
        for start in range(0, rows, BATCH):
            [encode(r) for r in sub.slice(start, BATCH).to_pylist()]
        return rows

    return run


def setup(config: RunConfig) -> Prepared:
    import duckdb
    import orjson
    import polars as pl

    table = make_table(config.rows, config.seed).combine_chunks()
    n = table.num_rows
    batch = table.to_batches()[0] if n else pa.RecordBatch.from_pylist([], schema=table.schema)
    methods: dict[str, Method] = {}

    for label, fname in (
        ("arrowflow encode_rows", "encode_rows"),
        ("arrowflow encode_ndjson", "encode_ndjson"),
    ):
        fn = _kernel(fname)
        if isinstance(fn, str):
            methods[label] = Method(skip=fn, target=Target(min_rate=5e6))
            continue

        def run_kernel(fn: Callable[..., Any] = fn) -> int:
            fn(batch)
            return n

        methods[label] = Method(run=run_kernel, target=Target(min_rate=5e6), note="whole table as one batch")

    json_n = config.subset(2_000 if config.quick else 20_000)
    fast_n = config.subset(5_000 if config.quick else 50_000)
    methods["to_pylist + json.dumps per row"] = Method(
        run=_per_row(table, json_n, lambda r: json.dumps(r, default=_iso)),
        note=f"per {BATCH // 1000}k-row slice, on {json_n:,} rows, scaled",
    )
    methods["to_pylist + orjson.dumps per row"] = Method(
        run=_per_row(table, fast_n, orjson.dumps),
        note=f"per {BATCH // 1000}k-row batch, on {fast_n:,} rows, scaled",
        target=Target(min_speedup=8),
    )
    methods["to_pylist alone"] = Method(
        run=_per_row(table, fast_n, lambda r: None),
        note=f"per {BATCH // 1000}k-row batch, on {fast_n:,} rows, scaled",
    )

    df = pl.from_arrow(table)

    def run_polars() -> int:
        buf = io.BytesIO()
        df.write_ndjson(buf)  # type: ignore[union-attr]
        return n

    methods["polars write_ndjson"] = Method(
        run=run_polars, note="into one BytesIO; DataFrame built in setup", target=Target(min_speedup=1.0)
    )

    con = duckdb.connect()
    con.register("t", table)

    def run_duckdb() -> int:
        result = con.execute("SELECT to_json(t) AS doc FROM t")
        # duckdb renamed fetch_arrow_table() to to_arrow_table() in 1.4/2.0.
        fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table  # type: ignore[attr-defined]
        return int(fetch().num_rows)

    methods["duckdb to_json(t)"] = Method(run=run_duckdb, note="-> Arrow string column")
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


WORKLOAD = register(
    Workload(
        name="json",
        description="benchmark table (8 columns) -> one JSON document per row",
        setup=setup,
        reference="arrowflow encode_rows",
        idiomatic=("polars write_ndjson", "duckdb to_json(t)", "to_pylist + orjson.dumps per row"),
    )
)
