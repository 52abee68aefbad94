# cython: language_level=3
"""Flat schemaless Avro records -> Arrow columns: the fast path of ``Avro.decode``.

:func:`decode` runs the row loop of ``_avro_decode.h`` with the GIL released: each payload is one
Avro record (after the 5-byte Confluent header when ``ids`` is given) whose fields are described by
a *program* (one ``kind``, ``union`` layout and ``param`` per field, see the header). Decoded rows
are written densely into column buffers that become Arrow arrays without a Python object per row.
A payload the strict decoder does not take (truncated, corrupt, trailing bytes, a schema id not in
``ids``, a value Python's datetime could not hold, ...) is simply left out: ``ok[i]`` is False and
the caller decodes it on its general path (fastavro), which decides what it means. No byte outside a
payload's ``[offsets[i], offsets[i + 1])`` is read.

Contract:

* ``data``: the uint8 data buffer; ``offsets``: int64 payload boundaries (``n + 1``; checked after
  their cast to int64: ascending, within ``data``, else ``ValueError``); ``skip``: None
  or a uint8/bool array of ``n``, nonzero for payloads not to decode (nulls).
* ``ids``: None (no framing) or a non-empty sequence of accepted Confluent schema ids.
* ``kinds`` / ``unions`` / ``params``: the program (``AFA_*`` kinds; unions 0 plain, 1 ``["null",
  T]``, 2 ``[T, "null"]``; params: fixed size or enum symbol count). ``types``: the Arrow type of
  each field's column. ``symbols``: per field, the enum's symbols as a ``pa.string()`` array (its
  indices are taken from it), else None.
* Returns ``(columns, ok)``: the arrays (one per field, length ``ok.sum()``) and the bool mask of the
  payloads decoded; or ``(None, None)`` when a string/bytes column would pass 2 GiB (the caller
  then decodes the call on its general path).
"""

from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free

import numpy as np
import pyarrow as pa

__all__ = ["decode", "KINDS"]


cdef extern from "_avro_decode.h" nogil:
    enum:
        AFA_NULL, AFA_BOOL, AFA_INT, AFA_LONG, AFA_FLOAT, AFA_DOUBLE, AFA_STRING, AFA_BYTES, AFA_FIXED, AFA_ENUM,
        AFA_DATE, AFA_TS_MS, AFA_TS_US
    enum:
        AFA_OK, AFA_OVERFLOW
    ctypedef struct afa_col:
        uint8_t *values
        uint8_t *valid
        int32_t *offsets
        uint8_t *data
        int64_t cap
        int64_t used
    int64_t afa_width(int kind, int64_t param)
    int afa_decode(const uint8_t *data, const int64_t *offsets, int64_t n, const uint8_t *skip,
                   const int64_t *ids, int nids, int nfields, const int32_t *kinds, const int32_t *unions,
                   const int64_t *params, afa_col *cols, int64_t *saved, uint8_t *ok, int64_t *n_out)

#: The kind codes of the program, by name.
KINDS = {
    "null": AFA_NULL,
    "boolean": AFA_BOOL,
    "int": AFA_INT,
    "long": AFA_LONG,
    "float": AFA_FLOAT,
    "double": AFA_DOUBLE,
    "string": AFA_STRING,
    "bytes": AFA_BYTES,
    "fixed": AFA_FIXED,
    "enum": AFA_ENUM,
    "date": AFA_DATE,
    "timestamp-millis": AFA_TS_MS,
    "timestamp-micros": AFA_TS_US,
}


cdef object _bitmap(object valid, int64_t m):
    """The Arrow validity bitmap of the first ``m`` bytes of ``valid`` (None when all are set)."""
    if valid is None or m == 0:
        return None, 0
    v = valid[:m].view(bool)
    nulls = m - int(np.count_nonzero(v))
    if nulls == 0:
        return None, 0
    return pa.py_buffer(np.packbits(v, bitorder="little")), nulls


