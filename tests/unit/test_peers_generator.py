"""benchmarks/peers: workload 3's generator is the same row by row in its per-row form (what the Python
peers run) and its vectorized form (what arrowflow's DataGen runs and what the outputs are checked
against); the Java form (flink/.../Event.java) is checked by every Flink run's output check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from benchmarks.peers.jobs._common import COLUMNS, gen_row
from benchmarks.peers.jobs._vector import SCHEMA, gen_batch


def test_vectorized_generator_equals_the_per_row_one() -> None:
    # Around 0, a block in the middle, and indices near 10M (the largest run sizes) where the integer
    # products are largest.
    idx = np.concatenate([np.arange(0, 3000), np.arange(500_000, 501_000), np.arange(9_999_000, 10_000_000)])
    batch = gen_batch(idx.astype(np.int64))
    assert batch.schema == SCHEMA and batch.schema.names == list(COLUMNS)
    expected = pa.RecordBatch.from_pylist([gen_row(int(i)) for i in idx], schema=SCHEMA)
    assert batch.equals(expected)


def test_generated_values_have_the_benchmark_tables_shape() -> None:
    batch = gen_batch(np.arange(100_000, dtype=np.int64))
    names = batch.column("name").to_numpy(zero_copy_only=False)
    codes = batch.column("code").to_numpy(zero_copy_only=False)
    assert {len(n) for n in names} == set(range(15, 26))
    assert {len(c) for c in codes} == set(range(6, 11))
    price = batch.column("price").to_numpy()
    assert price.min() >= 0 and price.max() < 10_000 and np.all(np.round(price, 2) == price)
    qty = batch.column("qty").to_numpy()
    assert qty.min() >= -1_000_000 and qty.max() <= 1_000_000
    score = batch.column("score").to_numpy()
    assert score.min() >= -0.5 and score.max() < 0.5
    assert 0.45 < batch.column("active").to_numpy(zero_copy_only=False).mean() < 0.55
    assert len(np.unique(batch.column("id").to_numpy())) == 100_000
