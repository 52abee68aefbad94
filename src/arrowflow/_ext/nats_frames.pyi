"""Type stubs for the compiled ``arrowflow._ext.nats_frames`` kernel (source: ``ext/nats_frames.pyx``)."""

import numpy as np
import pyarrow as pa

__all__ = ["BAD", "CONTROL", "FULL", "MORE", "STATUS", "ack_numbers", "gather", "scan"]

MORE: int
FULL: int
CONTROL: int
STATUS: int
BAD: int

def scan(
    buf: bytes | bytearray | memoryview, start: int, end: int, max_msgs: int
) -> tuple[np.ndarray, int, int, int, int, bytes | None]:
    """Record the complete ``MSG``/``HMSG`` frames of ``buf[start:end]`` (at most ``max_msgs``).

    ``(frames, pos, stop, ctl_end, status, subject)``: frames ``(k, 6)`` int64 (subject, reply and
    payload offset/length), where the scan stopped and why (``MORE``, ``FULL``, ``CONTROL``,
    ``STATUS``, ``BAD``), the end of a control/status frame at ``pos`` (``-1``: incomplete), a status
    message's code and subject.
    """

def gather(
    buf: bytes | bytearray | memoryview, frames: np.ndarray
) -> tuple[pa.Array, pa.Array, pa.Array, np.ndarray]:
    """Payloads (binary), subjects and reply subjects (string), and per message the ack subject's
    delivered count, stream sequence, consumer sequence, timestamp ns and pending (``(k, 5)`` int64)."""

def ack_numbers(replies: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The ``(k, 5)`` ack subject numbers of a string/binary array of JetStream reply subjects."""
