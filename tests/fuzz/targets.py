"""The fuzz targets: every decode kernel and ``Format.decode``, the encoders over hostile Arrow input,
and the push sources' framing. Each target is a function of one ``bytes`` input that places its
input against guard pages (``guard.py``), runs arrowflow's code and compares it with an oracle:

==========================  ===================================================================
target                      oracle
==========================  ===================================================================
json_decode_kernel          ``arrowflow._reference.json_decode`` (``json.loads`` with hooks)
json_format                 the fast path equals the general path; a decoded payload is one
                            object for ``json.loads``
avro_decode_kernel          ``arrowflow._reference.avro_decode`` (fastavro): a subset, equal values
avro_format                 fastavro (``Avro``'s fastavro-only path), unframed
avro_format_confluent       the same with Confluent framing (accepted and unknown schema ids)
bson_decode_kernel          ``bson.decode_all`` + the connector's ``decode_documents``
bson_page                   MongoDB's page decode (kernel, else ``bson.decode_all``): never reads
                            outside the page; equal to the reference when it answers
csv_format                  one call equals one call per payload; Python's ``csv`` agrees that
                            a decoded payload is one record of the schema's width
arrow_ipc_format            pyarrow's reader + full validation; one call equals one per payload
raw_format                  ``bytes.decode("utf-8")``
json_encode                 ``arrowflow._reference.json_encode``; every document is a ``json.loads`` object
bulk_encode                 ``arrowflow._reference.bulk``; every line is ``json.loads``-able
bson_encode                 ``arrowflow._reference.bson_encode``; every document ``bson.decode``-s
avro_encode                 fastavro: the kernel path equals the fastavro-only path
remote_write_encode         ``arrowflow._reference.remote_write``
push_framing                a plain splitter for newline and length framing; HTTP bodies parse or
                            fail with a 400-class exception
==========================  ===================================================================

A finding is a crash (the guard page turns an out-of-bounds read into SIGSEGV), an exception the
target does not allow, or a :class:`Finding` (the result differs from the oracle).
"""

from __future__ import annotations

import io
import json
import random
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from guard import Guarded
from inputs import LEAVES, Cursor, guarded_payloads, hostile_batch, is_valid, split_payloads


class Finding(AssertionError):
    """The code under test disagrees with its oracle."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Finding(message)


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    #: Inputs the deterministic smoke run (part of the test suite) feeds this target.
    smoke: int


TARGETS: dict[str, Target] = {}


def target(smoke: int) -> Callable[[Callable[[bytes], None]], Callable[[bytes], None]]:
    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        name = fn.__name__
        TARGETS[name] = Target(name, fn, SEEDS.get(name, lambda: [b""]), smoke)
        return fn

    return register


SEEDS: dict[str, Callable[[], list[bytes]]] = {}


def seeds_for(name: str) -> Callable[[Callable[[], list[bytes]]], Callable[[], list[bytes]]]:
    def register(fn: Callable[[], list[bytes]]) -> Callable[[], list[bytes]]:
        SEEDS[name] = fn
        return fn

    return register


def _rng(name: str) -> random.Random:
    return random.Random(f"arrowflow-fuzz-seeds-{name}")


def _pack(prefix: bytes, payloads: list[bytes]) -> bytes:
    """A seed: ``prefix`` (the target's choices) then the payloads joined (the cursor cuts them)."""
    return prefix + b"".join(payloads)


# ============================================================================================ JSON

JSON_KEYS = [b"a", b"b", b"c", b"long_key_name"]
JSON_KINDS = [0, 1, 2, 1]


def _json_docs(rng: random.Random, n: int) -> list[bytes]:
    def value(depth: int = 0) -> Any:
        makers: list[Callable[[], Any]] = [
            lambda: None,
            lambda: rng.random() < 0.5,
            lambda: rng.randrange(-(10**20), 10**20),
            lambda: rng.uniform(-1e6, 1e6),
            lambda: "".join(rng.choice('ab"\\é\n\u2028😀') for _ in range(rng.randrange(6))),
            lambda: rng.choice([1e300, -0.0, 2**63, -(2**63) - 1]),
            lambda: [value(depth + 1) for _ in range(rng.randrange(3))],
            lambda: {"x": value(depth + 1)},
        ]
        return makers[rng.randrange(8 if depth < 2 else 6)]()

    docs = []
    for _ in range(n):
        obj = {k: value() for k in rng.sample(["a", "b", "c", "long_key_name", "z", "é"], rng.randrange(5))}
        docs.append(json.dumps(obj, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1])).encode())
    return docs


@seeds_for("json_decode_kernel")
def _json_kernel_seeds() -> list[bytes]:
    rng = _rng("json")
    return [_pack(bytes([rng.randrange(256) for _ in range(24)]), _json_docs(rng, 4)) for _ in range(24)]


