"""The compiled BSON kernel against its `bson.encode` reference; every document against `bson.decode`."""

from __future__ import annotations

import datetime as dt
import decimal

import bson
import numpy as np
import pyarrow as pa
import pytest
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.decimal128 import Decimal128
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowflow._ext import bson_encode as kernel
from arrowflow._reference import bson_encode as ref

DECODE = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_MS)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
KEY = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (arrow type, strategy of non-null Python values acceptable to pa.array)
SCALARS: list[tuple[pa.DataType, st.SearchStrategy]] = [
    (pa.bool_(), st.booleans()),
    (pa.int8(), st.integers(-(2**7), 2**7 - 1)),
    (pa.int16(), st.integers(-(2**15), 2**15 - 1)),
    (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    (pa.uint8(), st.integers(0, 2**8 - 1)),
    (pa.uint16(), st.integers(0, 2**16 - 1)),
    (pa.uint32(), st.integers(0, 2**32 - 1)),
    (pa.uint64(), st.integers(0, 2**63 - 1)),
    (pa.float32(), st.floats(width=32)),
    (pa.float64(), st.floats()),
    (pa.string(), TEXT),
    (pa.large_string(), TEXT),
    (pa.binary(), st.binary(max_size=10)),
    (pa.large_binary(), st.binary(max_size=10)),
    (pa.binary(3), st.binary(min_size=3, max_size=3)),
    (pa.timestamp("s", "UTC"), st.integers(-(2**40), 2**40)),
    (pa.timestamp("ms"), st.integers(-(2**62), 2**62)),
    (pa.timestamp("us", "Europe/Paris"), st.integers(-(2**62), 2**62)),
    (pa.timestamp("ns"), st.integers(-(2**62), 2**62)),
    (pa.date32(), st.integers(-(2**31), 2**31 - 1)),
    (pa.date64(), st.integers(-(2**50), 2**50)),
    (pa.decimal128(10, 3), st.integers(-(10**10) + 1, 10**10 - 1)),
    (pa.decimal128(38, 0), st.integers(-(10**34) + 1, 10**34 - 1)),
    (pa.decimal128(20, -2), st.integers(-(10**20) + 1, 10**20 - 1)),
    (pa.null(), st.none()),
]


def _array(t: pa.DataType, values: list) -> pa.Array:
    """Build from raw integers for temporal/decimal types (every value of the type's range)."""
    if pa.types.is_timestamp(t) or pa.types.is_date64(t):
        return pa.array(values, pa.int64()).cast(t)
    if pa.types.is_date32(t):
        return pa.array(values, pa.int32()).cast(t)
    if pa.types.is_decimal(t):
        vals = [None if v is None else decimal.Decimal(v).scaleb(-t.scale) for v in values]
        return pa.array(vals, t)
    return pa.array(values, t)


@st.composite
def scalar_column(draw: st.DrawFn, n: int) -> pa.Array:
    t, values = draw(st.sampled_from(SCALARS))
    vals = draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))
    arr = _array(t, vals)
    if draw(st.booleans()) and n > 1:
        # A sliced array: buffers start before the array's first slot.
        k = draw(st.integers(0, 2))
        arr = pa.concat_arrays([_array(t, vals[:1] * k), arr]).slice(k)
    return arr


@st.composite
def column(draw: st.DrawFn, n: int, depth: int = 0) -> pa.Array:
    kind = draw(st.sampled_from(["scalar"] * 3 + (["list", "struct", "map", "fsl"] if depth < 2 else [])))
    if kind == "scalar":
        return draw(scalar_column(n))
    mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if kind == "struct":
        names = draw(st.lists(KEY, min_size=1, max_size=3, unique=True))
        children = [draw(column(n, depth + 1)) for _ in names]
        return pa.StructArray.from_arrays(children, names=names, mask=pa.array(mask, pa.bool_()))
    lengths = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    total = int(offsets[-1])
    nulls = pa.array(mask, pa.bool_())
    if kind == "list":
        values = draw(column(total, depth + 1))
        large = draw(st.booleans())
        cls = pa.LargeListArray if large else pa.ListArray
        return cls.from_arrays(pa.array(offsets, pa.int64() if large else pa.int32()), values, mask=nulls)
    if kind == "fsl":
        size = draw(st.integers(1, 2))
        values = draw(column(n * size, depth + 1))
        return pa.FixedSizeListArray.from_arrays(values, size, mask=nulls)
    keys_per_row = [draw(st.lists(KEY, min_size=k, max_size=k, unique=True)) for k in lengths]
    keys = pa.array([k for ks in keys_per_row for k in ks], pa.string())
    items = draw(column(total, depth + 1))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, items, mask=nulls)


