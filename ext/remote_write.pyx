# cython: language_level=3
"""Prometheus remote-write 1.0 ``WriteRequest`` encoding over Arrow buffers (the C loops are in
``_remote_write.h``).

Two functions, used by :class:`arrowflow.connectors.prometheus.PrometheusSink`:

* :func:`encode_labels` turns each row's label pairs (fixed-name string columns, constants, and an
  optional ``map<string, string>`` column) into the ``Label`` fields of its ``TimeSeries``: pairs
  sorted by name (bytewise, as the spec requires), null/empty values dropped (Prometheus treats an
  empty value as an absent label), names checked against ``[a-zA-Z_][a-zA-Z0-9_]*`` (the metric name
  ``__name__`` may also hold ``:``). Rows with a missing metric name, a duplicate label name or an
  invalid name get empty labels and a non-zero code in the returned error array (``ERRORS`` maps
  codes to messages); the caller sends those rows to its error policy.
* :func:`encode_write_request` writes one ``WriteRequest`` from samples (a series id per sample into
  a table of encoded labels, values, millisecond timestamps) taken in ``order``: consecutive samples
  of the same series form one ``TimeSeries``. The caller sorts (series, timestamp) with numpy first.
  Output bytes equal the protobuf runtime's ``SerializeToString()`` of the same message (proto3
  defaults, +0.0 and timestamp 0, are left out as it does).

Both release the GIL in their loops and build no Python object per row or sample. Inputs are not
retained. Errors: ``TypeError`` for unsupported column types, ``ValueError`` for inconsistent
lengths or out-of-range series ids / order indices (checked before any write).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ERRORS", "encode_labels", "encode_write_request"]


cdef extern from "_remote_write.h" nogil:
    ctypedef struct rw_col:
        const uint8_t *name
        int64_t name_len
        const uint8_t *const_value
        int64_t const_len
        const int64_t *offsets
        const uint8_t *data
        const uint8_t *validity
        int64_t voff

    ctypedef struct rw_map:
        const int32_t *offsets
        const uint8_t *map_validity
        int64_t map_voff
        const int64_t *key_offsets
        const uint8_t *key_data
        const int64_t *item_offsets
        const uint8_t *item_data
        const uint8_t *item_validity
        int64_t item_voff

    ctypedef struct rw_pair:
        const uint8_t *name
        int64_t name_len
        const uint8_t *value
        int64_t value_len

    int64_t rw_encode_labels(int64_t n, const rw_col *cols, int ncols, const rw_map *map,
                             rw_pair *scratch, uint8_t *out, int64_t *out_offsets, int8_t *errs)
    int64_t rw_size_request(int64_t n, const int64_t *order, const int64_t *series,
                            const int64_t *lab_off, const double *values, const int64_t *ts,
                            int64_t *run_sizes, int64_t *nruns)
    void rw_write_request(int64_t n, const int64_t *order, const int64_t *series,
                          const int64_t *lab_off, const uint8_t *lab_data, const double *values,
                          const int64_t *ts, const int64_t *run_sizes, uint8_t *out)

#: Error codes of :func:`encode_labels` and what they mean.
ERRORS = {
    1: "no metric name (__name__ is missing or empty)",
    2: "duplicate label name",
    3: "invalid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)",
    4: "invalid metric name (must match [a-zA-Z_:][a-zA-Z0-9_:]*)",
}

# Per label: tag + 3 varints of at most 10 bytes + 2 tags; a generous fixed overhead bound.
cdef int64_t _LABEL_OVERHEAD = 40


include "_validate.pxi"
include "_owned.pxi"




cdef object _as_large_string(object arr, str what):
    """A large_string array (zero-copy when it already is one); dictionaries are decoded."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not isinstance(arr, pa.Array):
        raise TypeError(f"{what} must be a pyarrow Array, got {type(arr).__name__}")
    # The loops index offsets and copy label text as it is: refuse invalid Arrow data first.
    arr = _validated(arr, what)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = pc.cast(arr, t.value_type)
        t = arr.type
    if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        return arr
    if pa.types.is_string(t) or pa.types.is_string_view(t):
        return pc.cast(arr, pa.large_string())
    if pa.types.is_binary(t) or pa.types.is_binary_view(t):
        return pc.cast(arr, pa.large_binary())
    raise TypeError(f"{what} must be a string column, got {t}")