@target(smoke=1500)
def json_decode_kernel(data: bytes) -> None:
    from arrowflow._ext import json_decode as kernel
    from arrowflow._reference import json_decode as reference

    cur = Cursor(data)
    strict = cur.flag()
    threads = cur.choice([1, 2])
    payloads = split_payloads(cur, cur.rest()[: 1 << 14])
    arr, g = guarded_payloads(payloads, before=len(data) % 2 == 0)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32).astype(np.int64)
    got, reason, row = kernel.scan(g.array(), offsets, JSON_KEYS, JSON_KINDS, strict, threads)
    try:
        for p in payloads:
            p.decode("utf-8")
    except UnicodeDecodeError:
        return  # outside the contract (the caller checks UTF-8 first): only memory safety counts
    if reason == "unsupported":
        return  # escaped top-level keys, deep nesting: the caller's general path decides
    want, _, want_row = reference.scan(
        np.frombuffer(b"".join(payloads), np.uint8), offsets, JSON_KEYS, JSON_KINDS, strict
    )
    check(
        (got is None) == (want is None),
        f"kernel {reason} at row {row}, reference {'ok' if want is not None else want_row}",
    )
    if got is None:
        check(row == want_row, f"first failing row: kernel {row}, reference {want_row}")
        return
    assert want is not None
    for k, r in zip(got, want, strict=True):
        check(k.to_pylist() == r.to_pylist(), f"values differ: {k.to_pylist()} != {r.to_pylist()}")


JSON_FLAT = pa.schema(
    [("a", pa.string()), ("b", pa.int64()), ("c", pa.bool_()), ("long_key_name", pa.float64())]
)
JSON_NESTED = pa.schema(
    [("a", pa.string()), ("b", pa.list_(pa.int64())), ("z", pa.struct([("x", pa.float64())]))]
)


@seeds_for("json_format")
def _json_format_seeds() -> list[bytes]:
    rng = _rng("json-format")
    return [_pack(bytes([rng.randrange(256) for _ in range(24)]), _json_docs(rng, 5)) for _ in range(24)]


