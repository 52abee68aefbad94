"""``arrowflow._ext.avro_encode`` and ``Avro.encode``'s fast path against its Python reference
(``arrowflow._reference.avro_encode``: fastavro, row by row).

Random flat record schemas within the kernel's scope and random Arrow batches of every accepted
column type (nulls where the schema has none, edge integers, NaN bit patterns, unicode, empty values,
timestamps of every unit and zone, negative ones included): for each row the kernel writes exactly
the bytes fastavro's ``schemaless_writer`` writes for ``batch.to_pylist()``'s record, and fails
exactly the rows fastavro rejects. Encoded rows decode back (decode kernel) to the batch.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowflow._ext import load
from arrowflow._reference import avro_encode as reference
from arrowflow.formats import Avro
from arrowflow.formats.base import Encoded

kernel = load("avro_encode")

MIN_US, MAX_US = -62135596800000000, 253402300799999999
MIN_DAY, MAX_DAY = -719162, 2932896
UNIT_US = {"s": 1_000_000, "ms": 1000, "us": 1}
INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
TIMESTAMPS = [
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
]
BASES = ["null", "boolean", "int", "long", "float", "double", "string", "bytes", "fixed", "enum", "date"]
BASES += TIMESTAMPS
SYMBOLS = ["A", "B", "C_1", "d"]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


def _avro_type(base: str, k: int, size: int) -> Any:
    if base == "fixed":
        return {"type": "fixed", "name": f"F{k}", "size": size}
    if base == "enum":
        return {"type": "enum", "name": f"E{k}", "symbols": SYMBOLS}
    if base == "date":
        return {"type": "int", "logicalType": "date"}
    if base in TIMESTAMPS:
        return {"type": "long", "logicalType": base}
    return base


def _int_range(t: pa.DataType) -> tuple[int, int]:
    info = np.iinfo(t.to_pandas_dtype())
    return int(info.min), int(info.max)


def _ints(draw: st.DrawFn, lo: int, hi: int) -> int:
    edges = [
        v for v in (lo, hi, 0, -1, 1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1) if lo <= v <= hi
    ]
    return draw(st.one_of(st.sampled_from(edges), st.integers(lo, hi)))


def _float_bits(draw: st.DrawFn, width: int) -> int:
    """The bits of a float of ``width``: NaN payloads (signalling ones too) and infinities included."""
    if width == 32:
        special = st.sampled_from([0x7F800001, 0xFFC00123, 0x7FBFFFFF, 0x7F800000, 0x80000000])
        plain = st.floats(width=32).map(lambda v: struct.unpack("<I", struct.pack("<f", v))[0])
    else:
        special = st.sampled_from(
            [0x7FF0000000000001, 0xFFF8000000000123, 0x7FF7FFFFFFFFFFFF, 0x8000000000000000]
        )
        plain = st.floats().map(lambda v: struct.unpack("<Q", struct.pack("<d", v))[0])
    return draw(st.one_of(special, plain))  # type: ignore[no-any-return]


def _column(draw: st.DrawFn, base: str, size: int, n: int) -> tuple[pa.Array, bool]:
    """A column for an Avro field of ``base`` and whether the kernel takes its type."""

    def values(strategy: Any) -> list[Any]:
        return [None if draw(st.integers(0, 5)) == 0 else draw(strategy) for _ in range(n)]

    if base == "null":
        if draw(st.booleans()):
            return pa.nulls(n), True
        return pa.array(values(st.integers(-5, 5)), pa.int64()), True
    if base == "boolean":
        return pa.array(values(st.booleans()), pa.bool_()), True
    if base in ("int", "long"):
        t = draw(st.sampled_from(INT_TYPES))
        lo, hi = _int_range(t)
        return pa.array(
            [None if draw(st.integers(0, 5)) == 0 else _ints(draw, lo, hi) for _ in range(n)], t
        ), True
    if base in ("float", "double"):
        width = draw(st.sampled_from([32, 64]))
        bits = np.array([_float_bits(draw, width) for _ in range(n)], np.uint32 if width == 32 else np.uint64)
        mask = np.array([draw(st.integers(0, 5)) == 0 for _ in range(n)], dtype=bool)
        floats = bits.view(np.float32 if width == 32 else np.float64)
        return pa.array(floats, pa.float32() if width == 32 else pa.float64(), mask=mask), True
    if base == "string":
        how = draw(st.sampled_from(["string", "large_string", "dictionary"]))
        arr = pa.array(values(TEXT), pa.large_string() if how == "large_string" else pa.string())
        return (arr.dictionary_encode() if how == "dictionary" else arr), True
    if base in ("bytes", "fixed"):
        how = draw(st.sampled_from(["binary", "large_binary", "fixed_size_binary"]))
        if how == "fixed_size_binary":
            width = size if base == "bytes" else draw(st.sampled_from([size, size + 1]))
            return pa.array(values(st.binary(min_size=width, max_size=width)), pa.binary(width)), True
        lengths = (
            st.binary(max_size=8)
            if base == "bytes"
            else st.sampled_from([size, size, size + 1, max(size - 1, 0)])
        )
        strategy = lengths if base == "bytes" else lengths.map(lambda m: b"\xab" * m)
        return pa.array(values(strategy), pa.large_binary() if how == "large_binary" else pa.binary()), True
    if base == "enum":
        how = draw(st.sampled_from(["string", "large_string", "dictionary"]))
        vals = values(st.sampled_from([*SYMBOLS, "ZZ", "", "é"]))
        arr = pa.array(vals, pa.large_string() if how == "large_string" else pa.string())
        return (arr.dictionary_encode() if how == "dictionary" else arr), True
    if base == "date":
        vals = [None if draw(st.integers(0, 5)) == 0 else _ints(draw, MIN_DAY, MAX_DAY) for _ in range(n)]
        return pa.array(vals, pa.int32()).view(pa.date32()), True
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    tz = draw(st.sampled_from([None, "UTC", "+05:30", "America/New_York"]))
    if unit == "ns":
        lo, hi = -(2**63) + 1, 2**63 - 1
    else:
        lo, hi = -(MIN_US // -UNIT_US[unit]), MAX_US // UNIT_US[unit]
    if tz not in (None, "UTC"):  # to_pylist (the oracle's input) needs the local time in range too
        day = 86_400_000_000_000 if unit == "ns" else 86_400_000_000 // UNIT_US[unit]
        lo, hi = lo + day, hi - day
    vals = [None if draw(st.integers(0, 5)) == 0 else _ints(draw, lo, hi) for _ in range(n)]
    arr = pa.array(vals, pa.int64()).view(pa.timestamp(unit, tz))
    return arr, not (base.startswith("local-") and tz not in (None, "UTC"))


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], pa.RecordBatch, bool]:
    n = draw(st.integers(0, 12))
    nfields = draw(st.integers(1, 6))
    fields, arrays, names = [], [], []
    in_scope = True
    for k in range(nfields):
        base = draw(st.sampled_from(BASES))
        union = 0 if base == "null" else draw(st.sampled_from([0, 1, 2]))
        size = draw(st.integers(0, 5))
        t = _avro_type(base, k, size)
        fields.append(
            {"name": f"f{k}", "type": ["null", t] if union == 1 else [t, "null"] if union == 2 else t}
        )
        column, takes = _column(draw, base, size, n)
        in_scope = in_scope and takes
        arrays.append(column)
        names.append(f"f{k}")
    if draw(st.booleans()):  # an extra column, and columns in another order than the fields
        arrays.append(pa.array(range(n), pa.int64()))
        names.append("extra")
        order = draw(st.permutations(range(len(names))))
        arrays, names = [arrays[i] for i in order], [names[i] for i in order]
    schema = {"type": "record", "name": "R", "namespace": "t.ns", "fields": fields}
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    if draw(st.booleans()) and n > 2:
        batch = batch.slice(1, n - 2)  # arrays with an offset
    return schema, batch, in_scope


def _check(encoded: Encoded, expected: list[bytes | None]) -> None:
    got = encoded.payloads.to_pylist()
    assert len(got) == len(expected)
    failed = [i for i, e in enumerate(expected) if e is None]
    assert encoded.failed.tolist() == failed
    assert len(encoded.errors) == len(failed)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, i


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_kernel_matches_fastavro_row_by_row(case: tuple[dict[str, Any], pa.RecordBatch, bool]) -> None:
    schema, batch, in_scope = case
    fmt = Avro(schema)
    expected = reference.encode(schema, batch)
    fast = fmt._encoder.encode(batch, b"")  # type: ignore[attr-defined]
    assert (fast is not None) == in_scope
    if fast is not None:
        _check(fast, expected)
        for message in fast.errors:
            assert "field 'f" in message
    _check(fmt.encode(batch), expected)


@settings(max_examples=50, deadline=None)
@given(cases(), st.integers(0, 2**31 - 1))
def test_confluent_framing(case: tuple[dict[str, Any], pa.RecordBatch, bool], schema_id: int) -> None:
    schema, batch, _ = case
    _check(Avro(schema, schema_id=schema_id).encode(batch), reference.encode(schema, batch, schema_id))


ROUND_TRIP = {
    "type": "record",
    "name": "Row",
    "fields": [
        {"name": "n", "type": "null"},
        {"name": "b", "type": ["null", "boolean"]},
        {"name": "i", "type": "int"},
        {"name": "l", "type": ["long", "null"]},
        {"name": "f", "type": "float"},
        {"name": "d", "type": ["null", "double"]},
        {"name": "s", "type": "string"},
        {"name": "y", "type": ["null", "bytes"]},
        {"name": "x", "type": {"type": "fixed", "name": "X", "size": 3}},
        {"name": "e", "type": ["null", {"type": "enum", "name": "E", "symbols": SYMBOLS}]},
        {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tm", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        {"name": "tu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "lm", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "lu", "type": ["null", {"type": "long", "logicalType": "local-timestamp-micros"}]},
    ],
}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_round_trip_through_the_decode_kernel(data: st.DataObject) -> None:
    fmt = Avro(ROUND_TRIP, schema_id=3)
    n = data.draw(st.integers(0, 20))

    def col(strategy: Any, nullable: bool) -> list[Any]:
        return [
            None if nullable and data.draw(st.integers(0, 3)) == 0 else data.draw(strategy) for _ in range(n)
        ]

    ts_ms = st.integers(-(MIN_US // -1000), MAX_US // 1000)
    ts_us = st.integers(MIN_US, MAX_US)
    columns = [
        [None] * n,
        col(st.booleans(), True),
        col(st.integers(-(2**31), 2**31 - 1), False),
        col(st.integers(-(2**63), 2**63 - 1), True),
        col(st.floats(width=32, allow_nan=False), False),
        col(st.floats(allow_nan=False), True),
        col(TEXT, False),
        col(st.binary(max_size=10), True),
        col(st.binary(min_size=3, max_size=3), False),
        col(st.sampled_from(SYMBOLS), True),
        col(st.integers(MIN_DAY, MAX_DAY), False),
        col(ts_ms, True),
        col(ts_us, False),
        col(ts_ms, False),
        col(ts_us, True),
    ]
    arrays = [
        pa.array(c, pa.int64()).view(f.type)
        if pa.types.is_timestamp(f.type)
        else pa.array(c, pa.int32()).view(f.type)
        if pa.types.is_date32(f.type)
        else pa.array(c, f.type)
        for c, f in zip(columns, fmt.schema, strict=True)
    ]
    batch = pa.RecordBatch.from_arrays(arrays, schema=fmt.schema)
    assert fmt._encoder.encode(batch, b"") is not None  # type: ignore[attr-defined]
    encoded = fmt.encode(batch)
    assert len(encoded.failed) == 0
    decoded = fmt.decode(encoded.payloads)
    assert len(decoded.failed) == 0
    assert decoded.batch.equals(batch)


def test_compiled_kernel_is_used() -> None:
    assert str(kernel.__file__).endswith(".so")
    fmt = Avro({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]})
    batch = pa.record_batch({"a": pa.array([1, 2, 3])})
    fast = fmt._encoder.encode(batch, b"")  # type: ignore[attr-defined]
    assert fast is not None
    assert fmt.encode(batch).payloads.equals(fast.payloads)
    assert fast.payloads.to_pylist() == [b"\x02", b"\x04", b"\x06"]


def test_failures_and_messages() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "i", "type": ["null", "int"]},
            {"name": "l", "type": "long"},
            {"name": "x", "type": {"type": "fixed", "name": "X", "size": 2}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
        ],
    }
    batch = pa.record_batch(
        {
            "i": pa.array([1, 2**31, 3, 4, 5], pa.int64()),
            "l": pa.array([1, 2, 2**64 - 1, None, 5], pa.uint64()),
            "x": pa.array([b"ab", b"ab", b"ab", b"ab", b"abc"]),
            "e": pa.array(["A", "B", "A", "B", "C"]),
        }
    )
    expected = reference.encode(schema, batch)
    assert [e is None for e in expected] == [False, True, True, True, True]
    encoded = Avro(schema).encode(batch)
    _check(encoded, expected)
    assert "outside the Avro int range in field 'i'" in encoded.errors[0]
    assert "outside the Avro long range in field 'l'" in encoded.errors[1]
    assert "null value in non-nullable field 'l'" in encoded.errors[2]
    assert "3 bytes for fixed size 2 in field 'x'" in encoded.errors[3]
    bad_enum = Avro(schema).encode(batch.slice(0, 1).set_column(3, "e", pa.array(["C"])))
    assert bad_enum.failed.tolist() == [0]
    assert "'C' is not a symbol of field 'e'" in bad_enum.errors[0]


def test_dates_and_timestamps_outside_pythons_range_fail_their_rows() -> None:
    # fastavro never sees these (to_pylist raises for the whole batch); the kernel fails the rows.
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "d", "type": {"type": "int", "logicalType": "date"}},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
    batch = pa.record_batch(
        {
            "d": pa.array([0, MAX_DAY + 1, 0, 0], pa.int32()).view(pa.date32()),
            "t": pa.array([0, 0, MAX_US // 1_000_000 + 1, -(2**63)], pa.int64()).view(
                pa.timestamp("s", "UTC")
            ),
        }
    )
    encoded = Avro(schema).encode(batch)
    assert encoded.failed.tolist() == [1, 2, 3]
    assert "field 'd'" in encoded.errors[0] and "datetime range" in encoded.errors[0]
    assert "field 't'" in encoded.errors[1]
    ns = pa.record_batch(
        {
            "d": pa.array([0, 0], pa.int32()).view(pa.date32()),
            "t": pa.array([-(2**63), 5], pa.int64()).view(pa.timestamp("ns", "UTC")),
        }
    )
    encoded = Avro(schema).encode(ns)
    assert encoded.failed.tolist() == [0]  # pyarrow's NaT
    assert encoded.payloads[1].as_py() == b"\x00\x00"


def test_out_of_scope_keeps_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "long"}, {"name": "m", "type": {"type": "map", "values": "long"}}],
    }
    fmt = Avro(schema)
    assert fmt._encoder is None  # type: ignore[attr-defined]
    batch = pa.record_batch({"a": [1], "m": pa.array([[("k", 2)]], pa.map_(pa.string(), pa.int64()))})
    assert fmt.encode(batch).payloads.to_pylist() == [b"\x02\x02\x02k\x04\x00"]
    flat = Avro({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]})
    # Types the kernel does not read, missing columns and duplicate names go to fastavro.
    for batch in (
        pa.record_batch({"a": pa.array([1.0, 2.5])}),
        pa.record_batch({"b": pa.array([1])}),
        pa.RecordBatch.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]),
    ):
        assert flat._encoder.encode(batch, b"") is None  # type: ignore[attr-defined]
    encoded = flat.encode(pa.record_batch({"a": pa.array([1.0, 2.5])}))
    assert encoded.payloads.to_pylist()[0] == b"\x02"


def test_kernel_rejects_bad_arguments() -> None:
    col = pa.array([1, 2], pa.int64())
    with pytest.raises(ValueError, match="one entry per field"):
        kernel.encode([col], [3], [0, 0], [0], [(0, 0)], [(1, 1)], b"")
    with pytest.raises(ValueError, match="unknown field kind"):
        kernel.encode([col], [99], [0], [0], [(0, 0)], [(1, 1)], b"")
    with pytest.raises(TypeError, match="does not read"):
        kernel.encode([pa.array([[1]])], [3], [0], [0], [(0, 0)], [(1, 1)], b"")
    with pytest.raises(ValueError, match="differ in length"):
        kernel.encode([col, pa.array([1])], [3, 3], [0, 0], [0, 0], [(0, 0)] * 2, [(1, 1)] * 2, b"")


def test_large_batch_matches_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": "long"},
            {"name": "s", "type": ["null", "string"]},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    n = 20_000
    rng = np.random.default_rng(1)
    batch = pa.record_batch(
        {
            "a": pa.array(rng.integers(-(2**62), 2**62, n)),
            "s": pa.array([None if i % 7 == 0 else "x" * (i % 13) for i in range(n)]),
            "t": pa.array(rng.integers(-(10**15), 10**15, n), pa.int64()).view(pa.timestamp("us", "UTC")),
        }
    )
    _check(Avro(schema).encode(batch), reference.encode(schema, batch))