@st.composite
def batches(draw: st.DrawFn) -> pa.RecordBatch:
    n = draw(st.integers(0, 12))
    names = draw(st.lists(KEY, min_size=1, max_size=5, unique=True))
    cols = [draw(column(n)) for _ in names]
    if draw(st.booleans()):
        ids = draw(st.lists(st.binary(min_size=12, max_size=12), min_size=n, max_size=n))
        names = ["_id", *[x for x in names if x != "_id"]][: len(cols) + 1]
        cols = [pa.array(ids, pa.binary(12)), *cols][: len(names)]
    return pa.record_batch(cols, names=names)


def _pydoc(value):
    """Normalize decoded BSON for comparison (NaN compares by identity of its text)."""
    if isinstance(value, dict):
        return {k: _pydoc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pydoc(v) for v in value]
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


@SETTINGS
@given(batches(), st.sampled_from(["null", "omit"]))
def test_kernel_matches_bson_encode(batch: pa.RecordBatch, nulls: str) -> None:
    got = kernel.encode_documents_checked(batch, nulls=nulls)
    want = ref.encode_documents_checked(batch, nulls=nulls)
    assert got[1].tolist() == want[1].tolist()
    assert got[2] == want[2]
    assert got[0].to_pylist() == want[0].to_pylist()
    assert got[0].null_count == 0
    good = np.setdiff1d(np.arange(batch.num_rows), got[1])
    # Every document decodes with bson.decode to the row's values (as the reference converts them).
    for doc, expected in zip(got[0].to_pylist(), want[0].to_pylist(), strict=True):
        assert _pydoc(bson.decode(doc, DECODE)) == _pydoc(bson.decode(expected, DECODE))
    assert len(good) == len(got[0])


def test_decoded_values_are_the_rows() -> None:
    oid = bson.ObjectId()
    batch = pa.record_batch(
        {
            "_id": pa.array([oid.binary, oid.binary], pa.binary(12)),
            "i32": pa.array([1, None], pa.int32()),
            "i64": pa.array([2**40, -1], pa.int64()),
            "f": [1.5, float("inf")],
            "s": ["a\x00b", "é"],
            "b": pa.array([b"\x00\x01", b""], pa.binary()),
            "ok": [True, False],
            "ts": pa.array([dt.datetime(2024, 5, 1, 12, 0, 0, 999_999), None], pa.timestamp("us", "UTC")),
            "d": pa.array([dt.date(1969, 12, 31), dt.date(2000, 1, 1)]),
            "dec": pa.array([decimal.Decimal("1.20"), decimal.Decimal("-0.05")], pa.decimal128(5, 2)),
            "l": pa.array([[1, None, 3], []], pa.list_(pa.int64())),
            "st": pa.array([{"x": "y", "z": None}, None], pa.struct([("x", pa.string()), ("z", pa.int8())])),
            "m": pa.array([[("a", 1)], [("b", 2), ("c", None)]], pa.map_(pa.string(), pa.int32())),
        }
    )
    docs = kernel.encode_documents(batch)
    first = bson.decode(docs[0].as_py())
    second = bson.decode(docs[1].as_py())
    assert first["_id"] == oid
    assert list(first) == batch.schema.names
    assert first["i32"] == 1 and second["i32"] is None
    assert first["i64"] == 2**40 and isinstance(first["i64"], int)
    assert first["s"] == "a\x00b" and second["s"] == "é"
    assert first["b"] == b"\x00\x01" and second["f"] == float("inf")
    assert first["ok"] is True and second["ok"] is False
    # Microseconds are floored to milliseconds (BSON datetimes are ms).
    assert first["ts"] == dt.datetime(2024, 5, 1, 12, 0, 0, 999_000)
    assert first["d"] == dt.datetime(1969, 12, 31)
    assert first["dec"] == Decimal128("1.20") and second["dec"].to_decimal() == decimal.Decimal("-0.05")
    assert first["l"] == [1, None, 3] and second["l"] == []
    assert first["st"] == {"x": "y", "z": None} and second["st"] is None
    assert first["m"] == {"a": 1} and second["m"] == {"b": 2, "c": None}
    omitted = bson.decode(kernel.encode_documents(batch, nulls="omit")[1].as_py())
    assert "i32" not in omitted and "st" not in omitted and omitted["m"] == {"b": 2}
    # Null list elements stay (an array position cannot be omitted).
    assert bson.decode(kernel.encode_documents(batch, nulls="omit")[0].as_py())["l"] == [1, None, 3]


