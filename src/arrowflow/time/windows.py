"""Window assigners and aggregate specifications (what ``Pipeline.window(...)`` takes).

Windows are half-open intervals ``[start, end)`` of event time (or processing time) in microseconds:

* :func:`tumbling` ``(size, offset=0)``: consecutive windows of ``size``, starting at the epoch plus
  ``offset`` plus multiples of ``size`` (polars ``group_by_dynamic(every=size)``, Flink
  ``TumblingEventTimeWindows``). Each row is in exactly one.
* :func:`sliding` ``(size, slide, offset=0)``: windows of ``size`` starting every ``slide`` (polars
  ``every=slide, period=size``; Flink's hopping windows). A row is in about ``size / slide`` windows.
* :func:`session` ``(gap)``: per key, rows closer than ``gap`` to each other form one window
  ``[first row, last row + gap)``; a row ``gap`` or more after the last one starts a new session.

Aggregates (:class:`Agg`, made by the functions of :mod:`arrowflow.time.agg`) name an input column, a
kind and an output name (``.alias(name)``; default ``"<column>_<kind>"``, ``"count"`` for ``count()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import check_choice, check_type
from ..errors import ConfigurationError
from ._units import DurationLike, duration_us

__all__ = [
    "AGG_KINDS",
    "Agg",
    "SessionWindows",
    "SlidingWindows",
    "TumblingWindows",
    "WindowAssigner",
    "session",
    "sliding",
    "tumbling",
]


@dataclass(frozen=True)
class TumblingWindows:
    """Fixed, non-overlapping windows of ``size_us`` (see the module docstring)."""

    size_us: int
    offset_us: int = 0

    @property
    def slide_us(self) -> int:
        return self.size_us


@dataclass(frozen=True)
class SlidingWindows:
    """Windows of ``size_us`` starting every ``slide_us`` (see the module docstring)."""

    size_us: int
    slide_us: int
    offset_us: int = 0


@dataclass(frozen=True)
class SessionWindows:
    """Per-key sessions closed by ``gap_us`` of inactivity (see the module docstring)."""

    gap_us: int


WindowAssigner = TumblingWindows | SlidingWindows | SessionWindows


def tumbling(size: DurationLike, offset: DurationLike = 0) -> TumblingWindows:
    """Tumbling windows of ``size`` (e.g. ``"1m"``), shifted by ``offset`` from the epoch."""
    size_us = duration_us(size, "size", allow_zero=False)
    return TumblingWindows(size_us, duration_us(offset, "offset") % size_us)


def sliding(size: DurationLike, slide: DurationLike, offset: DurationLike = 0) -> SlidingWindows:
    """Windows of ``size`` every ``slide`` (``slide <= size``), shifted by ``offset`` from the epoch."""
    size_us = duration_us(size, "size", allow_zero=False)
    slide_us = duration_us(slide, "slide", allow_zero=False)
    if slide_us > size_us:
        raise ConfigurationError(
            f"slide ({slide!r}) must not exceed size ({size!r}): rows between windows would be lost",
            option="slide",
        )
    return SlidingWindows(size_us, slide_us, duration_us(offset, "offset") % slide_us)


def session(gap: DurationLike) -> SessionWindows:
    """Session windows closed by ``gap`` of inactivity per key."""
    return SessionWindows(duration_us(gap, "gap", allow_zero=False))


#: Aggregate kinds: the built-ins keep partial aggregates only; ``apply`` keeps the rows of its columns.
AGG_KINDS = ("count", "sum", "min", "max", "mean", "first", "last", "approx_distinct", "apply")


@dataclass(frozen=True)
class Agg:
    """One aggregate of a window: ``kind`` over ``column`` (``None``: ``count()`` of rows), named ``name``.

    ``approx_distinct`` keeps a HyperLogLog sketch of ``2**precision`` registers per window (standard
    error about ``1.04 / sqrt(2**precision)``: 1.6% at the default 12). ``apply`` calls
    ``fn(group)`` once per window and key with the group's rows of ``columns`` (ordered by event time)
    as a ``batch_format`` frame (``"pyarrow"`` table or ``"polars"`` DataFrame) and takes the scalar
    it returns.
    """

    kind: str
    column: str | None = None
    name: str | None = None
    precision: int = 12
    fn: Callable[[Any], Any] | None = field(default=None, compare=False)
    columns: tuple[str, ...] = ()
    batch_format: str = "pyarrow"

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, AGG_KINDS)
        check_type("column", self.column, str, allow_none=True)
        if self.column is None and self.kind not in ("count", "apply"):
            raise ConfigurationError(f"{self.kind}() needs a column", option="column")
        check_type("name", self.name, str, allow_none=True)
        if self.kind == "approx_distinct":
            check_type("precision", self.precision, int)
            if not 4 <= self.precision <= 18:
                raise ConfigurationError(
                    f"precision must be within [4, 18], got {self.precision}", option="precision"
                )
        if self.kind == "apply":
            if not callable(self.fn):
                raise ConfigurationError("apply() needs fn(group) -> scalar", option="fn")
            if not self.columns or not all(isinstance(c, str) for c in self.columns):
                raise ConfigurationError(
                    "apply() needs columns=[...] (the columns fn sees)", option="columns"
                )
            if self.name is None:
                raise ConfigurationError("apply() needs a name= for its output column", option="name")
            check_choice("batch_format", self.batch_format, ("pyarrow", "polars"))

    def alias(self, name: str) -> Agg:
        """The same aggregate with output column ``name``."""
        return replace(self, name=name)

    @property
    def output_name(self) -> str:
        if self.name is not None:
            return self.name
        return "count" if self.column is None else f"{self.column}_{self.kind}"

    @property
    def input_columns(self) -> tuple[str, ...]:
        if self.kind == "apply":
            return self.columns
        return () if self.column is None else (self.column,)


def as_aggs(aggs: Agg | Sequence[Agg] | dict[str, Agg]) -> tuple[Agg, ...]:
    """A list of :class:`Agg`, a single one, or a mapping ``output name -> Agg``; names must be unique."""
    if isinstance(aggs, Agg):
        out: tuple[Agg, ...] = (aggs,)
    elif isinstance(aggs, dict):
        if not all(isinstance(a, Agg) for a in aggs.values()):
            raise ConfigurationError("aggs values must be arrowflow.time.agg aggregates", option="aggs")
        out = tuple(a.alias(str(n)) for n, a in aggs.items())
    elif isinstance(aggs, Sequence) and not isinstance(aggs, str):
        out = tuple(aggs)
        if not all(isinstance(a, Agg) for a in out):
            raise ConfigurationError("aggs must be arrowflow.time.agg aggregates", option="aggs")
    else:
        raise ConfigurationError(
            "aggs must be an aggregate, a list of them or a mapping name -> aggregate, "
            f"got {type(aggs).__name__}",
            option="aggs",
        )
    if not out:
        raise ConfigurationError("a window needs at least one aggregate", option="aggs")
    names = [a.output_name for a in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigurationError(f"duplicate aggregate output names {dupes}; use .alias()", option="aggs")
    return out


__all__ += ["as_aggs"]