def _json_object(payload: bytes) -> bool:
    """Whether ``json.loads`` reads ``payload`` as exactly one object (no NaN/Infinity)."""

    def no_constant(name: str) -> Any:
        raise ValueError(name)

    try:
        return isinstance(json.loads(payload.decode("utf-8"), parse_constant=no_constant), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


@target(smoke=600)
def json_format(data: bytes) -> None:
    from arrowflow.formats import Json

    cur = Cursor(data)
    schema = cur.choice([JSON_FLAT, JSON_NESTED])
    fmt = Json(schema, unexpected_fields=cur.choice(["ignore", "error"]), threads=1)
    payloads = split_payloads(cur, cur.rest()[: 1 << 13])
    arr, _g = guarded_payloads(payloads, before=len(data) % 2 == 1)
    decoded = fmt.decode(arr)
    decoded.batch.validate(full=True)
    check(
        sorted(decoded.row_indices.tolist() + decoded.failed.tolist()) == list(range(len(payloads))),
        "every payload is decoded or failed, once",
    )
    for i in decoded.row_indices.tolist():
        check(_json_object(payloads[i]), f"payload {payloads[i]!r} decoded but is not one JSON object")
    fast = fmt._decode_flat(schema, arr)
    if fast is not None:
        general = fmt._decode_general(arr)
        check(
            fast.batch.equals(general.batch),
            f"fast {fast.batch.to_pylist()} != general {general.batch.to_pylist()}",
        )
        check(fast.row_indices.tolist() == general.row_indices.tolist(), "fast and general decode other rows")


# ============================================================================================ Avro

AVRO_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "record",
        "name": "R1",
        "fields": [
            {"name": "b", "type": "boolean"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": ["null", "long"]},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "double"},
            {"name": "s", "type": ["string", "null"]},
            {"name": "y", "type": "bytes"},
        ],
    },
    {
        "type": "record",
        "name": "R2",
        "fields": [
            {"name": "x", "type": {"type": "fixed", "name": "F", "size": 3}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
            {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
            {"name": "ms", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
            {"name": "us", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
            {"name": "n", "type": "null"},
        ],
    },
    {  # out of the kernel's scope (a nested record, an array): fastavro only
        "type": "record",
        "name": "R3",
        "fields": [
            {"name": "a", "type": {"type": "array", "items": "long"}},
            {
                "name": "r",
                "type": {"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]},
            },
        ],
    },
]
AVRO_IDS = [7, 1 << 20]


def _avro_records(rng: random.Random, schema: dict[str, Any], n: int) -> list[bytes]:
    import datetime as dt

    import fastavro

    parsed = fastavro.parse_schema(schema)
    values: dict[str, Callable[[], Any]] = {
        "b": lambda: rng.random() < 0.5,
        "i": lambda: rng.randrange(-(2**31), 2**31),
        "l": lambda: rng.choice([None, rng.randrange(-(2**63), 2**63)]),
        "f": lambda: rng.uniform(-1e30, 1e30),
        "d": lambda: rng.choice([rng.random(), float("inf"), -0.0]),
        "s": lambda: rng.choice([None, "".join(rng.choice("aé😀\x00") for _ in range(rng.randrange(5)))]),
        "y": lambda: rng.randbytes(rng.randrange(5)),
        "x": lambda: rng.randbytes(3),
        "e": lambda: rng.choice("ABC"),
        "dt": lambda: dt.date(1970, 1, 1) + dt.timedelta(days=rng.randrange(-(10**5), 10**5)),
        "ms": lambda: rng.choice([None, dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)]),
        "us": lambda: dt.datetime(1, 1, 1) + dt.timedelta(microseconds=rng.randrange(10**15)),
        "n": lambda: None,
        "a": lambda: [rng.randrange(-5, 5) for _ in range(rng.randrange(3))],
        "r": lambda: {"s": "x" * rng.randrange(3)},
    }
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, {f["name"]: values[f["name"]]() for f in schema["fields"]})
        out.append(buf.getvalue())
    return out


def _avro_seeds(name: str, framed: bool) -> list[bytes]:
    rng = _rng(name)
    seeds = []
    for k in range(24):
        which = k % len(AVRO_SCHEMAS)
        records = _avro_records(rng, AVRO_SCHEMAS[which], 4)
        if framed:
            records = [b"\x00" + rng.choice(AVRO_IDS).to_bytes(4, "big") + r for r in records]
        # prefix: schema choice, then the cut positions the cursor reads (one per payload boundary)
        prefix = bytes([which, len(records) - 1])
        cuts = np.cumsum([len(r) for r in records])[:-1]
        seeds.append(prefix + bytes(int(c) % 256 for c in cuts) + b"".join(records))
    return seeds


SEEDS["avro_decode_kernel"] = lambda: _avro_seeds("avro-kernel", False)
SEEDS["avro_format"] = lambda: _avro_seeds("avro-format", False)
SEEDS["avro_format_confluent"] = lambda: _avro_seeds("avro-confluent", True)

_ADDRESS = re.compile(r"0x[0-9a-f]+")


def _avro_input(data: bytes, kernel_only: bool) -> tuple[dict[str, Any], list[bytes], pa.Array, Guarded]:
    cur = Cursor(data)
    schemas = AVRO_SCHEMAS[:2] if kernel_only else AVRO_SCHEMAS
    schema = schemas[cur.u8() % len(schemas)]
    payloads = split_payloads(cur, cur.rest()[: 1 << 13])
    arr, g = guarded_payloads(payloads, before=len(data) % 2 == 0)
    return schema, payloads, arr, g


def _same_rows(a: pa.RecordBatch, b: pa.RecordBatch, what: str) -> None:
    check(a.schema == b.schema, f"{what}: schemas differ")
    check(a.num_rows == b.num_rows, f"{what}: {a.num_rows} rows != {b.num_rows}")
    for x, y in zip(a.columns, b.columns, strict=True):
        if pa.types.is_floating(x.type):  # compare bit patterns (NaN payloads included)
            x, y = (
                x.view(pa.int64() if x.type == pa.float64() else pa.int32()),
                y.view(pa.int64() if y.type == pa.float64() else pa.int32()),
            )
        check(x.to_pylist() == y.to_pylist(), f"{what}: {x.to_pylist()} != {y.to_pylist()}")


@target(smoke=800)
def avro_decode_kernel(data: bytes) -> None:
    from arrowflow._ext import avro_decode as kernel
    from arrowflow._reference import avro_decode as reference
    from arrowflow.formats import Avro

    schema, payloads, arr, g = _avro_input(data, kernel_only=True)
    fmt = Avro(schema)
    program = fmt._program  # type: ignore[attr-defined]
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32).astype(np.int64)
    ids = AVRO_IDS if len(data) % 3 == 0 else None
    columns, ok = kernel.decode(
        g.array(),
        offsets,
        None,
        ids,
        program.kinds,
        program.unions,
        program.params,
        program.types,
        program.symbols,
    )
    if columns is None:
        return
    want, want_ok = reference.decode(schema, fmt.schema, payloads, ids)
    check(
        not (ok & ~want_ok).any(),
        f"the kernel decoded payloads fastavro refuses: {np.flatnonzero(ok & ~want_ok)}",
    )
    kept = np.flatnonzero(ok[want_ok])
    _same_rows(
        pa.RecordBatch.from_arrays(columns, schema=fmt.schema),
        want.take(pa.array(kept, pa.int64())),
        "kernel vs fastavro",
    )


def _avro_format(data: bytes, framed: bool) -> None:
    from arrowflow.formats import Avro
    from arrowflow.formats.schema_registry import ConfluentFraming

    schema, _payloads, arr, _g = _avro_input(data, kernel_only=False)
    fmt = Avro(schema, framing=ConfluentFraming(schema_id=AVRO_IDS[0]) if framed else None)
    if framed and len(data) % 2:
        # A registry that knows both ids (and refuses others), as a callable id -> schema.
        fmt = Avro(schema, registry=_registry(schema))
    got = fmt.decode(arr)
    got.batch.validate(full=True)
    want = fmt._decode_rows(arr, None, fmt._resolver())  # type: ignore[attr-defined]
    _same_rows(got.batch, want.batch, "Avro.decode vs fastavro")
    check(got.row_indices.tolist() == want.row_indices.tolist(), "decoded rows differ from fastavro's")
    check(got.failed.tolist() == want.failed.tolist(), "failed rows differ from fastavro's")
    check(
        [_ADDRESS.sub("0x", e) for e in got.errors] == [_ADDRESS.sub("0x", e) for e in want.errors],
        f"errors differ: {got.errors} != {want.errors}",
    )


def _registry(schema: dict[str, Any]) -> Callable[[int], Any]:
    from arrowflow.formats.schema_registry import SchemaNotFound

    def lookup(schema_id: int) -> Any:
        if schema_id not in AVRO_IDS:
            raise SchemaNotFound(f"no schema {schema_id}")
        return schema

    return lookup


@target(smoke=500)
def avro_format(data: bytes) -> None:
    _avro_format(data, framed=False)


@target(smoke=500)
def avro_format_confluent(data: bytes) -> None:
    _avro_format(data, framed=True)


# ============================================================================================ BSON

BSON_SCHEMAS = [
    pa.schema(
        [
            ("b", pa.bool_()),
            ("i32", pa.int32()),
            ("i64", pa.int64()),
            ("f", pa.float64()),
            ("s", pa.string()),
            ("bin", pa.large_binary()),
            ("oid", pa.binary(12)),
            ("ts", pa.timestamp("ms", "UTC")),
        ]
    ),
    pa.schema([("s", pa.large_string()), ("i64", pa.int64()), ("nested", pa.struct([("x", pa.int64())]))]),
    None,
]


def _bson_docs(rng: random.Random, n: int) -> bytes:
    import datetime as dt

    import bson

    def value(depth: int = 0) -> Any:
        makers: list[Callable[[], Any]] = [
            lambda: None,
            lambda: rng.random() < 0.5,
            lambda: rng.randrange(-(2**31), 2**31),
            lambda: bson.Int64(rng.randrange(-(2**63), 2**63)),
            lambda: rng.random(),
            lambda: "".join(rng.choice("aé😀\x00") for _ in range(rng.randrange(4))),
            lambda: rng.randbytes(rng.randrange(4)),
            lambda: bson.ObjectId(rng.randbytes(12)),
            lambda: dt.datetime(2000, 1, 1) + dt.timedelta(seconds=rng.randrange(10**9)),
            lambda: [value(depth + 1) for _ in range(rng.randrange(3))],
            lambda: {"x": value(depth + 1)},
            lambda: bson.Code("f()", {"y": value(depth + 1)}),
        ]
        return makers[rng.randrange(12 if depth < 3 else 9)]()

    keys = ["b", "i32", "i64", "f", "s", "bin", "oid", "ts", "nested", "_id", "x"]
    return b"".join(bson.encode({k: value() for k in rng.sample(keys, rng.randrange(6))}) for _ in range(n))


def _bson_seeds(name: str) -> list[bytes]:
    rng = _rng(name)
    return [bytes([k % len(BSON_SCHEMAS)]) + _bson_docs(rng, 3) for k in range(30)]


SEEDS["bson_decode_kernel"] = lambda: _bson_seeds("bson-kernel")
SEEDS["bson_page"] = lambda: _bson_seeds("bson-page")


@target(smoke=1500)
def bson_decode_kernel(data: bytes) -> None:
    from arrowflow._ext import bson_decode as kernel
    from arrowflow._reference import bson_decode as reference

    schema = BSON_SCHEMAS[data[0] % 2] if data else BSON_SCHEMAS[0]
    raw = data[1:]
    g = Guarded(raw, before=len(data) % 2 == 0)
    try:
        batch, _why = kernel.decode_documents(g.view(), schema)
    except ValueError as exc:
        check("malformed BSON" in str(exc), f"unexpected ValueError: {exc}")
        return
    if batch is None:
        return
    batch.validate(full=True)
    try:
        want = reference.decode_documents(raw, schema)
    except ValueError:
        return  # damage in a field the kernel skips but pymongo decodes (documented difference)
    check(batch.equals(want), f"kernel {batch.to_pylist()} != reference {want.to_pylist()}")


@target(smoke=1200)
def bson_page(data: bytes) -> None:
    import bson as pymongo_bson

    from arrowflow._ext import bson_decode as kernel
    from arrowflow._reference import bson_decode as reference
    from arrowflow.connectors.mongodb import decode_page

    schema = BSON_SCHEMAS[data[0] % len(BSON_SCHEMAS)] if data else None
    raw = data[1:]
    g = Guarded(raw, before=len(data) % 2 == 1)
    try:
        batch, decoded_by, _declined = decode_page(g.view(), schema)
    except (ValueError, pymongo_bson.errors.InvalidBSON) as exc:
        # the kernel's "malformed", pymongo's InvalidBSON, or (ArrowInvalid) the general path's
        # conversion of a value that does not fit the schema, as before the kernel
        check(
            "malformed BSON" in str(exc)
            or isinstance(exc, (pymongo_bson.errors.InvalidBSON, pa.ArrowException)),
            f"unexpected ValueError: {exc!r}",
        )
        return
    except (TypeError, OverflowError, pa.ArrowException):
        return  # the general path's conversion, as before the kernel
    batch.validate(full=True)
    check(batch.num_rows == kernel.check_documents(raw), "one row per document")
    if schema is not None and decoded_by == "kernel":
        try:
            want = reference.decode_documents(raw, schema)
        except ValueError:
            return
        check(batch.equals(want), f"page {batch.to_pylist()} != reference {want.to_pylist()}")


# ============================================================================================= CSV

CSV_SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64()), ("d", pa.bool_())])


