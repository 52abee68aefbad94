"""The Flume wire formats: the Avro RPC protocol and handshake records, the vectorized Avro event
encoding, the JSON array of the HTTP source, and one Avro RPC connection.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Flume's ``AvroSourceProtocol`` (flume-ng-sdk ``flume.avdl``) as Avro protocol JSON.
AVRO_SOURCE_PROTOCOL: dict[str, Any] = {
    "protocol": "AvroSourceProtocol",
    "namespace": "org.apache.flume.source.avro",
    "types": [
        {"type": "enum", "name": "Status", "symbols": ["OK", "FAILED", "UNKNOWN"]},
        {
            "type": "record",
            "name": "AvroFlumeEvent",
            "fields": [
                {"name": "headers", "type": {"type": "map", "values": "string"}},
                {"name": "body", "type": "bytes"},
            ],
        },
    ],
    "messages": {
        "append": {"request": [{"name": "event", "type": "AvroFlumeEvent"}], "response": "Status"},
        "appendBatch": {
            "request": [{"name": "events", "type": {"type": "array", "items": "AvroFlumeEvent"}}],
            "response": "Status",
        },
    },
}
PROTOCOL_TEXT = json.dumps(AVRO_SOURCE_PROTOCOL, separators=(",", ":"))
PROTOCOL_HASH = hashlib.md5(PROTOCOL_TEXT.encode()).digest()
STATUS = ("OK", "FAILED", "UNKNOWN")

# The Avro IPC handshake records (Avro specification, "Handshake").
_MD5 = {"type": "fixed", "name": "MD5", "namespace": "org.apache.avro.ipc", "size": 16}
HANDSHAKE_REQUEST: dict[str, Any] = {
    "type": "record",
    "name": "HandshakeRequest",
    "namespace": "org.apache.avro.ipc",
    "fields": [
        {"name": "clientHash", "type": _MD5},
        {"name": "clientProtocol", "type": ["null", "string"]},
        {"name": "serverHash", "type": "MD5"},
        {"name": "meta", "type": ["null", {"type": "map", "values": "bytes"}]},
    ],
}
HANDSHAKE_RESPONSE: dict[str, Any] = {
    "type": "record",
    "name": "HandshakeResponse",
    "namespace": "org.apache.avro.ipc",
    "fields": [
        {
            "name": "match",
            "type": {"type": "enum", "name": "HandshakeMatch", "symbols": ["BOTH", "CLIENT", "NONE"]},
        },
        {"name": "serverProtocol", "type": ["null", "string"]},
        {"name": "serverHash", "type": ["null", _MD5]},
        {"name": "meta", "type": ["null", {"type": "map", "values": "bytes"}]},
    ],
}
META_SCHEMA = {"type": "map", "values": "bytes"}


def zigzag_varints(values: np.ndarray) -> pa.BinaryArray:
    """Avro ``long`` encodings (zigzag + base-128 varint) of ``values``, one binary value each."""
    v = np.asarray(values, dtype=np.int64)
    z = ((v << 1) ^ (v >> 63)).astype(np.uint64)
    n = len(z)
    # Byte i of every value at once: at most 10 passes, whatever the number of rows.
    nbytes = np.ones(n, dtype=np.int64)
    rest = z >> np.uint64(7)
    while rest.any():
        nbytes += rest != 0
        rest >>= np.uint64(7)
    width = int(nbytes.max()) if n else 1
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = ((z[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
    index = np.arange(width)[None, :]
    groups |= np.where(index < (nbytes[:, None] - 1), np.uint8(0x80), np.uint8(0))
    data = groups[index < nbytes[:, None]]  # row-major: each value's bytes stay in order
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(nbytes, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    )


def _lengths(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.binary_length(values).fill_null(0), dtype=np.int64)


def encode_avro_events(
    counts: np.ndarray, keys: pa.Array, values: pa.Array, body: pa.Array
) -> pa.BinaryArray:
    """One Avro-encoded ``AvroFlumeEvent`` per row.

    ``counts[i]`` headers belong to row ``i``; ``keys``/``values`` hold them row after row
    (strings); ``body`` is binary without nulls. Built from numpy varints and pyarrow joins.
    """
    n = len(body)
    empty = pa.scalar(b"", pa.binary())
    if len(keys):
        k = keys.cast(pa.binary())
        v = values.cast(pa.binary())
        pairs = pc.binary_join_element_wise(
            zigzag_varints(_lengths(k)), k, zigzag_varints(_lengths(v)), v, empty
        )
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pairs), empty)
    else:
        joined = pa.nulls(n, pa.binary()).fill_null(b"")
    has = pa.array(np.asarray(counts) > 0)
    # A map is blocks of (count, entries) ended by a 0 count; no headers = just the 0.
    terminator = pc.if_else(has, pa.scalar(b"\x00", pa.binary()), empty)
    return pc.binary_join_element_wise(
        zigzag_varints(counts), joined, terminator, zigzag_varints(_lengths(body)), body, empty
    )


def contiguous(entries: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(data bytes, offsets relative to data)`` of a binary array (zero copy)."""
    n = len(entries)
    offsets = np.frombuffer(entries.buffers()[1], dtype=np.int32, count=entries.offset + n + 1)
    offsets = offsets[entries.offset :]
    start, stop = int(offsets[0]), int(offsets[-1])
    data_buf = entries.buffers()[2]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)[start:stop] if data_buf is not None else np.zeros(0, np.uint8)
    )
    return data, offsets - start


def json_array(entries: pa.Array) -> bytes:
    """``[e0,e1,...]`` from a binary array of JSON documents (commas inserted by numpy)."""
    data, offsets = contiguous(entries)
    body = np.insert(data, offsets[1:-1], np.uint8(ord(",")))
    return b"[" + body.tobytes() + b"]"


# ---------------------------------------------------------------------- the sink


class AvroConnection:
    """One socket to an AvroSource with its frame serial and handshake state (one worker thread)."""

    def __init__(self, host: str, port: int, connect_timeout: float, request_timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.settimeout(request_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.serial = 0
        self.handshaken = False

    def recv_exact(self, n: int) -> bytes:
        parts = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("the Flume Avro source closed the connection")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def call(self, payload: bytes) -> bytes:
        """Send one frame holding ``payload``; return the joined buffers of the answer frame."""
        self.serial = (self.serial + 1) & 0x7FFFFFFF
        self.sock.sendall(struct.pack(">iii", self.serial, 1, len(payload)) + payload)
        serial, count = struct.unpack(">ii", self.recv_exact(8))
        if serial != self.serial:
            raise ConnectionError(f"answer for frame {serial}, expected {self.serial}")
        if not 0 <= count <= 1_000_000:
            raise ConnectionError(f"implausible buffer count {count} in the answer frame")
        parts = []
        for _ in range(count):
            (length,) = struct.unpack(">i", self.recv_exact(4))
            if length < 0:
                raise ConnectionError(f"negative buffer length {length} in the answer frame")
            parts.append(self.recv_exact(length))
        return b"".join(parts)

    def close(self) -> None:
        self.sock.close()


def read_long(stream: io.BytesIO) -> int:
    """One Avro ``long`` (zigzag varint) from ``stream``."""
    shift = 0
    value = 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise EOFError("truncated Avro long")
        b = byte[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
        if shift > 63:
            raise ValueError("Avro long longer than 10 bytes")
