"""Pure-Python reference of :mod:`arrowflow._ext.mqtt_frames` (a test oracle, never used at run time),
written from the MQTT 3.1.1 / 5.0 packet layouts one packet at a time."""

from __future__ import annotations

import struct

import numpy as np


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packets(
    payloads: list[bytes], qos: int, retain: bool, v5: bool, first_id: int, topics: list[str] | None = None,
    topic: bytes | None = None,
) -> tuple[bytes, np.ndarray]:  # fmt: skip
    """See :func:`arrowflow._ext.mqtt_frames.publish_packets` (payloads and topics as Python lists)."""
    out = bytearray()
    offsets = [0]
    for i, payload in enumerate(payloads):
        name = topic if topic is not None else topics[i].encode()  # type: ignore[index]
        body = struct.pack(">H", len(name)) + name
        if qos:
            body += struct.pack(">H", (first_id - 1 + i) % 65535 + 1)
        if v5:
            body += b"\x00"
        body += payload
        out += bytes([0x30 | qos << 1 | int(retain)]) + _varint(len(body)) + body
        offsets.append(len(out))
    return bytes(out), np.array(offsets, dtype=np.int64)


def read_acks(buf: bytes, start: int, end: int) -> tuple[list[int], list[int], list[int], int]:
    """See :func:`arrowflow._ext.mqtt_frames.read_acks` (lists instead of arrays)."""
    kinds: list[int] = []
    ids: list[int] = []
    reasons: list[int] = []
    p = start
    while p < end:
        q, rem, mult = p + 1, 0, 1
        for _ in range(4):
            if q >= end:
                return kinds, ids, reasons, p
            byte = buf[q]
            q += 1
            rem += (byte & 0x7F) * mult
            mult *= 128
            if not byte & 0x80:
                break
        else:
            raise ValueError(f"malformed remaining length at {p}")
        if q + rem > end:
            break
        kind = buf[p] >> 4
        kinds.append(kind)
        if 4 <= kind <= 7 and rem >= 2:
            ids.append(buf[q] << 8 | buf[q + 1])
            reasons.append(buf[q + 2] if rem >= 3 else 0)
        else:
            ids.append(-1)
            reasons.append(0)
        p = q + rem
    return kinds, ids, reasons, p