@seeds_for("csv_format")
def _csv_seeds() -> list[bytes]:
    rng = _rng("csv")
    seeds = []
    for _ in range(24):
        lines = []
        for _ in range(4):
            text = "".join(rng.choice('ab,"\n é') for _ in range(rng.randrange(6)))
            quoted = '"' + text.replace('"', '""') + '"'
            fields = [rng.randrange(-99, 99), rng.choice([quoted, "", "x"]), rng.random()]
            lines.append(",".join(map(str, fields)) + "," + rng.choice(["true", "false", ""]) + "\n")
        seeds.append(bytes([rng.randrange(256) for _ in range(6)]) + "".join(lines).encode())
    return seeds


def _csv_one_record(payload: bytes, width: int) -> bool:
    import csv

    text = payload.decode("utf-8", errors="replace")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        return True  # an empty payload is a record of nulls (Csv's rule, alone or among others)
    try:
        # not strict: like pyarrow's parser, text after a closing quote joins the field
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        return False
    return len(records) == 1 and len(records[0]) == width


@target(smoke=400)
def csv_format(data: bytes) -> None:
    from arrowflow.formats import Csv

    cur = Cursor(data)
    fmt = Csv(CSV_SCHEMA, header=cur.below(4) == 0, threads=False)
    payloads = split_payloads(cur, cur.rest()[: 1 << 12], max_items=8)
    arr, _g = guarded_payloads(payloads, before=len(data) % 2 == 0)
    got = fmt.decode(arr)
    got.batch.validate(full=True)
    check(
        sorted(got.row_indices.tolist() + got.failed.tolist()) == list(range(len(payloads))),
        "each payload once",
    )
    one_by_one = [fmt.decode(pa.array([p], pa.binary())) for p in payloads]
    ok = [i for i, d in enumerate(one_by_one) if d.batch.num_rows]
    check(
        got.row_indices.tolist() == ok, f"one call decodes {got.row_indices.tolist()}, one per payload {ok}"
    )
    if ok:
        _same_rows(
            got.batch,
            pa.Table.from_batches([one_by_one[i].batch for i in ok]).combine_chunks().to_batches()[0],
            "csv",
        )
    if not fmt.header:
        for i in ok:
            check(
                _csv_one_record(payloads[i], len(CSV_SCHEMA)),
                f"payload {payloads[i]!r} is not one CSV record",
            )