def encode_labels(int64_t num_rows, columns, label_map=None):
    """Encode each row's labels; returns ``(labels, errors, bad)``.

    ``columns`` is a sequence of ``(name: bytes, values)`` where ``values`` is a string-like Arrow
    array of ``num_rows`` (nulls and empty strings drop the label for that row) or a ``bytes``
    constant. One of them is normally ``b"__name__"``. ``label_map`` is an optional
    ``map<string, string>`` array of ``num_rows`` whose entries are more labels.

    ``labels`` is a ``large_binary`` array (one value per row: its ``Label`` fields), ``errors`` an
    ``int8`` numpy array (0 = ok, else a key of :data:`ERRORS`; the row's labels are empty) and
    ``bad`` the number of non-zero codes.
    """
    cdef int ncols = len(columns)
    cdef rw_col *cols = NULL
    cdef rw_map cmap
    cdef rw_map *mp = NULL
    cdef rw_pair *scratch = NULL
    cdef int64_t bound = 0
    cdef int64_t max_entries = 0
    cdef int64_t bad
    cdef int c
    cdef int64_t lo, hi
    cdef const int64_t *o64
    cdef const int32_t *o32
    cdef uint8_t *out_data
    cdef int64_t *out_offsets
    cdef int8_t *out_errs
    keep = []  # references that keep the buffers alive while C reads them
    if num_rows < 0:
        raise ValueError("num_rows must be >= 0")
    errs = np.zeros(num_rows, dtype=np.int8)
    cdef int8_t[::1] errs_view = errs
    offsets_buf = pa.allocate_buffer((num_rows + 1) * 8)
    cols = <rw_col *> malloc(sizeof(rw_col) * (ncols if ncols > 0 else 1))
    if cols == NULL:
        raise MemoryError()
    try:
        for c in range(ncols):
            name, values = columns[c]
            if not isinstance(name, bytes):
                raise TypeError(f"label names must be bytes, got {type(name).__name__}")
            keep.append(name)
            cols[c].name = <const uint8_t *> PyBytes_AS_STRING(name)
            cols[c].name_len = len(name)
            cols[c].const_value = NULL
            cols[c].const_len = 0
            cols[c].offsets = NULL
            cols[c].data = NULL
            cols[c].validity = NULL
            cols[c].voff = 0
            if isinstance(values, bytes):
                keep.append(values)
                cols[c].const_value = <const uint8_t *> PyBytes_AS_STRING(values)
                cols[c].const_len = len(values)
                if len(values) == 0:
                    # An empty constant means "no such label": point at a non-NULL empty string.
                    cols[c].const_value = <const uint8_t *> PyBytes_AS_STRING(name)
                bound += num_rows * (len(name) + len(values) + _LABEL_OVERHEAD)
                continue
            arr = _as_large_string(values, f"label column {name.decode(errors='replace')!r}")
            if len(arr) != num_rows:
                raise ValueError(
                    f"label column {name.decode(errors='replace')!r} has {len(arr)} rows, "
                    f"expected {num_rows}"
                )
            keep.append(arr)
            bufs = arr.buffers()
            if bufs[1] is None:
                raise ValueError("label column has no offsets buffer")
            o64 = (<const int64_t *> _addr(bufs[1])) + <int64_t> arr.offset
            cols[c].offsets = o64
            cols[c].data = _addr(bufs[2])
            if arr.null_count:
                cols[c].validity = _addr(bufs[0])
            cols[c].voff = <int64_t> arr.offset
            lo = o64[0] if num_rows else 0
            hi = o64[num_rows] if num_rows else 0
            bound += (hi - lo) + num_rows * (len(name) + _LABEL_OVERHEAD)
        if label_map is not None:
            if isinstance(label_map, pa.ChunkedArray):
                label_map = label_map.combine_chunks()
            if not isinstance(label_map, pa.MapArray):
                raise TypeError(f"label_map must be a map<string, string> array, got {label_map.type}")
            if len(label_map) != num_rows:
                raise ValueError(f"label_map has {len(label_map)} rows, expected {num_rows}")
            label_map = _validated(label_map, "label_map")
            keys = _as_large_string(label_map.keys, "label_map keys")
            items = _as_large_string(label_map.items, "label_map values")
            map_offsets = label_map.offsets  # absolute offsets into keys/items (n + 1)
            mbufs = label_map.buffers()
            kb = keys.buffers()
            ib = items.buffers()
            keep.extend((label_map, keys, items, map_offsets, mbufs, kb, ib))
            o32 = (<const int32_t *> _addr(map_offsets.buffers()[1])) + <int64_t> map_offsets.offset
            cmap.offsets = o32
            cmap.map_validity = NULL
            if label_map.null_count:
                cmap.map_validity = _addr(mbufs[0])
            cmap.map_voff = <int64_t> label_map.offset
            cmap.key_offsets = (<const int64_t *> _addr(kb[1])) + <int64_t> keys.offset
            cmap.key_data = _addr(kb[2])
            cmap.item_offsets = (<const int64_t *> _addr(ib[1])) + <int64_t> items.offset
            cmap.item_data = _addr(ib[2])
            cmap.item_validity = NULL
            if items.null_count:
                cmap.item_validity = _addr(ib[0])
            cmap.item_voff = <int64_t> items.offset
            mp = &cmap
            if num_rows:
                counts = np.diff(np.asarray(map_offsets, dtype=np.int64))
                max_entries = int(counts.max()) if len(counts) else 0
                lo = cmap.key_offsets[o32[0]]
                hi = cmap.key_offsets[o32[num_rows]]
                bound += hi - lo
                lo = cmap.item_offsets[o32[0]]
                hi = cmap.item_offsets[o32[num_rows]]
                bound += hi - lo + int(counts.sum()) * _LABEL_OVERHEAD
        scratch = <rw_pair *> malloc(sizeof(rw_pair) * (ncols + max_entries + 1))
        if scratch == NULL:
            raise MemoryError()
        data_buf = pa.allocate_buffer(bound if bound > 0 else 1)
        out_data = <uint8_t *> _addr(data_buf)
        out_offsets = <int64_t *> _addr(offsets_buf)
        out_errs = &errs_view[0] if num_rows else NULL
        with nogil:
            bad = rw_encode_labels(num_rows, cols, ncols, mp, scratch, out_data, out_offsets, out_errs)
    finally:
        free(cols)
        free(scratch)
    labels = pa.Array.from_buffers(pa.large_binary(), num_rows, [None, offsets_buf, data_buf])
    return labels, errs, bad


