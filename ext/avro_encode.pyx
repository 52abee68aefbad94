# cython: language_level=3
"""Arrow columns -> schemaless Avro records, one per row: the fast path of ``Avro.encode``.

:func:`encode` runs the row loop of ``_avro_encode.h`` with the GIL released over the Arrow buffers of
one column per record field (the caller picks and orders them; enum fields arrive as int32 symbol
indices, -1 for a value not among the symbols). The result is byte for byte what fastavro's
``schemaless_writer`` writes for the same values. A row that a field rejects is left empty and null
in the output and reported by its ``err_code`` / ``err_field``; the caller words the message.

Contract:

* ``columns``: one ``pa.Array`` per field, all of length ``n``, of a layout ``SOURCES`` names
  (bool, int8..64, uint8..64, float32/64, binary/string, large binary/string, fixed_size_binary,
  date32, timestamp: their storage is read, never their logical type).
* ``kinds`` / ``unions`` / ``params``: the program (``KINDS`` codes; unions 0 plain, 1 ``["null",
  T]``, 2 ``[T, "null"]``; params: the fixed size). ``bounds``: per field ``(lo, hi)`` of the
  accepted source values (dates and timestamps, else ignored); ``scales``: per field ``(mul, div)``:
  the Avro value is ``floor(v * mul / div)`` (timestamps; ``(1, 1)`` otherwise).
* ``header``: bytes written before every record (``b""`` or the Confluent 5 bytes).
* Every column passes Arrow's full validation first (``_validate.pxi``: offsets in range, strings
  UTF-8), else ``ValueError`` naming the field: invalid Arrow data is refused, never indexed.
* Returns ``(payloads, ok, err_code, err_field)``: a ``pa.BinaryArray`` (failed rows null), the bool
  mask of the rows encoded, and for the failed rows the ``ERRORS`` code and the field index; or
  ``None`` when the output could pass 2 GiB (the caller then encodes on its general path).
"""

from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free

import numpy as np
import pyarrow as pa

__all__ = ["ERRORS", "KINDS", "encode", "source"]


cdef extern from "_avro_encode.h" nogil:
    enum:
        AFE_NULL, AFE_BOOL, AFE_INT, AFE_LONG, AFE_FLOAT, AFE_DOUBLE, AFE_STRING, AFE_BYTES, AFE_FIXED,
        AFE_ENUM, AFE_DATE, AFE_TS_MS, AFE_TS_US
    enum:
        AFS_NONE, AFS_BOOL, AFS_I8, AFS_I16, AFS_I32, AFS_I64, AFS_U8, AFS_U16, AFS_U32, AFS_U64,
        AFS_F32, AFS_F64, AFS_BIN32, AFS_BIN64, AFS_FSB
    enum:
        AFE_E_OK, AFE_E_NULL, AFE_E_INT_RANGE, AFE_E_LONG_RANGE, AFE_E_FIXED, AFE_E_ENUM, AFE_E_DATE,
        AFE_E_TS
    ctypedef struct afe_col:
        int32_t kind
        int32_t union_
        int32_t src
        int32_t width
        int64_t param
        int64_t offset
        const uint8_t *valid
        const uint8_t *values
        const uint8_t *offsets
        int64_t lo
        int64_t hi
        int64_t mul
        int64_t div
    int64_t afe_encode(int64_t n, int nfields, const afe_col *cols, const uint8_t *header, int hlen,
                       uint8_t *out, int32_t *offs, uint8_t *ok, uint8_t *err_code, int32_t *err_field)

#: The kind codes of the program, by name (the same as ``avro_decode.KINDS``).
KINDS = {
    "null": AFE_NULL,
    "boolean": AFE_BOOL,
    "int": AFE_INT,
    "long": AFE_LONG,
    "float": AFE_FLOAT,
    "double": AFE_DOUBLE,
    "string": AFE_STRING,
    "bytes": AFE_BYTES,
    "fixed": AFE_FIXED,
    "enum": AFE_ENUM,
    "date": AFE_DATE,
    "timestamp-millis": AFE_TS_MS,
    "timestamp-micros": AFE_TS_US,
}

#: The failure codes, by name.
ERRORS = {
    "null": AFE_E_NULL,
    "int-range": AFE_E_INT_RANGE,
    "long-range": AFE_E_LONG_RANGE,
    "fixed-size": AFE_E_FIXED,
    "enum-symbol": AFE_E_ENUM,
    "date-range": AFE_E_DATE,
    "timestamp-range": AFE_E_TS,
}

# The most bytes a non-null value of each kind takes, besides string/bytes data.
_MAX_WIDTH = {
    AFE_NULL: 0, AFE_BOOL: 1, AFE_INT: 10, AFE_LONG: 10, AFE_FLOAT: 4, AFE_DOUBLE: 8, AFE_STRING: 10,
    AFE_BYTES: 10, AFE_FIXED: 0, AFE_ENUM: 10, AFE_DATE: 10, AFE_TS_MS: 10, AFE_TS_US: 10,
}


