"""Avro: one schemaless Avro record per payload (fastavro), with optional Confluent framing.

Decoding a flat record (fields null, boolean, int, long, float, double, string, bytes, fixed, enum,
the logical types date and (local-)timestamp-millis/micros, and ``["null", T]`` / ``[T, "null"]``
unions of those) runs the compiled kernel :mod:`arrowflow._ext.avro_decode` (GIL released, no Python
object per row) when the payload's writer schema is the reader schema (always without framing; with
Confluent framing, the schema ids whose writer schema equals this schema). Every payload the kernel
does not take (another schema id, a writer schema that differs, a corrupt or truncated body, a value
fastavro would read differently) is decoded by fastavro as below, row by row, so the results and
failure messages are those of fastavro.

Encoding a flat record of the same field types runs the compiled kernel :mod:`arrowflow._ext.avro_encode`
(GIL released, no Python object per row) when every field's column is of a type it reads (see
:func:`_encode_columns`: integers for int/long, float32/64 for float/double, string/large_string (or
a dictionary of them) for string and enum, binary/large_binary/fixed_size_binary for bytes and fixed,
date32 for date, timestamps of any unit for the timestamp types; extra columns are ignored). Its
output is fastavro's ``schemaless_writer``'s byte for byte, and it fails the rows fastavro rejects (a
null outside a ``["null", T]`` union, a value outside a union's ``int``, an unsigned value beyond
``long``, a fixed of another size, a string not among an enum's symbols), plus dates and timestamps
outside Python's datetime range (on the fastavro path ``to_pylist`` raises for the whole batch). Like
fastavro, it writes a null plain ``boolean`` as false and a plain ``int`` beyond 32 bits as a long.

Otherwise fastavro's ``schemaless_reader`` / ``schemaless_writer`` run once per row (a Python dict
per row, ~150k rows/s per core): accepted because fastavro is the well-kept Avro library and its
per-row work runs in its C code.

The Arrow schema is derived from the Avro record schema: ``["null", X]`` unions -> nullable X;
boolean, int, long, float, double, string, bytes, fixed; logical types ``timestamp-millis/micros``
(UTC ``timestamp[ms/us, tz=UTC]``), ``local-timestamp-millis/micros`` (no zone), ``date``,
``time-millis/micros``, ``decimal`` (bytes or fixed), ``uuid`` (string); arrays -> list; maps ->
``map<string, V>``; nested records -> struct; enums -> string. Other unions are rejected at
construction.

Confluent framing (``schema_id=`` / ``framing=`` / ``registry=``): encoded payloads start with the
magic byte 0 and the 4-byte big-endian schema id. On decode, a payload without the magic byte fails
(error policy); the writer schema is looked up by id in ``registry`` (a :class:`SchemaRegistryClient`,
its URL, or a callable ``id -> schema``) and resolved against this format's (reader) schema. An id
the registry does not know fails that payload (it is asked once per id and ``decode`` call; known
ids are cached for the format's life); a registry that cannot be reached raises
:class:`~arrowflow.errors.ConnectorError` (the data is not at fault). Without a registry only this
format's own ``schema_id`` is accepted.

fastavro is an optional extra (``pip install arrowflow[avro]``), imported when an ``Avro`` is built.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import check_type
from ..errors import ConfigurationError
from .base import (
    Decoded,
    Encoded,
    Format,
    as_binary,
    concat_batches,
    isolate,
    offsets_and_data,
    sort_failures,
    valid_mask,
)
from .schema_registry import MAGIC_BYTE, ConfluentFraming, SchemaNotFound, SchemaRegistryClient

__all__ = ["Avro", "avro_to_arrow"]

Registry = SchemaRegistryClient | Callable[[int], Any]


def _fastavro() -> Any:
    try:
        import fastavro
    except ImportError as exc:
        raise ImportError("the Avro format needs fastavro: pip install arrowflow[avro]") from exc
    return fastavro


@dataclass(frozen=True, init=False)
class Avro(Format):
    """Rows as schemaless Avro records. See the module docstring.

    ``Avro(schema, *, framing=None, registry=None, subject=None, schema_id=None)``: ``schema`` is
    the Avro record schema (dict or JSON text) — the writer schema on encode and the reader schema
    on decode; :attr:`schema` is the derived Arrow schema and :attr:`avro_schema` the Avro one.
    ``schema_id=N`` is short for ``framing=ConfluentFraming(schema_id=N)``. With ``registry`` and
    ``subject`` but no id, the schema is registered under ``subject`` on the first encode.
    """

    avro_schema: Any
    framing: ConfluentFraming | None = None
    registry: Registry | None = None
    subject: str | None = None
    _parsed: Any = field(default=None, repr=False, compare=False)
    _arrow: pa.Schema | None = field(default=None, repr=False, compare=False)
    _state: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    name = "avro"

    def __init__(
        self,
        schema: dict[str, Any] | str,
        *,
        framing: ConfluentFraming | None = None,
        registry: Registry | str | None = None,
        subject: str | None = None,
        schema_id: int | None = None,
    ) -> None:
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError as exc:
                raise ConfigurationError(f"schema is not valid JSON: {exc}", option="schema") from exc
        if schema_id is not None:
            if framing is not None and framing.schema_id != schema_id:
                raise ConfigurationError("schema_id and framing.schema_id differ", option="schema_id")
            framing = ConfluentFraming(schema_id=schema_id)
        if isinstance(registry, str):
            registry = SchemaRegistryClient(registry)
        object.__setattr__(self, "avro_schema", schema)
        object.__setattr__(self, "framing", framing)
        object.__setattr__(self, "registry", registry)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "_state", {})
        self.__post_init__()

    def __post_init__(self) -> None:
        check_type("framing", self.framing, ConfluentFraming, allow_none=True)
        check_type("subject", self.subject, str, allow_none=True)
        if self.registry is not None and not callable(self.registry):
            raise ConfigurationError(
                "registry must be a SchemaRegistryClient, its URL or a callable id -> schema",
                option="registry",
            )
        if not isinstance(self.avro_schema, dict) or self.avro_schema.get("type") != "record":
            raise ConfigurationError("schema must be an Avro record schema", option="schema")
        fastavro = _fastavro()
        try:
            parsed = fastavro.parse_schema(self.avro_schema)
        except Exception as exc:  # fastavro raises several types for a bad schema
            raise ConfigurationError(f"invalid Avro schema: {exc}", option="schema") from exc
        object.__setattr__(self, "_parsed", parsed)
        object.__setattr__(self, "_arrow", avro_to_arrow(self.avro_schema))
        object.__setattr__(self, "_encode_fix", _fixer(self.avro_schema, {}, encode=True))
        object.__setattr__(self, "_decode_fix", _fixer(self.avro_schema, {}, encode=False))
        object.__setattr__(self, "_program", _compile_program(parsed, self._arrow))
        object.__setattr__(self, "_encoder", _compile_encoder(parsed))
        self._state["lock"] = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # The lock and the compiled writer cache are per process; the registered schema id
        # ("header") travels so a copy does not register the schema again.
        state = self.__dict__.copy()
        state["_state"] = {k: v for k, v in self._state.items() if k == "header"}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        self._state["lock"] = threading.Lock()

    @property
    def schema(self) -> pa.Schema:  # type: ignore[override]
        """The Arrow schema of decoded batches (derived from the Avro schema)."""
        assert self._arrow is not None
        return self._arrow

    @property
    def confluent(self) -> bool:
        """True when payloads carry Confluent framing."""
        return self.framing is not None or self.registry is not None

    # -- encode ------------------------------------------------------------------------------------

    def _header(self) -> bytes:
        if self.framing is not None:
            return self.framing.header
        if self.registry is None:
            return b""
        if not isinstance(self.registry, SchemaRegistryClient) or self.subject is None:
            raise ConfigurationError(
                "encoding with a registry needs schema_id=, or a SchemaRegistryClient and subject=",
                option="schema_id",
            )
        with self._state["lock"]:
            if "header" not in self._state:
                schema_id = self.registry.register(self.subject, self.avro_schema)
                self._state["header"] = ConfluentFraming(schema_id=schema_id).header
            return self._state["header"]  # type: ignore[no-any-return]

    def encode(self, batch: pa.RecordBatch) -> Encoded:
        """One Avro body (framed when configured) per row; rows fastavro rejects fail.

        The compiled kernel encodes the batch when the schema and the batch's column types are in
        its scope (see :func:`_encode_columns`), byte for byte as fastavro would; otherwise fastavro
        runs row by row.
        """
        _fastavro()
        header = self._header()
        encoder: _Encoder | None = self._encoder  # type: ignore[attr-defined]
        if encoder is not None:
            fast = encoder.encode(batch, header)
            if fast is not None:
                return fast
        return self._encode_rows(batch, header)

    def _encode_rows(self, batch: pa.RecordBatch, header: bytes) -> Encoded:
        """fastavro's ``schemaless_writer``, one row at a time (the general path)."""
        fastavro = _fastavro()
        fix = self._encode_fix  # type: ignore[attr-defined]
        rows, unreadable = _python_rows(batch)
        out = io.BytesIO()
        ends = np.zeros(len(rows) + 1, dtype=np.int32)
        ok = np.ones(len(rows), dtype=bool)
        failed: list[int] = []
        errors: list[str] = []
        for i, row in enumerate(rows):
            start = out.tell()
            if i in unreadable:
                ok[i] = False
                failed.append(i)
                errors.append(unreadable[i])
                ends[i + 1] = start
                continue
            try:
                out.write(header)
                fastavro.schemaless_writer(out, self._parsed, fix(row) if fix else row)
            except Exception as exc:  # fastavro raises ValueError, TypeError, OverflowError, ...
                out.seek(start)
                out.truncate()
                ok[i] = False
                failed.append(i)
                errors.append(f"{type(exc).__name__}: {exc}")
            ends[i + 1] = out.tell()
        validity = None if ok.all() else pa.py_buffer(np.packbits(ok, bitorder="little").tobytes())
        payloads = pa.BinaryArray.from_buffers(
            pa.binary(), len(rows), [validity, pa.py_buffer(ends), pa.py_buffer(out.getvalue())]
        )
        return Encoded(payloads, np.asarray(failed, dtype=np.int64), errors)

    # -- decode ------------------------------------------------------------------------------------

    def _writer_schema(self, schema_id: int) -> Any:
        """The parsed writer schema for ``schema_id``, or raise KeyError naming why."""
        cache: dict[int, Any] = self._state.setdefault("writers", {})
        if schema_id in cache:
            return cache[schema_id]
        if self.registry is None:
            assert self.framing is not None
            if schema_id != self.framing.schema_id:
                raise KeyError(f"unknown schema id {schema_id} (no registry configured)")
            parsed = self._parsed
        else:
            try:
                writer = self.registry(schema_id)
            except SchemaNotFound as exc:
                raise KeyError(f"schema id {schema_id} is not in the registry") from exc
            parsed = _fastavro().parse_schema(writer)
        cache[schema_id] = parsed
        return parsed

    def _resolver(self) -> Callable[[int], Any]:
        """``_writer_schema`` memoized for one decode call, failures included (one registry request
        per unknown id and call, not one per payload)."""
        memo: dict[int, tuple[bool, Any]] = {}

        def resolve(schema_id: int) -> Any:
            hit = memo.get(schema_id)
            if hit is None:
                try:
                    hit = (True, self._writer_schema(schema_id))
                except KeyError as exc:
                    hit = (False, exc.args)
                memo[schema_id] = hit
            if not hit[0]:
                raise KeyError(*hit[1])
            return hit[1]

        return resolve

    def _fast_ids(
        self, offsets: np.ndarray, data: np.ndarray, valid: np.ndarray, resolve: Callable[[int], Any]
    ) -> list[int]:
        """The Confluent schema ids whose writer schema is this (reader) schema, among the payloads'."""
        if self.registry is None:
            assert self.framing is not None
            return [self.framing.schema_id]
        starts = offsets[:-1][valid & (np.diff(offsets) >= 5)]
        starts = starts[data[starts] == MAGIC_BYTE]
        if len(starts) == 0:
            return []
        ids = (
            (data[starts + 1].astype(np.int64) << 24)
            | (data[starts + 2].astype(np.int64) << 16)
            | (data[starts + 3].astype(np.int64) << 8)
            | data[starts + 4].astype(np.int64)
        )
        unique = [int(ids[0])] if bool((ids == ids[0]).all()) else np.unique(ids).tolist()
        accepted = []
        for schema_id in unique:
            try:
                writer = resolve(schema_id)
            except KeyError:
                continue
            if writer is self._parsed or writer == self._parsed:
                accepted.append(schema_id)
        return accepted

    def decode(self, payloads: pa.Array | pa.ChunkedArray) -> Decoded:
        """Each payload as one Avro record (resolved against this schema when the writer's differs).

        The compiled kernel decodes what it can (see the module docstring); fastavro decodes the
        rest, and the two parts are merged in payload order.
        """
        _fastavro()
        binary = as_binary(payloads)
        resolve = self._resolver()
        program: _Program | None = self._program  # type: ignore[attr-defined]
        n = len(binary)
        if program is None or n == 0:
            return self._decode_rows(binary, None, resolve)
        offsets, data = offsets_and_data(binary)
        valid = valid_mask(binary)
        ids: list[int] | None = None
        if self.confluent:
            ids = self._fast_ids(offsets, data, valid, resolve)
            if not ids:
                return self._decode_rows(binary, None, resolve)
        from .._ext import load

        columns, ok = load("avro_decode").decode(
            data,
            offsets,
            None if binary.null_count == 0 else ~valid,
            ids,
            program.kinds,
            program.unions,
            program.params,
            program.types,
            program.symbols,
        )
        if columns is None:
            return self._decode_rows(binary, None, resolve)
        fast = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        if bool(ok.all()):
            return Decoded(fast, np.arange(n, dtype=np.int64))
        good = np.flatnonzero(ok).astype(np.int64)
        slow = self._decode_rows(binary, np.flatnonzero(~ok).astype(np.int64), resolve)
        if slow.batch.num_rows == 0:
            return Decoded(fast, good, slow.failed, slow.errors)
        rows = np.concatenate([good, slow.row_indices])
        order = np.argsort(rows, kind="stable")
        batch = concat_batches([fast, slow.batch], self.schema).take(pa.array(order))
        return Decoded(batch, rows[order], slow.failed, slow.errors)

    def _decode_rows(
        self, binary: pa.Array, indices: np.ndarray | None, resolve: Callable[[int], Any]
    ) -> Decoded:
        """fastavro, one payload at a time, over ``binary`` (or its entries at ``indices``)."""
        fastavro = _fastavro()
        if indices is None:
            indices = np.arange(len(binary), dtype=np.int64)
            values = binary.to_pylist()
        else:
            values = binary.take(pa.array(indices)).to_pylist()
        fix = self._decode_fix  # type: ignore[attr-defined]
        records: list[Any] = []
        rows: list[int] = []
        failed: list[int] = []
        errors: list[str] = []
        for i, value in zip(indices.tolist(), values, strict=True):
            if value is None:
                failed.append(i)
                errors.append("null payload")
                continue
            try:
                writer = self._parsed
                body = io.BytesIO(value)
                if self.confluent:
                    if len(value) < 5 or value[0] != MAGIC_BYTE:
                        raise ValueError("payload does not start with the Confluent magic byte 0")
                    writer = resolve(int.from_bytes(value[1:5], "big"))
                    body.seek(5)
                record = fastavro.schemaless_reader(body, writer, self._parsed)
                if body.tell() != len(value):
                    raise ValueError(f"{len(value) - body.tell()} trailing bytes after the record")
            except (
                KeyError,
                ValueError,
                TypeError,
                EOFError,
                IndexError,
                OverflowError,
                UnicodeError,
            ) as exc:
                failed.append(i)
                text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                errors.append(f"{type(exc).__name__}: {text}")
                continue
            except Exception as exc:  # fastavro's SchemaResolutionError and friends
                if type(exc).__module__.startswith("fastavro"):
                    failed.append(i)
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                raise
            records.append(fix(record) if fix else record)
            rows.append(i)
        schema = self.schema
        index = np.asarray(rows, dtype=np.int64)

        def run(block: np.ndarray) -> pa.RecordBatch:
            return pa.RecordBatch.from_pylist([records[j] for j in block], schema=schema)

        results, idx, bad, bad_errors = isolate(np.arange(len(records), dtype=np.int64), run)
        failed.extend(int(index[j]) for j in bad)
        errors.extend(bad_errors)
        out_rows = index[np.concatenate(idx)] if idx else np.empty(0, np.int64)
        farr, ferr = sort_failures(failed, errors)
        return Decoded(concat_batches(results, schema), out_rows.astype(np.int64), farr, ferr)


