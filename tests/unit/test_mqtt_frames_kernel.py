"""``arrowflow._ext.mqtt_frames`` (publish_packets / read_acks) against the pure-Python reference,
paho's own PUBLISH encoding, and fixed cases."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow._ext import mqtt_frames as kernel
from arrowflow._reference import mqtt_frames as reference


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=12),
    st.sampled_from([0, 1, 2]),
    st.booleans(),
    st.booleans(),
    st.integers(1, 65535),
    st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    st.data(),
)
def test_publish_packets_match_the_reference(
    payloads: list[bytes],
    qos: int,
    retain: bool,
    v5: bool,
    first: int,
    const: str | None,
    data: st.DataObject,
) -> None:
    topics = None
    if const is None:
        topics = data.draw(
            st.lists(st.text(min_size=1, max_size=30), min_size=len(payloads), max_size=len(payloads))
        )
    buf, offsets = kernel.publish_packets(
        pa.array(payloads, pa.binary()),
        qos,
        retain,
        v5,
        first,
        topics=None if topics is None else pa.array(topics, pa.string()),
        topic=None if const is None else const.encode(),
    )
    want, want_offsets = reference.publish_packets(
        payloads, qos, retain, v5, first, topics=topics, topic=None if const is None else const.encode()
    )
    assert bytes(buf) == want
    assert offsets.tolist() == want_offsets.tolist()


def test_publish_packets_are_what_paho_sends() -> None:
    from paho.mqtt.client import Client, MQTTv5, MQTTv311
    from paho.mqtt.enums import CallbackAPIVersion

    for proto, v5 in ((MQTTv311, False), (MQTTv5, True)):
        sent: list[bytes] = []
        client = Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=proto)
        client._sock = object()  # type: ignore[assignment]  # "connected": paho encodes, the stub keeps it
        client._packet_queue = lambda _type, packet, _mid, _qos, info=None, sent=sent: sent.append(
            bytes(packet)
        )  # type: ignore[method-assign]
        payload = b"x" * 200  # a two-byte remaining length
        client._send_publish(7, b"a/b", payload, 1, False, False)
        client._sock = None
        buf, _ = kernel.publish_packets(pa.array([payload], pa.binary()), 1, False, v5, 7, topic=b"a/b")
        assert bytes(buf) == sent[0]


def test_packet_ids_wrap_from_65535_to_1() -> None:
    buf, offsets = kernel.publish_packets(
        pa.array([b"a", b"b", b"c"], pa.binary()), 1, False, False, 65534, topic=b"t"
    )
    ids = [int.from_bytes(bytes(buf)[offsets[i] + 5 : offsets[i] + 7], "big") for i in range(3)]
    assert ids == [65534, 65535, 1]


def test_publish_refusals() -> None:
    one = pa.array([b"a"], pa.binary())
    with pytest.raises(ValueError, match="null"):
        kernel.publish_packets(pa.array([b"a", None], pa.binary()), 1, False, False, 1, topic=b"t")
    with pytest.raises(ValueError, match="out of range"):
        kernel.publish_packets(one, 1, False, False, 1, topics=pa.array([""]))
    with pytest.raises(ValueError, match="exactly one"):
        kernel.publish_packets(one, 1, False, False, 1)
    with pytest.raises(ValueError, match="first_id"):
        kernel.publish_packets(one, 1, False, False, 0, topic=b"t")


packets = st.one_of(
    st.tuples(
        st.sampled_from([0x40, 0x50, 0x62, 0x70]),
        st.integers(0, 65535),
        st.sampled_from([None, 0, 0x10, 0x87]),
    ).map(
        lambda t: (
            bytes([t[0], 2 if t[2] is None else 3])
            + t[1].to_bytes(2, "big")
            + (b"" if t[2] is None else bytes([t[2]]))
        )
    ),
    st.just(b"\xd0\x00"),  # PINGRESP
    st.binary(max_size=200).map(lambda b: b"\xe0" + bytes([len(b)]) if len(b) < 128 else b"\xe0\x80\x01"),
    st.binary(min_size=1, max_size=300).map(lambda b: b"\x30" + reference._varint(len(b)) + b),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(packets, max_size=10).map(b"".join), st.data())
def test_read_acks_matches_the_reference(stream: bytes, data: st.DataObject) -> None:
    end = data.draw(st.integers(0, len(stream)))
    start = data.draw(st.integers(0, end))
    try:
        want = reference.read_acks(stream, start, end)
    except ValueError:
        with pytest.raises(ValueError):
            kernel.read_acks(stream, start, end)
        return
    kinds, ids, reasons, pos = kernel.read_acks(stream, start, end)
    assert (kinds.tolist(), ids.tolist(), reasons.tolist(), pos) == want


def test_read_acks_fixed_cases() -> None:
    buf = b"\x40\x02\xff\xff" + b"\x40\x03\x00\x01\x10" + b"\xd0\x00" + b"\x50\x02\x00"  # the last cut short
    kinds, ids, reasons, pos = kernel.read_acks(buf, 0, len(buf))
    assert (kinds.tolist(), ids.tolist(), reasons.tolist(), pos) == (
        [4, 4, 13],
        [65535, 1, -1],
        [0, 0x10, 0],
        11,
    )
    with pytest.raises(ValueError, match="malformed"):
        kernel.read_acks(b"\x40\xff\xff\xff\xff\x01", 0, 6)
    assert np.asarray(kernel.read_acks(b"\x40\xff\xff", 0, 3)[0]).size == 0  # length not complete yet