# ======================================================================================= Arrow IPC


@seeds_for("arrow_ipc_format")
def _ipc_seeds() -> list[bytes]:
    import pyarrow.ipc as ipc

    rng = _rng("ipc")
    seeds = []
    for k in range(24):
        batch = None
        while batch is None or not is_valid(batch):
            batch = hostile_batch(Cursor(rng.randbytes(rng.randrange(40, 300))))
        sink = pa.BufferOutputStream()
        options = ipc.IpcWriteOptions(compression=[None, "lz4", "zstd"][k % 3])
        with ipc.new_stream(sink, batch.schema, options=options) as writer:
            writer.write_batch(batch)
        seeds.append(bytes([0]) + sink.getvalue().to_pybytes())
    return seeds


@target(smoke=800)
def arrow_ipc_format(data: bytes) -> None:
    from arrowflow.errors import SerializationError
    from arrowflow.formats import ArrowIpc

    cur = Cursor(data)
    payloads = split_payloads(cur, cur.rest()[: 1 << 14], max_items=3)
    arr, _g = guarded_payloads(payloads, before=len(data) % 2 == 1)
    got = ArrowIpc().decode(arr)
    got.batch.validate(full=True)
    try:
        got.batch.to_pylist()  # every value readable
    except (OverflowError, ValueError):
        # Valid Arrow whose value Python cannot hold (a time or date beyond datetime's range): a
        # limit of the conversion, not of the decode.
        pass
    for i, p in enumerate(payloads):
        try:
            alone = ArrowIpc().decode_batch(Guarded(p).buffer())
        except SerializationError:
            check(
                i not in got.row_indices.tolist() or i in got.failed.tolist(),
                f"payload {i} decodes only in a call",
            )
            continue
        alone.validate(full=True)


