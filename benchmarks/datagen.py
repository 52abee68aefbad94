"""Workload ``datagen``: generating the 8-column benchmark table (BASELINES.md) as Arrow.

The schema is :func:`arrowflow.pipeline_spec.build.bench_fields`: int64 sequence, float64 uniform,
string 15-25 chars, bool, timestamp[us], int32 uniform, string 6-10 chars, float64 normal; strings
from the 64 URL-safe base64 characters; no nulls; no rate limit.

Methods (each returns the rows it produced, all of them in memory as Arrow at the end):

* ``arrowflow DataGen read_all``: ``DataGenSource(fields, count=rows).read_all()`` (64k-row
  blocks, the default one kernel thread). The target: >= 20M rows/s.
* ``arrowflow DataGen read_all, threads=2``: the same with each block filled by two threads.
* ``arrowflow DataGen batches (discarded)``: iterating ``source.batches()`` and dropping each
  batch, the way a pipeline streams it (memory is reused instead of first-touched).
* ``numpy per 64k block``: the same columns drawn with numpy's PCG64 generator per block
  (``integers``/``random``/``standard_normal``, strings as lengths -> offsets plus a gather from the
  alphabet), wrapped into RecordBatches: what DataGen did before its kernel.
* ``numpy whole table``: the same, one block of ``rows`` rows (no per-batch overhead).

polars and pyarrow are not listed: neither can draw random strings, normals or bounded integers
natively (pyarrow.compute.random gives only uniform floats), so any "polars" baseline would be
numpy underneath.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .core import Method, Prepared, RunConfig, Target, Workload, register

BLOCK = 65536
_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", dtype=np.uint8)
_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("value", pa.float64()),
        ("name", pa.string()),
        ("flag", pa.bool_()),
        ("ts", pa.timestamp("us")),
        ("quantity", pa.int32()),
        ("code", pa.string()),
        ("score", pa.float64()),
    ]
)
_T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00 in microseconds


def _numpy_strings(rng: np.random.Generator, n: int, lo: int, hi: int) -> pa.Array:
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = 0
    np.cumsum(rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int32), out=offsets[1:])
    # 8 random bits per character, masked to 6: exact for a 64-character alphabet.
    raw = rng.bit_generator.random_raw((int(offsets[-1]) + 7) // 8).view(np.uint8)[: offsets[-1]]
    data = _ALPHABET[raw & 63]
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def numpy_block(seed: int, block: int, start: int, n: int) -> pa.RecordBatch:
    """One block of the benchmark table drawn with numpy (PCG64 seeded per block)."""
    rng = np.random.default_rng([seed, block])
    idx = np.arange(start, start + n, dtype=np.int64)
    flags = rng.bit_generator.random_raw((n + 63) // 64).view(np.uint8)[: (n + 7) // 8]
    arrays = [
        pa.array(idx),
        pa.array(rng.random(n) * 1000.0),
        _numpy_strings(rng, n, 15, 25),
        pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(flags)]),
        pa.Array.from_buffers(pa.timestamp("us"), n, [None, pa.py_buffer(idx * 1000 + _T0_US)]),
        pa.array(rng.integers(0, 1_000_000, size=n, endpoint=True, dtype=np.int32)),
        _numpy_strings(rng, n, 6, 10),
        pa.array(rng.standard_normal(n)),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_SCHEMA)


def setup(config: RunConfig) -> Prepared:
    try:
        from arrowflow._ext import datagen as _kernel  # noqa: F401  (built?)
    except ImportError:
        skip = Method(skip="not built")
        return Prepared(methods={"arrowflow DataGen read_all": skip}, bytes_per_row=0.0)
    from arrowflow.connectors.datagen import DataGenSource
    from arrowflow.pipeline_spec.build import bench_fields

    rows = config.rows
    fields = bench_fields()

    def source(threads: int = 1) -> Any:
        return DataGenSource(fields, count=rows, seed=config.seed, batch_size=BLOCK, threads=threads)

    def run_read_all() -> int:
        return int(source().read_all(max_rows=BLOCK).num_rows)

    def run_read_all_2() -> int:
        return int(source(2).read_all(max_rows=BLOCK).num_rows)

    def run_stream() -> int:
        got = 0
        for batch in source().batches(max_rows=BLOCK):
            got += batch.num_rows
        return got

    def run_numpy_blocks() -> int:
        batches = [
            numpy_block(config.seed, b, b * BLOCK, min(BLOCK, rows - b * BLOCK))
            for b in range(-(-rows // BLOCK))
        ]
        return int(pa.Table.from_batches(batches, schema=_SCHEMA).num_rows)

    def run_numpy_whole() -> int:
        return int(numpy_block(config.seed, 0, 0, rows).num_rows)

    # Setup checks: both paths give the schema and the shape the workload claims.
    sample = source().read_all()
    assert sample.schema.equals(_SCHEMA, check_metadata=False), sample.schema
    assert sample.num_rows == rows and sample.column("id").to_pylist()[:3] == [0, 1, 2][: min(3, rows)]
    assert numpy_block(config.seed, 0, 0, 1000).schema.equals(_SCHEMA)
    bytes_per_row = sample.nbytes / rows
    del sample

    methods = {
        "arrowflow DataGen read_all": Method(run=run_read_all, target=Target(min_rate=20e6)),
        "arrowflow DataGen read_all, threads=2": Method(run=run_read_all_2),
        "arrowflow DataGen batches (discarded)": Method(run=run_stream),
        "numpy per 64k block": Method(run=run_numpy_blocks, note="PCG64, what DataGen did before its kernel"),
        "numpy whole table": Method(run=run_numpy_whole, note="one block, no batching"),
    }
    return Prepared(methods=methods, bytes_per_row=bytes_per_row)


WORKLOAD = register(
    Workload(
        name="datagen",
        description="DataGen: the 8-column benchmark table (2 random string columns) generated as Arrow",
        setup=setup,
        reference="arrowflow DataGen read_all",
        idiomatic=("numpy per 64k block", "numpy whole table"),
    )
)