# --------------------------------------------------------------------------------------------------
# The kernel's program: a flat record schema as one (kind, union, param) per field


#: Avro (type, logicalType) -> the kernel's kind name; a logical type not listed keeps fastavro.
_LOGICAL_KINDS: dict[tuple[str, str], str] = {
    ("int", "date"): "date",
    ("long", "timestamp-millis"): "timestamp-millis",
    ("long", "timestamp-micros"): "timestamp-micros",
    ("long", "local-timestamp-millis"): "timestamp-millis",
    ("long", "local-timestamp-micros"): "timestamp-micros",
}
_PLAIN_KINDS = ("null", "boolean", "int", "long", "float", "double", "string", "bytes")


def _python_rows(batch: pa.RecordBatch) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """``batch.to_pylist()``, with the rows Python cannot hold (a timestamp or date out of
    ``datetime``'s range) as empty dicts and their error messages by row: one such value must fail
    its row, not the call."""
    try:
        return batch.to_pylist(), {}
    except (OverflowError, ValueError, pa.ArrowException):
        pass
    rows: list[dict[str, Any]] = []
    unreadable: dict[int, str] = {}
    for i in range(batch.num_rows):
        try:
            rows.append(batch.slice(i, 1).to_pylist()[0])
        except (OverflowError, ValueError, pa.ArrowException) as exc:
            rows.append({})
            unreadable[i] = f"{type(exc).__name__}: a value Python cannot hold: {exc}"
    return rows, unreadable


