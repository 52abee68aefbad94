"""Avro: one schemaless Avro record per payload (fastavro), with optional Confluent framing.

fastavro's ``schemaless_writer`` / ``schemaless_reader`` run once per row: this is a per-row path
(a Python dict per row), accepted here because fastavro is the well-kept Avro library and its
per-row work runs in its C code. Expect ~150k rows/s per core (see BASELINES.md).

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
the registry does not know fails that payload; a registry that cannot be reached raises
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
from .base import Decoded, Encoded, Format, as_binary, concat_batches, isolate, sort_failures, valid_mask
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
        """One Avro body (framed when configured) per row; rows fastavro rejects fail."""
        fastavro = _fastavro()
        header = self._header()
        fix = self._encode_fix  # type: ignore[attr-defined]
        rows = batch.to_pylist()
        out = io.BytesIO()
        ends = np.zeros(len(rows) + 1, dtype=np.int32)
        ok = np.ones(len(rows), dtype=bool)
        failed: list[int] = []
        errors: list[str] = []
        for i, row in enumerate(rows):
            start = out.tell()
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

    def decode(self, payloads: pa.Array | pa.ChunkedArray) -> Decoded:
        """Each payload as one Avro record (resolved against this schema when the writer's differs)."""
        fastavro = _fastavro()
        binary = as_binary(payloads)
        valid = valid_mask(binary)
        fix = self._decode_fix  # type: ignore[attr-defined]
        records: list[Any] = []
        rows: list[int] = []
        failed: list[int] = []
        errors: list[str] = []
        for i, value in enumerate(binary.to_pylist()):
            if not valid[i]:
                failed.append(i)
                errors.append("null payload")
                continue
            try:
                writer = self._parsed
                body = io.BytesIO(value)
                if self.confluent:
                    if len(value) < 5 or value[0] != MAGIC_BYTE:
                        raise ValueError("payload does not start with the Confluent magic byte 0")
                    writer = self._writer_schema(int.from_bytes(value[1:5], "big"))
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
