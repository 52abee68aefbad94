"""``arrowflow._ext.bson_decode`` against the pure-Python reference (``bson.decode_all`` + the
connector's ``decode_documents``), plus fixed and malformed cases."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path
from typing import Any

import bson
import pyarrow as pa
import pytest
from bson.decimal128 import Decimal128
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arrowflow._ext as ext
from arrowflow._ext import bson_decode as kernel
from arrowflow._reference import bson_decode as reference

SCHEMA = pa.schema(
    [
        ("b", pa.bool_()),
        ("i32", pa.int32()),
        ("i64", pa.int64()),
        ("f", pa.float64()),
        ("s", pa.string()),
        ("ls", pa.large_string()),
        ("bin", pa.binary()),
        ("lbin", pa.large_binary()),
        ("oid", pa.binary(12)),
        ("ts", pa.timestamp("ms")),
        ("ts_us", pa.timestamp("us", "UTC")),
        ("ts_ns", pa.timestamp("ns", "Europe/Paris")),
    ]
)

I32 = st.integers(-(2**31), 2**31 - 1)
I64 = st.integers(-(2**63), 2**63 - 1).map(bson.Int64)
# Edges: int32/int64 limits and the float64-exact bound 2**53.
I_EDGE = st.sampled_from(
    [0, -1, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**53, -(2**53), 2**53 + 1, 2**63 - 1, -(2**63)]
).map(bson.Int64)
FLOATS = st.floats(allow_nan=False)
TEXT = st.text(max_size=12)
# BSON keys hold no NUL; str with surrogates does not encode.
KEY_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=3)
OID = st.binary(min_size=12, max_size=12).map(bson.ObjectId)
# BSON datetimes of any millisecond in Python's datetime range, negative ones included.
MS = st.integers(-62135596800000, 253402300799999)
DATETIMES = MS.map(lambda ms: bson.DatetimeMS(ms).as_datetime())
# Out of Python's range (pymongo refuses these by default: the kernel must leave them to it).
BAD_DATETIMES = st.sampled_from([-62135596800001, 253402300800000, 2**62]).map(bson.DatetimeMS)
SUBTYPED = st.binary(max_size=8).map(lambda b: bson.Binary(b, 0x80))

TYPED: dict[str, st.SearchStrategy[Any]] = {
    "b": st.booleans(),
    "i32": I32,
    "i64": st.one_of(I32, I64),
    "f": st.one_of(FLOATS, I32, st.integers(-(2**53), 2**53).map(bson.Int64)),
    "s": st.one_of(TEXT, OID),
    "ls": TEXT,
    "bin": st.one_of(st.binary(max_size=10), OID),
    "lbin": st.binary(max_size=10),
    "oid": st.one_of(OID, st.binary(min_size=12, max_size=12)),
    "ts": DATETIMES,
    "ts_us": DATETIMES,
    "ts_ns": MS.filter(lambda ms: abs(ms) < 2**63 // 10**6).map(lambda ms: bson.DatetimeMS(ms).as_datetime()),
}

valid_scalars = st.one_of(
    st.none(),
    st.booleans(),
    I32,
    I64,
    I_EDGE,
    st.floats(allow_nan=False),
    TEXT,
    st.binary(max_size=10),
    OID,
    DATETIMES,
    SUBTYPED,
    st.just(Decimal128("1.5")),
    st.just(bson.Regex("a.c", "i")),
    st.just(bson.Code("f()", {"x": 1})),
    st.just(bson.Code("g()")),
    st.just(bson.Timestamp(5, 1)),
    st.just(bson.MinKey()),
    st.just(bson.MaxKey()),
)
# Any value, including datetimes pymongo refuses to decode (out of Python's range).
scalars = valid_scalars | BAD_DATETIMES


def _nest(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY_TEXT, inner, max_size=3),
        max_leaves=5,
    )


nested = _nest(scalars)
valid_nested = _nest(valid_scalars)
EXTRA_KEYS = st.sampled_from(["_id", "x", "nested", "é", "", "i", "ss"])


@st.composite
def typed_document(draw: st.DrawFn) -> dict[str, Any]:
    """Fields of the schema (a random subset, in a random order) with values that fit, nulls,
    and extra fields of any type."""
    names = draw(st.permutations(SCHEMA.names))
    doc: dict[str, Any] = {}
    for name in names[: draw(st.integers(0, len(names)))]:
        doc[name] = None if draw(st.integers(0, 7)) == 0 else draw(TYPED[name])
    for key in draw(st.lists(EXTRA_KEYS, max_size=3)):
        doc[key] = draw(valid_nested)
    return doc


@st.composite
def wild_document(draw: st.DrawFn) -> dict[str, Any]:
    """Any value (wrong types, nested, out of range) under any schema name."""
    keys = draw(st.lists(st.sampled_from([*SCHEMA.names, "x", "_id"]), max_size=8, unique=True))
    return {k: draw(nested) for k in keys}


@st.composite
def subschema(draw: st.DrawFn) -> pa.Schema:
    fields = draw(st.permutations(list(SCHEMA)))
    return pa.schema(fields[: draw(st.integers(1, len(fields)))])


def _raw(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(bson.encode(d) for d in docs)


def _compare(raw: bytes, schema: pa.Schema) -> pa.RecordBatch | None:
    batch, why = kernel.decode_documents(raw, schema)
    if batch is None:
        assert isinstance(why, str) and why
        return None
    assert why is None
    expected = reference.decode_documents(raw, schema)
    assert batch.schema == schema
    assert batch.equals(expected), (batch.to_pydict(), expected.to_pydict())
    batch.validate(full=True)
    return batch


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(typed_document(), max_size=12), schema=subschema())
def test_typed_documents_take_the_fast_path_and_equal_the_reference(
    docs: list[dict[str, Any]], schema: pa.Schema
) -> None:
    batch = _compare(_raw(docs), schema)
    assert batch is not None
    assert batch.num_rows == len(docs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(wild_document(), max_size=8), schema=subschema())
def test_any_documents_equal_the_reference_or_take_the_slow_path(
    docs: list[dict[str, Any]], schema: pa.Schema
) -> None:
    _compare(_raw(docs), schema)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(typed_document(), min_size=1, max_size=4),
    cut=st.integers(0, 10_000),
    pos=st.integers(0, 10_000),
    byte=st.integers(0, 255),
    mode=st.sampled_from(["truncate", "overwrite", "insert"]),
)
def test_damaged_input_raises_value_error_or_matches(
    docs: list[dict[str, Any]], cut: int, pos: int, byte: int, mode: str
) -> None:
    raw = bytearray(_raw(docs))
    if mode == "truncate":
        raw = raw[: cut % len(raw)]
    elif mode == "overwrite":
        raw[pos % len(raw)] = byte
    else:
        raw.insert(pos % len(raw), byte)
    data = bytes(raw)
    try:
        batch, _ = kernel.decode_documents(data, SCHEMA)
    except ValueError as exc:
        assert "malformed BSON" in str(exc)
        # What the kernel calls malformed, pymongo does too.
        with pytest.raises(ValueError):
            reference.decode_documents(data, SCHEMA)
        return
    if batch is not None:
        try:
            expected = reference.decode_documents(data, SCHEMA)
        except ValueError:
            # pymongo refuses what the kernel took: allowed only when the damage is inside fields
            # the kernel skips (documented difference). Then the documents without those fields
            # decode with pymongo, to exactly the kernel's batch.
            kept = _without_skipped_fields(data, set(SCHEMA.names))
            expected = reference.decode_documents(kept, SCHEMA)
        assert batch.equals(expected)


# Sizes of the BSON values after the element's key: a fixed size, or how to read it.
_FIXED = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
_FIXED.update({0x7F: 0, 0xFF: 0})


def _value_end(raw: bytes, kind: int, at: int) -> int:
    """Where the value of type ``kind`` starting at ``at`` ends (ValueError if it cannot be read)."""
    if kind in _FIXED:
        return at + _FIXED[kind]
    if kind in (0x02, 0x0D, 0x0E):  # string, code, symbol: int32 length (NUL included) + bytes
        return at + 4 + struct.unpack_from("<i", raw, at)[0]
    if kind in (0x03, 0x04, 0x0F):  # document, array, code with scope: int32 total length
        return at + struct.unpack_from("<i", raw, at)[0]
    if kind == 0x05:  # binary: int32 length + subtype + bytes
        return at + 5 + struct.unpack_from("<i", raw, at)[0]
    if kind == 0x0B:  # regex: two C strings
        return raw.index(b"\x00", raw.index(b"\x00", at) + 1) + 1
    if kind == 0x0C:  # DBPointer: string + ObjectId
        return at + 4 + struct.unpack_from("<i", raw, at)[0] + 12
    raise ValueError(f"element type {kind:#x}")


def _without_skipped_fields(raw: bytes, names: set[str]) -> bytes:
    """``raw`` (documents back to back) with every top-level element whose key is not in ``names``
    removed; the kept elements are copied byte for byte. An AssertionError if the top level cannot
    be walked: the kernel must have rejected such input."""
    out = bytearray()
    pos = 0
    try:
        while pos < len(raw):
            (size,) = struct.unpack_from("<i", raw, pos)
            end = pos + size
            assert raw[end - 1] == 0 and end <= len(raw)
            at, kept = pos + 4, bytearray()
            while at < end - 1:
                kind = raw[at]
                key_end = raw.index(b"\x00", at + 1)
                value_end = _value_end(raw, kind, key_end + 1)
                assert key_end < value_end <= end - 1, "an element runs past its document"
                if raw[at + 1 : key_end].decode("utf-8", "surrogateescape") in names:
                    kept += raw[at:value_end]
                at = value_end
            assert at == end - 1
            out += struct.pack("<i", len(kept) + 5) + kept + b"\x00"
            pos = end
    except (ValueError, IndexError, struct.error) as exc:
        raise AssertionError(f"the kernel accepted input whose top level is malformed: {exc}") from exc
    return bytes(out)


def test_fixed_documents() -> None:
    oid = bson.ObjectId(b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x11\x22\xff")
    docs = [
        {
            "_id": oid,
            "b": True,
            "i32": bson.Int64(-(2**31)),
            "i64": 2**31 - 1,
            "f": bson.Int64(-(2**53)),
            "s": oid,
            "bin": oid,
            "oid": oid,
            "ts": dt.datetime(1969, 12, 31, 23, 59, 59, 999000),
            "ts_us": dt.datetime(1, 1, 1),
            "ts_ns": dt.datetime(2262, 4, 11),
            "skip": {"a": [1, {"b": "c"}], "d": Decimal128("2")},
        },
        {"s": "日本語 \x00 nul", "ls": None, "bin": b"", "f": -0.0},
        {},
    ]
    batch = _compare(_raw(docs), SCHEMA)
    assert batch is not None
    row = batch.to_pylist()[0]
    assert row["s"] == "0123456789abcdef001122ff" and row["bin"] == oid.binary and row["oid"] == oid.binary
    assert row["i32"] == -(2**31) and row["f"] == -(2.0**53)
    assert batch.column("ts")[0].value == -1
    assert batch.column("s")[1].as_py() == "日本語 \x00 nul"
    assert batch.column("b").null_count == 2


def test_empty_input_is_an_empty_batch() -> None:
    batch, why = kernel.decode_documents(b"", SCHEMA)
    assert why is None and batch is not None
    assert batch.num_rows == 0 and batch.schema == SCHEMA
    assert kernel.document_offsets(b"").tolist() == [0]


def test_buffer_kinds_are_accepted() -> None:
    raw = _raw([{"i64": 1}, {"i64": 2}])
    for data in (raw, bytearray(raw), memoryview(raw)):
        batch, _ = kernel.decode_documents(data, pa.schema([("i64", pa.int64())]))
        assert batch is not None and batch.column(0).to_pylist() == [1, 2]
    assert kernel.document_offsets(memoryview(raw)).tolist() == [0, len(raw) // 2, len(raw)]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"i32": 2**31}, "i32"),  # int64 out of int32 range
        ({"i32": 1.0}, "i32"),  # double into an int column (pyarrow accepts 1.0: not the kernel's call)
        ({"i64": True}, "i64"),
        ({"f": bson.Int64(2**53 + 1)}, "f"),
        ({"f": True}, "f"),
        ({"b": 1}, "b"),
        ({"s": b"bytes"}, "s"),
        ({"bin": "text"}, "bin"),
        ({"bin": bson.Binary(b"x", 4)}, "bin"),
        ({"oid": b"short"}, "oid"),
        ({"ts": 5}, "ts"),
        ({"ts": bson.DatetimeMS(253402300800000)}, "ts"),
        ({"ts_ns": dt.datetime(2263, 1, 1)}, "ts_ns"),
        ({"s": {"nested": 1}}, "s"),
        ({"i64": Decimal128("1")}, "i64"),
    ],
)
def test_values_that_do_not_fit_take_the_slow_path(doc: dict[str, Any], field: str) -> None:
    batch, why = kernel.decode_documents(_raw([{}, doc]), SCHEMA)
    assert batch is None
    assert why is not None and "document 1" in why and repr(field) in why


@pytest.mark.parametrize(
    "schema",
    [
        pa.schema([("x", pa.struct([("a", pa.int64())]))]),
        pa.schema([("x", pa.list_(pa.int64()))]),
        pa.schema([("x", pa.decimal128(10, 2))]),
        pa.schema([("x", pa.date32())]),
        pa.schema([("x", pa.int16())]),
        pa.schema([("x", pa.timestamp("s"))]),
        pa.schema([("x", pa.binary(16))]),
        pa.schema([("x", pa.int64()), ("x", pa.int64())]),
    ],
)
def test_schemas_without_a_fast_path(schema: pa.Schema) -> None:
    batch, why = kernel.decode_documents(_raw([{"x": 1}]), schema)
    assert batch is None and why


def _element(t: int, key: bytes, value: bytes) -> bytes:
    return bytes([t]) + key + b"\x00" + value


def _doc(*elements: bytes) -> bytes:
    body = b"".join(elements) + b"\x00"
    return struct.pack("<i", len(body) + 4) + body


def test_duplicate_field_takes_the_slow_path() -> None:
    raw = _doc(_element(0x10, b"i32", struct.pack("<i", 1)), _element(0x10, b"i32", struct.pack("<i", 2)))
    batch, why = kernel.decode_documents(raw, SCHEMA)
    assert batch is None and why is not None and "twice" in why
    # The general path keeps the last value (a dict).
    assert reference.decode_documents(raw, SCHEMA).column("i32").to_pylist() == [2]
    # A repeated field outside the schema is skipped.
    raw = _doc(_element(0x10, b"x", struct.pack("<i", 1)), _element(0x10, b"x", struct.pack("<i", 2)))
    assert kernel.decode_documents(raw, SCHEMA)[0] is not None


def test_invalid_utf8_string_takes_the_slow_path() -> None:
    raw = _doc(_element(0x02, b"s", struct.pack("<i", 3) + b"\xed\xa0\x80"[:2] + b"\x00"))
    batch, why = kernel.decode_documents(raw, SCHEMA)
    assert batch is None and why is not None and "UTF-8" in why
    with pytest.raises(ValueError):
        reference.decode_documents(raw, SCHEMA)


def test_undefined_is_null() -> None:
    raw = _doc(_element(0x06, b"i64", b""))
    batch, _ = kernel.decode_documents(raw, SCHEMA)
    assert batch is not None and batch.column("i64").to_pylist() == [None]
    assert batch.equals(reference.decode_documents(raw, SCHEMA))


GOOD = _doc(_element(0x10, b"i32", struct.pack("<i", 7)))


@pytest.mark.parametrize(
    "raw",
    [
        GOOD[:-1],  # truncated
        GOOD + b"\x05\x00",  # trailing bytes shorter than a header
        struct.pack("<i", 4) + b"\x00",  # length below 5
        struct.pack("<i", -1) + GOOD[4:],  # negative length
        struct.pack("<i", 1000) + GOOD[4:],  # length past the buffer
        GOOD[:-1] + b"\x01",  # no terminating NUL
        _doc(b"\x10i32"),  # key not terminated
        _doc(_element(0x10, b"i32", b"\x01\x02")),  # value past the document
        _doc(_element(0x02, b"s", struct.pack("<i", 100) + b"ab\x00")),  # string length too large
        _doc(_element(0x02, b"s", struct.pack("<i", 0))),  # string length 0
        _doc(_element(0x02, b"s", struct.pack("<i", 2) + b"ab")),  # string not NUL-terminated
        _doc(_element(0x02, b"x", struct.pack("<i", -5) + b"ab\x00")),  # skipped string, negative
        _doc(_element(0x05, b"bin", struct.pack("<i", -1) + b"\x00")),  # negative binary length
        _doc(_element(0x05, b"x", struct.pack("<i", 50) + b"\x00abc")),  # skipped binary too long
        _doc(_element(0x03, b"x", struct.pack("<i", 50) + b"\x00")),  # embedded doc too long
        _doc(_element(0x04, b"x", struct.pack("<i", 3) + b"\x00")),  # embedded array too short
        _doc(_element(0x08, b"b", b"\x02")),  # boolean byte 2
        _doc(_element(0x08, b"x", b"\x07")),  # skipped boolean byte 7
        _doc(_element(0x14, b"x", b"")),  # unknown type
        _doc(_element(0x10, b"\xff\xfe", struct.pack("<i", 1))),  # key not UTF-8
        _doc(b"\x00", _element(0x10, b"i32", struct.pack("<i", 1))),  # type 0 inside the document
    ],
)
def test_malformed_input_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="malformed BSON"):
        kernel.decode_documents(raw, SCHEMA)
    with pytest.raises(ValueError):
        reference.decode_documents(raw, SCHEMA)


def test_malformed_headers_raise_in_document_offsets() -> None:
    with pytest.raises(ValueError, match="malformed BSON"):
        kernel.document_offsets(GOOD + GOOD[:-2])
    assert kernel.document_offsets(GOOD + GOOD).tolist() == [0, len(GOOD), 2 * len(GOOD)]


def test_large_input_grows_the_buffers() -> None:
    docs = [{"s": "x" * (i % 50), "bin": b"y" * (i % 30), "i64": i} for i in range(20_000)]
    _compare(_raw(docs), pa.schema([("s", pa.string()), ("bin", pa.large_binary()), ("i64", pa.int64())]))


def test_the_compiled_module_is_used() -> None:
    assert "bson_decode" in ext.KERNELS
    assert Path(kernel.__file__ or "").suffix in (".so", ".pyd")


@pytest.mark.parametrize(
    "raw",
    [
        # A datetime pymongo refuses, in a field the kernel skips (top level, nested, in an array).
        _raw([{"x": bson.DatetimeMS(-62135596800001)}]),
        _raw([{"x": {"y": [1, bson.DatetimeMS(2**62)]}}]),
        # Invalid UTF-8 in a skipped string, nested string, regex, code with scope.
        _doc(_element(0x02, b"x", struct.pack("<i", 2) + b"\xff\x00")),
        _doc(_element(0x03, b"x", _doc(_element(0x02, b"y", struct.pack("<i", 2) + b"\xc0\x00")))),
        _doc(_element(0x0B, b"x", b"\xff\x00i\x00")),
        _doc(
            _element(
                0x0F,
                b"x",
                struct.pack("<i", 4 + 4 + 2 + 5) + struct.pack("<i", 2) + b"\xfe\x00" + _doc(),
            )
        ),
        # Subtype-2 binary whose inner length disagrees.
        _doc(_element(0x05, b"x", struct.pack("<i", 6) + b"\x02" + struct.pack("<i", 9) + b"ab")),
    ],
)
def test_skipped_fields_pymongo_refuses_take_the_slow_path(raw: bytes) -> None:
    batch, why = kernel.decode_documents(raw, SCHEMA)
    assert batch is None and why is not None and "not in the schema" in why
    with pytest.raises(ValueError):
        reference.decode_documents(raw, SCHEMA)


def test_code_with_scope_lengths_must_add_up() -> None:
    code = struct.pack("<i", 2) + b"f\x00" + _doc()
    good = _doc(_element(0x0F, b"x", struct.pack("<i", 4 + len(code)) + code))
    assert kernel.decode_documents(good, SCHEMA)[0] is not None
    bad = _doc(_element(0x0F, b"x", struct.pack("<i", 4 + len(code) + 1) + code + b"\x00"))
    with pytest.raises(ValueError, match="code-with-scope"):
        kernel.decode_documents(bad, SCHEMA)
    with pytest.raises(ValueError):
        reference.decode_documents(bad, SCHEMA)


def test_deep_nesting_takes_the_slow_path() -> None:
    inner: dict[str, Any] = {}
    for _ in range(150):
        inner = {"a": inner}
    batch, why = kernel.decode_documents(_raw([{"x": inner, "i64": 1}]), SCHEMA)
    assert batch is None and why is not None and "deeper" in why
    shallow: dict[str, Any] = {}
    for _ in range(45):  # 90 levels
        shallow = {"a": [shallow]}
    assert _compare(_raw([{"x": shallow, "i64": 1}]), SCHEMA) is not None


# Issue 19: results must not depend on the path, and bytes handed to the general path are well formed.


def test_object_id_into_large_binary_is_its_12_bytes_on_both_paths() -> None:
    oid = bson.ObjectId(b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x11\x22\xff")
    schema = pa.schema([("lbin", pa.large_binary()), ("bin", pa.binary())])
    raw = _raw([{"lbin": oid, "bin": oid}, {"lbin": b"raw", "bin": None}])
    batch = _compare(raw, schema)  # kernel == bson.decode_all + the connector's decode_documents
    assert batch is not None and batch.column("lbin").to_pylist() == [oid.binary, b"raw"]
    # The general path alone (a decimal column sends the page there) gives the same bytes.
    general = reference.decode_documents(raw, schema.append(pa.field("d", pa.decimal128(5, 2))))
    assert general.column("lbin").to_pylist() == [oid.binary, b"raw"]


def _array_with_long_string() -> bytes:
    """An array whose element 0 is a string running past the array's end (but not the page's)."""
    inner = _element(0x02, b"0", struct.pack("<i", 100) + b"ab\x00")
    return struct.pack("<i", 4 + len(inner) + 1) + inner + b"\x00"


@pytest.mark.parametrize(
    ("schema", "depth"),
    [
        (pa.schema([("i64", pa.int64())]), 0),  # wanted field of the wrong type: "slow path" before
        (pa.schema([("i64", pa.int64())]), 120),  # skipped field nested deeper than the depth check
        (pa.schema([("i64", pa.decimal128(5, 2))]), 0),  # a schema without a fast path
    ],
)
def test_malformed_nested_value_is_refused_before_the_general_path(schema: pa.Schema, depth: int) -> None:
    value = _array_with_long_string()
    for _ in range(depth):
        value = _doc(_element(0x03, b"a", value))
    raw = _doc(_element(0x04 if depth == 0 else 0x03, b"i64", value), _element(0x02, b"pad", b"\x00" * 200))
    # Padding after the array: pymongo's decoder bounds the string by the rest of the page, not by
    # its array, so the kernel must not answer "slow path" (the caller would call bson.decode_all).
    with pytest.raises(ValueError, match="malformed BSON"):
        kernel.decode_documents(raw + _raw([{"i64": 1}]), schema)
    with pytest.raises(ValueError, match="malformed BSON"):
        kernel.check_documents(raw)
    assert kernel.check_documents(_raw([{"i64": [1, {"a": "b"}]}, {}])) == 2


def test_check_documents_has_no_depth_limit() -> None:
    def nest(leaf: bytes, depth: int) -> bytes:
        value = _doc(leaf)
        for k in range(depth):
            value = _doc(_element(0x04 if k % 2 else 0x03, b"a", value))
        return value

    assert kernel.check_documents(nest(_element(0x10, b"i", struct.pack("<i", 1)), 1000)) == 1
    with pytest.raises(ValueError, match="unknown BSON element type 0x42"):
        kernel.check_documents(nest(_element(0x42, b"i", b""), 1000))


def test_schemaless_pages_keep_every_field_of_every_document() -> None:
    # Found by the bson_page fuzz target: Table.from_pylist took the first document's fields only,
    # so fields first seen later were dropped, and a page starting with {} decoded to 0 rows.
    from arrowflow.connectors.mongodb import decode_page

    raw = _raw([{}, {"a": 1}, {"b": "x", "a": 2}])
    batch, decoded_by, _ = decode_page(raw, None)
    assert decoded_by == "python"
    assert batch.to_pylist() == [{"a": None, "b": None}, {"a": 1, "b": None}, {"a": 2, "b": "x"}]
    assert decode_page(_raw([{}, {}]), None)[0].num_rows == 2