@dataclass(frozen=True)
class _Program:
    """What :func:`arrowflow._ext.avro_decode.decode` needs to know of each field (in order)."""

    kinds: list[int]
    unions: list[int]
    params: list[int]
    types: list[pa.DataType]
    symbols: list[pa.Array | None]


def _compile_program(parsed: Any, arrow: pa.Schema) -> _Program | None:
    """The kernel program of a parsed (fastavro) record schema, or None when a field is out of scope."""
    from .._ext import load

    codes: dict[str, int] = load("avro_decode").KINDS
    named: dict[str, Any] = parsed.get("__named_schemas", {})
    program = _Program([], [], [], [], [])
    for f, target in zip(parsed["fields"], arrow, strict=True):
        branch = _union_branch(f["type"])
        if branch is None:
            return None
        union, avro = branch
        kind = _field_kind(avro, named)
        if kind is None:
            return None
        name, param, symbols = kind
        program.kinds.append(codes[name])
        program.unions.append(union)
        program.params.append(param)
        program.types.append(target.type)
        program.symbols.append(None if symbols is None else pa.array(symbols, pa.string()))
    return program


def _union_branch(avro: Any) -> tuple[int, Any] | None:
    """``(union, type)`` of a field type for the kernels: ``union`` 0 (not a union), 1 (``["null", T]``)
    or 2 (``[T, "null"]``), and ``T``; ``None`` for any other union (out of the kernels' scope)."""
    if not isinstance(avro, list):
        return 0, avro
    if len(avro) != 2 or avro.count("null") != 1:
        return None
    return (1, avro[1]) if avro[0] == "null" else (2, avro[0])