def test_decimal128_edges_match_pymongo() -> None:
    values = [
        decimal.Decimal(10**34 - 1),  # the largest coefficient
        decimal.Decimal(-(10**34) + 1),
        decimal.Decimal("1" + "0" * 37),  # 38 digits reducible by trailing zeros
        decimal.Decimal(0),
    ]
    batch = pa.record_batch({"d": pa.array(values, pa.decimal128(38, 0))})
    docs = kernel.encode_documents(batch)
    for doc, v in zip(docs.to_pylist(), values, strict=True):
        assert doc == bson.encode({"d": Decimal128(v)})
        assert bson.decode(doc)["d"].to_decimal() == v
    inexact = pa.record_batch({"d": pa.array([decimal.Decimal(10**37 + 1)], pa.decimal128(38, 0))})
    with pytest.raises(ValueError, match="'d', row 0: decimal value has more than 34"):
        kernel.encode_documents(inexact)


def test_row_errors_are_reported_or_collected() -> None:
    batch = pa.record_batch(
        {
            "u": pa.array([1, 2**64 - 1, 3], pa.uint64()),
            "m": pa.array([[("k", 1)], [("k", 2)], [("bad\x00", 3)]], pa.map_(pa.string(), pa.int8())),
        }
    )
    with pytest.raises(ValueError, match="column 'u', row 1: uint64"):
        kernel.encode_documents(batch)
    docs, failed, errors = kernel.encode_documents_checked(batch)
    assert failed.tolist() == [1, 2]
    assert "uint64" in errors[0] and "NUL" in errors[1]
    assert [bson.decode(d) for d in docs.to_pylist()] == [{"u": 1, "m": {"k": 1}}]


def test_options_and_type_errors() -> None:
    oid = bson.ObjectId()
    batch = pa.record_batch(
        {
            "key": pa.array([oid.binary], pa.binary(12)),
            "_id": pa.array([b"x" * 12], pa.binary(12)),
            "v": pa.array(["a"]).dictionary_encode(),
        }
    )
    doc = bson.decode(
        kernel.encode_documents(batch, object_id="key", field_names={"key": "k"}).to_pylist()[0]
    )
    assert doc == {"k": oid, "_id": b"x" * 12, "v": "a"}
    doc = bson.decode(kernel.encode_documents(batch, columns=["v", "_id"]).to_pylist()[0])
    assert list(doc) == ["v", "_id"] and doc["_id"] == bson.ObjectId(b"x" * 12)
    with pytest.raises(KeyError):
        kernel.encode_documents(batch, columns=["nope"])
    with pytest.raises(TypeError, match="must be fixed_size_binary"):
        kernel.encode_documents(batch, object_id="v")
    with pytest.raises(TypeError, match="does not support"):
        kernel.encode_documents(pa.record_batch({"t": pa.array([1], pa.time32("s"))}))
    with pytest.raises(TypeError, match="string map keys"):
        kernel.encode_documents(pa.record_batch({"m": pa.array([[(1, 1)]], pa.map_(pa.int8(), pa.int8()))}))
    with pytest.raises(ValueError, match="NUL"):
        kernel.encode_documents(pa.record_batch({"a\x00": [1]}))
    with pytest.raises(ValueError, match="nulls"):
        kernel.encode_documents(batch, nulls="drop")


def test_large_batch_offsets_and_slices() -> None:
    n = 50_000
    batch = pa.record_batch({"i": np.arange(n), "s": pa.array(np.arange(n).astype(str))}).slice(7, n - 14)
    docs = kernel.encode_documents(batch)
    assert len(docs) == n - 14
    assert bson.decode(docs[0].as_py()) == {"i": 7, "s": "7"}
    assert bson.decode(docs[len(docs) - 1].as_py()) == {"i": n - 8, "s": str(n - 8)}
    sizes = np.diff(np.frombuffer(docs.buffers()[1], dtype=np.int32))
    heads = np.frombuffer(docs.buffers()[2], dtype=np.uint8)
    # Each document starts with its own length (the int32 BSON header).
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    assert (heads[starts] == (sizes & 0xFF)).all()
