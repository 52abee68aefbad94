"""Arrow <-> cassandra-driver value conversion of the Cassandra connector, without a server.

Each column converted by ``column_to_driver`` is serialized with the driver's own type codecs and
decoded back, and compared with an obviously-correct per-value reference (hypothesis); the reverse
direction (``column_from_driver``) is fed the driver's decoded values.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pyarrow as pa
from cassandra import cqltypes as ct
from cassandra.query import UNSET_VALUE
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.connectors.cassandra import arrow_type_for, column_from_driver, column_to_driver, token_ranges

PV = 4
EPOCH = dt.datetime(1970, 1, 1)
US_RANGE = (-(10**16), 10**16)  # about 1653 .. 2286


def _roundtrip(cqltype: type, values: list[object]) -> list[object]:
    return [None if v is None else cqltype.deserialize(cqltype.serialize(v, PV), PV) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.none() | st.integers(*US_RANGE), max_size=40))
def test_timestamps_are_floored_to_milliseconds(us: list[int | None]) -> None:
    col = pa.array(us, pa.timestamp("us"))
    values = column_to_driver(col, ct.DateType)
    # On the wire: the big-endian int64 milliseconds, floored (compared as integers: the driver's
    # own decoder goes through a float and may be 1 us off for dates far from the epoch).
    wire = [
        None if v is None else int.from_bytes(ct.DateType.serialize(v, PV), "big", signed=True)
        for v in values
    ]
    assert wire == [None if v is None else v // 1000 for v in us]
    # Decoding: datetimes with those milliseconds become the same Arrow values.
    decoded = [None if v is None else EPOCH + dt.timedelta(milliseconds=v // 1000) for v in us]
    back = column_from_driver(decoded, ct.DateType, pa.timestamp("us"))
    assert back.to_pylist() == decoded


@settings(max_examples=60, deadline=None)
@given(st.lists(st.none() | st.integers(-(10**13), 10**13), min_size=1, max_size=40))
def test_driver_decoded_timestamps_read_back_exactly(ms: list[int | None]) -> None:
    """The driver decodes through a float (1 us off far from the epoch); the source restores the ms."""
    decoded = [None if v is None else ct.DateType.deserialize(ct.DateType.serialize(v, PV), PV) for v in ms]
    for target in (pa.timestamp("ms"), pa.timestamp("us")):
        back = column_from_driver(decoded, ct.DateType, target)
        assert back.cast(pa.timestamp("ms")).cast(pa.int64()).to_pylist() == ms


@settings(max_examples=60, deadline=None)
@given(st.lists(st.none() | st.integers(-(10**6), 10**6), max_size=40))
def test_dates_round_trip(days: list[int | None]) -> None:
    col = pa.array(days, pa.int32()).cast(pa.date32())
    got = _roundtrip(ct.SimpleDateType, column_to_driver(col, ct.SimpleDateType))
    assert [None if d is None else d.days_from_epoch for d in got] == days  # type: ignore[attr-defined]
    assert column_from_driver(got, ct.SimpleDateType, pa.date32()).equals(col)


def test_unset_replaces_nulls_when_asked() -> None:
    col = pa.array([1, None, 3], pa.int32())
    assert column_to_driver(col, ct.Int32Type) == [1, None, 3]
    assert column_to_driver(col, ct.Int32Type, null=UNSET_VALUE) == [1, UNSET_VALUE, 3]
    ts = pa.array([0, None], pa.timestamp("ms"))
    assert column_to_driver(ts, ct.DateType, null=UNSET_VALUE) == [0, UNSET_VALUE]


def test_uuids_from_strings_and_fixed_binary() -> None:
    u = [uuid.uuid4(), None, uuid.uuid4()]
    as_str = pa.array([None if x is None else str(x) for x in u])
    as_bin = pa.array([None if x is None else x.bytes for x in u], pa.binary(16))
    assert column_to_driver(as_str, ct.UUIDType) == u
    assert column_to_driver(as_bin, ct.UUIDType) == u
    decoded = _roundtrip(ct.UUIDType, u)
    assert column_from_driver(decoded, ct.UUIDType, pa.string()).equals(as_str)
    assert column_from_driver(decoded, ct.UUIDType, pa.binary(16)).equals(as_bin)


def test_collections_round_trip() -> None:
    map_t = ct.MapType.apply_parameters([ct.UTF8Type, ct.Int32Type])
    set_t = ct.SetType.apply_parameters([ct.Int32Type])
    list_t = ct.ListType.apply_parameters([ct.UTF8Type])
    maps = pa.array([[("a", 1), ("b", 2)], None], pa.map_(pa.string(), pa.int32()))
    sets = pa.array([[1, 2, 3], None], pa.list_(pa.int32()))
    lists = pa.array([["x", "y"], None], pa.list_(pa.string()))
    for cqltype, col in ((map_t, maps), (set_t, sets), (list_t, lists)):
        decoded = _roundtrip(cqltype, column_to_driver(col, cqltype))
        assert column_from_driver(decoded, cqltype, arrow_type_for(cqltype)).equals(col), cqltype


def test_default_arrow_types() -> None:
    assert arrow_type_for(ct.LongType) == pa.int64()
    assert arrow_type_for(ct.DateType) == pa.timestamp("ms")
    assert arrow_type_for(ct.SimpleDateType) == pa.date32()
    assert arrow_type_for(ct.DecimalType) == pa.string()
    assert arrow_type_for(ct.SetType.apply_parameters([ct.Int32Type])) == pa.list_(pa.int32())


UDT = ct.UserType.make_udt_class("ks", "address", ["street", "no"], [ct.UTF8Type, ct.Int32Type])
TUPLE = ct.TupleType.apply_parameters([ct.Int32Type, ct.UTF8Type])
VECTOR = ct.VectorType.apply_parameters(["FloatType", 3], None)
LIST_UUID = ct.ListType.apply_parameters([ct.UUIDType])
MAP_DATES = ct.MapType.apply_parameters([ct.UTF8Type, ct.ListType.apply_parameters([ct.SimpleDateType])])
LIST_UDT = ct.ListType.apply_parameters([UDT])


def test_default_arrow_types_of_the_other_types() -> None:
    assert arrow_type_for(ct.DurationType) == pa.month_day_nano_interval()
    assert arrow_type_for(ct.TimeType) == pa.time64("ns")
    assert arrow_type_for(TUPLE) == pa.struct([("f0", pa.int32()), ("f1", pa.string())])
    assert arrow_type_for(UDT) == pa.struct([("street", pa.string()), ("no", pa.int32())])
    assert arrow_type_for(VECTOR) == pa.list_(pa.float32(), 3)
    assert arrow_type_for(MAP_DATES) == pa.map_(pa.string(), pa.list_(pa.date32()))


def test_durations_times_tuples_user_types_vectors_and_nesting_round_trip() -> None:
    """Through the driver's own codecs and back, nulls nested and at the top (sliced: offsets)."""
    cases: list[tuple[type, pa.Array]] = [
        (ct.DurationType, pa.array([(1, 2, 3), None, (-1, -2, -3)], pa.month_day_nano_interval())),
        (ct.TimeType, pa.array([0, None, 86_399_999_999_999], pa.time64("ns"))),
        (TUPLE, pa.array([{"f0": 1, "f1": None}, None, {"f0": None, "f1": "b"}], arrow_type_for(TUPLE))),
        (UDT, pa.array([{"street": "s", "no": 1}, None, {"street": None, "no": 2}], arrow_type_for(UDT))),
        # A struct's fields meet a user type's by name, in any order.
        (
            UDT,
            pa.array(
                [{"no": 7, "street": "t"}, None], pa.struct([("no", pa.int32()), ("street", pa.string())])
            ),
        ),
        (VECTOR, pa.array([[1.5, 2.0, -3.25], None, [0.0, 0.0, 1.0]], pa.list_(pa.float32(), 3))),
        (
            LIST_UUID,
            pa.array([[str(uuid.UUID(int=1)), str(uuid.UUID(int=2))], None, []], pa.list_(pa.string())),
        ),
        (
            MAP_DATES,
            pa.array(
                [[("a", [dt.date(2020, 1, 2), dt.date(1969, 12, 31)])], None, [("b", [])]],
                pa.map_(pa.string(), pa.list_(pa.date32())),
            ),
        ),
        (
            LIST_UDT,
            pa.array(
                [[{"street": "x", "no": 1}, {"street": None, "no": None}], None], arrow_type_for(LIST_UDT)
            ),
        ),
    ]
    for cqltype, col in cases:
        for part in (col, col.slice(1)):
            decoded = _roundtrip(cqltype, column_to_driver(part, cqltype))
            back = column_from_driver(decoded, cqltype, part.type)
            assert back.equals(part), (cqltype, back, part)


