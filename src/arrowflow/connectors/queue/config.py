"""Options of :class:`~arrowflow.connectors.queue.QueueSource`, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ...config import check_choice, check_positive, check_type
from .buffer import OVERFLOW_POLICIES

__all__ = ["QueueSourceConfig"]


@dataclass(frozen=True, kw_only=True)
class QueueSourceConfig:
    """Options of :class:`~arrowflow.connectors.queue.QueueSource` (the constructor mirrors them)."""

    schema: pa.Schema | None = None
    """Cast everything pushed to this schema (a row that does not fit fails the ``put``); ``None``:
    the schema of what is pushed."""
    capacity: int = 100_000
    """Rows the buffer holds before ``overflow`` applies."""
    overflow: str = "block"
    """What a full buffer does to a push: ``"block"`` (wait), ``"drop_newest"``, ``"drop_oldest"``
    (both counted) or ``"error"`` (:class:`~arrowflow.connectors.queue.QueueFull`)."""

    def __post_init__(self) -> None:
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_type("capacity", self.capacity, int)
        check_positive("capacity", self.capacity)
        check_choice("overflow", self.overflow, OVERFLOW_POLICIES)
