"""JSON: one JSON object per payload.

Encoding runs the compiled kernel :func:`arrowflow._ext.json_encode.encode_rows` over the whole batch (no
Python object per row). Decoding with an explicit schema of flat scalar fields (integers, float64,
bool, strings, dates, naive timestamps, base64 binary) first takes the fast path: one compiled scan
(:mod:`arrowflow._ext.json_decode`, GIL released, two threads for large calls) checks every payload
and cuts each wanted value out as text, and Arrow's casts type the columns. It answers only when
every payload of the call fits and the casts agree with what pyarrow's reader would return;
otherwise the call takes the general path: the payloads are joined into one NDJSON buffer and parsed
with ``pyarrow.json.read_json`` against the schema; a bad payload makes pyarrow reject the whole
block, so bad payloads are isolated by bisection (one parse in the common path, ``O(bad * log n)``
parses otherwise). Both paths give the same result (tested property by property).

Framing rules for decoding (what counts as one message):

* A payload must hold exactly one JSON object. Null, empty and whitespace-only payloads, payloads
  whose first non-blank byte is not ``{`` and payloads holding two objects (``{..}{..}``) fail.
* Newlines *between tokens* (pretty-printed JSON, a trailing ``\\n``) are valid JSON whitespace and
  are accepted: when any payload of a call contains ``\\n`` or ``\\r`` the parse switches to
  pyarrow's ``newlines_in_values`` mode (slower), so framing never depends on the payload's layout.
  A raw newline *inside* a string is invalid JSON and the payload fails.
* Strings must be valid UTF-8 (checked, vectorized, after parsing).

Types: values are read as pyarrow's JSON reader reads them (numbers, booleans, strings, ISO-8601
timestamps, nested objects as structs, arrays as lists); ``date32``/``date64`` are read from
``"YYYY-MM-DD"`` strings, binary from base64 strings, dictionary types from their value type, and
``large_list`` / ``fixed_size_list`` from arrays. ``map``, ``time``, ``duration`` and ``interval``
fields cannot be decoded (a :class:`ConfigurationError` at construction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_choice, check_non_negative, check_type
from ..errors import ConfigurationError
from .base import (
    Decoded,
    Encoded,
    Format,
    as_binary,
    check_schema,
    concat_batches,
    isolate,
    join_lines,
    merge_encoded,
    offsets_and_data,
    sort_failures,
    valid_mask,
)

__all__ = ["Json"]

_WHITESPACE = frozenset(b" \t\r\n")


def _kernel() -> Callable[..., pa.Array]:
    from .._ext import load

    return load("json_encode").encode_rows  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Json(Format):
    """Rows as JSON objects. See the module docstring for the framing and type rules.

    ``schema``: the decoded schema; required for :meth:`decode` unless ``infer=True``.
    ``columns``: the columns to encode (all when ``None``). ``field_names``: the JSON key of each
    column, as a mapping ``{column: key}`` or a sequence aligned with ``columns`` (or the schema);
    decoding reads those keys and names the columns back. ``nulls`` (``"null"`` writes ``null``,
    ``"omit"`` leaves the key out) and ``nan`` (``"error"``: a row holding NaN/Infinity in any float,
    nested ones included, fails and goes to the error policy; ``"null"`` writes ``null``) are passed
    to the kernel. ``unexpected_fields``: what decoding does with keys not in the schema
    (``"ignore"`` or ``"error"``: the payload fails).

    ``infer=True`` lets pyarrow infer the schema from the first block decoded and keeps it for every
    later call. That is dangerous for streams: a key absent from the first block is ignored forever,
    and a field first seen as an integer makes every later payload with ``1.5`` in it fail.
    ``threads``: kernel threads (0 = automatic) and whether pyarrow parses with threads.
    """

    schema: pa.Schema | None = None
    _: KW_ONLY
    columns: Sequence[str] | None = None
    field_names: Mapping[str, str] | Sequence[str] | None = None
    nulls: str = "null"
    nan: str = "error"
    unexpected_fields: str = "ignore"
    infer: bool = False
    threads: int = 0
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    name = "json"

    def __post_init__(self) -> None:
        check_schema("schema", self.schema, allow_none=True)
        check_choice("nulls", self.nulls, ("null", "omit"))
        check_choice("nan", self.nan, ("error", "null"))
        check_choice("unexpected_fields", self.unexpected_fields, ("ignore", "error"))
        check_type("infer", self.infer, bool)
        check_type("threads", self.threads, int)
        check_non_negative("threads", self.threads)
        if self.columns is not None:
            if isinstance(self.columns, str) or not all(isinstance(c, str) for c in self.columns):
                raise ConfigurationError("columns must be a list of column names", option="columns")
            object.__setattr__(self, "columns", tuple(self.columns))
        if self.field_names is not None:
            if isinstance(self.field_names, Mapping):
                object.__setattr__(self, "field_names", dict(self.field_names))
            elif isinstance(self.field_names, str) or not all(isinstance(c, str) for c in self.field_names):
                raise ConfigurationError(
                    "field_names must be a mapping {column: key} or a list of keys", option="field_names"
                )
            else:
                object.__setattr__(self, "field_names", tuple(self.field_names))
        if self.schema is not None:
            for f in self.schema:
                _read_type(f.type, f"schema field {f.name!r}")
            self._keys(self.schema.names)

    # -- naming ------------------------------------------------------------------------------------

    def _keys(self, names: Sequence[str]) -> list[str]:
        """The JSON key of each column in ``names``."""
        fn = self.field_names
        if fn is None:
            return list(names)
        if isinstance(fn, Mapping):
            return [fn.get(n, n) for n in names]
        aligned = list(self.columns) if self.columns is not None else list(names)
        if len(fn) != len(aligned):
            raise ConfigurationError(
                f"field_names has {len(fn)} names for {len(aligned)} columns", option="field_names"
            )
        mapping = dict(zip(aligned, fn, strict=True))
        return [mapping.get(n, n) for n in names]

    # -- encode ------------------------------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> Encoded:
        """One JSON object per row, by the compiled kernel.

        With ``nan="error"`` the rows holding NaN/Infinity are found first (vectorized) and fail
        with a message naming the column; the kernel then runs once over the other rows. Should the
        kernel still reject a block, bisection isolates the rows it rejects.
        """
        kernel = _kernel()
        n = batch.num_rows
        names = list(self.columns) if self.columns is not None else batch.schema.names
        missing = [c for c in names if c not in batch.schema.names]
        if missing:
            raise ConfigurationError(f"columns {missing} are not in the batch", option="columns")
        kernel_names = (
            dict(zip(names, self._keys(names), strict=True)) if self.field_names is not None else None
        )
        kwargs: dict[str, Any] = {
            "columns": list(self.columns) if self.columns is not None else None,
            "field_names": kernel_names,
            "nulls": self.nulls,
            "nan": self.nan,
            "threads": self.threads,
        }
        failed: list[int] = []
        errors: list[str] = []
        bad = np.zeros(n, dtype=bool)
        if self.nan == "error":
            for name in names:
                rows = nonfinite_rows(batch.column(name))
                if rows is None:
                    continue
                new = rows & ~bad
                if new.any():
                    for i in np.flatnonzero(new):
                        failed.append(int(i))
                        errors.append(f"column {name!r} holds NaN or Infinity (nan='error')")
                    bad |= new
        ok = np.flatnonzero(~bad).astype(np.int64)
        good = batch if len(ok) == n else batch.take(pa.array(ok))

        def run(block: np.ndarray) -> pa.Array:
            # Blocks are contiguous ranges of positions in ``good``: a slice, not a gather.
            return kernel(good.slice(int(block[0]), len(block)), **kwargs)

        # Only ValueError means "a row is bad"; KeyError/TypeError are configuration errors.
        results, idx, kfailed, kerrors = isolate(np.arange(len(ok), dtype=np.int64), run, (ValueError,))
        failed.extend(int(ok[i]) for i in kfailed)
        errors.extend(kerrors)
        if results:
            payloads = results[0] if len(results) == 1 else pa.concat_arrays(results)
            ok_rows = ok[np.concatenate(idx)]
        else:
            payloads = pa.array([], pa.binary())
            ok_rows = np.empty(0, np.int64)
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        farr, ferr = sort_failures(failed, errors)
        return Encoded(merge_encoded(n, ok_rows, payloads), farr, ferr)

    # -- decode ------------------------------------------------------------------------------------

    def decode(self, payloads: pa.Array | pa.ChunkedArray) -> Decoded:
        """Parse each payload as one JSON object. See the module docstring for the framing rules."""
        schema = self.schema if self.schema is not None else self._state.get("schema")
        if schema is None and not self.infer:
            raise ConfigurationError(
                "Json needs a schema to decode (or infer=True, see its docstring)", option="schema"
            )
        binary = as_binary(payloads)
        # Inference keeps the general path: what it accepts depends on pyarrow's inferred types.
        if self.schema is not None and len(binary):
            fast = self._decode_flat(self.schema, binary)
            if fast is not None:
                return fast
        return self._decode_general(binary)

    def _decode_general(self, binary: pa.Array) -> Decoded:
        """Every payload through ``pyarrow.json.read_json`` (one call; bisection isolates bad ones)."""
        import pyarrow.json as pj

        n = len(binary)
        offsets, data = offsets_and_data(binary)
        lengths = np.diff(offsets)
        valid = valid_mask(binary)
        failed: list[int] = []
        errors: list[str] = []

        candidate = valid & (lengths > 0)
        starts = offsets[:-1]
        first = np.zeros(n, dtype=np.uint8)
        first[candidate] = data[starts[candidate]]
        plain = candidate & (first == ord("{"))
        # Payloads not starting with '{' are rare: decide each one in Python.
        for i in np.flatnonzero(~plain):
            if not valid[i]:
                failed.append(int(i))
                errors.append("null payload")
                continue
            text = data[offsets[i] : offsets[i + 1]].tobytes().lstrip(bytes(_WHITESPACE))
            if not text:
                failed.append(int(i))
                errors.append("empty payload")
            elif text[:1] == b"{":
                plain[i] = True
            else:
                failed.append(int(i))
                errors.append("payload is not a JSON object")
        for bad in _invalid_utf8(offsets, data, plain):
            # JSON text is UTF-8 (RFC 8259); the reader checks only the values it keeps, so a bad
            # byte in an ignored field would otherwise pass.
            plain[bad] = False
            failed.append(bad)
            errors.append("payload is not valid UTF-8")
        cand = np.flatnonzero(plain).astype(np.int64)
        seg = data[offsets[0] : offsets[-1]] if n else data[:0]
        multiline = bool(len(cand)) and bool(np.any((seg == 10) | (seg == 13)))
        max_len = int(lengths.max()) if n else 0

        def run(block: np.ndarray) -> pa.RecordBatch:
            known = self.schema if self.schema is not None else self._state.get("schema")
            sub = binary.take(pa.array(block))
            buf = pa.py_buffer(join_lines(sub))
            if known is None:
                parse = pj.ParseOptions(newlines_in_values=multiline)
                keys = None
            else:
                keys = self._keys(known.names)
                read_schema = pa.schema(
                    [pa.field(k, _read_type(f.type, f.name)) for k, f in zip(keys, known, strict=True)]
                )
                parse = pj.ParseOptions(
                    explicit_schema=read_schema,
                    unexpected_field_behavior=self.unexpected_fields,
                    newlines_in_values=multiline,
                )
            # One payload (bisection has isolated it) is read on one thread: with threads, the column
            # whose conversion fails first, and so the error text, varies from run to run.
            threads = self.threads != 1 and len(block) > 1
            read = pj.ReadOptions(use_threads=threads, block_size=max(1 << 20, max_len + 16))
            table = pj.read_json(pa.BufferReader(buf), read_options=read, parse_options=parse)
            if table.num_rows != len(block):
                raise ValueError(
                    "payload holds more than one JSON object"
                    if len(block) == 1
                    else "a payload holds more than one JSON object"
                )
            if known is None:
                with _INFER_LOCK:
                    known = self._state.setdefault("schema", table.schema)
                keys = list(known.names)
                table = table.select([k for k in keys if k in table.schema.names])
                if table.schema != known:
                    raise ValueError("payload does not match the schema inferred from the first block")
            assert keys is not None
            columns = [
                _convert(table.column(k).combine_chunks(), f.type) if table.num_rows else pa.array([], f.type)
                for k, f in zip(keys, known, strict=True)
            ]
            out = pa.RecordBatch.from_arrays(columns, schema=known)
            out.validate(full=True)
            return out

        results, idx, bfailed, berrors = isolate(cand, run)
        failed.extend(bfailed)
        errors.extend(berrors)
        final_schema = self.schema if self.schema is not None else self._state.get("schema")
        if final_schema is None:
            final_schema = pa.schema([])
        batch = concat_batches(results, final_schema)
        rows = np.concatenate(idx).astype(np.int64) if idx else np.empty(0, np.int64)
        farr, ferr = sort_failures(failed, errors)
        return Decoded(batch, rows, farr, ferr)

    def _decode_flat(self, schema: pa.Schema, binary: pa.Array) -> Decoded | None:
        """The fast path: every payload a flat object whose wanted values are scalars.

        The compiled scan (:mod:`arrowflow._ext.json_decode`) cuts each wanted value out as text
        and Arrow's casts type the columns. It answers only when *every* payload takes the path
        and the result is what the general path would return; otherwise ``None`` and the general
        path decodes the call (so bad payloads, odd types and edge cases keep its semantics).
        """
        kinds = _flat_kinds(schema)
        if kinds is None:
            return None
        if binary.null_count:
            return None
        offsets, data = offsets_and_data(binary)
        # One vectorized UTF-8 check over every payload (the scan does not check encoding).
        as_text = pa.Array.from_buffers(
            pa.large_string(),
            len(offsets) - 1,
            [None, pa.py_buffer(offsets), pa.py_buffer(data)],
        )
        try:
            as_text.validate(full=True)
        except pa.ArrowInvalid:
            return None
        from .._ext import load

        keys = [k.encode() for k in self._keys(schema.names)]
        texts, _reason, _row = load("json_decode").scan(
            data, offsets, keys, kinds, self.unexpected_fields == "error", self.threads
        )
        if texts is None:
            return None
        columns = []
        try:
            for f, text in zip(schema, texts, strict=True):
                if text.null_count and not f.nullable:
                    return None
                col = _convert(pc.cast(text, _read_type(f.type, f.name)), f.type)
                if (
                    pa.types.is_floating(f.type)
                    and col.null_count != len(col)
                    and pc.any(pc.is_inf(col)).as_py()
                ):
                    # The JSON reader refuses out-of-range numbers (1e400) the cast reads as inf.
                    return None
                columns.append(col)
        except (pa.ArrowException, ValueError, OverflowError):
            return None
        batch = pa.RecordBatch.from_arrays(columns, schema=schema)
        return Decoded(batch, np.arange(len(offsets) - 1, dtype=np.int64))


_INFER_LOCK = threading.Lock()


def _invalid_utf8(offsets: np.ndarray, data: np.ndarray, wanted: np.ndarray) -> list[int]:
    """The payloads (where ``wanted``, a boolean mask) whose bytes are not valid UTF-8: one vectorized
    check over every payload (no copy), and only when it fails, bisection down to the bad ones."""
    if not wanted.any():
        return []
    text = pa.Array.from_buffers(
        pa.large_string(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )

    def valid(lo: int, hi: int) -> bool:
        try:
            text.slice(lo, hi - lo).validate(full=True)
        except pa.ArrowInvalid:
            return False
        return True

    bad: list[int] = []
    pending = [(0, len(text))]
    while pending:
        lo, hi = pending.pop()
        if valid(lo, hi):
            continue
        if hi - lo == 1:
            if wanted[lo]:
                bad.append(lo)
        else:
            mid = (lo + hi) // 2
            pending += [(mid, hi), (lo, mid)]
    return bad


_NUMBER, _STRING, _BOOL = 1, 0, 2


def _flat_kinds(schema: pa.Schema) -> list[int] | None:
    """Per field the JSON value kind the fast path expects, or ``None`` when a field's type is not
    one it handles exactly like pyarrow's JSON reader (nested, dictionary, decimal, float16/32,
    zoned timestamps ...)."""
    kinds = []
    for f in schema:
        t = f.type
        if pa.types.is_integer(t) or pa.types.is_float64(t):
            kinds.append(_NUMBER)
        elif pa.types.is_boolean(t):
            kinds.append(_BOOL)
        elif (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_date(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or (pa.types.is_timestamp(t) and t.tz is None)
        ):
            kinds.append(_STRING)
        else:
            return None
    return kinds


# --------------------------------------------------------------------------------------------------
# NaN / Infinity detection


def nonfinite_rows(arr: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Per row of ``arr``: True when the row holds a NaN or ±Infinity anywhere (nested included).

    ``None`` when the type holds no floating-point values at all. Null slots never count.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    n = len(arr)
    if pa.types.is_floating(t):
        mask = pc.or_(pc.is_nan(arr), pc.is_inf(arr)).fill_null(False)
        return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_struct(t):
        out = None
        for i in range(t.num_fields):
            child = nonfinite_rows(pc.struct_field(arr, [i]))
            if child is not None:
                out = child if out is None else (out | child)
        if out is not None and arr.null_count:
            out &= valid_mask(arr)
        return out
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_map(t)
    ):
        values = pc.list_flatten(arr)
        inner = nonfinite_rows(values)
        if inner is None:
            return None
        parents = np.asarray(pc.list_parent_indices(arr).to_numpy(zero_copy_only=False), dtype=np.int64)
        out = np.zeros(n, dtype=bool)
        out[parents[inner]] = True
        return out
    if pa.types.is_dictionary(t):
        inner = nonfinite_rows(arr.dictionary)
        if inner is None:
            return None
        idx = arr.indices.fill_null(0).to_numpy(zero_copy_only=False)
        return inner[idx] & valid_mask(arr) if len(inner) else np.zeros(n, dtype=bool)
    return None


# --------------------------------------------------------------------------------------------------
# Reading types pyarrow's JSON reader does not read directly


def _read_type(t: pa.DataType, where: str) -> pa.DataType:
    """The type pyarrow's JSON reader is asked for, for a target type ``t``."""
    if pa.types.is_date(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.string()
    if pa.types.is_fixed_size_binary(t):
        return pa.string()
    if pa.types.is_dictionary(t):
        return _read_type(t.value_type, where)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(pa.field(t.value_field.name, _read_type(t.value_type, where)))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _read_type(f.type, where), f.nullable) for f in t])
    if (
        pa.types.is_map(t)
        or pa.types.is_time(t)
        or pa.types.is_duration(t)
        or pa.types.is_interval(t)
        or pa.types.is_union(t)
    ):
        raise ConfigurationError(f"Json cannot decode {t} ({where})", option="schema")
    return t