def _field_kind(avro: Any, named: dict[str, Any]) -> tuple[str, int, list[str] | None] | None:
    if isinstance(avro, str):
        if avro in _PLAIN_KINDS:
            return avro, 0, None
        if avro in named:
            return _field_kind(named[avro], {})
        return None
    if not isinstance(avro, dict) or not isinstance(avro.get("type"), str):
        return None
    t = avro["type"]
    logical = avro.get("logicalType")
    if logical is not None:
        name = _LOGICAL_KINDS.get((t, logical))
        return None if name is None else (name, 0, None)
    if t == "enum":
        symbols = [str(s) for s in avro["symbols"]]
        return "enum", len(symbols), symbols
    if t == "fixed":
        return "fixed", int(avro["size"]), None
    if t in _PLAIN_KINDS:
        return t, 0, None
    return None


# --------------------------------------------------------------------------------------------------
# The encode kernel's program: per field its name, kind, union layout and what it accepts


@dataclass(frozen=True)
class _EncodeField:
    name: str
    kind: str  # a key of avro_encode.KINDS
    union: int  # 0 plain, 1 ["null", T], 2 [T, "null"]
    param: int  # fixed size
    local: bool  # local-timestamp-*
    symbols: list[str] | None  # enum symbols
    avro: Any  # the field's Avro type, for messages


