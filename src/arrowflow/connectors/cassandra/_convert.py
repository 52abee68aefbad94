"""Arrow <-> driver value conversion shared by the Cassandra sink and source.

The DataStax driver (``cassandra-driver``) serializes and parses values itself and only accepts
Python objects per row, so the conversions here are column by column: one Arrow kernel or one list
comprehension per column, never a Python loop over the rows of the whole batch with per-cell type
dispatch. Where the driver accepts a cheaper representation, that one is used (timestamps as int
milliseconds, dates as the offset day count the protocol carries).
"""

from __future__ import annotations

import decimal
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import SerializationError

__all__ = ["arrow_type_for", "column_from_driver", "column_to_driver"]

_DATE_OFFSET = 2**31  # the protocol's date: days since the epoch + 2**31, unsigned


# -------------------------------------------------------------------------------- CQL type facts


def _cql_typename(cqltype: Any) -> str:
    return str(getattr(cqltype, "typename", "") or "")


def _kind(cqltype: Any) -> str:
    """The CQL type's kind: its name for built-in types, ``"udt"`` for a user type, ``"vector"``."""
    if getattr(cqltype, "fieldnames", None) is not None:  # cqltypes.UserType subclasses
        return "udt"
    name = _cql_typename(cqltype)
    if name.endswith("VectorType") or hasattr(cqltype, "vector_size"):
        return "vector"
    return name


def _element_type(cqltype: Any) -> Any:
    """The element type of a list, set or vector."""
    sub = getattr(cqltype, "subtype", None)  # vector
    return sub if sub is not None else cqltype.subtypes[0]