# ============================================================================================= Raw


@target(smoke=1000)
def raw_format(data: bytes) -> None:
    from arrowflow.formats import Raw

    cur = Cursor(data)
    payloads = split_payloads(cur, cur.rest()[: 1 << 12])
    arr, _g = guarded_payloads(payloads, before=len(data) % 2 == 0)
    got = Raw(type=pa.string()).decode(arr)
    want = []
    for i, p in enumerate(payloads):
        try:
            want.append((i, p.decode("utf-8")))
        except UnicodeDecodeError:
            pass
    check(got.row_indices.tolist() == [i for i, _ in want], "rows accepted differ from bytes.decode's")
    check(got.batch.column(0).to_pylist() == [t for _, t in want], "text differs from bytes.decode's")


# ======================================================================================== encoders


def _hostile_seeds(name: str) -> list[bytes]:
    rng = _rng(name)
    return [rng.randbytes(rng.randrange(16, 400)) for _ in range(32)]


for _name in ("json_encode", "bulk_encode", "bson_encode", "avro_encode", "remote_write_encode"):
    SEEDS[_name] = lambda _n=_name: _hostile_seeds(_n)  # type: ignore[misc]


def _refused_only_if_invalid(exc: ValueError, batch: pa.RecordBatch) -> None:
    """A ValueError naming invalid Arrow data is right only for a batch Arrow calls invalid."""
    if "invalid Arrow data" in str(exc):
        check(not is_valid(batch), f"a valid batch was refused: {exc}")


def _reference_or_none(fn: Callable[[], Any]) -> Any:
    """The reference's answer, or None when it cannot read the (invalid) input at all."""
    try:
        return fn()
    except (
        pa.ArrowException,
        ValueError,
        TypeError,
        OverflowError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
    ):
        return None


@target(smoke=1500)
def json_encode(data: bytes) -> None:
    from arrowflow._ext import json_encode as kernel
    from arrowflow._reference import json_encode as reference

    cur = Cursor(data)
    options = {"nulls": cur.choice(["null", "omit"]), "nan": cur.choice(["null", "error"])}
    threads = cur.choice([1, 2])
    batch = hostile_batch(cur)
    if batch is None:
        return
    try:
        got = kernel.encode_rows(batch, threads=threads, **options)
    except ValueError as exc:
        _refused_only_if_invalid(exc, batch)
        return
    except TypeError:
        return  # a type JSON does not encode (interval, union...): refused before any loop
    check(is_valid(batch) or _layout_only_value_rules(batch), "an invalid batch was encoded")
    for doc in got.to_pylist():
        check(_json_object(doc), f"output is not a JSON object: {doc!r}")
    want = _reference_or_none(lambda: reference.encode_rows(batch, **options))
    if want is not None and is_valid(batch):
        check(
            got.to_pylist() == want.to_pylist(), f"kernel {got.to_pylist()} != reference {want.to_pylist()}"
        )


def _layout_only_value_rules(batch: pa.RecordBatch) -> bool:
    """Whether the batch fails full validation only by a value rule (date64 days, time of day,
    decimal precision): the kernels accept those (see ext/_validate.pxi)."""
    try:
        batch.validate(full=True)
        return True
    except pa.ArrowInvalid as exc:
        text = str(exc)
        return any(
            s in text for s in ("whole number of days", "acceptable range", "does not fit in precision")
        )


