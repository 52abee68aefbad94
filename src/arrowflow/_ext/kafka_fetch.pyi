"""Type stubs for the compiled ``arrowflow._ext.kafka_fetch`` kernel (source: ``ext/kafka_fetch.pyx``)."""

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["Fetcher", "columns_from_records", "load", "loaded"]

#: ``(code, name, reason, fatal, partition, offset)``; partition and offset are -1 for client errors.
FetchError = tuple[int, str, str, bool, int, int]

def load(path: str) -> str:
    """Open librdkafka at ``path`` (a file or a soname) with ``dlopen`` and resolve the functions the
    fetcher calls; returns its version. ``OSError`` when the library or a function is missing."""

def loaded() -> str | None:
    """The path :func:`load` opened, or ``None``."""

def columns_from_records(
    records: Sequence[tuple[Any, ...]], keys: bool = True, timestamps: bool = True, headers: bool = True
) -> dict[str, pa.Array]:
    """The fetcher's buffer building over ``(value, key, partition, offset, timestamp, headers)``
    records (the test entry; :mod:`arrowflow._reference.kafka_fetch` is its oracle)."""

class Fetcher:
    """One librdkafka consumer (its own handle, no Python callbacks) assigned to partitions of one
    topic; batches come back as Arrow columns. See the kernel's module docstring for the contract."""

    def __init__(self, config: list[tuple[str, str]], topic: str) -> None: ...
    def assign(self, parts: list[tuple[int, int]]) -> None:
        """Assign ``(partition, offset)`` pairs (replacing any earlier assignment)."""
    def read(
        self,
        max_rows: int,
        timeout: float,
        max_bytes: int = ...,
        keys: bool = False,
        timestamps: bool = False,
        headers: bool = False,
    ) -> tuple[dict[str, pa.Array], list[FetchError]]:
        """At most one batch consume call (GIL released): the columns and the errors seen."""
    def take_stats(self) -> str | None:
        """The newest statistics JSON since the last call, or ``None``."""
    def position(self, partition: int) -> int:
        """The fetch position of ``partition`` (-1001 when none yet)."""
    def commit(self, partition: int, offset: int) -> None:
        """Commit ``offset`` synchronously (``RuntimeError`` naming the error on failure)."""
    def watermarks(self, partition: int) -> tuple[int, int]:
        """The cached ``(low, high)`` watermarks of ``partition``."""
    def close(self) -> None:
        """Close the consumer and free its handle (idempotent)."""
