"""Slow, obviously-correct oracle for :mod:`arrowflow._ext.json_encode` (tests only, never used at run time).

Same signatures and the same bytes as the kernel. Each column is turned into one JSON text per row
(``None`` for a null) from ``to_pylist()`` values with plain Python formatting: ``repr`` for floats,
``json.dumps`` for strings, ``base64`` for binary, ``datetime`` for calendar fields, ``format(d, "f")``
for decimals. Nested arrays recurse over their child arrays and offsets.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["QUOTE_KEY", "encode_ndjson", "encode_rows"]

QUOTE_KEY = b"arrowflow.json.quote"

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_FRACTION_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}
_EPOCH = _dt.date(1970, 1, 1)
_DAYS_PER_400_YEARS = 146_097  # the Gregorian calendar repeats every 400 years
# Stands in for a NaN/Infinity under nan="error": it cannot occur in real JSON text (json.dumps escapes
# NUL), so a document containing it had a NaN that was actually written.
_NAN_MARK = "\x00NaN\x00"


class _Options:
    def __init__(self, nulls: str, nan: str) -> None:
        if nulls not in ("null", "omit"):
            raise ValueError(f"nulls must be 'null' or 'omit', got {nulls!r}")
        if nan not in ("error", "null"):
            raise ValueError(f"nan must be 'error' or 'null', got {nan!r}")
        self.omit = nulls == "omit"
        self.nan_null = nan == "null"


def _date_text(days: int) -> str:
    """ISO date of a day count since 1970-01-01 (any year: shifted by whole 400-year cycles into
    1970..2369, where datetime works, then shifted back)."""
    cycles, days = divmod(days, _DAYS_PER_400_YEARS)
    d = _EPOCH + _dt.timedelta(days=days)
    year = d.year + 400 * cycles
    # ISO-8601 expanded years outside 0..9999: a sign and at least four digits.
    ytext = f"{year:04d}" if 0 <= year <= 9999 else ("-" if year < 0 else "+") + f"{abs(year):04d}"
    return f"{ytext}-{d.month:02d}-{d.day:02d}"


def _clock_text(seconds: int, fraction: int, unit: str) -> str:
    hours, rest = divmod(seconds, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    digits = _FRACTION_DIGITS[unit]
    return text + (f".{fraction:0{digits}d}" if digits else "")


def _float_text(value: float, opts: _Options) -> str:
    if math.isfinite(value):
        return repr(value)
    return "null" if opts.nan_null else _NAN_MARK


def _field_texts(arr: pa.Array, field: pa.Field, opts: _Options) -> list[str | None]:
    """``_texts`` of a struct member / top-level column, quoted when its metadata asks for it."""
    texts = _texts(arr, opts)
    if not (field.metadata and field.metadata.get(QUOTE_KEY) == b"1"):
        return texts
    t = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    if not (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)
    ):
        raise TypeError(f"field {field.name!r}: quoted output needs a number, boolean or decimal type")
    return [None if x is None else f'"{x}"' for x in texts]


def _texts(arr: pa.Array, opts: _Options) -> list[str | None]:
    """JSON text per element of arr (None where the element is null)."""
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        return _texts(arr.storage, opts)
    valid = arr.is_valid().to_pylist()
    if pa.types.is_dictionary(t):
        indices = arr.indices.to_pylist()
        dictionary = arr.dictionary
        texts = _texts(
            dictionary.take(pa.array([i if i is not None else 0 for i in indices], pa.int64()))
            if len(dictionary)
            else dictionary,
            opts,
        )
        return [texts[k] if indices[k] is not None else None for k in range(len(arr))]
    if pa.types.is_null(t):
        return [None] * len(arr)
    out: list[str | None]
    if pa.types.is_struct(t):
        fields = [
            (t.field(k).name, _field_texts(arr.field(k), t.field(k), opts)) for k in range(t.num_fields)
        ]
        out = []
        for k in range(len(arr)):
            members = [
                json.dumps(name, ensure_ascii=False) + ":" + ("null" if texts[k] is None else str(texts[k]))
                for name, texts in fields
                if not (texts[k] is None and opts.omit)
            ]
            out.append("{" + ",".join(members) + "}")
    elif pa.types.is_map(t):
        offsets = arr.offsets.to_pylist()
        entries = arr.values
        keys = _texts(entries.field(0), opts)
        values = _texts(entries.field(1), opts)
        key_type = entries.type.field(0).type
        if pa.types.is_dictionary(key_type):
            key_type = key_type.value_type
        quote = not _is_string_text(key_type)
        out = []
        for k in range(len(arr)):
            parts = []
            for j in range(offsets[k], offsets[k + 1]):
                if values[j] is None and opts.omit:
                    continue
                key = keys[j]
                key_text = '"null"' if key is None else (f'"{key}"' if quote else key)
                parts.append(key_text + ":" + ("null" if values[j] is None else str(values[j])))
            out.append("{" + ",".join(parts) + "}")
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        if pa.types.is_fixed_size_list(t):
            size = t.list_size
            offsets = [(arr.offset + k) * size for k in range(len(arr) + 1)]
        else:
            offsets = arr.offsets.to_pylist()
        values_arr = arr.values
        items = _texts(values_arr, opts)
        out = [
            "[" + ",".join("null" if v is None else v for v in items[offsets[k] : offsets[k + 1]]) + "]"
            for k in range(len(arr))
        ]
    else:
        out = _scalar_texts(arr, opts)
    return [text if ok else None for text, ok in zip(out, valid, strict=True)]


def _is_string_text(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_time(t)
    )


def _scalar_texts(arr: pa.Array, opts: _Options) -> list[str | None]:
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_time(t):
        per = _PER_SECOND[t.unit]
        out: list[str | None] = []
        raw = pc.cast(arr, pa.int32() if pa.types.is_time32(t) else pa.int64())
        for v in raw.fill_null(0).to_pylist():
            seconds, fraction = divmod(v, per)
            if pa.types.is_time(t):
                out.append('"' + _clock_text(seconds, fraction, t.unit) + '"')
            else:
                days, in_day = divmod(seconds, 86_400)
                zone = "Z" if t.tz is not None else ""
                out.append(f'"{_date_text(days)}T{_clock_text(in_day, fraction, t.unit)}{zone}"')
        return out
    if pa.types.is_date32(t):
        return [f'"{_date_text(v)}"' for v in pc.cast(arr, pa.int32()).fill_null(0).to_pylist()]
    if pa.types.is_date64(t):
        return [f'"{_date_text(v // 86_400_000)}"' for v in pc.cast(arr, pa.int64()).fill_null(0).to_pylist()]
    if pa.types.is_duration(t):
        return [None if v is None else str(v) for v in pc.cast(arr, pa.int64()).to_pylist()]
    if pa.types.is_floating(t):
        values = pc.cast(arr, pa.float64()).to_pylist()
        return [None if v is None else _float_text(v, opts) for v in values]
    values = arr.to_pylist()
    if pa.types.is_boolean(t):
        return [None if v is None else ("true" if v else "false") for v in values]
    if pa.types.is_integer(t):
        return [None if v is None else str(v) for v in values]
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return [None if v is None else '"' + base64.b64encode(v).decode("ascii") + '"' for v in values]
    if pa.types.is_decimal(t):
        return [None if v is None else format(v, "f") for v in values]
    raise TypeError(f"JSON encoding does not support Arrow type {t}")


def _documents(
    batch: pa.RecordBatch,
    columns: Sequence[str] | None,
    field_names: Mapping[str, str] | None,
    nulls: str,
    nan: str,
) -> list[bytes]:
    opts = _Options(nulls, nan)
    names = batch.schema.names
    selected = list(range(batch.num_columns)) if columns is None else []
    if columns is not None:
        for name in columns:
            if name not in names:
                raise KeyError(f"column {name!r} is not in the batch (columns: {names})")
            selected.append(names.index(name))
    per_column = []
    for index in selected:
        name = names[index]
        key = field_names.get(name, name) if field_names is not None else name
        texts = _field_texts(batch.column(index), batch.schema.field(index), opts)
        per_column.append((name, json.dumps(key, ensure_ascii=False) + ":", texts))
    docs = []
    for r in range(batch.num_rows):
        members = []
        for name, key, texts in per_column:
            text = texts[r]
            if text is None and opts.omit:
                continue
            if text is not None and _NAN_MARK in text:
                raise ValueError(
                    f"column {name!r}, row {r}: NaN/Infinity has no JSON representation (nan='error'); "
                    "pass nan='null' to write null instead"
                )
            members.append(key + ("null" if text is None else text))
        docs.append(("{" + ",".join(members) + "}").encode("utf-8"))
    return docs


def encode_rows(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    nulls: str = "null",
    nan: str = "error",
    threads: int = 0,
    terminator: bytes = b"",
) -> pa.BinaryArray:
    """Reference for :func:`arrowflow._ext.json_encode.encode_rows` (``threads`` is accepted and ignored)."""
    if len(terminator) > 1:
        raise ValueError(f"terminator must be empty or one byte, got {terminator!r}")
    docs = _documents(batch, columns, field_names, nulls, nan)
    return pa.array([d + terminator for d in docs], pa.binary())


def encode_ndjson(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    nulls: str = "null",
    nan: str = "error",
    threads: int = 0,
) -> pa.Buffer:
    """Reference for :func:`arrowflow._ext.json_encode.encode_ndjson`."""
    return pa.py_buffer(b"".join(doc + b"\n" for doc in _documents(batch, columns, field_names, nulls, nan)))