def _convert(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """``arr`` as read by pyarrow, converted to ``target`` (raises on a bad value)."""
    if arr.type == target:
        return arr
    if pa.types.is_date(target):
        return pc.cast(arr, target)
    if (
        pa.types.is_binary(target)
        or pa.types.is_large_binary(target)
        or pa.types.is_fixed_size_binary(target)
    ):
        return b64decode(arr).cast(target)
    if pa.types.is_dictionary(target):
        return pc.cast(_convert(arr, target.value_type), target)
    if pa.types.is_struct(target):
        mask = arr.is_null() if arr.null_count else None
        children = [_convert(arr.field(i), f.type) for i, f in enumerate(target)]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_list(target) or pa.types.is_large_list(target) or pa.types.is_fixed_size_list(target):
        flat = arr.flatten()
        values = _convert(flat, target.value_type)
        if pa.types.is_fixed_size_list(target):
            sizes = pc.list_value_length(arr).fill_null(target.list_size)
            if not pc.all(pc.equal(sizes, target.list_size)).as_py():
                raise ValueError(f"an array does not have {target.list_size} items")
        lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(arr) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        mask = arr.is_null() if arr.null_count else None
        rebuilt = pa.LargeListArray.from_arrays(
            pa.array(offsets), values, type=pa.large_list(target.value_field), mask=mask
        )
        return rebuilt.cast(target)
    return pc.cast(arr, target)


_B64 = np.full(256, 255, dtype=np.uint8)
_B64[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)] = (
    np.arange(64, dtype=np.uint8)
)