#: Arrow time units -> (mul, div) to microseconds.
_TO_US: dict[str, tuple[int, int]] = {"s": (1_000_000, 1), "ms": (1000, 1), "us": (1, 1), "ns": (1, 1000)}
#: Python's datetime range in microseconds from the epoch, and date's in days.
_MIN_US, _MAX_US = -62135596800000000, 253402300799999999
_MIN_DAY, _MAX_DAY = -719162, 2932896
_INT64 = (-(2**63), 2**63 - 1)
#: Zone names that are UTC (a local-timestamp field takes their wall clock as is).
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "+00:00", "Z", "utc"})


def _naive_is_utc() -> bool:
    """fastavro reads a naive datetime for ``timestamp-*`` in the process's local zone (mktime)."""
    import time

    return time.timezone == 0 and time.altzone == 0 and time.localtime().tm_gmtoff == 0


def _string_like(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _binary_like(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t))


@dataclass(frozen=True)
class _Encoder:
    """The compiled encode program of a flat record schema (see :func:`_compile_encoder`)."""

    fields: list[_EncodeField]

    def encode(self, batch: pa.RecordBatch, header: bytes) -> Encoded | None:
        """The kernel's encoding of ``batch``, or None when a column is out of its scope."""
        from .._ext import load

        names = batch.schema.names
        if not self.fields or len(set(names)) != len(names):
            return None
        prepared = _encode_columns(self.fields, batch)
        if prepared is None:
            return None
        columns, bounds, scales = prepared
        kernel = load("avro_encode")
        codes: dict[str, int] = kernel.KINDS
        result = kernel.encode(
            columns,
            [codes[f.kind] for f in self.fields],
            [f.union for f in self.fields],
            [f.param for f in self.fields],
            bounds,
            scales,
            header,
        )
        if result is None:
            return None
        payloads, ok, err_code, err_field = result
        failed = np.flatnonzero(~ok).astype(np.int64)
        messages: dict[int, str] = {v: k for k, v in kernel.ERRORS.items()}
        errors = [
            _encode_message(
                self.fields[int(err_field[i])],
                messages[int(err_code[i])],
                _value_at(batch.column(self.fields[int(err_field[i])].name), int(i)),
            )
            for i in failed
        ]
        return Encoded(payloads, failed, errors)