def decode(data, offsets, skip, ids, kinds, unions, params, types, symbols):
    """Decode the payloads the strict decoder takes; see the module docstring."""
    cdef const uint8_t[::1] d = np.ascontiguousarray(data, dtype=np.uint8) if len(data) else np.zeros(1, np.uint8)
    cdef const int64_t[::1] o = np.ascontiguousarray(offsets, dtype=np.int64)
    cdef int64_t n = len(offsets) - 1
    cdef int nfields = len(kinds)
    if n < 0:
        raise ValueError("offsets must hold at least one entry")
    if not (len(unions) == len(params) == len(types) == len(symbols) == nfields):
        raise ValueError("kinds, unions, params, types and symbols must have one entry per field")
    # Checked on the int64 copy the kernel reads: unsigned or wider offsets may wrap in the cast.
    if n and (o[0] < 0 or o[n] > (d.shape[0] if len(data) else 0) or np.any(np.diff(np.asarray(o)) < 0)):
        raise ValueError("offsets are not ascending within the data buffer")
    kind_arr = np.ascontiguousarray(kinds, dtype=np.int32) if nfields else np.zeros(1, np.int32)
    union_arr = np.ascontiguousarray(unions, dtype=np.int32) if nfields else np.zeros(1, np.int32)
    param_arr = np.ascontiguousarray(params, dtype=np.int64) if nfields else np.zeros(1, np.int64)
    if nfields and (kind_arr.min() < AFA_NULL or kind_arr.max() > AFA_TS_US):
        raise ValueError("unknown field kind")
    if nfields and (union_arr.min() < 0 or union_arr.max() > 2):
        raise ValueError("unions must be 0, 1 or 2")
    if nfields and param_arr.min() < 0:
        raise ValueError("params must be >= 0")
    cdef const int32_t[::1] kd = kind_arr
    cdef const int32_t[::1] ud = union_arr
    cdef const int64_t[::1] pd = param_arr
    id_arr = np.ascontiguousarray(list(ids) if ids is not None else [0], dtype=np.int64)
    cdef const int64_t[::1] idd = id_arr
    cdef int nids = len(id_arr) if ids is not None else 0
    if ids is not None and nids == 0:
        raise ValueError("ids must not be empty (pass None for unframed payloads)")
    skip_arr = None
    cdef const uint8_t[::1] sd
    cdef const uint8_t *sptr = NULL
    if skip is not None:
        skip_arr = np.ascontiguousarray(skip).view(np.uint8)
        if len(skip_arr) != n:
            raise ValueError(f"skip has {len(skip_arr)} entries for {n} payloads")
        if n:
            sd = skip_arr
            sptr = &sd[0]
    ok = np.empty(max(n, 1), dtype=np.uint8)
    cdef uint8_t[::1] okd = ok
    total = int(o[n] - o[0]) if n else 0
    values, valids, offs, datas = [], [], [], []
    cdef afa_col *cols = <afa_col *>calloc(max(nfields, 1), sizeof(afa_col))
    cdef int64_t *saved = <int64_t *>calloc(max(nfields, 1), sizeof(int64_t))
    cdef int k
    cdef int64_t w
    cdef uint8_t[::1] u8
    cdef int32_t[::1] i32
    cdef int64_t m = 0
    cdef int rc = AFA_OK
    try:
        if cols == NULL or saved == NULL:
            raise MemoryError()
        for k in range(nfields):
            w = afa_width(kd[k], pd[k])
            vals = np.empty(max(n * w, 1), np.uint8) if kd[k] != AFA_NULL else None
            valid = np.empty(max(n, 1), np.uint8) if ud[k] else None
            is_var = kd[k] == AFA_STRING or kd[k] == AFA_BYTES
            off = np.empty(n + 1, np.int32) if is_var else None
            buf = np.empty(max(total, 1), np.uint8) if is_var else None
            values.append(vals)
            valids.append(valid)
            offs.append(off)
            datas.append(buf)
            if vals is not None:
                u8 = vals
                cols[k].values = &u8[0]
            if valid is not None:
                u8 = valid
                cols[k].valid = &u8[0]
            if is_var:
                i32 = off
                cols[k].offsets = &i32[0]
                u8 = buf
                cols[k].data = &u8[0]
                cols[k].cap = len(buf)
        with nogil:
            rc = afa_decode(&d[0], &o[0], n, sptr, &idd[0], nids, nfields, &kd[0], &ud[0], &pd[0], cols, saved,
                            &okd[0], &m)
        if rc == AFA_OVERFLOW:
            return None, None
        columns = []
        for k in range(nfields):
            kind = kd[k]
            t = types[k]
            bitmap, nulls = _bitmap(valids[k], m)
            if kind == AFA_NULL:
                columns.append(pa.nulls(m, t))
            elif kind == AFA_BOOL:
                bits = pa.py_buffer(np.packbits(values[k][:m].view(bool), bitorder="little"))
                columns.append(pa.Array.from_buffers(t, m, [bitmap, bits], null_count=nulls))
            elif kind == AFA_STRING or kind == AFA_BYTES:
                used = int(offs[k][m])
                columns.append(
                    pa.Array.from_buffers(
                        t, m, [bitmap, pa.py_buffer(offs[k][: m + 1]), pa.py_buffer(datas[k][:used])],
                        null_count=nulls,
                    )
                )
            elif kind == AFA_ENUM:
                indices = pa.Array.from_buffers(
                    pa.int32(), m, [bitmap, pa.py_buffer(values[k][: 4 * m])], null_count=nulls
                )
                column = symbols[k].take(indices)
                columns.append(column if column.type == t else column.cast(t))
            else:
                w = afa_width(kind, pd[k])
                columns.append(
                    pa.Array.from_buffers(t, m, [bitmap, pa.py_buffer(values[k][: w * m])], null_count=nulls)
                )
        return columns, ok[:n].view(bool)
    finally:
        free(cols)
        free(saved)
