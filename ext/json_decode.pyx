# cython: language_level=3
"""Flat JSON objects -> one text column per wanted key: the fast path of ``Json.decode``.

:func:`scan` checks every payload strictly as exactly one JSON object (``_json_decode.h``) and, for
each wanted key, appends its scalar value as text (strings unescaped, numbers verbatim, booleans as
``true``/``false``) with the GIL released; ``null`` and missing keys give null slots. The caller casts
the text columns with Arrow's cast kernels. No Python object is built per payload.

Contract:

* ``data``: the uint8 data buffer; ``offsets``: int64 payload boundaries (``n + 1``; payload ``i`` is
  ``data[offsets[i]:offsets[i + 1]]``). The offsets are checked after their cast to int64 (ascending,
  within ``data``; else ``ValueError``), so no byte outside ``data`` is read. ``keys``: the wanted keys (bytes, without escapes);
  ``kinds``: per key ``0`` string, ``1`` number, ``2`` boolean; ``strict``: a key not in ``keys``
  stops the scan.
* Returns ``(columns, None, -1)`` with one ``pa.large_string`` array per key, or ``(None, reason,
  row)`` for the first payload the fast path does not take (``reason`` is one of ``"syntax"``,
  ``"mismatch"``, ``"duplicate"``, ``"unexpected"``, ``"unsupported"``): the caller then decodes the
  call on its general path, which decides what each payload means.
* UTF-8 validity of the payloads is not checked here (the caller checks it once, vectorized).
* ``threads``: 0 scans calls of >= 65,536 payloads as two row ranges on two threads (stitched into
  the same result), 1 always scans on the calling thread, >= 2 always splits.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc

import numpy as np
import pyarrow as pa

__all__ = ["scan"]


cdef extern from "_json_decode.h" nogil:
    enum:
        AFJ_OK, AFJ_SYNTAX, AFJ_MISMATCH, AFJ_DUPLICATE, AFJ_UNEXPECTED, AFJ_UNSUPPORTED, AFJ_NOMEM
    ctypedef struct afj_buf:
        uint8_t *data
        int64_t len
        int64_t cap
    int afj_scan(const uint8_t *data, const int64_t *offsets, int64_t n, int nkeys, const uint8_t **keys,
                 const int64_t *keylens, const uint8_t *kinds, int strict, int64_t **out_offsets,
                 uint8_t **out_valid, afj_buf *bufs, int64_t *seen, int64_t *bad_row)
    int afj_scan2(const uint8_t *data, const int64_t *offsets, int64_t n, int nkeys, const uint8_t **keys,
                  const int64_t *keylens, const uint8_t *kinds, int strict, int64_t **out_offsets,
                  uint8_t **out_valid, afj_buf *bufs, afj_buf *bufs2, int64_t **offs2, uint8_t **valid2,
                  int64_t *seen, int64_t *bad_row)

#: Rows at which threads=0 splits the scan across two threads.
_PARALLEL_MIN_ROWS = 65_536


include "_owned.pxi"


cdef object _take(afj_buf *b):
    """Move ``b``'s block into an Arrow buffer (``b`` no longer owns it)."""
    cdef _Owned owner = _Owned.__new__(_Owned)
    owner.data = b.data
    owner.size = b.len
    b.data = NULL
    b.len = b.cap = 0
    return pa.py_buffer(owner)


_REASONS = {
    AFJ_SYNTAX: "syntax",
    AFJ_MISMATCH: "mismatch",
    AFJ_DUPLICATE: "duplicate",
    AFJ_UNEXPECTED: "unexpected",
    AFJ_UNSUPPORTED: "unsupported",
}


