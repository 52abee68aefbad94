"""Json: round trips through the compiled kernel and pyarrow's reader, framing rules, NaN rows."""

from __future__ import annotations

import datetime
import decimal

import numpy as np
import pyarrow as pa
import pytest
from format_samples import eight_columns
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json, for_name
from arrowflow.formats.json import b64decode, nonfinite_rows


def test_round_trip_eight_columns(batch8: pa.RecordBatch) -> None:
    fmt = Json(batch8.schema)
    encoded = fmt.encode(batch8)
    assert len(encoded.payloads) == batch8.num_rows
    assert encoded.failed.size == 0 and encoded.payloads.null_count == 0
    decoded = fmt.decode(encoded.payloads)
    assert decoded.batch.equals(batch8)
    assert np.array_equal(decoded.row_indices, np.arange(batch8.num_rows))


def test_round_trip_nested_and_converted_types() -> None:
    schema = pa.schema(
        [
            ("s", pa.struct([("x", pa.list_(pa.int64())), ("y", pa.string())])),
            ("l", pa.list_(pa.struct([("a", pa.float64())]))),
            ("bin", pa.binary()),
            ("d", pa.date32()),
            ("dec", pa.decimal128(12, 3)),
            ("tz", pa.timestamp("ms", tz="UTC")),
            ("ll", pa.large_list(pa.int32())),
        ]
    )
    rows = [
        {
            "s": {"x": [1, None, 3], "y": 'é"q'},
            "l": [{"a": 1.5}, None],
            "bin": b"\x00\xff\n",
            "d": datetime.date(2024, 2, 29),
            "dec": decimal.Decimal("123.456"),
            "tz": datetime.datetime(2024, 1, 1, 12, 0, 0, 123000, tzinfo=datetime.timezone.utc),
            "ll": [7],
        },
        {"s": None, "l": [], "bin": b"", "d": None, "dec": None, "tz": None, "ll": None},
    ]
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    fmt = Json(schema)
    decoded = fmt.decode(fmt.encode(batch).payloads)
    assert decoded.batch.to_pylist() == batch.to_pylist()
    assert decoded.batch.schema == schema


