"""Row and column operators: :class:`Filter`, :class:`Select`, :class:`Rename`, :class:`WithColumns`.

All of them work on whole batches with pyarrow compute (expressions are evaluated by Acero's project
node over the one batch), keep no rows back (``flush()`` returns nothing) and never block.
A batch that ends up with no rows is dropped (``process`` returns ``[]``) so downstream stages never
see empty batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._arrays import as_array as _as_array
from .._arrays import to_arrow_array
from ..errors import ConfigurationError
from .base import Operator

__all__ = ["Filter", "Rename", "Select", "WithColumns", "evaluate_expressions", "to_arrow_array"]


def evaluate_expressions(batch: pa.RecordBatch, exprs: Mapping[str, pc.Expression]) -> list[pa.Array]:
    """Evaluate every expression of ``exprs`` against the same input ``batch``; one array each."""
    import pyarrow.acero as acero

    table = pa.Table.from_batches([batch], schema=batch.schema)
    decl = acero.Declaration.from_sequence(
        [
            acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
            acero.Declaration("project", acero.ProjectNodeOptions(list(exprs.values()), list(exprs))),
        ]
    )
    # use_threads=False keeps the single batch in order and avoids handing a tiny task to the pool.
    out = decl.to_table(use_threads=False)
    return [_as_array(out.column(i)) for i in range(out.num_columns)]


class Filter(Operator):
    """Keep the rows where ``predicate`` is true; a null in the mask drops the row (as SQL ``WHERE``).

    ``predicate`` is a ``pyarrow.compute.Expression`` or a callable ``batch -> mask`` returning a
    boolean ``pa.Array``/``ChunkedArray``, numpy bool array or polars/pandas boolean Series.
    """

    name = "filter"

    def __init__(self, predicate: pc.Expression | Callable[[pa.RecordBatch], Any]) -> None:
        if not isinstance(predicate, pc.Expression) and not callable(predicate):
            raise ConfigurationError(
                "predicate must be a pyarrow.compute.Expression or a callable(batch) -> mask",
                option="predicate",
            )
        self.predicate = predicate

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if isinstance(self.predicate, pc.Expression):
            # Evaluating the mask and then filtering is ~3x faster than RecordBatch.filter(expression),
            # which runs a whole Acero filter plan per batch.
            mask = evaluate_expressions(batch, {"mask": self.predicate})[0]
            out = batch.filter(mask, null_selection_behavior="drop")
        else:
            mask = to_arrow_array(self.predicate(batch), batch.num_rows, what="filter predicate")
            if not pa.types.is_boolean(mask.type):
                raise TypeError(f"filter predicate must return booleans, got {mask.type}")
            out = batch.filter(mask, null_selection_behavior="drop")
        return [out] if out.num_rows else []


class Select(Operator):
    """Keep only ``columns``, in that order. A missing column raises ``KeyError`` at the first batch."""

    name = "select"

    def __init__(self, columns: Sequence[str]) -> None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ConfigurationError("columns must be a sequence of column names", option="columns")
        self.columns = list(columns)

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        missing = [c for c in self.columns if c not in batch.schema.names]
        if missing:
            raise KeyError(f"select: no column(s) {missing} in {batch.schema.names}")
        return [batch.select(self.columns)] if batch.num_rows else []


class Rename(Operator):
    """Rename columns by ``mapping`` (old -> new); columns not in the mapping keep their names."""

    name = "rename"

    def __init__(self, mapping: Mapping[str, str]) -> None:
        if not isinstance(mapping, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ConfigurationError("mapping must map old column names to new ones", option="mapping")
        self.mapping = dict(mapping)

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not batch.num_rows:
            return []
        names = [self.mapping.get(n, n) for n in batch.schema.names]
        return [batch.rename_columns(names)]


class WithColumns(Operator):
    """Add or replace columns: ``WithColumns(total=pc.field("a") + pc.field("b"), src="web")``.

    A value is a ``pc.Expression`` (evaluated by Acero), a callable ``batch -> array-like`` of the
    batch's length, or a scalar (broadcast; a ``pa.Scalar`` keeps its type). Every value is computed
    from the *input* batch, so new columns cannot refer to each other. A replaced column keeps its
    position; new ones are appended in argument order.
    """

    name = "with_columns"

    def __init__(self, **columns: Any) -> None:
        if not columns:
            raise ConfigurationError("with_columns needs at least one column", option="columns")
        self.columns = columns
        self._exprs = {k: v for k, v in columns.items() if isinstance(v, pc.Expression)}

    def process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if not batch.num_rows:
            return []
        n = batch.num_rows
        evaluated = (
            dict(zip(self._exprs, evaluate_expressions(batch, self._exprs), strict=True))
            if self._exprs
            else {}
        )
        for name, value in self.columns.items():
            if name in evaluated:
                continue
            if callable(value):
                evaluated[name] = to_arrow_array(value(batch), n, what=f"with_columns({name}=...)")
            else:
                scalar = value if isinstance(value, pa.Scalar) else pa.scalar(value)
                evaluated[name] = pa.repeat(scalar, n)
        out = batch
        for name in self.columns:
            arr = evaluated[name]
            idx = out.schema.get_field_index(name)
            out = out.set_column(idx, name, arr) if idx >= 0 else out.append_column(name, arr)
        return [out]
