"""Partitioning operators: :class:`KeyBy` (Kafka's murmur2 partitioner over key columns) and
:class:`Partition` (a user function).

Each input batch becomes one batch per non-empty partition, rows in their input order within a
partition (a stable argsort, then one ``take`` and zero-copy slices). Each output batch carries its
partition number in the schema metadata key ``arrowflow.partition``; :func:`partition_of` reads it.
Neither operator keeps rows back nor blocks.

How :class:`KeyBy` turns key columns into the bytes it hashes:

* one ``binary``/``string`` (or ``large_``) column: its bytes as they are, so the partition equals
  what Kafka's default partitioner picks for a record with that key;
* anything else (one non-binary column, or several): each row's key columns encoded as one JSON
  object by the compiled ``arrowflow._ext.json_encode.encode_rows`` kernel (``{"a":1,"b":"x"}``, keys in
  the order given), so the partition equals Kafka's for a record whose key is that JSON document.

A null key (single binary column) hashes like the empty key ``b""``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._arrays import is_binary_like
from ..config import check_type
from ..errors import ConfigurationError
from .base import Operator
from .columns import to_arrow_array

__all__ = [
    "PARTITION_KEY",
    "KeyBy",
    "KeyRouter",
    "Partition",
    "group_rows",
    "partition_of",
    "split_by_partition",
]

#: Schema metadata key holding the partition number (ASCII decimal) of a partitioned batch.
PARTITION_KEY = b"arrowflow.partition"


def partition_of(batch: pa.RecordBatch) -> int | None:
    """The partition a :class:`KeyBy`/:class:`Partition` output batch belongs to, else ``None``."""
    meta = batch.schema.metadata
    if not meta or PARTITION_KEY not in meta:
        return None
    return int(meta[PARTITION_KEY])


def group_rows(batch: pa.RecordBatch, partitions: np.ndarray) -> list[tuple[int, pa.RecordBatch]]:
    """``(partition, rows)`` for every distinct value of ``partitions`` (ascending), rows in input order.

    One stable argsort, one ``take`` (none when every row has the same partition) and zero-copy slices;
    the batches keep ``batch``'s schema, metadata included.
    """
    if len(partitions) != batch.num_rows:
        raise ValueError(f"{len(partitions)} partition numbers for a batch of {batch.num_rows} rows")
    if batch.num_rows == 0:
        return []
    parts = np.asarray(partitions, dtype=np.int64)
    order = np.argsort(parts, kind="stable")
    sorted_parts = parts[order]
    # Boundaries where the sorted partition number changes.
    starts = np.flatnonzero(np.diff(sorted_parts)) + 1
    bounds = np.concatenate(([0], starts, [len(parts)]))
    # One partition: the batch is already grouped, no take needed.
    grouped = batch if len(bounds) == 2 else batch.take(pa.array(order))
    return [
        (int(sorted_parts[lo]), grouped.slice(lo, hi - lo))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
    ]


def split_by_partition(batch: pa.RecordBatch, partitions: np.ndarray) -> list[pa.RecordBatch]:
    """Split ``batch`` into one batch per distinct value of ``partitions`` (ascending), order kept;
    each carries its partition number in the schema metadata (:func:`partition_of`)."""
    base_meta = dict(batch.schema.metadata or {})
    return [
        piece.replace_schema_metadata({**base_meta, PARTITION_KEY: str(p).encode()})
        for p, piece in group_rows(batch, partitions)
    ]


class KeyBy(Operator):
    """Partition rows by ``columns`` into ``num_partitions`` with Kafka's murmur2 partitioner.

    See the module docstring for how keys are encoded. Raises ``KeyError`` for a missing column.
    """

    name = "key_by"

    def __init__(self, columns: str | Sequence[str], num_partitions: int) -> None:
        cols = [columns] if isinstance(columns, str) else list(columns)
        if not cols or not all(isinstance(c, str) for c in cols):
            raise ConfigurationError("columns must be a column name or a list of names", option="columns")
        check_type("num_partitions", num_partitions, int)
        if isinstance(num_partitions, bool) or num_partitions <= 0:
            raise ConfigurationError(
                f"num_partitions must be a positive integer, got {num_partitions!r}", option="num_partitions"
            )
        self.columns = cols
        self.num_partitions = num_partitions
        self.key_columns = tuple(cols)
        self._murmur2: Any = None
        self._json: Any = None

    def open(self) -> None:
        from .._ext import load

        if self._murmur2 is None:
            self._murmur2 = load("murmur2")

    def keys(self, batch: pa.RecordBatch) -> pa.Array:
        """The binary key of every row (see the module docstring)."""
        missing = [c for c in self.columns if c not in batch.schema.names]
        if missing:
            raise KeyError(f"key_by: no column(s) {missing} in {batch.schema.names}")
        if len(self.columns) == 1:
            col = batch.column(self.columns[0])
            if is_binary_like(col.type):
                return col.fill_null(pa.scalar(b"").cast(col.type)) if col.null_count else col
        if self._json is None:
            from .._ext import load

            self._json = load("json_encode")
        return self._json.encode_rows(batch.select(self.columns))

    def partitions(self, batch: pa.RecordBatch) -> np.ndarray:
        """The partition number of every row (int32 numpy array)."""
        self.open()
        parts = self._murmur2.partition(self.keys(batch), self.num_partitions)
        return parts.to_numpy(zero_copy_only=False)

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not batch.num_rows:
            return []
        return split_by_partition(batch, self.partitions(batch))


class Partition(Operator):
    """Partition rows by a user function ``fn(batch) -> int array`` (one partition number per row).

    The array may be pyarrow, numpy, polars or pandas; nulls or negative numbers raise ``ValueError``.
    """

    name = "partition"

    def __init__(self, fn: Callable[[pa.RecordBatch], Any]) -> None:
        if not callable(fn):
            raise ConfigurationError("fn must be callable(batch) -> partition numbers", option="fn")
        self.fn = fn

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not batch.num_rows:
            return []
        arr = to_arrow_array(self.fn(batch), batch.num_rows, what="partition function")
        if not pa.types.is_integer(arr.type):
            raise TypeError(f"partition function must return integers, got {arr.type}")
        if arr.null_count:
            raise ValueError("partition function returned null partition numbers")
        parts = arr.to_numpy(zero_copy_only=False)
        if parts.size and parts.min() < 0:
            raise ValueError("partition function returned negative partition numbers")
        return split_by_partition(batch, parts)


class KeyRouter:
    """Which of ``count`` parallel subtasks owns each row: murmur2 of the row's key (the :class:`KeyBy`
    encoding of ``columns``) modulo ``count``; with no columns, subtask 0 owns every row.

    Used by the pipeline runner to route rows to the subtask of a keyed operator, and to split keyed
    state when a checkpoint is restored with another parallelism.
    """

    def __init__(self, columns: Sequence[str], count: int) -> None:
        self.count = count
        self._keyby = KeyBy(list(columns), count) if columns and count > 1 else None

    def owners(self, rows: pa.RecordBatch | pa.Table) -> np.ndarray:
        """The owning subtask of every row (int32)."""
        if self._keyby is None:
            return np.zeros(rows.num_rows, dtype=np.int32)
        if isinstance(rows, pa.Table):
            rows = rows.combine_chunks().to_batches()[0] if rows.num_rows else None
            if rows is None:
                return np.zeros(0, dtype=np.int32)
        return self._keyby.partitions(rows)

    def split(self, batch: pa.RecordBatch) -> list[tuple[int, pa.RecordBatch]]:
        """``(subtask, rows)`` for every subtask that owns rows of ``batch``."""
        if self._keyby is None:
            return [(0, batch)] if batch.num_rows else []
        return group_rows(batch, self.owners(batch))

    def keep(self, subtask: int) -> Callable[[pa.Table], pa.Table]:
        """A filter keeping the rows of a table that ``subtask`` owns."""

        def keep(table: pa.Table) -> pa.Table:
            if not table.num_rows:
                return table
            return table.filter(pa.array(self.owners(table) == subtask))

        return keep