@target(smoke=800)
def bulk_encode(data: bytes) -> None:
    from arrowflow._ext import bulk as kernel
    from arrowflow._reference import bulk as reference

    cur = Cursor(data)
    batch = hostile_batch(
        cur,
        leaves=[
            pa.int64(),
            pa.uint64(),
            pa.string(),
            pa.binary(),
            pa.large_binary(),
            pa.int8(),
            pa.float64(),
        ],
        columns=4,
    )
    if batch is None or batch.num_columns < 2:
        return
    names = batch.schema.names
    options: dict[str, Any] = {"action": cur.choice(["index", "create", "update", "delete"])}
    # meta columns among the flat ones (a nested one is refused by the kernel's cast, a TypeError)
    flat = [n for n in names if not pa.types.is_nested(batch.schema.field(n).type)]
    for option in ("id_column", "routing_column"):
        options[option] = cur.choice([None, *flat])
    options["index"] = "idx"
    try:
        got = kernel.encode_bulk(batch, **options)
    except ValueError as exc:
        _refused_only_if_invalid(exc, batch)
        return
    except (TypeError, pa.ArrowException):
        return
    for entry in got.to_pylist():
        lines = entry.split(b"\n")
        check(lines[-1] == b"", "an entry ends with a newline")
        for line in lines[:-1]:
            check(_json_object(line), f"a line is not a JSON object: {line!r}")
    want = _reference_or_none(lambda: reference.encode_bulk(batch, **options))
    if want is not None and is_valid(batch):
        check(
            got.to_pylist() == want.to_pylist(), f"kernel {got.to_pylist()} != reference {want.to_pylist()}"
        )


BSON_LEAVES = [
    t for t in LEAVES if not (pa.types.is_time(t) or pa.types.is_duration(t) or t == pa.decimal128(38, 0))
]


@target(smoke=1200)
def bson_encode(data: bytes) -> None:
    import bson as pymongo_bson

    from arrowflow._ext import bson_encode as kernel
    from arrowflow._reference import bson_encode as reference

    cur = Cursor(data)
    nulls = cur.choice(["null", "omit"])
    batch = hostile_batch(cur, leaves=BSON_LEAVES)
    if batch is None:
        return
    try:
        docs, failed, _errors = kernel.encode_documents_checked(batch, nulls=nulls)
    except ValueError as exc:
        _refused_only_if_invalid(exc, batch)
        return
    except TypeError:
        return
    # Datetimes outside Python's range are valid BSON: decoded as DatetimeMS.
    options = pymongo_bson.CodecOptions(datetime_conversion=pymongo_bson.DatetimeConversion.DATETIME_AUTO)
    for doc in docs.to_pylist():
        try:
            pymongo_bson.decode(doc, options)
        except Exception as exc:
            raise Finding(f"output does not decode: {exc!r} {doc!r}") from None
    if not is_valid(batch):
        return
    want = _reference_or_none(lambda: reference.encode_documents_checked(batch, nulls=nulls))
    if want is not None:
        check(failed.tolist() == want[1].tolist(), f"failed rows {failed.tolist()} != {want[1].tolist()}")
        for got_doc, want_doc in zip(docs.to_pylist(), want[0].to_pylist(), strict=True):
            if got_doc != want_doc:
                # Only a NaN's payload may differ (float16 widening quiets a signalling NaN).
                a, b = pymongo_bson.decode(got_doc, options), pymongo_bson.decode(want_doc, options)
                check(_same_values(a, b), f"documents differ from the reference: {got_doc!r} != {want_doc!r}")


