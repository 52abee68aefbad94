"""Functions shipped to Ray workers by the Ray tests (importable there: conftest puts this directory on
the workers' ``PYTHONPATH``), and the test data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from arrowflow import Pipeline
from arrowflow.connectors.filesystem import FileSink, FileSource
from arrowflow.integrations.ray import Partition


def write_files(directory: Path, sizes: list[int], *, row_group_size: int | None = None) -> pa.Table:
    """Parquet files ``f00.parquet``... with ``sizes`` rows: ``id`` (unique), ``x``, ``name``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    start = 0
    tables = []
    for i, n in enumerate(sizes):
        ids = np.arange(start, start + n, dtype=np.int64)
        t = pa.table(
            {
                "id": ids,
                "x": rng.random(n).round(3),
                "name": pa.array([f"n{j % 97}" for j in range(n)]),
            }
        )
        pq.write_table(t, directory / f"f{i:02d}.parquet", row_group_size=row_group_size)
        tables.append(t)
        start += n
    return pa.concat_tables(tables)


def enrich(batch: Any) -> Any:
    """The job's transformation: ``y = x * 2`` and keep rows with ``id % 7 != 3`` (Table or RecordBatch)."""
    keep = pc.not_equal(pc.subtract(batch["id"], pc.multiply(pc.divide(batch["id"], 7), 7)), 3)
    out = batch.filter(keep)
    return out.append_column("y", pc.multiply(out["x"], 2.0))


def fail_on_id(batch: Any) -> Any:
    """Raises when the batch holds id 10 (makes one write task fail)."""
    if pc.any(pc.equal(batch["id"], 10)).as_py():
        raise RuntimeError("boom at id 10")
    return batch


def slow(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Identity that takes 80 ms per batch, so a partitioned run lasts long enough to kill a worker."""
    time.sleep(0.08)
    return batch


def partition_pipeline(partition: Partition, *, src: str, out: str, batch_size: int) -> Pipeline:
    """One partition's pipeline: files -> slow -> FileSink with a per-partition prefix (FileSink's
    recovery owns its prefix, so two partitions must not share one)."""
    source = FileSource(src, batch_size=batch_size, split_row_groups=False)
    sink = FileSink(out, prefix=f"part{partition.index}")
    return Pipeline(source).map_batches(slow).to(sink)


def sorted_by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")