def test_bad_payloads_are_isolated_and_indices_map_back(batch8: pa.RecordBatch) -> None:
    fmt = Json(batch8.schema)
    good = fmt.encode(batch8).payloads.to_pylist()
    bad = [
        b"not json",
        b"",
        None,
        b'{"id": 1}{"id": 2}',
        b"[1,2]",
        b'{"id": "x"}',
        b'{"name": "\xff"}',
        b"  \n ",
    ]
    payloads: list[bytes | None] = []
    expect_good: list[int] = []
    expect_bad: list[int] = []
    for i, p in enumerate(good):
        payloads.append(p)
        expect_good.append(len(payloads) - 1)
        if i % 6 == 0:
            payloads.append(bad[(i // 6) % len(bad)])
            expect_bad.append(len(payloads) - 1)
    decoded = fmt.decode(pa.array(payloads, pa.binary()))
    assert decoded.row_indices.tolist() == expect_good
    assert decoded.failed.tolist() == expect_bad
    assert len(decoded.errors) == len(expect_bad)
    assert decoded.batch.equals(batch8)


def test_pretty_printed_payload_with_newlines_is_one_row() -> None:
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    payloads = pa.array(['{\n  "a": 1,\r\n  "b": "x"\n}\n', '{"a": 2}', '{"a": 3, "b": "raw\nnewline"}'])
    decoded = Json(schema).decode(payloads)
    assert decoded.batch.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    assert decoded.row_indices.tolist() == [0, 1]
    assert decoded.failed.tolist() == [2]


def test_unexpected_fields_policy() -> None:
    schema = pa.schema([("a", pa.int64())])
    payloads = pa.array([b'{"a": 1, "zz": 2}', b'{"a": 2}'])
    assert Json(schema).decode(payloads).batch.column(0).to_pylist() == [1, 2]
    strict = Json(schema, unexpected_fields="error").decode(payloads)
    assert strict.failed.tolist() == [0] and strict.row_indices.tolist() == [1]


def test_nan_rows_fail_per_row_including_nested() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "i": [0, 1, 2, 3, 4],
            "f": [1.0, float("nan"), 2.0, None, 3.0],
            "n": pa.array([{"x": [1.0]}, None, {"x": [float("-inf")]}, {"x": None}, {"x": [0.5]}]),
        }
    )
    assert nonfinite_rows(batch.column("n")).tolist() == [False, False, True, False, False]
    encoded = Json().encode(batch)
    assert encoded.failed.tolist() == [1, 2]
    assert "'f'" in encoded.errors[0] and "'n'" in encoded.errors[1]
    assert encoded.payloads.is_null().to_pylist() == [False, True, True, False, False]
    as_null = Json(nan="null").encode(batch)
    assert as_null.failed.size == 0 and b'"f":null' in as_null.payloads[1].as_py()


def test_columns_and_field_names_round_trip(batch8: pa.RecordBatch) -> None:
    fmt = Json(
        pa.schema([batch8.schema.field("id"), batch8.schema.field("name")]),
        columns=["id", "name"],
        field_names={"id": "ID", "name": "Name"},
    )
    encoded = fmt.encode(batch8)
    assert encoded.payloads[0].as_py().startswith(b'{"ID":')
    assert fmt.decode(encoded.payloads).batch.equals(batch8.select(["id", "name"]))


def test_infer_fixes_schema_from_first_block() -> None:
    fmt = Json(infer=True)
    first = fmt.decode(pa.array(['{"a": 1, "b": "x"}', '{"a": 2}']))
    assert first.batch.schema.names == ["a", "b"]
    later = fmt.decode(pa.array(['{"a": 3, "c": true}', '{"a": 1.5}']))
    assert later.batch.to_pylist() == [{"a": 3, "b": None}]
    assert later.failed.tolist() == [1]


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        Json(nan="zero")
    assert info.value.option == "nan"
    with pytest.raises(ConfigurationError):
        Json(pa.schema([("m", pa.map_(pa.string(), pa.int64()))]))
    with pytest.raises(ConfigurationError) as info:
        Json().decode(pa.array([b"{}"]))
    assert info.value.option == "schema"
    assert isinstance(for_name("json", schema={"a": "int64"}), Json)


def test_b64decode_matches_stdlib() -> None:
    import base64

    values = [b"", b"a", b"ab", b"abc", bytes(range(256)), None]
    text = pa.array([None if v is None else base64.b64encode(v).decode() for v in values])
    assert b64decode(text).to_pylist() == values
    with pytest.raises(ValueError):
        b64decode(pa.array(["abc"]))


_names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ints=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=20),
    data=st.data(),
)
def test_hypothesis_round_trip(ints: list[int | None], data: st.DataObject) -> None:
    n = len(ints)
    floats = data.draw(
        st.lists(
            st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), min_size=n, max_size=n
        )
    )
    texts = data.draw(st.lists(st.one_of(st.none(), _names), min_size=n, max_size=n))
    lists = data.draw(
        st.lists(st.one_of(st.none(), st.lists(st.booleans(), max_size=3)), min_size=n, max_size=n)
    )
    batch = pa.RecordBatch.from_pydict(
        {
            "i": pa.array(ints, pa.int64()),
            "f": pa.array(floats, pa.float64()),
            "s": pa.array(texts, pa.string()),
            "l": pa.array(lists, pa.list_(pa.bool_())),
        }
    )
    fmt = Json(batch.schema)
    decoded = fmt.decode(fmt.encode(batch).payloads)
    assert decoded.failed.size == 0
    assert decoded.batch.to_pylist() == batch.to_pylist()


def test_large_batch_uses_one_block_and_keeps_order() -> None:
    batch = eight_columns(3000, seed=5)
    fmt = Json(batch.schema)
    payloads = fmt.encode(batch).payloads
    decoded = fmt.decode(pa.chunked_array([payloads.slice(0, 1000), payloads.slice(1000)]))
    assert decoded.batch.equals(batch)
