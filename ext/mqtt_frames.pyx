# cython: language_level=3
"""MQTT packets for ``MqttSink``: a batch's PUBLISH packets built in one pass, and the broker's
acknowledgements read in one pass. No Python object is built per message; both loops release the GIL.

Contract:

* ``publish_packets(payloads, qos, retain, v5, first_id, topics=None, topic=None)``: one PUBLISH
  packet per payload (``pa.binary()``, no nulls), back to back in one buffer, and the ``n + 1`` int64
  offsets of the packets in it. The topic is ``topic`` (bytes) for every packet, or ``topics[i]``
  (``pa.string()``, no nulls, none empty). Fixed header ``0x30 | qos << 1 | retain``, remaining
  length (variable byte integer), topic (length-prefixed), a packet id when ``qos > 0``
  (``first_id + i``, wrapping from 65535 to 1: ids ``1..65535``), an empty property block when
  ``v5``, the payload. ``ValueError`` when a topic is longer than 65535 bytes or a packet longer than
  the protocol's 268,435,455 bytes.
* ``read_acks(buf, start, end)``: the complete packets in ``buf[start:end]``, as int64 arrays
  ``kinds`` (the packet type, 1-15), ``ids`` (the packet id of PUBACK/PUBREC/PUBREL/PUBCOMP, else
  -1) and ``reasons`` (MQTT 5 reason code when present, else 0), and the position after the last
  complete packet. A malformed remaining length raises ``ValueError``.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import numpy as np
import pyarrow as pa

__all__ = ["publish_packets", "read_acks"]

cdef int64_t _MAX_REMAINING = 268435455

include "_owned.pxi"


cdef inline int _varint_len(int64_t v) noexcept nogil:
    if v < 128:
        return 1
    if v < 16384:
        return 2
    if v < 2097152:
        return 3
    return 4


cdef inline int _write_varint(uint8_t *w, int64_t v) noexcept nogil:
    cdef int k = 0
    while True:
        w[k] = <uint8_t>(v % 128)
        v //= 128
        if v:
            w[k] |= 0x80
            k += 1
        else:
            return k + 1


cdef object _spans(arr):
    """(int64 offsets of the entries, data buffer) of a string/binary array (validated)."""
    arr.validate(full=True)
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=arr.offset + n + 1)
    offsets = offsets[arr.offset:arr.offset + n + 1].astype(np.int64)
    data = arr.buffers()[2]
    return offsets, (memoryview(data).cast("B") if data is not None and data.size else b"\0")


def publish_packets(payloads, int qos, bint retain, bint v5, int first_id, topics=None, topic=None):
    """PUBLISH packets of ``payloads`` in one buffer; see the module docstring."""
    if isinstance(payloads, pa.ChunkedArray):
        payloads = payloads.combine_chunks()
    if not pa.types.is_binary(payloads.type):
        raise TypeError(f"payloads must be a binary array, got {payloads.type}")
    if payloads.null_count:
        raise ValueError("a payload is null")
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
    if not 1 <= first_id <= 65535:
        raise ValueError(f"first_id must be in 1..65535, got {first_id}")
    if (topics is None) == (topic is None):
        raise ValueError("give exactly one of topics and topic")
    cdef Py_ssize_t n = len(payloads), i
    p_off, p_data = _spans(payloads)
    cdef const int64_t[::1] po = p_off
    cdef const uint8_t[::1] pd = p_data
    cdef bint const_topic = topic is not None
    if const_topic:
        if not isinstance(topic, bytes) or not topic:
            raise ValueError("topic must be non-empty bytes")
        t_off = np.array([0, len(topic)], dtype=np.int64)
        t_data = topic
    else:
        if isinstance(topics, pa.ChunkedArray):
            topics = topics.combine_chunks()
        if not pa.types.is_string(topics.type) or len(topics) != n or topics.null_count:
            raise ValueError("topics must be a string array without nulls, one per payload")
        t_off, t_data = _spans(topics)
    cdef const int64_t[::1] to = t_off
    cdef const uint8_t[::1] td = t_data
    out_off = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] oo = out_off
    cdef int64_t total = 0, tlen, rem, tstart
    cdef Py_ssize_t bad = -1
    # Sizes first (exact), then one allocation and one copy pass.
    with nogil:
        for i in range(n):
            tstart = to[0] if const_topic else to[i]
            tlen = (to[1] - to[0]) if const_topic else (to[i + 1] - to[i])
            if tlen == 0 or tlen > 65535:
                bad = i
                break
            rem = 2 + tlen + (2 if qos else 0) + (1 if v5 else 0) + (po[i + 1] - po[i])
            if rem > _MAX_REMAINING:
                bad = i
                break
            oo[i] = total
            total += 1 + _varint_len(rem) + rem
    if bad >= 0:
        raise ValueError(f"message {bad}: its topic (1..65535 bytes) or packet (<= 256 MiB) is out of range")
    oo[n] = total
    cdef _Owned owner = _Owned.__new__(_Owned)
    owner.data = <uint8_t *>malloc(total if total else 1)
    if owner.data == NULL:
        raise MemoryError()
    owner.size = total
    cdef uint8_t *w
    cdef uint8_t head = <uint8_t>(0x30 | (qos << 1) | (1 if retain else 0))
    cdef int64_t pid, plen
    with nogil:
        for i in range(n):
            w = owner.data + oo[i]
            tstart = to[0] if const_topic else to[i]
            tlen = (to[1] - to[0]) if const_topic else (to[i + 1] - to[i])
            plen = po[i + 1] - po[i]
            rem = 2 + tlen + (2 if qos else 0) + (1 if v5 else 0) + plen
            w[0] = head
            w += 1 + _write_varint(w + 1, rem)
            w[0] = <uint8_t>(tlen >> 8)
            w[1] = <uint8_t>(tlen & 0xFF)
            memcpy(w + 2, &td[0] + tstart, <size_t>tlen)
            w += 2 + tlen
            if qos:
                pid = (first_id - 1 + i) % 65535 + 1
                w[0] = <uint8_t>(pid >> 8)
                w[1] = <uint8_t>(pid & 0xFF)
                w += 2
            if v5:
                w[0] = 0
                w += 1
            if plen:
                memcpy(w, &pd[0] + po[i], <size_t>plen)
    return pa.py_buffer(owner), out_off


def read_acks(buf, Py_ssize_t start, Py_ssize_t end):
    """The complete packets of ``buf[start:end]``: ``(kinds, ids, reasons, pos)``; see the module docstring."""
    cdef const uint8_t[::1] b = memoryview(buf).cast("B") if len(buf) else b"\0"
    if start < 0 or end > len(buf) or start > end:
        raise ValueError(f"start={start} end={end} do not lie within a buffer of {len(buf)} bytes")
    cdef Py_ssize_t cap = (end - start) // 2 + 1
    kinds = np.empty(cap, dtype=np.int64)
    ids = np.empty(cap, dtype=np.int64)
    reasons = np.empty(cap, dtype=np.int64)
    cdef int64_t[::1] k = kinds, d = ids, r = reasons
    cdef Py_ssize_t p = start, count = 0, q
    cdef int64_t rem, mult
    cdef int kind, nb, state
    cdef uint8_t c
    cdef bint malformed = False
    with nogil:
        while p < end:
            kind = b[p] >> 4
            q = p + 1
            rem = 0
            mult = 1
            nb = 0
            state = 0  # 0: more bytes needed, 1: remaining length read
            while nb < 4 and q < end:
                c = b[q]
                q += 1
                nb += 1
                rem += (c & 0x7F) * mult
                mult *= 128
                if not (c & 0x80):
                    state = 1
                    break
            if state == 0:
                malformed = nb == 4
                break
            if q + rem > end:
                break
            k[count] = kind
            if 4 <= kind <= 7 and rem >= 2:
                d[count] = (b[q] << 8) | b[q + 1]
                r[count] = b[q + 2] if rem >= 3 else 0
            else:
                d[count] = -1
                r[count] = 0
            count += 1
            p = q + rem
    if malformed:
        raise ValueError(f"malformed remaining length at {p}")
    return kinds[:count], ids[:count], reasons[:count], p