def test_varint_and_decimal_from_strings() -> None:
    big = ["123456789012345678901234567890", None, "-5"]
    assert column_to_driver(pa.array(big), ct.IntegerType) == [int(big[0]), None, -5]
    dec = ["1.250", None, "-0.001"]
    got = column_to_driver(pa.array(dec), ct.DecimalType)
    assert [None if d is None else str(d) for d in got] == dec
    decoded = _roundtrip(ct.IntegerType, column_to_driver(pa.array(big), ct.IntegerType))
    assert column_from_driver(decoded, ct.IntegerType, pa.string()).to_pylist() == big


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**63) + 1, 2**63 - 2), max_size=40, unique=True),
    st.integers(1, 120),
)
def test_token_ranges_cover_the_ring_and_follow_its_tokens(ring: list[int], n: int) -> None:
    """``n`` contiguous ranges over (MIN, MAX]; bounds are ring tokens when fewer than the ring's
    ranges, and every ring token is a bound when more (no split straddles a ring range)."""
    lo, hi = -(2**63), 2**63 - 1
    ranges = token_ranges(n, ring)
    assert len(ranges) == n
    assert ranges[0][0] == lo and ranges[-1][1] == hi
    assert all(s < e for s, e in ranges)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    inner = {t for r in ranges for t in r} - {lo, hi}
    if not ring:
        return
    if n <= len(ring) + 1:
        assert inner <= set(ring)
    else:
        assert set(ring) <= inner