def encode_write_request(series_labels, series, values, timestamps, order=None):
    """One ``WriteRequest`` (uncompressed protobuf bytes) of the given samples.

    ``series_labels``: binary-like Arrow array, one value per distinct series (the output of
    :func:`encode_labels`). ``series`` (int64), ``values`` (float64), ``timestamps`` (int64,
    milliseconds): one per sample. ``order`` (int64): the permutation to read the samples in; samples
    of a series must be consecutive in it (sort by ``(series, timestamp)``); ``None`` = as given.
    """
    cdef const int64_t[::1] s_view = np.ascontiguousarray(series, dtype=np.int64)
    cdef const double[::1] v_view = np.ascontiguousarray(values, dtype=np.float64)
    cdef const int64_t[::1] t_view = np.ascontiguousarray(timestamps, dtype=np.int64)
    cdef int64_t n = s_view.shape[0]
    cdef const int64_t[::1] o_view
    cdef int64_t *run_sizes = NULL
    cdef int64_t nruns = 0
    cdef int64_t total
    cdef const int64_t *lab_off
    cdef const uint8_t *lab_data
    cdef uint8_t *dst
    if v_view.shape[0] != n or t_view.shape[0] != n:
        raise ValueError(
            f"series, values and timestamps must have equal lengths, got {n}, "
            f"{v_view.shape[0]}, {t_view.shape[0]}"
        )
    if order is None:
        o_view = np.arange(n, dtype=np.int64)
    else:
        o_view = np.ascontiguousarray(order, dtype=np.int64)
        if o_view.shape[0] != n:
            raise ValueError(f"order has {o_view.shape[0]} entries, expected {n}")
        if n and (np.min(o_view) < 0 or np.max(o_view) >= n):
            raise ValueError("order holds an index out of range")
    labels = _as_large_string(series_labels, "series_labels")
    nseries = len(labels)
    if n and (np.min(s_view) < 0 or np.max(s_view) >= nseries):
        raise ValueError(f"series ids must be in [0, {nseries})")
    if n == 0:
        return b""
    bufs = labels.buffers()
    lab_off = (<const int64_t *> _addr(bufs[1])) + <int64_t> labels.offset
    lab_data = _addr(bufs[2])
    run_sizes = <int64_t *> malloc(sizeof(int64_t) * n)
    if run_sizes == NULL:
        raise MemoryError()
    try:
        with nogil:
            total = rw_size_request(n, &o_view[0], &s_view[0], lab_off, &v_view[0], &t_view[0],
                                    run_sizes, &nruns)
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = <uint8_t *> PyBytes_AS_STRING(out)
        with nogil:
            rw_write_request(n, &o_view[0], &s_view[0], lab_off, lab_data, &v_view[0], &t_view[0],
                             run_sizes, dst)
    finally:
        free(run_sizes)
    return out
