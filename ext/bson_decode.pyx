# cython: language_level=3
"""Concatenated BSON documents -> one Arrow batch: the fast path of ``MongoSource`` without pymongoarrow.

:func:`decode_documents` checks the document headers, then walks every element of every document in
``_bson_decode.h`` with the GIL released, appending the values of the schema's top-level fields to
column buffers (validity bytes, fixed-width values or offsets + data) that become Arrow arrays
without a copy or a Python object per value. Fields not in the schema (including embedded documents
and arrays) are skipped by their length.

Contract (the results equal ``bson.decode_all(raw)`` followed by
``arrowflow.connectors.mongodb.decode_documents(docs, schema)``, the oracle of the tests):

* ``raw``: bytes-like, zero or more complete BSON documents back to back (``find_raw_batches``).
* Column types and the BSON values each takes (anything else is the slow path, below):

  ========================================  ==============================================================
  column                                    BSON values
  ========================================  ==============================================================
  bool                                      boolean
  int32                                     int32; int64 within int32's range
  int64                                     int32, int64
  float64                                   double; int32; int64 with ``|v| <= 2**53`` (pyarrow's rule)
  string / large_string                     UTF-8 string (strictly valid); ObjectId as 24 lowercase hex
  binary / large_binary                     binary of subtype 0; ObjectId as its 12 bytes
  fixed_size_binary(12)                     ObjectId; binary of subtype 0 and length 12
  timestamp ms / us / ns (any tz)           UTC datetime within Python's datetime range (years 1-9999)
                                            that fits the unit's int64
  ========================================  ==============================================================

  BSON null and undefined, and missing fields, are null slots. Other Arrow types (nested, decimal,
  date, float32, small ints, timestamp[s], ...) in the schema are the slow path.
* Returns ``(batch, None)`` (the batch has exactly ``schema``), or ``(None, reason)`` when the input
  needs the caller's general path: a value of a BSON type its column does not take (double into an
  int column, string into binary, ...), an integer out of range, a string that is not valid UTF-8, a
  binary of another subtype, a datetime outside Python's range, a field given twice in one document,
  or a schema the kernel does not handle. The general path then decides (converts or raises) exactly
  as it always did.
* Skipped fields (not in the schema) are walked, embedded documents and arrays recursively, and
  checked for what pymongo's decoder refuses: a string (also regex, symbol, code, DBPointer) that is
  not strict UTF-8, a datetime outside Python's range, a subtype-2 binary whose inner length
  disagrees, nesting deeper than 100 levels -> the slow path (whose ``bson.decode_all`` then raises as
  before). So a batch is returned only for input that the general path decodes too.
* Malformed BSON (a length out of range, a missing terminator, an unknown element type, a boolean
  byte other than 0/1, a document key that is not UTF-8, code-with-scope lengths that disagree),
  anywhere in ``raw`` and at any depth, raises ``ValueError``; nothing is read outside ``raw``. This
  holds for the slow-path answers too: before returning ``(None, reason)`` the kernel checks the
  structure of the whole input (``bd_validate``, iterative, any depth), so the bytes a caller then
  hands to ``bson.decode_all`` are well formed (pymongo's C decoder bounds a nested value by the
  rest of the buffer, not by its enclosing document, and reads past the buffer on some malformed
  nested arrays). :func:`check_documents` is that check alone.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free

import numpy as np
import pyarrow as pa

__all__ = ["check_documents", "decode_documents", "document_offsets"]


cdef extern from "_bson_decode.h" nogil:
    enum:
        BK_BOOL, BK_I32, BK_I64, BK_F64, BK_STR, BK_BIN, BK_FSB12, BK_TS
    enum:
        BD_OK, BD_SLOW, BD_MALFORMED, BD_NOMEM
    enum:
        BS_TYPE, BS_RANGE, BS_UTF8, BS_SUBTYPE, BS_DUPLICATE, BS_DATETIME, BS_LENGTH, BS_DEPTH
    enum:
        BM_DOC_LEN, BM_DOC_END, BM_KEY, BM_VALUE, BM_STRING, BM_BINARY, BM_BOOL, BM_TYPE, BM_EOO, BM_CODE

    ctypedef struct bdcol:
        int kind
        const uint8_t *name
        int32_t namelen
        int64_t ts_mul
        uint8_t *valid
        uint8_t *values
        int64_t *offsets
        uint8_t *buf
        int64_t len
        int64_t cap
        int64_t seen

    ctypedef struct bderr:
        int64_t row
        int64_t pos
        int32_t column
        int32_t code
        int32_t btype

    int64_t bd_count(const uint8_t *d, int64_t len, bderr *err)
    int bd_offsets(const uint8_t *d, int64_t len, int64_t n, int64_t *out)
    int bd_decode(const uint8_t *d, int64_t len, int64_t n, bdcol *cols, int ncols, bderr *err)
    int bd_validate(const uint8_t *d, int64_t len, int64_t n, bderr *err)


_SLOW = {
    BS_TYPE: "BSON type 0x{t:02x} does not fit the column",
    BS_RANGE: "integer or datetime out of the column's range",
    BS_UTF8: "string is not valid UTF-8",
    BS_SUBTYPE: "binary subtype is not 0 (or a subtype-2 binary whose lengths disagree)",
    BS_DUPLICATE: "field given twice in one document",
    BS_DATETIME: "datetime outside Python's datetime range",
    BS_LENGTH: "binary length is not the column's width",
    BS_DEPTH: "embedded documents nested deeper than 100 levels",
}
_MALFORMED = {
    BM_DOC_LEN: "document length out of range",
    BM_DOC_END: "document does not end with NUL",
    BM_KEY: "element name not NUL-terminated inside its document, or not UTF-8",
    BM_VALUE: "value runs past the end of its document",
    BM_STRING: "string length out of range or string not NUL-terminated",
    BM_BINARY: "binary length out of range",
    BM_BOOL: "boolean byte is not 0 or 1",
    BM_TYPE: "unknown BSON element type 0x{t:02x}",
    BM_EOO: "element type 0 before the end of the document",
    BM_CODE: "code-with-scope lengths do not add up",
}
# Fixed widths (bytes per row of the values buffer) of the fixed-width kinds.
_WIDTH = {BK_BOOL: 1, BK_I32: 4, BK_I64: 8, BK_F64: 8, BK_FSB12: 12, BK_TS: 8}
_TS_MUL = {"ms": 1, "us": 1000, "ns": 1000000}


def _kind(t):
    """(kind, ts_mul) for a column type, or None when it has no fast path."""
    if pa.types.is_boolean(t):
        return BK_BOOL, 1
    if pa.types.is_int32(t):
        return BK_I32, 1
    if pa.types.is_int64(t):
        return BK_I64, 1
    if pa.types.is_float64(t):
        return BK_F64, 1
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return BK_STR, 1
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return BK_BIN, 1
    if pa.types.is_fixed_size_binary(t) and t.byte_width == 12:
        return BK_FSB12, 1
    if pa.types.is_timestamp(t) and t.unit in _TS_MUL:
        return BK_TS, _TS_MUL[t.unit]
    return None


include "_owned.pxi"


cdef object _take(bdcol *c):
    """Move ``c``'s data block into an Arrow buffer (``c`` no longer owns it)."""
    if c.buf == NULL:
        return pa.py_buffer(b"")
    cdef _Owned owner = _Owned.__new__(_Owned)
    owner.data = c.buf
    owner.size = c.len
    c.buf = NULL
    c.len = c.cap = 0
    return pa.py_buffer(owner)


