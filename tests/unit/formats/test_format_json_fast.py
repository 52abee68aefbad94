"""Json.decode's flat fast path (compiled scan + casts) gives exactly what the general path
(pyarrow's JSON reader with bisection) gives, for good and bad payloads alike."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.formats import Json
from arrowflow.formats.base import as_binary

FLAT = pa.schema(
    [
        ("i", pa.int64()),
        ("q", pa.int32()),
        ("u", pa.uint8()),
        ("f", pa.float64()),
        ("s", pa.string()),
        ("b", pa.bool_()),
        ("ts", pa.timestamp("us")),
        ("d", pa.date32()),
        ("bin", pa.binary()),
    ]
)


def _same(fmt: Json, payloads: pa.Array) -> None:
    fast = fmt.decode(payloads)
    general = fmt._decode_general(as_binary(payloads))
    assert fast.batch.schema == general.batch.schema
    assert fast.batch.equals(general.batch), (fast.batch.to_pylist(), general.batch.to_pylist())
    assert np.array_equal(fast.row_indices, general.row_indices)
    assert np.array_equal(fast.failed, general.failed)
    assert fast.errors == general.errors


field_values = {
    "i": st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**63, 1.5, "1", True])),
    "q": st.one_of(st.integers(-(2**31), 2**31 - 1), st.just(2**31)),
    "u": st.one_of(st.integers(0, 255), st.sampled_from([-1, 256])),
    "f": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**30), 10**30)),
    "s": st.one_of(st.text(max_size=10), st.just(5)),
    "b": st.one_of(st.booleans(), st.just("true")),
    "ts": st.sampled_from(
        [
            "2026-04-18T16:56:38.135497",
            "2026-04-18 16:56:38",
            "2026-04-18",
            "2026-04-18T16:56:38Z",
            "2026-04-18T16:56:38+02:00",
            "2026-04-18T16:56:38-0200",
            "2026-02-30T00:00:00",
            "2026-04-18T16:56:38.1234567",
            "yesterday",
        ]
    ),
    "d": st.sampled_from(["2024-02-29", "2024-02-30", "2024-2-1", "x"]),
    "bin": st.sampled_from(["", "AAEC", "AP8K", "A", "!!!!"]),
}


@st.composite
def payload(draw: st.DrawFn) -> str:
    obj = {}
    for name in draw(st.lists(st.sampled_from([*field_values, "extra"]), max_size=9, unique=True)):
        obj[name] = (
            None if draw(st.integers(0, 5)) == 0 else draw(field_values.get(name, st.just([1, {"x": 2}])))
        )
    text = json.dumps(obj, indent=draw(st.sampled_from([None, 1])))
    return draw(st.sampled_from(["", " ", "1", "{}", "x"])) if draw(st.integers(0, 15)) == 0 else text


@settings(max_examples=60, deadline=None)
@given(st.lists(payload(), min_size=1, max_size=12), st.sampled_from(["ignore", "error"]))
def test_fast_path_equals_general_path(payloads: list[str], unexpected: str) -> None:
    _same(Json(FLAT, unexpected_fields=unexpected), pa.array(payloads, pa.string()))


def test_out_of_range_float_and_zoned_timestamp_fall_back() -> None:
    # The cast refuses zone designators pyarrow's JSON reader accepts: the general path decides.
    fmt = Json(FLAT)
    payloads = pa.array(
        [b'{"f":1e400}', b'{"ts":"2026-01-01T00:00:00Z"}', b'{"i":1}', b"\xff", None], pa.binary()
    )
    _same(fmt, payloads)
    decoded = fmt.decode(payloads)
    assert decoded.row_indices.tolist() == [1, 2]
    assert decoded.failed.tolist() == [0, 3, 4]


def test_fast_path_decodes_the_common_case() -> None:
    fmt = Json(FLAT)
    payloads = pa.array(
        [
            '{"i":1,"q":-2,"u":3,"f":0.5,"s":"h\\u00e9","b":true,"ts":"2026-01-02T03:04:05.000006",'
            '"d":"2024-02-29","bin":"AP8K","other":{"x":[1,2]}}',
            "{}",
        ]
    )
    decoded = fmt.decode(payloads)
    _same(fmt, payloads)
    row = decoded.batch.to_pylist()[0]
    assert row["s"] == "hé" and row["bin"] == b"\x00\xff\n" and row["ts"].microsecond == 6
    assert decoded.batch.to_pylist()[1] == dict.fromkeys(FLAT.names)


def test_non_nullable_field_missing_keeps_general_semantics() -> None:
    schema = pa.schema([pa.field("i", pa.int64(), nullable=False)])
    _same(Json(schema), pa.array(['{"i":1}', "{}", '{"i":null}']))


valid_values = {
    "i": st.integers(-(2**63), 2**63 - 1),
    "q": st.integers(-(2**31), 2**31 - 1),
    "u": st.integers(0, 255),
    "f": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**30), 10**30)),
    "s": st.text(max_size=10),
    "b": st.booleans(),
    "ts": st.datetimes(min_value=datetime.datetime(1, 1, 1)).map(lambda d: d.isoformat()),
    "d": st.dates().map(lambda d: d.isoformat()),
    "bin": st.sampled_from(["", "AAEC", "AP8K", "AAE="]),
}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({}, optional={k: st.none() | v for k, v in valid_values.items()}),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([None, 2]),
)
def test_valid_payloads_take_the_fast_path(rows: list[dict[str, object]], indent: int | None) -> None:
    fmt = Json(FLAT)
    payloads = pa.array([json.dumps(r, indent=indent) for r in rows], pa.string())
    fast = fmt._decode_flat(FLAT, as_binary(payloads))
    assert fast is not None
    general = fmt._decode_general(as_binary(payloads))
    assert general.failed.size == 0
    assert fast.batch.equals(general.batch), (fast.batch.to_pylist(), general.batch.to_pylist())
    assert fast.row_indices.tolist() == list(range(len(rows)))


def test_invalid_utf8_in_an_ignored_field_fails_the_payload() -> None:
    # The JSON reader checks only the values it keeps: a bad byte in a field the schema ignores used
    # to pass (found by the json_format fuzz target; its input is in tests/fuzz/corpus/json_format).
    fmt = Json(FLAT, unexpected_fields="ignore")
    payloads = pa.array([b'{"i":1,"z":"\xc31"}', b'{"i":2,"z":"ok"}', b'{"s":"\xff"}'], pa.binary())
    decoded = fmt.decode(payloads)
    assert decoded.row_indices.tolist() == [1]
    assert decoded.failed.tolist() == [0, 2]
    assert decoded.errors[0] == "payload is not valid UTF-8"
    assert decoded.batch.column("i").to_pylist() == [2]
    _same(fmt, payloads)