def _value_at(col: pa.Array, i: int) -> Any:
    """The Python value at row ``i`` (a date/timestamp Python cannot hold: its raw number)."""
    try:
        return col[i].as_py()
    except Exception:  # OverflowError, pandas' OutOfBoundsDatetime, ...
        raw = col.slice(i, 1).view(pa.int64() if col.type.bit_width == 64 else pa.int32())
        return f"{raw[0].as_py()} ({col.type})"


def _encode_message(f: _EncodeField, code: str, value: Any) -> str:
    where = f"field {f.name!r} ({json.dumps(f.avro) if not isinstance(f.avro, str) else f.avro})"
    if code == "null":
        return f"TypeError: null value in non-nullable {where}"
    if code == "int-range":
        return f"ValueError: {value!r} is outside the Avro int range in {where}"
    if code == "long-range":
        return f"OverflowError: {value!r} is outside the Avro long range in {where}"
    if code == "fixed-size":
        return f"ValueError: {len(value)} bytes for fixed size {f.param} in {where}"
    if code == "enum-symbol":
        return f"ValueError: {value!r} is not a symbol of {where}"
    return f"ValueError: {value} is outside Python's datetime range in {where}"


def _compile_encoder(parsed: Any) -> _Encoder | None:
    """The encode program of a parsed (fastavro) record schema, or None when a field is out of scope."""
    named: dict[str, Any] = parsed.get("__named_schemas", {})
    fields: list[_EncodeField] = []
    for f in parsed["fields"]:
        branch = _union_branch(f["type"])
        if branch is None:
            return None
        union, avro = branch
        kind = _field_kind(avro, named)
        if kind is None or (union and kind[0] == "null"):
            return None
        resolved = named.get(avro, avro) if isinstance(avro, str) else avro
        logical = resolved.get("logicalType", "") if isinstance(resolved, dict) else ""
        name, param, symbols = kind
        fields.append(
            _EncodeField(
                name=str(f["name"]),
                kind=name,
                union=union,
                param=param if name == "fixed" else 0,
                local=str(logical).startswith("local-"),
                symbols=symbols,
                avro=f["type"],
            )
        )
    return _Encoder(fields)