def _same_values(a: Any, b: Any) -> bool:
    """Equal, with every NaN equal to every NaN."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_values(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_values(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


AVRO_FOR_ARROW: dict[str, Any] = {
    "bool": "boolean",
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "int64": "long",
    "uint8": "int",
    "uint16": "int",
    "uint32": "long",
    "uint64": "long",
    "float": "float",
    "double": "double",
    "string": "string",
    "large_string": "string",
    "binary": "bytes",
    "large_binary": "bytes",
    "fixed_size_binary[3]": {"type": "fixed", "name": "F3", "size": 3},
    "date32[day]": {"type": "int", "logicalType": "date"},
    "timestamp[ms, tz=UTC]": {"type": "long", "logicalType": "timestamp-millis"},
    "timestamp[us]": {"type": "long", "logicalType": "local-timestamp-micros"},
}
AVRO_LEAVES = [t for t in LEAVES if str(t) in AVRO_FOR_ARROW]


@target(smoke=800)
def avro_encode(data: bytes) -> None:
    from arrowflow.formats import Avro

    cur = Cursor(data)
    batch = hostile_batch(cur, leaves=AVRO_LEAVES, columns=4)
    if batch is None or any(pa.types.is_nested(t) or pa.types.is_dictionary(t) for t in batch.schema.types):
        return
    fields = []
    for f in batch.schema:
        avro = AVRO_FOR_ARROW[str(f.type)]
        if isinstance(avro, dict) and avro.get("type") == "fixed":
            avro = {**avro, "name": f"F_{f.name}"}
        fields.append({"name": f.name, "type": ["null", avro] if cur.flag() else avro})
    schema = {"type": "record", "name": "R", "fields": fields}
    fmt = Avro(schema)
    try:
        got = fmt.encode(batch)
    except ValueError as exc:
        _refused_only_if_invalid(exc, batch)
        return
    if not is_valid(batch):
        return
    slow = Avro(schema)
    object.__setattr__(slow, "_encoder", None)  # the fastavro-only path
    want = slow.encode(batch)
    check(
        got.failed.tolist() == want.failed.tolist(),
        f"failed rows {got.failed.tolist()} != {want.failed.tolist()}",
    )
    check(got.payloads.to_pylist() == want.payloads.to_pylist(), "payloads differ from fastavro's")


@target(smoke=800)
def remote_write_encode(data: bytes) -> None:
    from arrowflow._ext import remote_write as kernel
    from arrowflow._reference import remote_write as reference

    cur = Cursor(data)
    batch = hostile_batch(
        cur, leaves=[pa.string(), pa.large_string(), pa.binary(), pa.string_view()], columns=3
    )
    if batch is None or any(pa.types.is_nested(t) for t in batch.schema.types):
        return
    columns = [(b"__name__" if k == 0 else b"l%d" % k, batch.column(k)) for k in range(batch.num_columns)]
    try:
        got = kernel.encode_labels(batch.num_rows, columns)
    except ValueError as exc:
        _refused_only_if_invalid(exc, batch)
        return
    except TypeError:
        return
    if not is_valid(batch):
        return
    want = _reference_or_none(lambda: reference.encode_labels(batch.num_rows, columns))
    if want is not None:
        check(got[0].to_pylist() == want[0].to_pylist(), "labels differ from the reference")
        check(got[1].tolist() == want[1].tolist(), "error codes differ from the reference")
        request = kernel.encode_write_request(
            got[0],
            np.arange(batch.num_rows) % max(1, batch.num_rows),
            np.ones(batch.num_rows),
            np.arange(batch.num_rows),
        )
        check(
            request
            == reference.encode_write_request(
                got[0],
                np.arange(batch.num_rows) % max(1, batch.num_rows),
                np.ones(batch.num_rows),
                np.arange(batch.num_rows),
            ),
            "write request differs from the reference",
        )


# ========================================================================================= push


@seeds_for("push_framing")
def _push_seeds() -> list[bytes]:
    rng = _rng("push")
    seeds = []
    for k in range(24):
        frames = [rng.randbytes(rng.randrange(0, 20)).replace(b"\n", b"") for _ in range(5)]
        if k % 2:
            body = b"".join(struct.pack(">I", len(f)) + f for f in frames)
        else:
            body = b"".join(f + b"\n" for f in frames)
        seeds.append(bytes([k % 2, k % 5]) + bytes(rng.randrange(256) for _ in range(8)) + body)
    return seeds


def _plain_frames(stream: bytes, framing: str, limit: int) -> list[bytes]:
    """The complete frames a correct reader keeps from ``stream`` (frames over ``limit`` dropped)."""
    out = []
    if framing == "newline":
        for line in stream.split(b"\n")[:-1]:
            if len(line) <= limit:
                out.append(line)
        return out
    pos = 0
    while pos + 4 <= len(stream):
        (size,) = struct.unpack_from(">I", stream, pos)
        if size > limit:
            break  # the connection is dropped
        if pos + 4 + size > len(stream):
            break
        out.append(stream[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out


@target(smoke=1000)
def push_framing(data: bytes) -> None:
    from arrowflow.connectors.push import TcpPushSource, parse_body

    cur = Cursor(data)
    framing = "length" if cur.flag() else "newline"
    kind = cur.choice(["json", "ndjson", "csv", "arrow", None])
    limit = 4 + cur.below(40)
    stream = cur.rest()[: 1 << 12]
    src = TcpPushSource(framing=framing, max_frame_bytes=limit)
    # The stream as the connection thread sees it: chunks cut where the input says.
    cuts = sorted({(b * 7) % (len(stream) + 1) for b in stream[:6]})
    pending = b""
    frames: list[bytes] = []
    dropped = False
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=False):
        chunk = Guarded(stream[a:b]).view().tobytes()
        got, pending = (
            src._split_lines(pending + chunk) if framing == "newline" else src._split_lengths(pending + chunk)
        )
        if got is not None:
            got.validate(full=True)
            frames.extend(got.to_pylist())
        if len(pending) > limit + 4:
            dropped = True
            break
    want = _plain_frames(stream, framing, limit)
    if framing == "newline" and not dropped:
        check(frames == want, f"frames {frames!r} != {want!r}")
    elif framing == "length":
        check(frames == want[: len(frames)], f"frames {frames!r} are not a prefix of {want!r}")
        if not dropped:
            check(frames == want, f"frames {frames!r} != {want!r}")
    src.close()
    if kind is not None:
        from arrowflow.errors import SerializationError

        try:
            batch = parse_body(kind, Guarded(stream).view().tobytes(), None)
        except (ValueError, TypeError, pa.ArrowException, SerializationError, RecursionError):
            return  # a 400
        batch.validate(full=True)
