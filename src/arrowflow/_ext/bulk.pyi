"""Type stub for the compiled ``_bulk`` body kernel (ext/bulk.pyx)."""

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["ACTIONS", "cut", "encode_bodies", "encode_bulk", "encode_entries", "split_bodies"]

ACTIONS: tuple[str, ...]

def encode_entries(
    docs: pa.Array | None = None,
    *,
    action: str = "index",
    index: str | None = None,
    index_values: pa.Array | None = None,
    ids: pa.Array | None = None,
    routing: pa.Array | None = None,
    doc_as_upsert: bool = False,
    num_rows: int = -1,
    threads: int = 0,
) -> pa.BinaryArray:
    """One entry (action line + source line) per row as a BinaryArray without nulls.

    Every input array is validated (offsets, dictionary indices, UTF-8 of text) before the loop
    indexes it: ``ValueError`` otherwise. uint64 meta values are written as decimal text; binary
    ones must be UTF-8.
    """

def encode_bulk(
    batch: pa.RecordBatch,
    *,
    action: str = "index",
    index: str | None = None,
    index_column: str | None = None,
    id_column: str | None = None,
    routing_column: str | None = None,
    doc_as_upsert: bool = False,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    nulls: str = "null",
    nan: str = "error",
    threads: int = 0,
    index_values: pa.Array | None = None,
) -> pa.BinaryArray:
    """Entries for every row of ``batch``; documents through the JSON kernel."""

def _tune(slice_rows: int | None = None, copy_threads: int | None = None) -> tuple[int, int]:
    """Testing and benchmarking only: encode_bulk's row slice and copy threads; returns the old pair."""

def cut(entries: pa.Array, *, max_actions: int = 1000, max_bytes: int | None = 5242880) -> np.ndarray:
    """Row bounds (int64, requests + 1 values) of the requests the entries split into."""

def split_bodies(entries: pa.Array, bounds: np.ndarray) -> list[pa.Buffer]:
    """Zero-copy request bodies for ``bounds`` (ascending from 0 to ``len(entries)``, else ``ValueError``)."""

def encode_bodies(
    batch: pa.RecordBatch,
    *,
    max_actions: int = 1000,
    max_bytes: int | None = 5242880,
    **options: object,
) -> tuple[list[pa.Buffer], np.ndarray]:
    """``(bodies, bounds)``: request bodies and the row range each covers."""