def _encode_columns(
    fields: list[_EncodeField], batch: pa.RecordBatch
) -> tuple[list[pa.Array], list[tuple[int, int]], list[tuple[int, int]]] | None:
    """Each field's column as the kernel reads it, with its bounds and scale; None when one is not
    in scope (a missing column, or a type outside the accepted set below).

    Accepted Arrow types per Avro type: null: any (nothing is written); boolean: bool; int / long:
    int8..int64, uint8..uint64; float / double: float32, float64; string: string, large_string,
    dictionary of those; bytes / fixed: binary, large_binary, fixed_size_binary; enum: string,
    large_string, dictionary of those; date: date32; timestamp-millis/micros: timestamp of any unit
    with a zone, or without one when the process's local zone is UTC (fastavro reads naive datetimes
    in the local zone); local-timestamp-millis/micros: timestamp of any unit without a zone or in UTC.
    """
    import pyarrow.compute as pc

    columns: list[pa.Array] = []
    bounds: list[tuple[int, int]] = []
    scales: list[tuple[int, int]] = []
    names = set(batch.schema.names)
    naive_utc: bool | None = None
    for f in fields:
        if f.name not in names:
            return None
        col = batch.column(f.name)
        t = col.type
        bound, scale = _INT64, (1, 1)
        if f.kind == "null":
            pass
        elif f.kind == "boolean":
            if not pa.types.is_boolean(t):
                return None
        elif f.kind in ("int", "long"):
            if not pa.types.is_integer(t):
                return None
        elif f.kind in ("float", "double"):
            if not (pa.types.is_float32(t) or pa.types.is_float64(t)):
                return None
        elif f.kind == "string":
            if pa.types.is_dictionary(t) and _string_like(t.value_type):
                col = col.dictionary_decode()
            elif not _string_like(t):
                return None
        elif f.kind in ("bytes", "fixed"):
            if not _binary_like(t):
                return None
        elif f.kind == "enum":
            col = _enum_indices(col, f.symbols or [], pc)
            if col is None:
                return None
        elif f.kind == "date":
            if not pa.types.is_date32(t):
                return None
            bound = (_MIN_DAY, _MAX_DAY)
        else:  # timestamp-millis / timestamp-micros
            if not pa.types.is_timestamp(t):
                return None
            if f.local:
                if t.tz is not None and t.tz not in _UTC_ZONES:
                    return None
            elif t.tz is None:
                if naive_utc is None:
                    naive_utc = _naive_is_utc()
                if not naive_utc:
                    return None
            mul, div = _TO_US[t.unit]
            lo = -(-_MIN_US // mul) if div == 1 else max(_MIN_US * div, _INT64[0] + 1)
            hi = _MAX_US // mul if div == 1 else min(_MAX_US * div + div - 1, _INT64[1])
            bound = (lo, hi)
            if f.kind == "timestamp-millis":
                # micros -> millis: one division by the combined factor, or one multiplication.
                if mul >= 1000:
                    mul, div = mul // 1000, 1
                else:
                    div = div * 1000 // mul
                    mul = 1
            scale = (mul, div)
            if mul > 1 and div > 1:  # pragma: no cover - no unit needs both
                return None
        columns.append(col)
        bounds.append(bound)
        scales.append(scale)
    return columns, bounds, scales


def _enum_indices(col: pa.Array, symbols: list[str], pc: Any) -> pa.Array | None:
    """The int32 symbol index of each value (-1 when not a symbol, null where the value is)."""
    t = col.type
    if pa.types.is_dictionary(t):
        if not _string_like(t.value_type):
            return None
        found = pc.index_in(col.dictionary, value_set=pa.array(symbols, t.value_type))
        index = pc.fill_null(found, -1).take(col.indices)
    elif _string_like(t):
        index = pc.fill_null(pc.index_in(col, value_set=pa.array(symbols, t)), -1)
    else:
        return None
    if col.null_count:
        index = pc.if_else(col.is_null(), pa.scalar(None, pa.int32()), index)
    return index.cast(pa.int32())


# --------------------------------------------------------------------------------------------------
# Avro schema -> Arrow schema

_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}


def avro_to_arrow(schema: dict[str, Any] | str) -> pa.Schema:
    """The Arrow schema of an Avro record schema (see the module docstring for the mapping)."""
    if isinstance(schema, str):
        schema = json.loads(schema)
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ConfigurationError("schema must be an Avro record schema", option="schema")
    names: dict[str, Any] = {}
    struct = _arrow_type(schema, names)
    return pa.schema(list(struct))