def _bytes(raw):
    """(uint8 array over ``raw`` without a copy, at least one element; the real size)."""
    view = memoryview(raw).cast("B")
    if len(view) == 0:
        return np.zeros(1, np.uint8), 0
    return np.frombuffer(view, dtype=np.uint8), len(view)


cdef inline void _clear(bderr *err) noexcept:
    err.row = err.pos = 0
    err.column = -1
    err.code = err.btype = 0


cdef _malformed(bderr *err):
    """Raise the ``ValueError`` of a malformed input, from what the loop reported."""
    what = _MALFORMED[err.code].format(t=err.btype)
    raise ValueError(f"malformed BSON: document {err.row} at byte {err.pos}: {what}")


cdef int64_t _count(const uint8_t[::1] d, int64_t size) except -1:
    """The number of documents in ``d[:size]``; ``ValueError`` when a document header is malformed."""
    cdef bderr err
    cdef int64_t n
    _clear(&err)
    with nogil:
        n = bd_count(&d[0], size, &err)
    if n < 0:
        _malformed(&err)
    return n


def document_offsets(raw):
    """int64 offsets of the documents in ``raw`` (``n + 1`` entries; document ``i`` is
    ``raw[o[i]:o[i + 1]]``). Raises ``ValueError`` when a document header is malformed."""
    arr, nbytes = _bytes(raw)
    cdef const uint8_t[::1] d = arr
    cdef int64_t size = nbytes
    cdef int64_t n = _count(d, size)
    out = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef int rc
    with nogil:
        rc = bd_offsets(&d[0], size, n, &o[0])
    if rc != 0:
        raise ValueError("malformed BSON: the buffer changed while it was read")
    return out


cdef _check_structure(const uint8_t[::1] d, int64_t size, int64_t n):
    """Raise ``ValueError`` unless every document of ``d`` is structurally valid at every depth."""
    cdef bderr err
    cdef int rc
    _clear(&err)
    with nogil:
        rc = bd_validate(&d[0], size, n, &err)
    if rc == BD_NOMEM:
        raise MemoryError()
    if rc == BD_MALFORMED:
        _malformed(&err)


