"""Window aggregates, polars-style: ``agg.count()``, ``agg.sum("amount").alias("total")``, ...

Every built-in is computed incrementally: each batch is reduced to one partial row per window and key
(pyarrow ``group_by``), and partials are merged; no row is kept. Null handling follows SQL and pyarrow:
``sum``/``min``/``max``/``mean`` skip nulls and are null for a window with no non-null value;
``count()`` counts rows, ``count(column)`` non-null values; ``first``/``last`` take the value (null
included) of the row with the lowest/highest event time (ties: the row that arrived first/last).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .windows import Agg

__all__ = ["apply", "approx_distinct", "count", "first", "last", "max", "mean", "min", "sum"]


def count(column: str | None = None) -> Agg:
    """Rows per window (``count()``, named ``count``), or non-null values of ``column``."""
    return Agg("count", column)


def sum(column: str) -> Agg:
    """Sum of the non-null values (int64 for integers, float64 for floats)."""
    return Agg("sum", column)


def min(column: str) -> Agg:
    """Smallest non-null value (numbers, timestamps, strings)."""
    return Agg("min", column)


def max(column: str) -> Agg:
    """Largest non-null value (numbers, timestamps, strings)."""
    return Agg("max", column)


def mean(column: str) -> Agg:
    """Mean of the non-null values, as float64."""
    return Agg("mean", column)


def first(column: str) -> Agg:
    """Value of the row with the lowest event time."""
    return Agg("first", column)


def last(column: str) -> Agg:
    """Value of the row with the highest event time."""
    return Agg("last", column)


def approx_distinct(column: str, precision: int = 12) -> Agg:
    """Approximate number of distinct non-null values (HyperLogLog with ``2**precision`` registers)."""
    return Agg("approx_distinct", column, precision=precision)


def apply(
    fn: Callable[[Any], Any], columns: str | Sequence[str], name: str, *, batch_format: str = "pyarrow"
) -> Agg:
    """``fn(group) -> scalar`` per window and key over the rows of ``columns`` (kept until it fires)."""
    cols = (columns,) if isinstance(columns, str) else tuple(columns)
    return Agg("apply", None, name=name, fn=fn, columns=cols, batch_format=batch_format)
