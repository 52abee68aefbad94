"""The JSON kernel's quoted fields (``QUOTE_KEY`` metadata: numbers written as JSON strings) and its
one-byte ``terminator``, against the pure-Python reference, at the top level and inside structs (the
DynamoDB ``{"N": "..."}`` / BatchWriteItem entry path)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_json_kernel import _values

from arrowflow._ext import json_encode as kernel
from arrowflow._reference import json_encode as reference

QUOTED = {kernel.QUOTE_KEY: b"1"}
_QUOTABLE = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint64(),
    pa.float32(),
    pa.float64(),
    pa.bool_(),
    pa.decimal128(18, 4),
]


@st.composite
def _quoted_batches(draw: st.DrawFn) -> pa.RecordBatch:
    n = draw(st.integers(0, 10))
    types = draw(st.lists(st.sampled_from(_QUOTABLE), min_size=1, max_size=3))
    arrays = [pa.array(draw(st.lists(_values(t), min_size=n, max_size=n)), type=t) for t in types]
    quote = [draw(st.booleans()) for _ in types]
    fields = [
        pa.field(f"f{k}", t, metadata=QUOTED if q else None)
        for k, (t, q) in enumerate(zip(types, quote, strict=True))
    ]
    inner = pa.StructArray.from_arrays(arrays, fields=fields)
    schema = pa.schema([pa.field("s", inner.type), *fields])
    return pa.RecordBatch.from_arrays([inner, *arrays], schema=schema)


@settings(max_examples=150, deadline=None)
@given(
    batch=_quoted_batches(), nulls=st.sampled_from(["null", "omit"]), nan=st.sampled_from(["null", "error"])
)
def test_quoted_fields_equal_reference(batch: pa.RecordBatch, nulls: str, nan: str) -> None:
    try:
        expected = reference.encode_rows(batch, nulls=nulls, nan=nan).to_pylist()
    except ValueError as exc:
        with pytest.raises(ValueError) as got:
            kernel.encode_rows(batch, nulls=nulls, nan=nan)
        assert str(got.value) == str(exc)
        return
    assert kernel.encode_rows(batch, nulls=nulls, nan=nan).to_pylist() == expected
    assert kernel.encode_rows(batch, nulls=nulls, nan=nan, threads=2).to_pylist() == expected
    # terminator: one byte appended to every document, inside its entry.
    with_comma = reference.encode_rows(batch, nulls=nulls, nan=nan, terminator=b",").to_pylist()
    assert with_comma == [d + b"," for d in expected]
    assert (
        kernel.encode_rows(batch, nulls=nulls, nan=nan, terminator=b",", threads=2).to_pylist() == with_comma
    )


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), max_size=20))
def test_quoted_text_is_the_plain_text_in_quotes(values: list[Any]) -> None:
    arr = pa.array(values, pa.float64())
    plain = kernel.encode_rows(pa.record_batch({"v": arr})).to_pylist()
    quoted = kernel.encode_rows(
        pa.RecordBatch.from_arrays([arr], schema=pa.schema([pa.field("v", pa.float64(), metadata=QUOTED)]))
    ).to_pylist()
    for p, q in zip(plain, quoted, strict=True):
        value = json.loads(p)["v"]
        assert json.loads(q)["v"] == (None if value is None else p[5:-1].decode())
        if value is not None:
            assert float(json.loads(q)["v"]) == value


def test_terminator_must_be_one_byte() -> None:
    batch = pa.record_batch({"a": [1]})
    for impl in (kernel, reference):
        with pytest.raises(ValueError, match="terminator"):
            impl.encode_rows(batch, terminator=b",,")


def test_quoting_a_string_field_is_refused() -> None:
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["a"])], schema=pa.schema([pa.field("v", pa.string(), metadata=QUOTED)])
    )
    with pytest.raises(TypeError, match="quoted"):
        kernel.encode_rows(batch)
    with pytest.raises(TypeError, match="quoted"):
        reference.encode_rows(batch)
