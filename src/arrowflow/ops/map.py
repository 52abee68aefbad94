"""User functions over whole batches (:class:`MapBatches`) and list explosion (:class:`FlatMap`).

Neither keeps rows back nor blocks; empty results are dropped. polars and pandas are imported only
when a function asks for that format.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_choice
from ..errors import ConfigurationError
from .base import Operator

__all__ = ["BATCH_FORMATS", "FlatMap", "MapBatches", "to_record_batches"]

BATCH_FORMATS = ("pyarrow", "polars", "pandas")


def to_record_batches(result: Any) -> list[pa.RecordBatch]:
    """Convert a function's result to non-empty RecordBatches.

    Accepts ``None`` (nothing), a ``RecordBatch``, a ``Table``, a polars or pandas ``DataFrame``, or a
    list/tuple of any of those. Anything else is a ``TypeError``.
    """
    if result is None:
        return []
    if isinstance(result, pa.RecordBatch):
        return [result] if result.num_rows else []
    if isinstance(result, pa.Table):
        return [b for b in result.to_batches() if b.num_rows]
    module = type(result).__module__
    if module.startswith("polars"):
        return to_record_batches(result.to_arrow())
    if module.startswith("pandas"):
        return to_record_batches(pa.Table.from_pandas(result, preserve_index=False))
    if isinstance(result, (list, tuple)):
        return [b for item in result for b in to_record_batches(item)]
    raise TypeError(
        "a batch function must return a pyarrow RecordBatch/Table, a polars or pandas DataFrame, "
        f"or None; got {type(result).__name__}"
    )


def _detect_format(fn: Callable[..., Any]) -> str:
    """The batch format named by the annotation of ``fn``'s first parameter (default ``pyarrow``)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return "pyarrow"
    if not params or params[0].annotation is inspect.Parameter.empty:
        return "pyarrow"
    ann = params[0].annotation
    text = ann if isinstance(ann, str) else f"{getattr(ann, '__module__', '')}.{getattr(ann, '__name__', '')}"
    if "polars" in text or text.startswith("pl."):
        return "polars"
    if "pandas" in text or text.startswith("pd."):
        return "pandas"
    return "pyarrow"


class MapBatches(Operator):
    """Apply ``fn`` to every batch, in ``batch_format``.

    ``batch_format``: ``"pyarrow"`` (default; ``fn`` gets the ``RecordBatch``), ``"polars"``
    (a ``polars.DataFrame``), ``"pandas"`` (a ``pandas.DataFrame``), or ``None`` to pick the format
    from the annotation of ``fn``'s first parameter (``pl.DataFrame``/``pd.DataFrame``, else pyarrow).
    ``fn`` returns anything :func:`to_record_batches` accepts; ``None`` or an empty result drops the
    batch. Exceptions from ``fn`` propagate unchanged.
    """

    name = "map_batches"

    def __init__(self, fn: Callable[[Any], Any], *, batch_format: str | None = "pyarrow") -> None:
        if not callable(fn):
            raise ConfigurationError("fn must be callable", option="fn")
        if batch_format is None:
            batch_format = _detect_format(fn)
        self.batch_format = check_choice("batch_format", batch_format, BATCH_FORMATS)
        self.fn = fn

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        arg: Any
        if self.batch_format == "pyarrow":
            arg = batch
        elif self.batch_format == "polars":
            import polars as pl

            arg = pl.from_arrow(batch)
        else:
            arg = batch.to_pandas()
        return to_record_batches(self.fn(arg))


class FlatMap(Operator):
    """Explode the list column ``column``: one output row per list element.

    The other columns are repeated (``take`` of the parent row index); null and empty lists produce
    no rows. The column keeps its name and takes the list's value type. Works for ``list``,
    ``large_list`` and ``fixed_size_list``; any other type raises ``TypeError``.
    """

    name = "flat_map"

    def __init__(self, column: str) -> None:
        if not isinstance(column, str):
            raise ConfigurationError("column must be a column name", option="column")
        self.column = column

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        idx = batch.schema.get_field_index(self.column)
        if idx < 0:
            raise KeyError(f"flat_map: no column {self.column!r} in {batch.schema.names}")
        lists = batch.column(idx)
        t = lists.type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise TypeError(f"flat_map: column {self.column!r} is {t}, not a list")
        # list_parent_indices counts the hidden values under null lists, list_flatten skips them;
        # deriving parents from the (null -> 0) lengths keeps the two aligned.
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
        total = int(lengths.sum())
        if total == 0:
            return []
        parents = np.repeat(np.arange(batch.num_rows, dtype=np.int64), lengths)
        values = pc.list_flatten(lists)
        out = batch.take(pa.array(parents)).set_column(idx, pa.field(self.column, t.value_type), values)
        return [out]