def check_documents(raw):
    """Raise ``ValueError`` unless ``raw`` is zero or more structurally valid BSON documents.

    Every element at every depth is inside its document (``bd_validate``): what a caller checks
    before it hands bytes that did not come through :func:`decode_documents` to ``bson.decode_all``
    (whose C decoder bounds nested values by the whole buffer, not their enclosing document).
    Returns the number of documents.
    """
    arr, nbytes = _bytes(raw)
    cdef const uint8_t[::1] d = arr
    cdef int64_t size = nbytes
    cdef int64_t n = _count(d, size)
    _check_structure(d, size, n)
    return n


def decode_documents(raw, schema):
    """Decode ``raw`` with ``schema``; see the module docstring."""
    if not isinstance(schema, pa.Schema):
        raise TypeError(f"schema must be a pyarrow.Schema, got {type(schema).__name__}")
    names = list(schema.names)
    plans = []
    declined = None
    if len(set(names)) != len(names):
        declined = "schema has duplicate field names"
    for f in schema:
        if declined is not None:
            break
        plan = _kind(f.type)
        if plan is None:
            declined = f"column {f.name!r}: type {f.type} has no fast path"
        elif "\x00" in f.name:
            declined = f"column {f.name!r}: name contains NUL"
        plans.append(plan)
    arr, nbytes = _bytes(raw)
    cdef const uint8_t[::1] d = arr
    cdef int64_t size = nbytes
    cdef int64_t n = _count(d, size)
    cdef bderr err
    _clear(&err)
    if declined is not None:
        # The caller's general path gets these bytes: only once they are known to be well formed.
        _check_structure(d, size, n)
        return None, declined
    cdef int ncols = len(plans)
    cdef int k
    cdef int rc = BD_OK
    cdef bdcol *cols = <bdcol *>calloc(max(ncols, 1), sizeof(bdcol))
    if cols == NULL:
        raise MemoryError()
    cdef uint8_t[::1] vv
    cdef int64_t[::1] ov
    name_bytes = [name.encode() for name in names]
    valid = []
    values = []
    offsets = []
    try:
        for k in range(ncols):
            kind, mul = plans[k]
            cols[k].kind = kind
            cols[k].ts_mul = mul
            cols[k].name = <const uint8_t *>(<bytes>name_bytes[k])
            cols[k].namelen = len(name_bytes[k])
            cols[k].seen = -1
            valid.append(np.zeros(max(n, 1), np.uint8))
            vv = valid[k]
            cols[k].valid = &vv[0]
            if kind in _WIDTH:
                values.append(np.zeros(max(n, 1) * _WIDTH[kind], np.uint8))
                vv = values[k]
                cols[k].values = &vv[0]
                offsets.append(None)
            else:
                values.append(None)
                offsets.append(np.zeros(n + 1, np.int64))
                ov = offsets[k]
                cols[k].offsets = &ov[0]
        with nogil:
            rc = bd_decode(&d[0], size, n, cols, ncols, &err)
        if rc == BD_NOMEM:
            raise MemoryError()
        if rc == BD_MALFORMED:
            _malformed(&err)
        if rc == BD_SLOW:
            # The rest of the input was not walked (nor nesting past 100 levels): check it all
            # before the caller's general path (pymongo's decoder) gets it.
            _check_structure(d, size, n)
            what = _SLOW[err.code].format(t=err.btype)
            if err.column < 0:
                return None, f"document {err.row}, a field not in the schema (or inside one): {what}"
            field = schema.field(err.column)
            return None, f"document {err.row}, field {field.name!r} ({field.type}): {what}"
        arrays = []
        for k in range(ncols):
            t = schema.field(k).type
            ok = valid[k][:n].view(bool)
            nulls = n - int(np.count_nonzero(ok))
            bitmap = pa.py_buffer(np.packbits(ok, bitorder="little")) if nulls else None
            kind = plans[k][0]
            if kind == BK_BOOL:
                data = pa.py_buffer(np.packbits(values[k][:n].view(bool), bitorder="little"))
                arrays.append(pa.Array.from_buffers(t, n, [bitmap, data], null_count=nulls))
            elif kind in _WIDTH:
                arrays.append(pa.Array.from_buffers(t, n, [bitmap, pa.py_buffer(values[k])], null_count=nulls))
            else:
                large = pa.large_string() if kind == BK_STR else pa.large_binary()
                arr = pa.Array.from_buffers(
                    large, n, [bitmap, pa.py_buffer(offsets[k]), _take(&cols[k])], null_count=nulls
                )
                if not t.equals(large):
                    if offsets[k][n] > 2**31 - 1:
                        return None, f"column {names[k]!r}: over 2 GiB of data for {t}"
                    arr = arr.cast(t)
                arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=schema), None
    finally:
        for k in range(ncols):
            free(cols[k].buf)
        free(cols)
