"""Slow, obviously-correct oracle for :mod:`arrowflow._ext.bson_encode` (tests only, never used at run time).

Same signatures and the same bytes as the kernel: every row becomes a Python ``dict`` from
``to_pylist()`` values, with the conversions that pin down the BSON type the kernel writes, and is
encoded with pymongo's ``bson.encode``:

* 64-bit integer columns (int64, uint32, uint64) -> ``bson.Int64`` (``bson.encode`` would pick int32
  for small Python ints); smaller integers stay ``int`` (int32).
* timestamps -> ``bson.DatetimeMS`` of the floored milliseconds since the epoch (from the raw integer
  values, so no calendar arithmetic is involved); dates -> ``DatetimeMS`` of midnight UTC.
* decimals -> ``bson.decimal128.Decimal128(decimal.Decimal)`` (pymongo's own BID conversion).
* a top-level ``fixed_size_binary(12)`` ObjectId column -> ``bson.ObjectId``; other binary -> ``bytes``.
* maps -> ``dict`` of their entries; structs -> ``dict``; lists -> ``list``.
* ``nulls="omit"`` drops ``None`` members of documents (top level, struct fields, map values).

Needs ``pymongo`` (for ``bson``).
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["encode_documents", "encode_documents_checked"]

_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
_MS_PER_DAY = 86_400_000


class _RowError(ValueError):
    pass


def _plain(arr: pa.Array) -> pa.Array:
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        return _plain(arr.storage)  # type: ignore[attr-defined]
    if pa.types.is_dictionary(t):
        return _plain(arr.dictionary_decode())  # type: ignore[attr-defined]
    return arr


def _column_values(arr: pa.Array, omit: bool, object_id: bool) -> list[Any]:
    """The Python values (already converted for ``bson.encode``) of every slot of ``arr``."""
    import bson
    from bson.decimal128 import Decimal128

    arr = _plain(arr)
    t = arr.type
    valid = arr.is_valid().to_pylist()
    if pa.types.is_null(t):
        return [None] * len(arr)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_timestamp(t):
            mul, div = _MS[t.unit]  # type: ignore[attr-defined]
            raw = pc.cast(arr, pa.int64()).to_pylist()
        elif pa.types.is_date32(t):
            mul, div = _MS_PER_DAY, 1
            raw = pc.cast(arr, pa.int32()).to_pylist()
        else:
            mul, div = 1, 1
            raw = pc.cast(arr, pa.int64()).to_pylist()
        out: list[Any] = []
        for v in raw:
            if v is None:
                out.append(None)
                continue
            ms = v * mul // div
            if not -(2**63) <= ms < 2**63:
                raise _RowError("timestamp outside the range of a BSON datetime (int64 milliseconds)")
            out.append(bson.DatetimeMS(ms))
        return out
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        out = []
        for i in range(len(arr)):
            if not valid[i]:
                out.append(None)
                continue
            values = arr[i].values  # type: ignore[attr-defined]
            out.append(_column_values(values, omit, False))
        return out
    if pa.types.is_map(t):
        out = []
        for i in range(len(arr)):
            if not valid[i]:
                out.append(None)
                continue
            entries = arr[i].values  # type: ignore[attr-defined]
            keys = _plain(entries.field(0)).to_pylist()
            vals = _column_values(entries.field(1), omit, False)
            doc: dict[str, Any] = {}
            for k, v in zip(keys, vals, strict=True):
                if "\x00" in k:
                    raise _RowError("map key contains a NUL character (not allowed in a BSON key)")
                if v is None and omit:
                    continue
                doc[k] = v
            out.append(doc)
        return out
    if pa.types.is_struct(t):
        # Children are read at the struct's valid slots only: under a null struct a child's value
        # means nothing (it may even be out of range), as the kernel reads it.
        present = [i for i in range(len(arr)) if valid[i]]
        take = pa.array(present, pa.int64())
        fields = [
            (t.field(k).name, _column_values(arr.field(k).take(take), omit, False))  # type: ignore[attr-defined]
            for k in range(t.num_fields)  # type: ignore[attr-defined]
        ]
        out = [None] * len(arr)
        for j, i in enumerate(present):
            out[i] = {name: vals[j] for name, vals in fields if not (omit and vals[j] is None)}
        return out
    values = arr.to_pylist()
    if pa.types.is_int64(t) or pa.types.is_uint32(t) or pa.types.is_uint64(t):
        for v in values:
            if v is not None and v >= 2**63:
                raise _RowError("uint64 value above 2**63 - 1 has no BSON integer type")
        return [None if v is None else bson.Int64(v) for v in values]
    if pa.types.is_decimal(t):
        out = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            try:
                out.append(Decimal128(v))
            except (decimal.Inexact, decimal.InvalidOperation, decimal.Overflow) as exc:
                raise _RowError(f"decimal value not representable as BSON decimal128: {exc}") from None
        return out
    if pa.types.is_fixed_size_binary(t) and object_id and t.byte_width == 12:  # type: ignore[attr-defined]
        return [None if v is None else bson.ObjectId(v) for v in values]
    if pa.types.is_floating(t):
        return [None if v is None else float(v) for v in values]
    return values


def _rows(
    batch: pa.RecordBatch,
    columns: Sequence[str] | None,
    field_names: Mapping[str, str] | None,
    object_id: str | Sequence[str] | None,
    omit: bool,
) -> tuple[list[str], list[str], list[Any]]:
    names = list(columns) if columns is not None else list(batch.schema.names)
    oid = {"_id"} if object_id is None else {object_id} if isinstance(object_id, str) else set(object_id)
    keys = [field_names.get(n, n) if field_names else n for n in names]
    per_row_cols: list[list[Any]] = []
    for name in names:
        col = batch.column(batch.schema.get_field_index(name))
        per_row_cols.append(_column_values_by_row(col, omit, name in oid))
    return names, keys, per_row_cols


def _column_values_by_row(col: pa.Array, omit: bool, object_id: bool) -> list[Any]:
    """Values per row, or a ``_RowError`` instance for rows that cannot be encoded."""
    out: list[Any] = []
    for i in range(len(col)):
        try:
            out.append(_column_values(col.slice(i, 1), omit, object_id)[0])
        except _RowError as exc:
            out.append(exc)
    return out


def _encode(
    batch: pa.RecordBatch,
    columns: Sequence[str] | None,
    field_names: Mapping[str, str] | None,
    object_id: str | Sequence[str] | None,
    nulls: str,
) -> tuple[pa.Array, np.ndarray, list[str]]:
    import bson

    if nulls not in ("null", "omit"):
        raise ValueError(f"nulls must be 'null' or 'omit', got {nulls!r}")
    omit = nulls == "omit"
    names, keys, cols = _rows(batch, columns, field_names, object_id, omit)
    docs: list[bytes] = []
    failed: list[int] = []
    errors: list[str] = []
    for i in range(batch.num_rows):
        doc: dict[str, Any] = {}
        error = None
        for name, key, values in zip(names, keys, cols, strict=True):
            v = values[i]
            if isinstance(v, _RowError):
                error = f"column {name!r}: {v}"
                break
            if v is None and omit:
                continue
            doc[key] = v
        if error is not None:
            failed.append(i)
            errors.append(error)
            continue
        docs.append(bson.encode(doc))
    return pa.array(docs, pa.binary()), np.array(failed, dtype=np.int64), errors


def encode_documents(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    object_id: str | Sequence[str] | None = None,
    nulls: str = "null",
) -> pa.BinaryArray:
    """One BSON document per row via ``bson.encode``; ``ValueError`` on the first row BSON cannot hold."""
    docs, failed, errors = _encode(batch, columns, field_names, object_id, nulls)
    if len(failed):
        raise ValueError(f"row {int(failed[0])}: {errors[0]}")
    return docs  # type: ignore[return-value]


def encode_documents_checked(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    object_id: str | Sequence[str] | None = None,
    nulls: str = "null",
) -> tuple[pa.BinaryArray, np.ndarray, list[str]]:
    """``(documents of the good rows, failed row indices, one error per failed row)``."""
    return _encode(batch, columns, field_names, object_id, nulls)  # type: ignore[return-value]
