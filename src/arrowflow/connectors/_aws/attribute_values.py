"""Arrow columns <-> DynamoDB attribute values, vectorized per column.

:func:`to_attribute_values` turns one Arrow column into a *struct array shaped like DynamoDB's
AttributeValue*: one child per DynamoDB type it needs (``S``, ``N``, ``B``, ``BOOL``, ``NULL``,
``L``, ``M``, ``SS``, ``NS``, ``BS``), and in every row exactly one child set. Serialized by the
compiled JSON kernel with ``nulls="omit"`` (:func:`arrowflow._ext.json.encode_rows`) each row is
the AttributeValue's wire JSON (``{"N":"42"}``, ``{"L":[{"S":"a"},{"NULL":true}]}``), so a whole
BatchWriteItem body is produced without a Python object per row.

Type mapping (Arrow -> DynamoDB):

* null (the type, and null values below the top level) -> ``NULL: true``; at the top level a null
  becomes either ``NULL: true`` or a missing attribute (``top_level_nulls="omit"``, via a null
  struct slot that the kernel omits).
* bool -> ``BOOL``; (u)int8..64, float16/32/64, decimal128/256 -> ``N`` as an exact decimal string.
  Integers, durations and float64 stay numeric children marked with the JSON kernel's
  ``QUOTE_KEY`` field metadata: the kernel writes them as quoted text (``{"N":"1.5"}``; float64 as
  the shortest round-trip text, Python ``repr`` rules, e.g. ``1e-07``), with no string column in
  between. float16/32 (Arrow's shortest text of the narrow value: ``0.1``, not the widened double)
  and decimals (exact, with their scale) are cast to strings. NaN and +-inf have no DynamoDB
  representation: those rows are reported invalid.
* string, large_string, string_view -> ``S``; binary, large_binary, binary_view, fixed_size_binary
  -> ``B`` (base64 on the wire).
* timestamp, date, time -> ``S`` in ISO-8601 (the JSON kernel's formatting); duration -> ``N``
  (its integer count in the column's unit).
* list, large_list, fixed_size_list -> ``L`` of attribute values; with ``sets=True`` a list of
  strings / numbers / binaries becomes ``SS`` / ``NS`` / ``BS`` (DynamoDB rejects empty sets and
  duplicate members: such rows fail at the server and go to the error policy).
* struct -> ``M`` (one entry per field, null fields as ``NULL``); map<string, V> -> ``M``.
* dictionary -> its value type.

:func:`from_attribute_values` goes back: from the struct arrays pyarrow's JSON reader produces for
``{"S": ...}`` objects to plain Arrow columns (used by the Scan / Streams sources).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..._ext.json import QUOTE_KEY
from ...errors import SerializationError

__all__ = ["AttributeValues", "from_attribute_values", "to_attribute_values"]


class AttributeValues:
    """The result of :func:`to_attribute_values`: ``values`` (struct array) and ``invalid``.

    ``invalid`` is ``None`` or a boolean numpy mask of rows that cannot be represented (NaN, inf).
    """

    __slots__ = ("invalid", "values")

    def __init__(self, values: pa.Array, invalid: np.ndarray | None) -> None:
        self.values = values
        self.invalid = invalid


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _null_flags(arr: pa.Array) -> pa.Array:
    """``NULL`` child: true where ``arr`` is null, absent (null) elsewhere."""
    return pc.if_else(arr.is_null(), pa.scalar(True), pa.scalar(None, pa.bool_()))


_QUOTED = {QUOTE_KEY: b"1"}


def _wrap(
    arr: pa.Array, children: list[tuple[str, pa.Array]], *, top_mask: pa.Array | None = None
) -> pa.StructArray:
    """A struct of ``children`` plus ``NULL`` for the null slots of ``arr``.

    A numeric ``N`` child gets the ``QUOTE_KEY`` metadata: the JSON kernel writes it as a string.
    """
    fields = [
        pa.field(n, a.type, metadata=_QUOTED if n == "N" and not pa.types.is_string(a.type) else None)
        for n, a in children
    ]
    arrays = [a for _, a in children]
    if arr.null_count and top_mask is None:
        fields.append(pa.field("NULL", pa.bool_()))
        arrays.append(_null_flags(arr))
    return pa.StructArray.from_arrays(arrays, fields=fields, mask=top_mask)


def _numbers(arr: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    t = arr.type
    invalid = None
    if pa.types.is_floating(t):
        if pa.types.is_float16(t):
            arr = pc.cast(arr, pa.float32())
        finite = pc.is_finite(arr).fill_null(True)
        if not pc.all(finite).as_py():
            invalid = ~np.asarray(finite.to_numpy(zero_copy_only=False), dtype=bool)
    elif pa.types.is_duration(t):
        arr = pc.cast(arr, pa.int64())
    return pc.cast(arr, pa.string()), invalid


def _value_type_child(arr: pa.Array, *, sets: bool) -> tuple[list[tuple[str, pa.Array]], np.ndarray | None]:
    """The non-NULL children for ``arr`` (already dictionary-decoded) and its invalid mask."""
    t = arr.type
    if pa.types.is_null(t):
        return [], None
    if pa.types.is_boolean(t):
        return [("BOOL", arr)], None
    if pa.types.is_integer(t) or pa.types.is_duration(t):
        # Written as quoted text by the kernel (see _wrap): no string cast.
        return [("N", pc.cast(arr, pa.int64()) if pa.types.is_duration(t) else arr)], None
    if pa.types.is_float64(t):
        finite = pc.is_finite(arr).fill_null(True)
        invalid = None
        if not pc.all(finite).as_py():
            invalid = ~np.asarray(finite.to_numpy(zero_copy_only=False), dtype=bool)
        return [("N", arr)], invalid
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        text, invalid = _numbers(arr)
        return [("N", text)], invalid
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return [("S", arr)], None
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        return [("B", arr)], None
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
        # The kernel writes these as ISO-8601 strings, which is what S needs.
        return [("S", arr)], None
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _list_child(arr, sets=sets)
    if pa.types.is_struct(t):
        return _struct_child(arr, sets=sets)
    if pa.types.is_map(t):
        return _map_child(arr, sets=sets)
    raise SerializationError(f"Arrow type {t} has no DynamoDB attribute value mapping")


def _list_child(arr: pa.Array, *, sets: bool) -> tuple[list[tuple[str, pa.Array]], np.ndarray | None]:
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        arr = pc.cast(arr, pa.list_(t.value_field))
        t = arr.type
    value_type = t.value_type
    if pa.types.is_dictionary(value_type):
        arr = pc.cast(arr, pa.list_(pa.field(t.value_field.name, value_type.value_type)))
        t = arr.type
        value_type = t.value_type
    list_type = pa.large_list if pa.types.is_large_list(t) else pa.list_
    offsets = arr.offsets
    values = arr.values
    if sets:
        set_name = None
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            set_name = "SS"
        elif pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type):
            set_name = "BS"
        elif (
            pa.types.is_integer(value_type)
            or pa.types.is_floating(value_type)
            or pa.types.is_decimal(value_type)
        ):
            set_name = "NS"
        if set_name is not None:
            invalid = None
            if set_name == "NS":
                values, value_invalid = _numbers(values)
                if value_invalid is not None:
                    invalid = _propagate(arr, value_invalid)
            if values.null_count:
                invalid = _or(
                    invalid, _propagate(arr, np.asarray(values.is_null().to_numpy(zero_copy_only=False)))
                )
            lists = _rebuild_list(list_type, offsets, values, _mask(arr))
            return [(set_name, lists)], invalid
    av = to_attribute_values(values, sets=sets)
    invalid = _propagate(arr, av.invalid) if av.invalid is not None else None
    return [("L", _rebuild_list(list_type, offsets, av.values, _mask(arr)))], invalid


def _fresh(offsets: pa.Array) -> pa.Array:
    """Offsets without a slice offset (``from_arrays`` refuses a mask over sliced offsets)."""
    if offsets.offset == 0:
        return offsets
    return pa.array(offsets.to_numpy(zero_copy_only=False), offsets.type)


def _rebuild_list(list_type: type, offsets: pa.Array, values: pa.Array, mask: pa.Array | None) -> pa.Array:
    if mask is not None:
        offsets = _fresh(offsets)
    if list_type is pa.large_list:
        return pa.LargeListArray.from_arrays(offsets, values, mask=mask)
    return pa.ListArray.from_arrays(offsets, values, mask=mask)


def _mask(arr: pa.Array) -> pa.Array | None:
    """The null slots of ``arr`` as a mask for ``from_arrays`` (``None`` when there are none)."""
    return arr.is_null() if arr.null_count else None


def _propagate(arr: pa.Array, value_invalid: np.ndarray) -> np.ndarray | None:
    """Rows of list ``arr`` holding at least one invalid value (over the full ``values``)."""
    if not value_invalid.any():
        return None
    offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    cum = np.concatenate(([0], np.cumsum(value_invalid, dtype=np.int64)))
    bad = (cum[offsets[1:]] - cum[offsets[:-1]]) > 0
    if arr.null_count:
        bad &= ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return bad


def _struct_child(arr: pa.Array, *, sets: bool) -> tuple[list[tuple[str, pa.Array]], np.ndarray | None]:
    fields = arr.flatten()  # children with the parent's offset applied
    names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    invalid = None
    children = []
    for child in fields:
        av = to_attribute_values(child, sets=sets)
        invalid = _or(invalid, av.invalid)
        children.append(av.values)
    if invalid is not None and arr.null_count:
        invalid = invalid & ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if not children:
        raise SerializationError("a struct without fields has no DynamoDB attribute value mapping")
    return [("M", pa.StructArray.from_arrays(children, names=names, mask=_mask(arr)))], invalid


def _map_child(arr: pa.Array, *, sets: bool) -> tuple[list[tuple[str, pa.Array]], np.ndarray | None]:
    t = arr.type
    keys = arr.keys
    if not (pa.types.is_string(t.key_type) or pa.types.is_large_string(t.key_type)):
        keys = pc.cast(keys, pa.string())
    av = to_attribute_values(arr.items, sets=sets)
    invalid = _propagate(arr, av.invalid) if av.invalid is not None else None
    mask = _mask(arr)
    offsets = _fresh(arr.offsets) if mask is not None else arr.offsets
    out = pa.MapArray.from_arrays(offsets, keys, av.values, mask=mask)
    return [("M", out)], invalid


def to_attribute_values(
    arr: pa.Array | pa.ChunkedArray, *, sets: bool = False, top_level_nulls: str = "null"
) -> AttributeValues:
    """Map one column to AttributeValue-shaped structs (see the module docstring).

    ``top_level_nulls="omit"`` makes null rows null struct slots (the attribute is left out of the
    item) instead of ``{"NULL": true}``. Raises :class:`SerializationError` for an unmapped type.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = pc.cast(arr, arr.type.value_type)
    if pa.types.is_null(arr.type):
        n = len(arr)
        if top_level_nulls == "omit":
            return AttributeValues(
                pa.StructArray.from_arrays(
                    [pa.nulls(n, pa.bool_())], names=["NULL"], mask=pa.array(np.ones(n, dtype=bool))
                ),
                None,
            )
        return AttributeValues(
            pa.StructArray.from_arrays([pa.array(np.ones(n, dtype=bool))], names=["NULL"]), None
        )
    children, invalid = _value_type_child(arr, sets=sets)
    top_mask = arr.is_null() if top_level_nulls == "omit" and arr.null_count else None
    if top_mask is not None:
        # from_arrays(mask=...) wants a mask without nulls and children without offset quirks.
        top_mask = top_mask.fill_null(True)
    values = _wrap(arr, children, top_mask=top_mask)
    if invalid is not None and not invalid.any():
        invalid = None
    return AttributeValues(values, invalid)