def _is_list_like(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


# -------------------------------------------------------------------------------- Arrow -> driver


def _with_nulls(values: list[Any], col: pa.Array, null: Any = None) -> list[Any]:
    if col.null_count:
        mask = col.is_null().to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(mask).tolist():
            values[i] = null
    return values


def column_to_driver(col: pa.Array, cqltype: Any, *, null: Any = None) -> list[Any]:
    """One Arrow column -> the Python values the driver serializes for ``cqltype`` (a cqltypes class).

    Vectorized where the driver allows it: timestamps become int milliseconds (floor), dates the offset
    day count and times int nanoseconds, computed with numpy; uuids from strings or 16-byte binaries,
    varints and decimals from strings take one comprehension over the column. Collections, tuples and
    user types convert their flattened child columns the same way (recursively) and are then cut into
    per-row lists, dicts and tuples by the offsets: no per-cell type dispatch. ``null`` replaces the
    column's own nulls (``UNSET_VALUE`` for ``ignore_null_fields``); nulls nested inside are ``None``.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    values = _to_driver(col, cqltype)
    return _with_nulls(values, col, null) if null is not None else values


def _to_driver(col: pa.Array, cqltype: Any) -> list[Any]:
    """``col`` -> driver values, ``None`` where ``col`` is null."""
    t = col.type
    kind = _kind(cqltype)
    if pa.types.is_timestamp(t) or pa.types.is_date64(t):
        raw = pc.cast(col, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        if pa.types.is_timestamp(t):
            div = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[t.unit]
            ms = raw * 1000 if div is None else np.floor_divide(raw, div)
        else:
            ms = raw
        if kind == "date":
            return _with_nulls((np.floor_divide(ms, 86_400_000) + _DATE_OFFSET).tolist(), col)
        return _with_nulls(ms.tolist(), col)
    if pa.types.is_date32(t):
        days32 = pc.cast(col, pa.int32()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        if kind == "timestamp":
            return _with_nulls((days32 * 86_400_000).tolist(), col)
        return _with_nulls((days32 + _DATE_OFFSET).tolist(), col)
    if pa.types.is_time(t):
        # The driver takes a time as int nanoseconds since midnight (datetime.time would drop the ns).
        per = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1000, "ns": 1}[t.unit]
        raw = pc.cast(col, pa.int64() if pa.types.is_time64(t) else pa.int32()).fill_null(0)
        return _with_nulls((raw.to_numpy(zero_copy_only=False).astype(np.int64) * per).tolist(), col)
    if kind in ("uuid", "timeuuid"):
        if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
            return [None if b is None else uuid.UUID(bytes=b) for b in col.to_pylist()]
        if _is_string(t):
            try:
                return [None if s is None else uuid.UUID(s) for s in col.to_pylist()]
            except ValueError as exc:
                raise SerializationError(f"not a UUID: {exc}") from exc
    if kind in ("varint", "decimal") and _is_string(t):
        parse: Any = int if kind == "varint" else decimal.Decimal
        try:
            return [None if s is None else parse(s) for s in col.to_pylist()]
        except (ValueError, decimal.InvalidOperation) as exc:
            raise SerializationError(f"not a {kind}: {exc}") from exc
    if kind == "blob" and _is_string(t):
        return pc.cast(col, pa.binary()).to_pylist()  # type: ignore[no-any-return]
    if kind in ("list", "set", "vector") and _is_list_like(t):
        child = _to_driver(pc.list_flatten(col), _element_type(cqltype))
        return _cut(child, col, list)
    if kind == "map" and pa.types.is_map(t):
        as_list = col.cast(pa.list_(pa.struct([t.key_field, t.item_field])))  # list kernels take no maps
        entries = pc.list_flatten(as_list)
        keys = _to_driver(pc.struct_field(entries, [0]), cqltype.subtypes[0])
        items = _to_driver(pc.struct_field(entries, [1]), cqltype.subtypes[1])
        return _cut(list(zip(keys, items, strict=True)), as_list, dict)
    if kind in ("tuple", "udt") and pa.types.is_struct(t):
        return _struct_to_driver(col, cqltype, kind)
    return col.to_pylist()  # type: ignore[no-any-return]


def _cut(flat: list[Any], col: pa.Array, make: Any) -> list[Any]:
    """Per-row ``make(slice)`` of ``flat`` (the flattened values of list-like ``col``), None for nulls."""
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
    out = [make(flat[a:b]) for a, b in itertools.pairwise(bounds)]
    return _with_nulls(out, col)


def _struct_to_driver(col: pa.Array, cqltype: Any, kind: str) -> list[Any]:
    """A struct column -> tuples in the CQL tuple's field order or the user type's field names."""
    subtypes = list(cqltype.subtypes)
    names = [f.name for f in col.type]
    if kind == "udt":
        fields = list(cqltype.fieldnames)
        missing = [f for f in fields if f not in names]
        if missing:
            raise SerializationError(
                f"struct has no field(s) {missing} of user type {_cql_typename(cqltype)}"
            )
        index = [names.index(f) for f in fields]
    else:
        if len(names) != len(subtypes):
            raise SerializationError(f"struct of {len(names)} fields for a tuple of {len(subtypes)}")
        index = list(range(len(names)))
    children = [_to_driver(pc.struct_field(col, [i]), sub) for i, sub in zip(index, subtypes, strict=True)]
    return _with_nulls(list(zip(*children, strict=True)) if children else [()] * len(col), col)


# -------------------------------------------------------------------------------- driver -> Arrow


_SIMPLE_ARROW = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "counter": pa.int64(),
    "smallint": pa.int16(),
    "tinyint": pa.int8(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "ascii": pa.string(),
    "blob": pa.binary(),
    "timestamp": pa.timestamp("ms"),
    "date": pa.date32(),
    "time": pa.time64("ns"),
    "duration": pa.month_day_nano_interval(),
    "uuid": pa.string(),
    "timeuuid": pa.string(),
    "inet": pa.string(),
    "varint": pa.string(),
    "decimal": pa.string(),
}


def arrow_type_for(cqltype: Any) -> pa.DataType:
    """The default Arrow type of a CQL type (a ``cassandra.cqltypes`` class).

    Lossless where Arrow has the type (duration as ``month_day_nano_interval``, time as
    ``time64[ns]``, vectors as ``fixed_size_list``, tuples as structs of fields ``f0, f1, ...``, user
    types as structs of their fields); varint, decimal, uuid and inet as strings (give a schema for
    ``decimal128``, integers or 16-byte binaries); sets as lists.
    """
    kind = _kind(cqltype)
    if kind in _SIMPLE_ARROW:
        return _SIMPLE_ARROW[kind]
    subs: Sequence[Any] = getattr(cqltype, "subtypes", ())
    if kind in ("list", "set"):
        return pa.list_(arrow_type_for(subs[0]))
    if kind == "vector":
        return pa.list_(arrow_type_for(_element_type(cqltype)), int(cqltype.vector_size))
    if kind == "map":
        return pa.map_(arrow_type_for(subs[0]), arrow_type_for(subs[1]))
    if kind == "tuple":
        return pa.struct([(f"f{i}", arrow_type_for(s)) for i, s in enumerate(subs)])
    if kind == "udt":
        return pa.struct([(n, arrow_type_for(s)) for n, s in zip(cqltype.fieldnames, subs, strict=True)])
    raise SerializationError(
        f"cassandra: CQL type {_cql_typename(cqltype) or cqltype!r} has no Arrow mapping; give a schema"
    )


def _scalar_fn(kind: str, target: pa.DataType) -> Any:
    """A per-value conversion of a driver value into something ``pa.array(type=target)`` takes."""
    if kind == "date":
        return lambda v: v.days_from_epoch
    if kind in ("uuid", "timeuuid"):
        if pa.types.is_fixed_size_binary(target):
            return lambda v: v.bytes
        return str
    if kind == "inet" or (kind in ("varint", "decimal") and _is_string(target)):
        return str
    if kind == "time":
        return lambda v: v.nanosecond_time
    if kind == "duration":
        return lambda v: (v.months, v.days, v.nanoseconds)
    return None


def column_from_driver(values: Sequence[Any], cqltype: Any, target: pa.DataType) -> pa.Array:
    """One column of a page (driver values) -> an Arrow array of ``target``.

    ``pa.array`` converts in C; only values the driver returns as its own classes (``util.Date``,
    ``UUID``, ``util.Time``, ``util.Duration``) take one comprehension first. Collections, tuples and
    user types are flattened into child columns that convert the same way (recursively), then
    reassembled from offsets, so nested values (``list<uuid>``, ``map<text, frozen<udt>>``) convert
    like top-level ones.
    """
    kind = _kind(cqltype)
    if kind in ("list", "set", "vector") and _is_list_like(target):
        flat = [x for v in values if v is not None for x in v]
        child = column_from_driver(flat, _element_type(cqltype), target.value_type)
        return _assemble_list(values, child, target)
    if kind == "map" and pa.types.is_map(target):
        pairs = [kv for v in values if v is not None for kv in v.items()]
        keys = column_from_driver([k for k, _ in pairs], cqltype.subtypes[0], target.key_type)
        items = column_from_driver([i for _, i in pairs], cqltype.subtypes[1], target.item_type)
        offsets, mask = _offsets(values)
        return pa.MapArray.from_arrays(offsets, keys, items, type=target, mask=mask)
    if kind in ("tuple", "udt") and pa.types.is_struct(target):
        return _struct_from_driver(values, cqltype, kind, target)
    fn = _scalar_fn(kind, target)
    if fn is not None:
        vals = [None if v is None else fn(v) for v in values]
        if kind == "date":
            return pc.cast(pa.array(vals, pa.int32()), target)
        if kind == "time":
            return pc.cast(pa.array(vals, pa.int64()), target)
        return pa.array(vals, target)
    if kind == "timestamp" and pa.types.is_timestamp(target):
        # CQL timestamps are whole milliseconds, but the driver decodes them through a float and
        # far from the epoch its datetimes may be 1 us off either way: round to the nearest ms.
        us = pa.array(values, pa.timestamp("us"))
        raw = pc.cast(us, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        ms = np.floor_divide(raw + 500, 1000)
        mask = us.is_null().to_numpy(zero_copy_only=False) if us.null_count else None
        out = pa.array(ms, pa.int64(), mask=mask).cast(pa.timestamp("ms"))
        return out if target == out.type else pc.cast(out, target)
    return pa.array(values, target)


def _offsets(values: Sequence[Any]) -> tuple[pa.Array, pa.Array | None]:
    lengths = np.fromiter((0 if v is None else len(v) for v in values), np.int32, len(values))
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths, dtype=np.int32))), pa.int32())
    nulls = np.fromiter((v is None for v in values), bool, len(values))
    return offsets, (pa.array(nulls) if nulls.any() else None)


def _assemble_list(values: Sequence[Any], child: pa.Array, target: pa.DataType) -> pa.Array:
    offsets, mask = _offsets(values)
    out = pa.ListArray.from_arrays(offsets, child, mask=mask)
    return out if out.type == target else pc.cast(out, target)


def _struct_from_driver(values: Sequence[Any], cqltype: Any, kind: str, target: pa.StructType) -> pa.Array:
    """Tuples / user-type values (the driver's tuples and named tuples) -> a struct array of ``target``,
    whose fields are matched by position (tuple) or by name (user type)."""
    subtypes = list(cqltype.subtypes)
    if kind == "udt":
        fields = list(cqltype.fieldnames)
        index = []
        for f in target:
            if f.name not in fields:
                raise SerializationError(f"user type {_cql_typename(cqltype)} has no field {f.name!r}")
            index.append(fields.index(f.name))
    else:
        if target.num_fields != len(subtypes):
            raise SerializationError(
                f"a tuple of {len(subtypes)} fields read as a struct of {target.num_fields}"
            )
        index = list(range(len(subtypes)))
    children = [
        column_from_driver([None if v is None else v[i] for v in values], subtypes[i], f.type)
        for i, f in zip(index, target, strict=True)
    ]
    _, mask = _offsets([None if v is None else () for v in values])
    return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
