"""Type stubs for the compiled ``arrowflow._ext.mqtt_frames`` kernel (source: ``ext/mqtt_frames.pyx``)."""

import numpy as np
import pyarrow as pa

__all__ = ["publish_packets", "read_acks"]

def publish_packets(
    payloads: pa.Array,
    qos: int,
    retain: bool,
    v5: bool,
    first_id: int,
    topics: pa.Array | None = None,
    topic: bytes | None = None,
) -> tuple[pa.Buffer, np.ndarray]:
    """One PUBLISH packet per payload in one buffer, and the ``n + 1`` packet offsets (int64)."""

def read_acks(
    buf: bytes | bytearray | memoryview, start: int, end: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Packet types, packet ids (-1: none), MQTT 5 reason codes of the complete packets, and the end."""
