"""Pure-Python reference of :mod:`arrowflow._ext.nats_frames` (a test oracle, never used at run time).

Written from the NATS client protocol (``MSG``/``HMSG`` frames, control lines) and the JetStream ack
subject layout, one frame at a time with ``bytes`` operations.
"""

from __future__ import annotations

import re

import numpy as np

MORE, FULL, CONTROL, STATUS, BAD = 0, 1, 2, 3, 4
_MAX_LINE = 65536
_TOKEN = re.compile(rb"[^ \t]+")
_DIGITS = re.compile(rb"[0-9]{1,19}")
_STATUS = re.compile(rb"NATS/1\.0 ([0-9]{3})(?=[ \t\r]|$)")


def _uint(token: bytes) -> int:
    return int(token) if _DIGITS.fullmatch(token) and int(token) < 2**63 else -1


def scan(
    buf: bytes, start: int, end: int, max_msgs: int
) -> tuple[np.ndarray, int, int, int, int, bytes | None]:
    """See :func:`arrowflow._ext.nats_frames.scan`."""
    frames: list[list[int]] = []
    p = start
    while True:
        if len(frames) >= max_msgs:
            return _out(frames, p, FULL)
        if p >= end:
            return _out(frames, p, MORE)
        rest = buf[p:end]
        if rest[:4] in (b"MSG ", b"MSG\t"):
            verb = 3
        elif rest[:5] in (b"HMSG ", b"HMSG\t"):
            verb = 4
        elif len(rest) < 5 and (b"HMSG".startswith(rest) or b"MSG ".startswith(rest)):
            return _out(frames, p, MORE)
        else:
            nl = rest.find(b"\n", 0, _MAX_LINE)
            if nl < 0:
                return _out(frames, p, BAD if len(rest) >= _MAX_LINE else CONTROL)
            return _out(frames, p, CONTROL, ctl_end=p + nl + 1)
        nl = rest.find(b"\n", 0, _MAX_LINE)
        if nl < 0:
            return _out(frames, p, BAD if len(rest) >= _MAX_LINE else MORE)
        if nl == 0 or rest[nl - 1 : nl] != b"\r":
            return _out(frames, p, BAD)
        line = rest[: nl - 1]
        spans = [m.span() for m in _TOKEN.finditer(line, verb + 1)]
        tokens = [line[a:b] for a, b in spans]
        hmsg = verb == 4
        if len(tokens) not in ((4, 5) if hmsg else (3, 4)):
            return _out(frames, p, BAD)
        has_reply = len(tokens) == (5 if hmsg else 4)
        total = _uint(tokens[-1])
        hdr = _uint(tokens[-2]) if hmsg else 0
        if total < 0 or hdr < 0 or hdr > total:
            return _out(frames, p, BAD)
        body = p + nl + 1
        if end - body < total + 2:
            return _out(frames, p, MORE)
        if buf[body + total : body + total + 2] != b"\r\n":
            return _out(frames, p, BAD)
        subject = tokens[0]
        subj_off = p + spans[0][0]
        if hmsg and not has_reply:
            status = _STATUS.match(buf[body : body + hdr])
            if status is not None:
                return _out(
                    frames, p, STATUS, ctl_end=body + total + 2, status=int(status.group(1)), subject=subject
                )
        if has_reply:
            reply = tokens[2]
            reply_off = p + spans[2][0]
        else:
            reply, reply_off = b"", 0
        frames.append([subj_off, len(subject), reply_off, len(reply), body + hdr, total - hdr])
        p = body + total + 2


def _out(
    frames: list[list[int]],
    pos: int,
    stop: int,
    *,
    ctl_end: int = -1,
    status: int = 0,
    subject: bytes | None = None,
) -> tuple[np.ndarray, int, int, int, int, bytes | None]:
    arr = np.array(frames, dtype=np.int64).reshape(len(frames), 6)
    return arr, pos, stop, ctl_end, status, subject


def ack_numbers(reply: bytes) -> list[int] | None:
    """Delivered, stream seq, consumer seq, timestamp ns, pending of a JetStream ack subject."""
    if not reply.startswith(b"$JS.ACK."):
        return None
    tokens = reply.split(b".")
    if len(tokens) == 12:
        tokens = tokens[:11]
    if len(tokens) not in (9, 11):
        return None
    numbers = [_uint(t) for t in tokens[-5:]]
    return None if min(numbers) < 0 else numbers
