# cython: language_level=3
"""NATS protocol frames -> Arrow columns: the fast path of ``NatsJetStreamSource``'s pull reads.

The source reads a pull consumer's messages from its own socket into one buffer; :func:`scan` walks
the complete ``MSG``/``HMSG`` frames in it (``_nats_frames.h``) and :func:`gather` copies the payloads
and subjects of the frames it recorded into Arrow arrays and reads each JetStream ack subject into its
numbers. No Python object is built per message; both release the GIL while they loop.

Contract:

* ``scan(buf, start, end, max_msgs)``: ``buf`` is a bytes-like object (the receive buffer), the
  frames are read from ``buf[start:end]``. Returns ``(frames, pos, stop, ctl_end, status, subject)``:
  ``frames`` an int64 array of shape ``(k, 6)`` (per message: subject offset and length, reply
  subject offset and length, payload offset and length, offsets into ``buf``; headers are not part of
  the payload), ``pos`` where the scan stopped, ``stop`` why: ``MORE`` (the rest is an incomplete
  frame or nothing), ``FULL`` (``max_msgs`` recorded), ``CONTROL`` (a control line starts at ``pos``;
  ``ctl_end`` is where it ends, ``-1`` when incomplete), ``STATUS`` (a status message, e.g. a pull
  request's 404/408/409, starts at ``pos`` and ends at ``ctl_end``; ``status`` is its code and
  ``subject`` its subject) or ``BAD`` (the bytes at ``pos`` are not a valid frame).
* ``gather(buf, frames)``: the recorded messages as ``(payloads, subjects, replies, numbers)``: a
  ``pa.binary()`` array of the payloads (``pa.large_binary()`` past 2 GiB), ``pa.string()`` arrays
  of the subjects and reply subjects (UTF-8 checked by Arrow), and an int64 array of shape ``(k, 5)`` read from each
  message's reply subject: delivered count, stream sequence, consumer sequence, timestamp (ns since
  the epoch), pending. ``ValueError`` when a reply subject is not a JetStream ack subject.
* ``ack_numbers(replies)``: the same numbers for a ``pa.string()``/``pa.binary()`` array of reply
  subjects (no nulls).
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import numpy as np
import pyarrow as pa

__all__ = ["BAD", "CONTROL", "FULL", "MORE", "STATUS", "ack_numbers", "gather", "scan"]


cdef extern from "_nats_frames.h" nogil:
    enum:
        AFN_MORE, AFN_FULL, AFN_CONTROL, AFN_STATUS, AFN_BAD
        AFN_SUBJ_OFF, AFN_SUBJ_LEN, AFN_REPLY_OFF, AFN_REPLY_LEN, AFN_DATA_OFF, AFN_DATA_LEN, AFN_NFIELDS
    ctypedef struct afn_stop:
        int64_t pos
        int64_t ctl_end
        int64_t status
        int64_t subj_off
        int64_t subj_len
    int afn_scan(const uint8_t *buf, int64_t start, int64_t end, int64_t max_msgs, int64_t *out,
                 int64_t *count, afn_stop *stop)
    int afn_ack_numbers(const uint8_t *s, int64_t n, int64_t *nums)

MORE = AFN_MORE
FULL = AFN_FULL
CONTROL = AFN_CONTROL
STATUS = AFN_STATUS
BAD = AFN_BAD

include "_owned.pxi"


def scan(buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t max_msgs):
    """Record the complete message frames of ``buf[start:end]``; see the module docstring."""
    cdef const uint8_t[::1] b = memoryview(buf).cast("B") if len(buf) else b"\0"
    if start < 0 or end > len(buf) or start > end:
        raise ValueError(f"start={start} end={end} do not lie within a buffer of {len(buf)} bytes")
    if max_msgs < 0:
        raise ValueError("max_msgs must be >= 0")
    # At most one message per 13 bytes ("MSG a 1 0\r\n\r\n").
    cdef Py_ssize_t cap = min(max_msgs, (end - start) // 13 + 1)
    frames = np.empty((cap, AFN_NFIELDS), dtype=np.int64)
    cdef int64_t[:, ::1] f = frames if cap else np.empty((1, AFN_NFIELDS), dtype=np.int64)
    cdef int64_t count = 0
    cdef afn_stop stop
    cdef int rc
    with nogil:
        rc = afn_scan(&b[0], start, end, cap, &f[0, 0], &count, &stop)
    if rc == AFN_FULL and count < max_msgs:
        rc = AFN_MORE  # the cap came from the buffer's size, not from max_msgs: the buffer is used up
    subject = bytes(b[stop.subj_off:stop.subj_off + stop.subj_len]) if rc == AFN_STATUS else None
    return frames[:count], int(stop.pos), rc, int(stop.ctl_end), int(stop.status), subject


cdef object _copy_spans(const uint8_t *b, const int64_t[:, ::1] f, int off_field, int len_field, typ,
                        large_typ):
    """One Arrow array (``typ``, or ``large_typ`` past 2 GiB) of the spans ``f[:, off_field/len_field]``."""
    cdef Py_ssize_t n = f.shape[0], i
    cdef int64_t total = 0
    for i in range(n):
        total += f[i, len_field]
    cdef bint large = total >= 2**31 - 1
    offsets = np.empty(n + 1, dtype=np.int64 if large else np.int32)
    cdef int64_t[::1] o64
    cdef int[::1] o32
    cdef _Owned owner = _Owned.__new__(_Owned)
    owner.data = <uint8_t *>malloc(total if total else 1)
    if owner.data == NULL:
        raise MemoryError()
    owner.size = total
    cdef int64_t pos = 0
    if large:
        o64 = offsets
        with nogil:
            for i in range(n):
                o64[i] = pos
                memcpy(owner.data + pos, b + f[i, off_field], <size_t>f[i, len_field])
                pos += f[i, len_field]
            o64[n] = pos
    else:
        o32 = offsets
        with nogil:
            for i in range(n):
                o32[i] = <int>pos
                memcpy(owner.data + pos, b + f[i, off_field], <size_t>f[i, len_field])
                pos += f[i, len_field]
            o32[n] = <int>pos
    return pa.Array.from_buffers(large_typ if large else typ, n, [None, pa.py_buffer(offsets), pa.py_buffer(owner)])


def gather(buf, frames):
    """The messages ``frames`` recorded in ``buf`` as Arrow arrays; see the module docstring."""
    cdef const uint8_t[::1] b = memoryview(buf).cast("B") if len(buf) else b"\0"
    arr = np.ascontiguousarray(frames, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != AFN_NFIELDS:
        raise ValueError(f"frames must have shape (k, {AFN_NFIELDS})")
    cdef Py_ssize_t n = arr.shape[0], i, j
    cdef int64_t size = len(buf)
    cdef const int64_t[:, ::1] f = arr if n else np.zeros((1, AFN_NFIELDS), dtype=np.int64)
    for i in range(n):
        for j in range(0, AFN_NFIELDS, 2):
            if f[i, j] < 0 or f[i, j + 1] < 0 or f[i, j] + f[i, j + 1] > size:
                raise ValueError(f"frame {i} points outside the buffer")
    if n == 0:
        empty = pa.array([], pa.string())
        return pa.array([], pa.binary()), empty, empty, np.zeros((0, 5), dtype=np.int64)
    payloads = _copy_spans(&b[0], f, AFN_DATA_OFF, AFN_DATA_LEN, pa.binary(), pa.large_binary())
    subjects = _copy_spans(&b[0], f, AFN_SUBJ_OFF, AFN_SUBJ_LEN, pa.string(), pa.large_string())
    subjects.validate(full=True)
    starts = np.ascontiguousarray(arr[:, AFN_REPLY_OFF])
    ends = starts + arr[:, AFN_REPLY_LEN]
    numbers = _numbers(&b[0], starts, ends)
    replies = _copy_spans(&b[0], f, AFN_REPLY_OFF, AFN_REPLY_LEN, pa.string(), pa.large_string())
    replies.validate(full=True)
    return payloads, subjects, replies, numbers


cdef object _numbers(const uint8_t *b, const int64_t[::1] starts, const int64_t[::1] ends):
    """The ack subject numbers of the spans ``b[starts[i]:ends[i]]`` (``ValueError`` naming a bad one)."""
    cdef Py_ssize_t n = starts.shape[0], i
    numbers = np.empty((n, 5), dtype=np.int64)
    cdef int64_t[:, ::1] nums = numbers if n else np.empty((1, 5), dtype=np.int64)
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(n):
            if afn_ack_numbers(b + starts[i], ends[i] - starts[i], &nums[i, 0]) != 0:
                bad = i
                break
    if bad >= 0:
        reply = bytes(b[starts[bad]:ends[bad]])
        raise ValueError(f"message {bad}: reply subject {reply!r} is not a JetStream ack subject")
    return numbers


def ack_numbers(replies):
    """Delivered, stream seq, consumer seq, timestamp ns, pending per reply subject; see the module docstring."""
    if isinstance(replies, pa.ChunkedArray):
        replies = replies.combine_chunks()
    if not (pa.types.is_string(replies.type) or pa.types.is_binary(replies.type)):
        raise TypeError(f"replies must be a string or binary array, got {replies.type}")
    if replies.null_count:
        raise ValueError("a reply subject is null")
    replies.validate(full=True)  # the offsets index the data buffer below
    n = len(replies)
    offsets = np.frombuffer(replies.buffers()[1], dtype=np.int32, count=replies.offset + n + 1)
    offsets = offsets[replies.offset:replies.offset + n + 1].astype(np.int64)
    data = replies.buffers()[2]
    cdef const uint8_t[::1] b = memoryview(data).cast("B") if data is not None and data.size else b"\0"
    return _numbers(&b[0], offsets[0:n], offsets[1:n + 1])