def b64decode(arr: pa.Array) -> pa.Array:
    """Decode a string array of standard, padded base64 values into a binary array (vectorized).

    Raises :class:`ValueError` when any value is not valid base64.
    """
    valid = valid_mask(arr)
    filled = arr.fill_null("") if arr.null_count else arr
    binary = as_binary(filled)
    offsets, data = offsets_and_data(binary)
    seg = data[offsets[0] : offsets[-1]]
    rel = offsets - offsets[0]
    lengths = np.diff(rel)
    if np.any(lengths % 4):
        raise ValueError("invalid base64: length is not a multiple of 4")
    ends = rel[1:]
    nonempty = lengths > 0
    pad = np.zeros(len(lengths), dtype=np.int64)
    eq = ord("=")
    pad[nonempty] = (seg[ends[nonempty] - 1] == eq).astype(np.int64) + (seg[ends[nonempty] - 2] == eq).astype(
        np.int64
    )
    if int(np.count_nonzero(seg == eq)) != int(pad.sum()):
        raise ValueError("invalid base64: misplaced padding")
    sextets = _B64[seg]
    sextets[seg == eq] = 0
    if np.any(sextets == 255):
        raise ValueError("invalid base64 character")
    quads = sextets.reshape(-1, 4).astype(np.uint32)
    word = (quads[:, 0] << 18) | (quads[:, 1] << 12) | (quads[:, 2] << 6) | quads[:, 3]
    decoded = np.stack([(word >> 16) & 255, (word >> 8) & 255, word & 255], axis=1).astype(np.uint8).ravel()
    out_ends = np.cumsum(lengths // 4 * 3)
    keep = np.ones(len(decoded), dtype=bool)
    keep[out_ends[pad >= 1] - 1] = False
    keep[out_ends[pad == 2] - 2] = False
    body = decoded[keep]
    new_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths // 4 * 3 - pad, out=new_offsets[1:])
    out = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(lengths), [None, pa.py_buffer(new_offsets), pa.py_buffer(body.tobytes())]
    )
    if not valid.all():
        out = pc.if_else(pa.array(valid), out, pa.scalar(None, pa.large_binary()))
    return out.cast(pa.binary())