def scan(data, offsets, keys, kinds, bint strict=False, int threads=0):
    """Scan the payloads; see the module docstring."""
    cdef const uint8_t[::1] d = np.ascontiguousarray(data, dtype=np.uint8) if len(data) else np.zeros(1, np.uint8)
    cdef const int64_t[::1] o = np.ascontiguousarray(offsets, dtype=np.int64)
    cdef int64_t n = len(offsets) - 1
    cdef int nkeys = len(keys)
    if n < 0:
        raise ValueError("offsets must hold at least one entry")
    if len(kinds) != nkeys:
        raise ValueError(f"{len(kinds)} kinds for {nkeys} keys")
    # Checked on the int64 copy the kernel reads: unsigned or wider offsets may wrap in the cast.
    if n and (o[0] < 0 or o[n] > (d.shape[0] if len(data) else 0) or np.any(np.diff(np.asarray(o)) < 0)):
        raise ValueError("offsets are not ascending within the data buffer")
    key_bytes = list(keys)
    if not all(isinstance(key, bytes) for key in key_bytes):
        raise TypeError("keys must be bytes")
    kind_arr = np.ascontiguousarray(kinds, dtype=np.uint8)
    if nkeys and (kind_arr.max() > 2):
        raise ValueError("kinds must be 0 (string), 1 (number) or 2 (boolean)")
    cdef const uint8_t[::1] kd = kind_arr if nkeys else np.zeros(1, np.uint8)
    out_off = [np.zeros(n + 1, np.int64) for _ in range(nkeys)]
    out_valid = [np.zeros(max(n, 1), np.uint8) for _ in range(nkeys)]
    keylens = np.array([len(key) for key in key_bytes] or [0], dtype=np.int64)
    cdef const int64_t[::1] kl = keylens
    cdef const uint8_t **kptr = <const uint8_t **>calloc(max(nkeys, 1), sizeof(uint8_t *))
    cdef int64_t **optr = <int64_t **>calloc(max(nkeys, 1), sizeof(int64_t *))
    cdef uint8_t **vptr = <uint8_t **>calloc(max(nkeys, 1), sizeof(uint8_t *))
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {threads}")
    cdef bint two = n >= 2 and (threads >= 2 or (threads == 0 and n >= _PARALLEL_MIN_ROWS))
    cdef afj_buf *bufs = <afj_buf *>calloc(max(nkeys, 1), sizeof(afj_buf))
    cdef afj_buf *bufs2 = <afj_buf *>calloc(max(nkeys, 1), sizeof(afj_buf))
    cdef int64_t **offs2 = <int64_t **>calloc(max(nkeys, 1), sizeof(int64_t *))
    cdef uint8_t **valid2 = <uint8_t **>calloc(max(nkeys, 1), sizeof(uint8_t *))
    cdef int64_t *seen = <int64_t *>calloc(2 * max(nkeys, 1), sizeof(int64_t))
    cdef int64_t bad = -1
    cdef int rc = AFJ_OK
    cdef int k
    cdef int64_t[::1] ov
    cdef uint8_t[::1] vv
    try:
        if (kptr == NULL or optr == NULL or vptr == NULL or bufs == NULL or seen == NULL or bufs2 == NULL
                or offs2 == NULL or valid2 == NULL):
            raise MemoryError()
        # Sized so that the common case never grows: a column's text is at most its share of the
        # input (the capacity is virtual memory until written).
        for k in range(nkeys):
            bufs[k].cap = max(1024, 2 * (o[n] - o[0]) // max(nkeys, 1) + 64)
            bufs[k].data = <uint8_t *>malloc(bufs[k].cap)
            if bufs[k].data == NULL:
                raise MemoryError()
            if two:
                bufs2[k].cap = bufs[k].cap // 2 + 64
                bufs2[k].data = <uint8_t *>malloc(bufs2[k].cap)
                if bufs2[k].data == NULL:
                    raise MemoryError()
        for k in range(nkeys):
            kptr[k] = <const uint8_t *>(<bytes>key_bytes[k])
            ov = out_off[k]
            optr[k] = &ov[0]
            vv = out_valid[k]
            vptr[k] = &vv[0]
        with nogil:
            if two:
                rc = afj_scan2(&d[0], &o[0], n, nkeys, kptr, &kl[0], &kd[0], strict, optr, vptr, bufs, bufs2,
                               offs2, valid2, seen, &bad)
            else:
                rc = afj_scan(&d[0], &o[0], n, nkeys, kptr, &kl[0], &kd[0], strict, optr, vptr, bufs, seen, &bad)
        if rc == AFJ_NOMEM:
            raise MemoryError()
        if rc != AFJ_OK:
            return None, _REASONS.get(rc, "syntax"), int(bad)
        columns = []
        for k in range(nkeys):
            text = _take(&bufs[k])
            valid = out_valid[k][:n].view(bool)
            nulls = n - int(np.count_nonzero(valid))
            bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
            columns.append(
                pa.Array.from_buffers(
                    pa.large_string(), n, [bitmap, pa.py_buffer(out_off[k]), text],
                    null_count=nulls,
                )
            )
        return columns, None, -1
    finally:
        for k in range(nkeys):
            free(bufs[k].data)
            free(bufs2[k].data)
        free(bufs2)
        free(offs2)
        free(valid2)
        free(kptr)
        free(optr)
        free(vptr)
        free(bufs)
        free(seen)