def _arrow_field(name: str, avro: Any, names: dict[str, Any]) -> pa.Field:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise ConfigurationError(
                f'field {name!r}: only ["null", T] unions are supported', option="schema"
            )
        return pa.field(name, _arrow_type(branches[0], names), nullable=True)
    t = _arrow_type(avro, names)
    return pa.field(name, t, nullable=pa.types.is_null(t))


def _arrow_type(avro: Any, names: dict[str, Any]) -> pa.DataType:
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        if avro in names:
            return names[avro]  # type: ignore[no-any-return]
        raise ConfigurationError(f"unknown Avro type {avro!r}", option="schema")
    if isinstance(avro, list):
        return _arrow_field("item", avro, names).type
    if not isinstance(avro, dict):
        raise ConfigurationError(f"invalid Avro type {avro!r}", option="schema")
    t = avro.get("type")
    logical = avro.get("logicalType")
    if logical == "timestamp-millis":
        return pa.timestamp("ms", tz="UTC")
    if logical == "timestamp-micros":
        return pa.timestamp("us", tz="UTC")
    if logical == "local-timestamp-millis":
        return pa.timestamp("ms")
    if logical == "local-timestamp-micros":
        return pa.timestamp("us")
    if logical == "date":
        return pa.date32()
    if logical == "time-millis":
        return pa.time32("ms")
    if logical == "time-micros":
        return pa.time64("us")
    if logical == "uuid":
        return pa.string()
    if logical == "decimal":
        precision = int(avro["precision"])
        scale = int(avro.get("scale", 0))
        result: pa.DataType = (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
        if t == "fixed":
            names[_full_name(avro)] = result
        return result
    if t == "record":
        fields = [_arrow_field(f["name"], f["type"], names) for f in avro["fields"]]
        result = pa.struct(fields)
        names[_full_name(avro)] = result
        return result
    if t == "enum":
        names[_full_name(avro)] = pa.string()
        return pa.string()
    if t == "fixed":
        result = pa.binary(int(avro["size"]))
        names[_full_name(avro)] = result
        return result
    if t == "array":
        return pa.list_(_arrow_field("item", avro["items"], names))
    if t == "map":
        value = _arrow_field("value", avro["values"], names)
        return pa.map_(pa.string(), value)
    return _arrow_type(t, names)


def _full_name(avro: dict[str, Any]) -> str:
    name = str(avro["name"])
    ns = avro.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


def _fixer(avro: Any, names: dict[str, Any], *, encode: bool) -> Callable[[Any], Any] | None:
    """A per-value converter between pyarrow's Python values and fastavro's, or None if none is needed.

    Encoding: Arrow maps come out of ``to_pylist`` as lists of pairs; fastavro wants dicts.
    Decoding: fastavro returns ``uuid.UUID`` objects; Arrow wants strings.
    """
    if isinstance(avro, str):
        return names.get(avro)
    if isinstance(avro, list):
        subs = [_fixer(b, names, encode=encode) for b in avro if b != "null"]
        branch = subs[0] if len(subs) == 1 else None
        if branch is None:
            return None
        return lambda v: None if v is None else branch(v)
    if not isinstance(avro, dict):
        return None
    t = avro.get("type")
    if avro.get("logicalType") == "uuid":
        return None if encode else (lambda v: None if v is None else str(v))
    if t == "record":
        fixers = [(f["name"], _fixer(f["type"], names, encode=encode)) for f in avro["fields"]]
        active = [(n, fx) for n, fx in fixers if fx is not None]
        rec: Callable[[Any], Any] | None = None
        if active:

            def rec(v: Any) -> Any:
                if v is None:
                    return None
                out = dict(v)
                for n, fx in active:
                    if n in out:
                        out[n] = fx(out[n])
                return out

        if rec is not None:
            names[_full_name(avro)] = rec
        return rec
    if t == "array":
        fx = _fixer(avro["items"], names, encode=encode)
        if fx is None:
            return None
        return lambda v: None if v is None else [fx(x) for x in v]
    if t == "map":
        vfx = _fixer(avro["values"], names, encode=encode)
        if encode:
            if vfx is None:
                return lambda v: None if v is None else (dict(v) if isinstance(v, list) else v)
            return lambda v: (
                None if v is None else {k: vfx(x) for k, x in (v if isinstance(v, list) else v.items())}
            )
        if vfx is None:
            return None
        return lambda v: None if v is None else {k: vfx(x) for k, x in v.items()}
    if isinstance(t, (dict, list)):
        return _fixer(t, names, encode=encode)
    return None
