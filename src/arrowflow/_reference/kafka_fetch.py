"""Pure-Python reference of :func:`arrowflow._ext.kafka_fetch.columns_from_records` (a test oracle,
never used at run time): the columns the Kafka source's columnar fetch builds from a batch of
messages, made the way the client path makes them (``pa.array`` over Python values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

_HEADERS = pa.map_(pa.string(), pa.binary())


def columns_from_records(
    records: Sequence[tuple[Any, ...]], keys: bool = True, timestamps: bool = True, headers: bool = True
) -> dict[str, pa.Array]:
    """``records``: ``(value, key, partition, offset, timestamp, headers)`` with ``bytes | None``
    value and key and ``headers`` ``None`` or a list of ``(name: bytes, value: bytes | None)``.
    A header name that is not UTF-8 raises ``ValueError``, as the kernel does."""
    out: dict[str, pa.Array] = {
        "value": pa.array([r[0] for r in records], pa.binary()),
        "partition": pa.array([r[2] for r in records], pa.int32()),
        "offset": pa.array([r[3] for r in records], pa.int64()),
    }
    if keys:
        out["key"] = pa.array([r[1] for r in records], pa.binary())
    if timestamps:
        out["timestamp"] = pa.array([r[4] for r in records], pa.int64())
    if headers:
        rows: list[list[tuple[str, Any]] | None] = []
        for r in records:
            if r[5] is None:
                rows.append(None)
                continue
            try:
                rows.append([(bytes(name).decode("utf-8"), value) for name, value in r[5]])
            except UnicodeDecodeError as exc:
                raise ValueError(f"a header name is not UTF-8: {exc}") from None
        out["headers"] = pa.array(rows, _HEADERS)
    return out