# ------------------------------------------------------------------------------------------- reading


def _from_numbers(text: pa.Array, target: pa.DataType | None) -> pa.Array:
    if target is not None:
        if pa.types.is_decimal(target) or pa.types.is_integer(target) or pa.types.is_floating(target):
            return pc.cast(text, target)
        if pa.types.is_duration(target):
            return pc.cast(pc.cast(text, pa.int64()), target)
        return pc.cast(text, target)
    # Inferred: int64 when every value is an integer literal that fits, else float64.
    is_int = pc.match_substring_regex(text, r"^-?[0-9]{1,18}$").fill_null(True)
    if pc.all(is_int).as_py():
        return pc.cast(text, pa.int64())
    return pc.cast(text, pa.float64())


def from_attribute_values(av: pa.Array, target: pa.DataType | None = None) -> pa.Array:
    """One column from AttributeValue-shaped structs (as pyarrow's JSON reader infers them).

    ``target`` is the wanted Arrow type (from a schema), or ``None`` to infer: ``S`` -> string,
    ``N`` -> int64 if every value is an integer else float64, ``B`` -> binary (base64-decoded),
    ``BOOL`` -> bool, ``NULL`` only -> null, ``L`` / ``M`` -> list / struct of inferred values,
    ``SS`` / ``NS`` / ``BS`` -> lists. A struct with several value kinds set in different rows
    (a schemaless attribute) is read as its ``S`` rendering where present, else the first kind.
    """
    if isinstance(av, pa.ChunkedArray):
        av = av.combine_chunks()
    if not pa.types.is_struct(av.type):
        raise SerializationError(f"expected AttributeValue structs, got {av.type}")
    kinds = [av.type.field(i).name for i in range(av.type.num_fields)]
    fields = dict(zip(kinds, av.flatten(), strict=True))
    value_kinds = [k for k in kinds if k != "NULL"]
    if not value_kinds:
        return pa.nulls(len(av), target or pa.null())
    kind = value_kinds[0]
    if len(value_kinds) > 1:
        kind = "S" if "S" in value_kinds else value_kinds[0]
    values = fields[kind]
    if kind == "S":
        out = values if target is None else pc.cast(values, target)
    elif kind == "N":
        out = _from_numbers(values, target)
    elif kind == "B":
        out = _b64decode(values)
        if target is not None:
            out = pc.cast(out, target)
    elif kind == "BOOL":
        out = values if target is None else pc.cast(values, target)
    elif kind in ("SS", "NS", "BS"):
        inner = target.value_type if target is not None and pa.types.is_list(target) else None
        flat = values.values
        if kind == "NS":
            flat = _from_numbers(flat, inner)
        elif kind == "BS":
            flat = _b64decode(flat)
        elif inner is not None:
            flat = pc.cast(flat, inner)
        out = pa.ListArray.from_arrays(values.offsets, flat, mask=values.is_null())
        if target is not None:
            out = pc.cast(out, target)
    elif kind == "L":
        inner = (
            target.value_type
            if target is not None and (pa.types.is_list(target) or pa.types.is_large_list(target))
            else None
        )
        flat = from_attribute_values(values.values, inner)
        out = pa.ListArray.from_arrays(values.offsets, flat, mask=values.is_null())
        if target is not None:
            out = pc.cast(out, target)
    elif kind == "M":
        if target is not None and pa.types.is_struct(target):
            sub = dict(
                zip(
                    [values.type.field(i).name for i in range(values.type.num_fields)],
                    values.flatten(),
                    strict=True,
                )
            )
            arrays = []
            for f in target:
                if f.name in sub:
                    arrays.append(from_attribute_values(sub[f.name], f.type))
                else:
                    arrays.append(pa.nulls(len(values), f.type))
            out = pa.StructArray.from_arrays(arrays, fields=list(target), mask=values.is_null())
        else:
            sub_names = [values.type.field(i).name for i in range(values.type.num_fields)]
            arrays = [from_attribute_values(c) for c in values.flatten()]
            if arrays:
                out = pa.StructArray.from_arrays(arrays, names=sub_names, mask=values.is_null())
            else:
                out = values
    else:
        raise SerializationError(f"unknown DynamoDB attribute value kind {kind!r}")
    # A row is null where the chosen kind is absent (NULL: true, or a missing attribute).
    missing = values.is_null()
    if av.null_count:
        missing = pc.or_(missing, av.is_null())
    if pc.any(missing).as_py():
        out = pc.if_else(missing, pa.scalar(None, out.type), out)
    return out


def _b64decode(text: pa.Array) -> pa.Array:
    """Base64 strings -> binary (one ``binascii`` call per value: B attributes are rare).

    Already-binary input (botocore decodes base64 itself) is returned as is.
    """
    import base64

    if pa.types.is_binary(text.type) or pa.types.is_large_binary(text.type):
        return text

    return pa.array([None if v is None else base64.b64decode(v) for v in text.to_pylist()], pa.binary())
