"""The JSON encoding kernel (``arrowflow._ext.json_encode``) against golden bytes and its Python reference.

The kernel must produce byte-for-byte what ``arrowflow._reference.json_encode`` produces, and every
document must parse back (``json.loads``) to the row as ``to_pylist`` shows it, floats exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from decimal import Context, Decimal
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowflow._ext import json_encode as kernel
from arrowflow._reference import json_encode as reference


def docs(batch: pa.RecordBatch, **kwargs: Any) -> list[bytes]:
    out = kernel.encode_rows(batch, **kwargs)
    assert isinstance(out, pa.BinaryArray)
    assert out.null_count == 0
    return out.to_pylist()


def same_as_reference(batch: pa.RecordBatch, **kwargs: Any) -> list[bytes]:
    got = docs(batch, **kwargs)
    assert got == reference.encode_rows(batch, **kwargs).to_pylist()
    nd = kernel.encode_ndjson(batch, **kwargs)
    assert nd.to_pybytes() == b"".join(d + b"\n" for d in got)
    assert nd.to_pybytes() == reference.encode_ndjson(batch, **kwargs).to_pybytes()
    return got


def one(arr: pa.Array, **kwargs: Any) -> list[bytes]:
    return same_as_reference(pa.record_batch({"v": arr}), **kwargs)


def test_module_is_compiled() -> None:
    assert kernel.__file__.endswith((".so", ".pyd"))


# ---------------------------------------------------------------- golden bytes per type

GOLDEN: list[tuple[str, pa.Array, dict[str, Any], list[bytes]]] = [
    (
        "int64",
        pa.array([0, -1, 2**63 - 1, -(2**63), None]),
        {},
        [b'{"v":0}', b'{"v":-1}', b'{"v":9223372036854775807}', b'{"v":-9223372036854775808}', b'{"v":null}'],
    ),
    ("uint64", pa.array([0, 2**64 - 1], pa.uint64()), {}, [b'{"v":0}', b'{"v":18446744073709551615}']),
    ("int8", pa.array([-128, 127], pa.int8()), {}, [b'{"v":-128}', b'{"v":127}']),
    (
        "float64",
        pa.array([1e16, 0.1, 1.5e-07, -0.0, 100.0, 1e-05, 0.0001, 5e-324, 1.7976931348623157e308]),
        {},
        [
            b'{"v":1e+16}',
            b'{"v":0.1}',
            b'{"v":1.5e-07}',
            b'{"v":-0.0}',
            b'{"v":100.0}',
            b'{"v":1e-05}',
            b'{"v":0.0001}',
            b'{"v":5e-324}',
            b'{"v":1.7976931348623157e+308}',
        ],
    ),
    ("float32 widened", pa.array([0.1, 2.5], pa.float32()), {}, [b'{"v":0.10000000149011612}', b'{"v":2.5}']),
    ("float16", pa.array([1.5, -0.25], pa.float16()), {}, [b'{"v":1.5}', b'{"v":-0.25}']),
    (
        "nan null",
        pa.array([math.nan, math.inf, -math.inf, 1.0]),
        {"nan": "null"},
        [b'{"v":null}', b'{"v":null}', b'{"v":null}', b'{"v":1.0}'],
    ),
    ("bool", pa.array([True, False, None]), {}, [b'{"v":true}', b'{"v":false}', b'{"v":null}']),
    (
        "escapes",
        pa.array(['q"b\\s/', "\n\r\t\b\f", "\x00\x01\x1f\x7f", "é€😀\u2028"]),
        {},
        [
            b'{"v":"q\\"b\\\\s/"}',
            b'{"v":"\\n\\r\\t\\b\\f"}',
            b'{"v":"\\u0000\\u0001\\u001f\x7f"}',
            '{"v":"é€😀\u2028"}'.encode(),
        ],
    ),
    (
        "long escape",
        pa.array(['abcdefgh"ijklmnop\\qrstuvwx\x02yz']),
        {},
        [b'{"v":"abcdefgh\\"ijklmnop\\\\qrstuvwx\\u0002yz"}'],
    ),
    ("large_string", pa.array(["a", None], pa.large_string()), {}, [b'{"v":"a"}', b'{"v":null}']),
    (
        "string_view",
        pa.array(["short", 'a longer string "view"'], pa.string_view()),
        {},
        [b'{"v":"short"}', b'{"v":"a longer string \\"view\\""}'],
    ),
    (
        "binary",
        pa.array([b"", b"f", b"fo", b"foo", b"foob", b"\xff\x00"]),
        {},
        [
            b'{"v":""}',
            b'{"v":"Zg=="}',
            b'{"v":"Zm8="}',
            b'{"v":"Zm9v"}',
            b'{"v":"Zm9vYg=="}',
            b'{"v":"/wA="}',
        ],
    ),
    ("fixed_size_binary", pa.array([b"abc"], pa.binary(3)), {}, [b'{"v":"YWJj"}']),
    ("large_binary", pa.array([b"abcd"], pa.large_binary()), {}, [b'{"v":"YWJjZA=="}']),
    (
        "timestamp s",
        pa.array([0, -1], pa.timestamp("s")),
        {},
        [b'{"v":"1970-01-01T00:00:00"}', b'{"v":"1969-12-31T23:59:59"}'],
    ),
    (
        "timestamp ms tz",
        pa.array([1_700_000_000_123], pa.timestamp("ms", tz="America/New_York")),
        {},
        [b'{"v":"2023-11-14T22:13:20.123Z"}'],
    ),
    (
        "timestamp us",
        pa.array([1_700_000_000_000_001], pa.timestamp("us")),
        {},
        [b'{"v":"2023-11-14T22:13:20.000001"}'],
    ),
    (
        "timestamp ns tz",
        pa.array([-1], pa.timestamp("ns", tz="UTC")),
        {},
        [b'{"v":"1969-12-31T23:59:59.999999999Z"}'],
    ),
    (
        "timestamp far years",
        pa.array([-62167219200, 253402300800], pa.timestamp("s")),
        {},
        [b'{"v":"0000-01-01T00:00:00"}', b'{"v":"+10000-01-01T00:00:00"}'],
    ),
    (
        "date32",
        pa.array([0, 11016, -1], pa.date32()),
        {},
        [b'{"v":"1970-01-01"}', b'{"v":"2000-02-29"}', b'{"v":"1969-12-31"}'],
    ),
    ("date64", pa.array([951782400000], pa.date64()), {}, [b'{"v":"2000-02-29"}']),
    ("time32 s", pa.array([3661], pa.time32("s")), {}, [b'{"v":"01:01:01"}']),
    ("time32 ms", pa.array([3661001], pa.time32("ms")), {}, [b'{"v":"01:01:01.001"}']),
    ("time64 us", pa.array([86399999999], pa.time64("us")), {}, [b'{"v":"23:59:59.999999"}']),
    ("time64 ns", pa.array([1], pa.time64("ns")), {}, [b'{"v":"00:00:00.000000001"}']),
    ("duration", pa.array([-5, 7], pa.duration("ms")), {}, [b'{"v":-5}', b'{"v":7}']),
    (
        "decimal128",
        pa.array([Decimal("123.4500"), Decimal("-0.0050"), Decimal("0")], pa.decimal128(10, 4)),
        {},
        [b'{"v":123.4500}', b'{"v":-0.0050}', b'{"v":0.0000}'],
    ),
    ("decimal128 negative scale", pa.array([Decimal("5E+2")], pa.decimal128(3, -2)), {}, [b'{"v":500}']),
    (
        "decimal256",
        pa.array([Decimal("-" + "9" * 74 + ".5")], pa.decimal256(76, 2)),
        {},
        [b'{"v":-' + b"9" * 74 + b".50}"],
    ),
    ("list", pa.array([[1, None, 3], [], None]), {}, [b'{"v":[1,null,3]}', b'{"v":[]}', b'{"v":null}']),
    ("large_list", pa.array([["a"]], pa.large_list(pa.string())), {}, [b'{"v":["a"]}']),
    (
        "fixed_size_list",
        pa.array([[1, 2], [3, None]], pa.list_(pa.int16(), 2)),
        {},
        [b'{"v":[1,2]}', b'{"v":[3,null]}'],
    ),
    ("struct", pa.array([{"a": 1, "b": None}, None]), {}, [b'{"v":{"a":1,"b":null}}', b'{"v":null}']),
    (
        "struct omit",
        pa.array([{"a": 1, "b": None}, None, {"a": None, "b": None}]),
        {"nulls": "omit"},
        [b'{"v":{"a":1}}', b"{}", b'{"v":{}}'],
    ),
    (
        "map",
        pa.array([[("k", 1), ("z", None)], []], pa.map_(pa.string(), pa.int64())),
        {},
        [b'{"v":{"k":1,"z":null}}', b'{"v":{}}'],
    ),
    (
        "map int keys omit",
        pa.array([[(1, 1.5), (2, None)]], pa.map_(pa.int32(), pa.float64())),
        {"nulls": "omit"},
        [b'{"v":{"1":1.5}}'],
    ),
    (
        "dictionary",
        pa.array(["x", None, "y", "x"]).dictionary_encode(),
        {},
        [b'{"v":"x"}', b'{"v":null}', b'{"v":"y"}', b'{"v":"x"}'],
    ),
    ("null type", pa.array([None, None]), {}, [b'{"v":null}', b'{"v":null}']),
    ("null type omit", pa.array([None]), {"nulls": "omit"}, [b"{}"]),
    ("sliced list", pa.array([[1], [2, 3], [4]]).slice(1), {}, [b'{"v":[2,3]}', b'{"v":[4]}']),
    ("sliced struct", pa.array([{"a": 1}, {"a": 2}, None]).slice(1), {}, [b'{"v":{"a":2}}', b'{"v":null}']),
    (
        "sliced fixed_size_list",
        pa.array([[1, 2], [3, 4]], pa.list_(pa.int8(), 2)).slice(1),
        {},
        [b'{"v":[3,4]}'],
    ),
    (
        "sliced map",
        pa.array([[("a", 1)], [("b", 2)]], pa.map_(pa.string(), pa.int8())).slice(1),
        {},
        [b'{"v":{"b":2}}'],
    ),
    (
        "sliced dictionary",
        pa.array(["x", "y", None]).dictionary_encode().slice(1),
        {},
        [b'{"v":"y"}', b'{"v":null}'],
    ),
    (
        "sliced bool",
        pa.array([True, False, True, None, False, False, True, False, True]).slice(7),
        {},
        [b'{"v":false}', b'{"v":true}'],
    ),
]


@pytest.mark.parametrize(("array", "kwargs", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_golden(array: pa.Array, kwargs: dict[str, Any], expected: list[bytes]) -> None:
    assert one(array, **kwargs) == expected


def test_keys_follow_columns_and_field_names() -> None:
    batch = pa.record_batch({"a": [1, None], "b": ["x", "y"], "c": [True, False]})
    assert same_as_reference(batch, columns=["c", "a"], field_names={"a": 'A"1'}) == [
        b'{"c":true,"A\\"1":1}',
        b'{"c":false,"A\\"1":null}',
    ]
    assert same_as_reference(batch, nulls="omit") == [b'{"a":1,"b":"x","c":true}', b'{"b":"y","c":false}']
    assert docs(batch, columns=[]) == [b"{}", b"{}"]


def test_empty_batch() -> None:
    batch = pa.record_batch({"a": pa.array([], pa.int64())})
    assert docs(batch) == []
    assert kernel.encode_ndjson(batch).size == 0


def test_output_is_one_data_buffer_and_offsets() -> None:
    batch = pa.record_batch({"a": pa.array(range(1000)), "s": pa.array([f"s{i}" for i in range(1000)])})
    out = kernel.encode_rows(batch)
    validity, offsets, data = out.buffers()
    assert validity is None
    assert np.frombuffer(offsets, np.int32)[-1] == data.size
    assert out[999].as_py() == b'{"a":999,"s":"s999"}'


@pytest.mark.parametrize("nan_value", [math.nan, math.inf, -math.inf])
def test_nan_error_names_column_and_row(nan_value: float) -> None:
    values = [0.5] * 100
    values[37] = nan_value
    batch = pa.record_batch({"ok": pa.array(range(100)), "bad col": pa.array(values)})
    with pytest.raises(ValueError, match=r"column 'bad col', row 37") as got:
        kernel.encode_rows(batch)
    with pytest.raises(ValueError) as expected:
        reference.encode_rows(batch)
    assert str(got.value) == str(expected.value)
    with pytest.raises(ValueError, match="row 37"):
        kernel.encode_ndjson(batch)


def test_nan_in_nested_and_under_null_parent() -> None:
    nested = pa.array([[1.0], None, [math.nan]])
    with pytest.raises(ValueError, match=r"column 'v', row 2"):
        kernel.encode_rows(pa.record_batch({"v": nested}))
    # A NaN hidden under a null struct row is never written, so it is not an error.
    struct = pa.StructArray.from_arrays([pa.array([1.0, math.nan])], ["x"], mask=pa.array([False, True]))
    assert one(struct) == [b'{"v":{"x":1.0}}', b'{"v":null}']


def test_nan_error_row_in_second_thread_range() -> None:
    values = np.ones(100_000)
    values[99_000] = np.nan
    batch = pa.record_batch({"f": pa.array(values)})
    with pytest.raises(ValueError, match=r"column 'f', row 99000"):
        kernel.encode_rows(batch, threads=2)


def test_bad_arguments() -> None:
    batch = pa.record_batch({"a": [1]})
    with pytest.raises(ValueError, match="nulls"):
        kernel.encode_rows(batch, nulls="skip")
    with pytest.raises(ValueError, match="nan"):
        kernel.encode_rows(batch, nan="zero")
    with pytest.raises(ValueError, match="threads"):
        kernel.encode_rows(batch, threads=-1)
    with pytest.raises(KeyError, match="nope"):
        kernel.encode_rows(batch, columns=["nope"])
    with pytest.raises(TypeError, match="RecordBatch"):
        kernel.encode_rows(pa.table({"a": [1]}))  # type: ignore[arg-type]
    union = pa.UnionArray.from_sparse(pa.array([0], pa.int8()), [pa.array([1])])
    with pytest.raises(TypeError, match="does not support"):
        kernel.encode_rows(pa.record_batch({"u": union}))
    nested_key = pa.array([[([1], 1)]], pa.map_(pa.list_(pa.int64()), pa.int64()))
    with pytest.raises(TypeError, match="map keys"):
        kernel.encode_rows(pa.record_batch({"m": nested_key}))


def _wide_batch(n: int, seed: int) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    nulls = rng.random(n) < 0.1
    words = np.array(["alpha", 'q"uote', "tab\there", "ünï", "x" * 30, ""], dtype=object)
    return pa.record_batch(
        {
            "i64": pa.array(rng.integers(-(2**62), 2**62, n), mask=nulls),
            "f64": pa.array(rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)),
            "s": pa.array(words[rng.integers(0, len(words), n)].tolist(), mask=nulls),
            "b": pa.array(rng.random(n) < 0.5),
            "ts": pa.array(rng.integers(0, 2**50, n), pa.timestamp("us", tz="UTC")),
            "i32": pa.array(rng.integers(-(2**31), 2**31, n, dtype=np.int32)),
            "l": pa.array([[int(x), None] if x % 3 else None for x in rng.integers(0, 100, n)]),
        }
    )


def test_wide_batch_and_slices_match_reference() -> None:
    batch = _wide_batch(3000, seed=1)
    same_as_reference(batch)
    same_as_reference(batch.slice(1234, 777), nulls="omit")
    same_as_reference(batch.slice(2999))


def test_threaded_output_equals_single_thread() -> None:
    batch = _wide_batch(70_000, seed=2)
    single = kernel.encode_rows(batch, threads=1)
    auto = kernel.encode_rows(batch)  # >= 64k rows: two threads
    assert auto.equals(single)
    assert kernel.encode_rows(batch, threads=3).equals(single)
    assert kernel.encode_rows(batch.slice(5, 69_000), threads=2).equals(single.slice(5, 69_000))
    nd = kernel.encode_ndjson(batch)
    assert nd.to_pybytes() == b"".join(d + b"\n" for d in single.to_pylist())
    sample = reference.encode_rows(batch.slice(65_530, 20)).to_pylist()
    assert single.slice(65_530, 20).to_pylist() == sample


def test_float_text_is_repr_and_round_trips() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**64, 200_000, dtype=np.uint64)
    values = bits.view(np.float64)
    values = values[np.isfinite(values)]
    special = [0.1, 0.3, 1 / 3, 2.0**-1074, 2.0**-1022, 9007199254740993.0, 1e23, 123456789012345680.0]
    values = np.concatenate([values, special, [10.0**e for e in range(-300, 300)]])
    out = kernel.encode_rows(pa.record_batch({"x": pa.array(values)})).to_pylist()
    for value, doc in zip(values.tolist(), out, strict=True):
        assert doc == b'{"x":' + repr(value).encode() + b"}"
        assert json.loads(doc)["x"] == value


def test_ndjson_parses_back_to_rows() -> None:
    batch = pa.record_batch(
        {
            "i": pa.array([1, None, 3]),
            "f": pa.array([0.1, 2.5e300, None]),
            "s": pa.array(["a\u0000b", None, "𝄞"]),
            "st": pa.array([{"x": [1, 2]}, None, {"x": None}]),
        }
    )
    lines = kernel.encode_ndjson(batch).to_pybytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == batch.to_pylist()


def test_binary_and_timestamps_parse_back() -> None:
    ts = [dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone.utc)]
    batch = pa.record_batch({"b": pa.array([b"\x00\xffdata"]), "t": pa.array(ts, pa.timestamp("us", "UTC"))})
    row = json.loads(docs(batch)[0])
    assert base64.b64decode(row["b"]) == b"\x00\xffdata"
    assert dt.datetime.fromisoformat(row["t"].replace("Z", "+00:00")) == ts[0]


# ---------------------------------------------------------------- property tests: random schemas and values

_LEAF_TYPES = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint32(),
    pa.uint64(),
    pa.float16(),
    pa.float32(),
    pa.float64(),
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.string_view(),
    pa.binary(),
    pa.large_binary(),
    pa.binary(2),
    pa.timestamp("s"),
    pa.timestamp("ms", "UTC"),
    pa.timestamp("us"),
    pa.timestamp("ns", "Asia/Tokyo"),
    pa.date32(),
    pa.date64(),
    pa.time32("ms"),
    pa.time64("ns"),
    pa.duration("us"),
    pa.decimal128(18, 4),
    pa.decimal256(40, 0),
    pa.decimal128(5, -1),
    pa.null(),
]
_INT_RANGES = {
    8: (-(2**7), 2**7 - 1),
    16: (-(2**15), 2**15 - 1),
    32: (-(2**31), 2**31 - 1),
    64: (-(2**63), 2**63 - 1),
}
_NESTED = st.deferred(lambda: _types)


def _struct_of(children: list[pa.DataType]) -> pa.DataType:
    return pa.struct([(f'f{k}\t"', t) for k, t in enumerate(children)])


_types: st.SearchStrategy[pa.DataType] = st.recursive(
    st.sampled_from(_LEAF_TYPES),
    lambda inner: st.one_of(
        inner.map(pa.list_),
        inner.map(pa.large_list),
        inner.map(lambda t: pa.list_(t, 2)),
        st.lists(inner, min_size=1, max_size=3).map(_struct_of),
        inner.map(lambda t: pa.map_(pa.string(), t)),
        inner.map(lambda t: pa.map_(pa.int32(), t)),
    ),
    max_leaves=4,
)


def _values(t: pa.DataType) -> st.SearchStrategy[Any]:
    """Python values (or None) that pa.array(..., type=t) accepts."""
    if pa.types.is_null(t):
        return st.none()
    if pa.types.is_boolean(t):
        base: st.SearchStrategy[Any] = st.booleans()
    elif pa.types.is_integer(t):
        lo, hi = _INT_RANGES[t.bit_width]
        base = st.integers(0, 2 * hi + 1) if pa.types.is_unsigned_integer(t) else st.integers(lo, hi)
    elif pa.types.is_floating(t):
        widths: dict[int, Literal[16, 32, 64]] = {16: 16, 32: 32, 64: 64}
        base = st.floats(width=widths[t.bit_width], allow_nan=True, allow_infinity=True)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        base = st.text(max_size=30)
    elif pa.types.is_fixed_size_binary(t) and not pa.types.is_decimal(t):
        base = st.binary(min_size=t.byte_width, max_size=t.byte_width)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        base = st.binary(max_size=20)
    elif pa.types.is_timestamp(t):
        base = st.integers(-(2**40), 2**40)
    elif pa.types.is_date32(t):
        base = st.integers(-(10**6), 10**6)
    elif pa.types.is_date64(t):
        base = st.integers(-(10**6), 10**6).map(lambda d: d * 86_400_000)
    elif pa.types.is_time32(t):
        base = st.integers(0, 86_400_000 - 1)
    elif pa.types.is_time64(t):
        base = st.integers(0, 86_400 * 10**9 - 1)
    elif pa.types.is_duration(t):
        base = st.integers(-(2**62), 2**62)
    elif pa.types.is_decimal(t):
        scale: int = t.scale
        base = st.integers(-(10**t.precision) + 1, 10**t.precision - 1).map(
            # scaleb rounds to the context precision (28 digits by default): keep every digit.
            lambda u: Decimal(u).scaleb(-scale, context=Context(prec=100))
        )
    elif pa.types.is_fixed_size_list(t):
        base = st.lists(_values(t.value_type), min_size=t.list_size, max_size=t.list_size)
    elif pa.types.is_map(t):
        base = st.lists(
            st.tuples(_values(t.key_type).filter(lambda k: k is not None), _values(t.item_type)), max_size=3
        )
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        base = st.lists(_values(t.value_type), max_size=3)
    elif pa.types.is_struct(t):
        base = st.fixed_dictionaries({t.field(k).name: _values(t.field(k).type) for k in range(t.num_fields)})
    else:  # pragma: no cover - every generated type is handled above
        raise AssertionError(t)
    return st.one_of(st.none(), base) if not pa.types.is_null(t) else base


@st.composite
def _batches(draw: st.DrawFn) -> pa.RecordBatch:
    n = draw(st.integers(0, 12))
    types = draw(st.lists(_types, min_size=1, max_size=4))
    arrays = {}
    for k, t in enumerate(types):
        values = draw(st.lists(_values(t), min_size=n + 3, max_size=n + 3))
        arr = pa.array(values, type=t)
        if pa.types.is_string(t) and draw(st.booleans()):
            arr = arr.dictionary_encode()
        arrays[f"c{k}"] = arr
    batch = pa.record_batch(arrays)
    start = draw(st.integers(0, 3))
    return batch.slice(start, n)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=_batches(), nulls=st.sampled_from(["null", "omit"]), nan=st.sampled_from(["null", "error"]))
def test_kernel_equals_reference(batch: pa.RecordBatch, nulls: str, nan: str) -> None:
    try:
        expected = reference.encode_rows(batch, nulls=nulls, nan=nan).to_pylist()
    except ValueError as exc:
        with pytest.raises(ValueError) as got:
            kernel.encode_rows(batch, nulls=nulls, nan=nan)
        assert str(got.value) == str(exc)
        return
    assert kernel.encode_rows(batch, nulls=nulls, nan=nan).to_pylist() == expected
    assert kernel.encode_rows(batch, nulls=nulls, nan=nan, threads=2).to_pylist() == expected
    assert kernel.encode_ndjson(batch, nulls=nulls, nan=nan).to_pybytes() == b"".join(
        d + b"\n" for d in expected
    )


_JSON_NATIVE = st.recursive(
    st.sampled_from(
        [pa.int64(), pa.int32(), pa.uint64(), pa.float64(), pa.bool_(), pa.string(), pa.large_string()]
    ),
    lambda inner: st.one_of(inner.map(pa.list_), st.lists(inner, min_size=1, max_size=3).map(_struct_of)),
    max_leaves=3,
)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_documents_parse_back_to_rows(data: st.DataObject) -> None:
    types = data.draw(st.lists(_JSON_NATIVE, min_size=1, max_size=3))
    n = data.draw(st.integers(1, 8))
    arrays = {}
    for k, t in enumerate(types):
        values = data.draw(st.lists(_values(t), min_size=n, max_size=n))
        arrays[f"k{k}"] = pa.array(values, type=t)
    batch = pa.record_batch(arrays)
    rows = batch.to_pylist()

    def finite(v: Any) -> Any:  # nan="null" writes null for NaN/Infinity
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [finite(x) for x in v]
        if isinstance(v, dict):
            return {key: finite(x) for key, x in v.items()}
        return v

    parsed = [json.loads(d) for d in docs(batch, nan="null")]
    assert parsed == [finite(r) for r in rows]


# Hostile Arrow input (issue 19): the kernel refuses what it would otherwise index out of range or
# copy as non-UTF-8 text, with a ValueError naming the column.


@pytest.mark.parametrize("threads", [1, 2])
def test_nul_terminator_is_written(threads: int) -> None:
    batch = pa.record_batch({"a": [1, 2, 3]})
    rows = kernel.encode_rows(batch, terminator=b"\x00", threads=threads).to_pylist()
    assert rows == [b'{"a":1}\x00', b'{"a":2}\x00', b'{"a":3}\x00']
    # the reference agrees (and an empty terminator still appends nothing)
    assert reference.encode_rows(batch, terminator=b"\x00").to_pylist() == rows
    assert kernel.encode_rows(batch, terminator=b"").to_pylist() == [r[:-1] for r in rows]


@pytest.mark.parametrize("nulls", ["null", "omit"])
def test_dictionary_index_out_of_range_is_refused(nulls: str) -> None:
    indices = pa.array([0, 1_000_000_000, 0], pa.int32())
    column = pa.DictionaryArray.from_arrays(indices, pa.array(["x"]), safe=False)
    with pytest.raises(ValueError, match=r"column 'd': invalid Arrow data .*out of bounds"):
        kernel.encode_rows(pa.record_batch({"d": column}), nulls=nulls)
    # inside a list too (the validation is recursive)
    nested = pa.ListArray.from_arrays(pa.array([0, 3], pa.int32()), column)
    with pytest.raises(ValueError, match=r"column 'l': invalid Arrow data"):
        kernel.encode_rows(pa.record_batch({"l": nested}))


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string()])
def test_invalid_utf8_string_is_refused(text_type: pa.DataType) -> None:
    raw = pa.array([b"ok", b"\xff\xfe", b"x"], pa.binary() if text_type == pa.string() else pa.large_binary())
    column = raw.view(text_type)
    with pytest.raises(ValueError, match=r"column 's': invalid Arrow data \(Invalid UTF8"):
        kernel.encode_rows(pa.record_batch({"s": column}))
    # the same bytes as binary are fine (base64): nothing is refused that was valid before
    assert json.loads(kernel.encode_rows(pa.record_batch({"b": raw}))[1].as_py()) == {"b": "//4="}


def test_string_offsets_past_the_data_are_refused() -> None:
    # from_buffers' cheap validation sees only the first and last offsets: the middle one points
    # a gigabyte past the two data bytes (the kernel would copy from there).
    offsets = pa.py_buffer(np.array([0, 1 << 30, 2], np.int32).tobytes())
    column = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok")])
    with pytest.raises(ValueError, match=r"column 's': invalid Arrow data"):
        kernel.encode_rows(pa.record_batch({"s": column}))
