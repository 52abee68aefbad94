"""Workload ``filesystem``: writing the benchmark table as Parquet (snappy) into a local directory.

Methods (the table in 64k-row batches; every call writes into a fresh directory under a temporary
directory, and deletes the previous call's output first - the same for every method):

* ``FileSink parquet (fsync=False)``: :class:`arrowflow.connectors.filesystem.FileSink` with the default
  rolling policy - in-progress file, row groups buffered to 1Mi rows, close, rename to the final name.
  ``fsync=False`` so it does exactly the I/O the raw writer does. The reference.
* ``FileSink parquet (default, fsync)``: the same with the default ``fsync=True`` (file and directory
  fsync at commit), the durable configuration exactly-once pipelines use.
* ``pyarrow ParquetWriter (raw)``: ``pq.ParquetWriter(path).write_table(table)``, the floor.
  Target: FileSink >= 0.9x of it.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import tempfile
from pathlib import Path
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
    import pyarrow.parquet as pq

    table = make_table(config.rows, config.seed).combine_chunks()
    batches = table.to_batches(max_chunksize=BATCH_ROWS)
    n = table.num_rows
    root = Path(tempfile.mkdtemp(prefix="af-bench-fs-"))
    atexit.register(shutil.rmtree, root, True)

    def fresh_dir(label: str) -> Path:
        out = root / label
        if out.exists():
            shutil.rmtree(out)
        return out

    file_sink = _optional("arrowflow.connectors.filesystem", "FileSink")
    methods: dict[str, Method] = {}

    def run_raw() -> int:
        d = fresh_dir("raw")
        d.mkdir()
        with pq.ParquetWriter(str(d / "out.parquet"), table.schema, compression="snappy") as w:
            w.write_table(table)
        return n

    if file_sink is None:
        methods["FileSink parquet (fsync=False)"] = Method(skip="not built (arrowflow.connectors.filesystem)")
    else:

        def make_run(label: str, fsync: bool) -> Any:
            def run() -> int:
                d = fresh_dir(label)
                sink = file_sink(str(d), format="parquet", compression="snappy", fsync=fsync)
                for batch in batches:
                    sink.write(batch)
                sink.close()
                return n

            return run

        methods["FileSink parquet (fsync=False)"] = Method(
            run=make_run("sink", False), note="64k-row batches -> 1 file, rename on close"
        )
        methods["FileSink parquet (default, fsync)"] = Method(
            run=make_run("sink-fsync", True), note="+ fsync of file and directory"
        )
    methods["pyarrow ParquetWriter (raw)"] = Method(
        run=run_raw, target=Target(min_speedup=0.9), note="write_table of the whole table"
    )
    return Prepared(methods=methods, bytes_per_row=table.nbytes / max(n, 1))


WORKLOAD = register(
    Workload(
        name="filesystem",
        description="the table -> Parquet (snappy) files in a local directory",
        setup=setup,
        reference="FileSink parquet (fsync=False)",
        idiomatic=("pyarrow ParquetWriter (raw)",),
    )
)
