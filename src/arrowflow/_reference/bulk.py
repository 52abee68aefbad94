"""Slow, obviously-correct oracle for :mod:`arrowflow._ext.bulk` (tests only, never used at run time).

Same signatures and the same bytes as the kernel, built row by row: the action line with
``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` over a dict, the document from the JSON
reference (:mod:`arrowflow._reference.json_encode`), chunks cut by a plain loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from . import json_encode as _json_ref

__all__ = ["cut", "encode_bodies", "encode_bulk", "encode_entries", "split_bodies"]

ACTIONS = ("index", "create", "update", "delete")


def _meta_texts(values: pa.Array | pa.ChunkedArray | None, n: int) -> list[str | None]:
    if values is None:
        return [None] * n
    out: list[str | None] = []
    for v in values.to_pylist():
        if v is None:
            out.append(None)
        elif isinstance(v, bool):  # not reached for integer columns; Arrow casts bool -> "true"
            out.append("true" if v else "false")
        elif isinstance(v, int):
            out.append(str(v))
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8"))
        else:
            out.append(str(v))
    return out


def _cast_meta(values: pa.Array | pa.ChunkedArray | None) -> pa.Array | pa.ChunkedArray | None:
    """Types the kernel does not format itself go through Arrow's cast to string, as there."""
    if values is None:
        return None
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()  # type: ignore[union-attr]
        t = values.type
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_binary(t):
        return values
    return values.cast(pa.string())


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
) -> pa.BinaryArray:
    """Row-by-row version of :func:`arrowflow._ext.bulk.encode_entries`."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    doc_list: list[bytes] | None = None
    if docs is not None:
        doc_list = [d if isinstance(d, bytes) else d.encode() for d in docs.to_pylist()]
        n = len(doc_list)
    else:
        lengths = [len(a) for a in (index_values, ids, routing) if a is not None]
        n = lengths[0] if lengths else num_rows
    index_texts = _meta_texts(_cast_meta(index_values), n)
    id_texts = _meta_texts(_cast_meta(ids), n)
    routing_texts = _meta_texts(_cast_meta(routing), n)
    out: list[bytes] = []
    for r in range(n):
        meta: dict[str, Any] = {}
        if index is not None:
            meta["_index"] = index
        elif index_texts[r] is not None:
            meta["_index"] = index_texts[r]
        if id_texts[r] is not None:
            meta["_id"] = id_texts[r]
        if routing_texts[r] is not None:
            meta["routing"] = routing_texts[r]
        line = json.dumps({action: meta}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        entry = line + b"\n"
        if action != "delete":
            assert doc_list is not None
            doc = doc_list[r]
            if action == "update":
                doc = b'{"doc":' + doc + (b',"doc_as_upsert":true}' if doc_as_upsert else b"}")
            entry += doc + b"\n"
        out.append(entry)
    return pa.array(out, pa.binary())  # type: ignore[return-value]


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
) -> pa.BinaryArray:
    """Row-by-row version of :func:`arrowflow._ext.bulk.encode_bulk`."""
    meta = [c for c in (index_column, id_column, routing_column) if c is not None]
    docs = None
    if action != "delete":
        if columns is None:
            columns = [c for c in batch.schema.names if c not in meta]
        docs = _json_ref.encode_rows(batch, columns=columns, field_names=field_names, nulls=nulls, nan=nan)
    return encode_entries(
        docs,
        action=action,
        index=index,
        index_values=batch.column(index_column) if index_column else None,
        ids=batch.column(id_column) if id_column else None,
        routing=batch.column(routing_column) if routing_column else None,
        doc_as_upsert=doc_as_upsert,
        num_rows=batch.num_rows,
    )


def cut(entries: pa.Array, *, max_actions: int = 1000, max_bytes: int | None = 5 * 1024 * 1024) -> np.ndarray:
    """Plain-loop version of :func:`arrowflow._ext.bulk.cut`."""
    sizes = [len(e) for e in entries.to_pylist()]
    bounds = [0]
    count = 0
    nbytes = 0
    for i, size in enumerate(sizes):
        fits = count < max_actions and (max_bytes is None or nbytes + size <= max_bytes)
        if count and not fits:
            bounds.append(i)
            count = 0
            nbytes = 0
        count += 1
        nbytes += size
    if sizes:
        bounds.append(len(sizes))
    return np.array(bounds, dtype=np.int64)


def split_bodies(entries: pa.Array, bounds: np.ndarray) -> list[bytes]:
    values = entries.to_pylist()
    b = [int(x) for x in bounds]
    return [b"".join(values[b[j] : b[j + 1]]) for j in range(len(b) - 1)]


def encode_bodies(
    batch: pa.RecordBatch,
    *,
    max_actions: int = 1000,
    max_bytes: int | None = 5 * 1024 * 1024,
    **options: Any,
) -> tuple[list[bytes], np.ndarray]:
    entries = encode_bulk(batch, **options)
    bounds = cut(entries, max_actions=max_actions, max_bytes=max_bytes)
    return split_bodies(entries, bounds), bounds
