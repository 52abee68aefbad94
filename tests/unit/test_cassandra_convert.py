"""Arrow <-> cassandra-driver value conversion of the Cassandra connector, without a server.

Each column converted by ``column_to_driver`` is serialized with the driver's own type codecs and
decoded back, and compared with an obviously-correct per-value reference (hypothesis); the reverse
direction (``column_from_driver``) is fed the driver's decoded values.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
from cassandra import cqltypes as ct
from cassandra.query import UNSET_VALUE
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.connectors.cassandra import arrow_type_for, column_from_driver, column_to_driver

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