def source(t):
    """The ``AFS_*`` layout the kernel reads for Arrow type ``t`` (``AFS_NONE`` when it cannot)."""
    if pa.types.is_boolean(t):
        return AFS_BOOL
    if pa.types.is_timestamp(t):
        return AFS_I64
    if pa.types.is_date32(t):
        return AFS_I32
    if pa.types.is_integer(t):
        return {
            8: AFS_I8, 16: AFS_I16, 32: AFS_I32, 64: AFS_I64
        }[t.bit_width] if pa.types.is_signed_integer(t) else {
            8: AFS_U8, 16: AFS_U16, 32: AFS_U32, 64: AFS_U64
        }[t.bit_width]
    if pa.types.is_float32(t):
        return AFS_F32
    if pa.types.is_float64(t):
        return AFS_F64
    if pa.types.is_binary(t) or pa.types.is_string(t):
        return AFS_BIN32
    if pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        return AFS_BIN64
    if pa.types.is_fixed_size_binary(t):
        return AFS_FSB
    return AFS_NONE


include "_validate.pxi"
include "_owned.pxi"


def encode(columns, kinds, unions, params, bounds, scales, bytes header):
    """Encode every row; see the module docstring."""
    cdef int nfields = len(kinds)
    if not (len(columns) == len(unions) == len(params) == len(bounds) == len(scales) == nfields):
        raise ValueError("columns, kinds, unions, params, bounds and scales must have one entry per field")
    cdef int64_t n = len(columns[0]) if nfields else 0
    cdef int hlen = len(header)
    cdef int64_t bound = n * hlen
    cdef int64_t span
    cdef afe_col *cols = <afe_col *>calloc(max(nfields, 1), sizeof(afe_col))
    cdef int k
    if cols == NULL:
        raise MemoryError()
    try:
        for k in range(nfields):
            # The output bound below and the loop trust the offsets (and strings' UTF-8): check them.
            col = _validated(columns[k], f"field {k}")
            kind = int(kinds[k])
            if len(col) != n:
                raise ValueError("columns differ in length")
            if kind < AFE_NULL or kind > AFE_TS_US:
                raise ValueError(f"unknown field kind {kind}")
            if int(unions[k]) not in (0, 1, 2):
                raise ValueError("unions must be 0, 1 or 2")
            src = source(col.type) if kind != AFE_NULL else AFS_NONE
            if kind != AFE_NULL and src == AFS_NONE:
                raise TypeError(f"field {k}: the kernel does not read {col.type}")
            bufs = col.buffers()
            cols[k].kind = kind
            cols[k].union_ = int(unions[k])
            cols[k].src = src
            cols[k].param = int(params[k])
            cols[k].offset = col.offset
            cols[k].valid = _addr(bufs[0]) if col.null_count else NULL
            cols[k].lo = int(bounds[k][0])
            cols[k].hi = int(bounds[k][1])
            cols[k].mul = int(scales[k][0])
            cols[k].div = int(scales[k][1])
            if cols[k].mul < 1 or cols[k].div < 1:
                raise ValueError("scales must be >= 1")
            if kind == AFE_NULL:
                continue
            span = 0
            if src == AFS_BIN32 or src == AFS_BIN64:
                cols[k].offsets = _addr(bufs[1])
                cols[k].values = _addr(bufs[2])
                if n:
                    width = 4 if src == AFS_BIN32 else 8
                    o = np.frombuffer(bufs[1], dtype=np.int32 if width == 4 else np.int64)
                    span = int(o[col.offset + n]) - int(o[col.offset])
                if cols[k].values == NULL:  # an all-empty array may have no data buffer
                    cols[k].values = <const uint8_t *>b""
            elif src == AFS_FSB:
                cols[k].width = col.type.byte_width
                cols[k].values = _addr(bufs[1])
                span = n * cols[k].width
            else:
                cols[k].values = _addr(bufs[1])
            if kind == AFE_FIXED:
                # A wrong-sized value fails before it is copied, so the fixed size bounds it.
                span = n * cols[k].param
            bound += n * (_MAX_WIDTH[kind] + (1 if unions[k] else 0)) + span
        if bound > 2**31 - 1:
            return None
        out = np.empty(max(bound, 1), np.uint8)
        offs = np.empty(n + 1, np.int32)
        ok = np.empty(max(n, 1), np.uint8)
        err_code = np.zeros(max(n, 1), np.uint8)
        err_field = np.zeros(max(n, 1), np.int32)
        hdr = header if hlen else b"\0"
        return _run(n, nfields, cols, hdr, hlen, out, offs, ok, err_code, err_field)
    finally:
        free(cols)


cdef object _run(int64_t n, int nfields, afe_col *cols, bytes hdr, int hlen, object out, object offs,
                 object ok, object err_code, object err_field):
    cdef uint8_t[::1] od = out
    cdef int32_t[::1] fd = offs
    cdef uint8_t[::1] kd = ok
    cdef uint8_t[::1] ed = err_code
    cdef int32_t[::1] gd = err_field
    cdef const uint8_t *h = hdr
    cdef int64_t failed
    with nogil:
        failed = afe_encode(n, nfields, cols, h, hlen, &od[0], &fd[0], &kd[0], &ed[0], &gd[0])
    mask = ok[:n].view(bool)
    validity = None if failed == 0 else pa.py_buffer(np.packbits(mask, bitorder="little"))
    used = int(offs[n])
    payloads = pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(offs), pa.py_buffer(out[:used])], null_count=failed
    )
    return payloads, mask, err_code[:n], err_field[:n]
