# cython: language_level=3
"""Elasticsearch/OpenSearch ``_bulk`` bodies from a RecordBatch (the kernel behind the search sinks).

A row becomes one *entry*: its action line and, except for ``delete``, its source line, both ending
in ``\\n``::

    {"index":{"_index":"logs","_id":"42","routing":"r"}}\\n{"a":1,...}\\n

Documents come from the JSON kernel (:func:`arrowflow._ext.json_encode.encode_rows`, two threads, GIL
released); this module renders the action lines from a fixed index or ``_index`` / ``_id`` /
``routing`` columns and interleaves them with the documents in one C loop without the GIL
(``_bulk.h``). Entries are returned as one ``pa.BinaryArray`` whose data buffer is a valid NDJSON
body, so any run of consecutive entries is a zero-copy ``_bulk`` request. :func:`cut` splits entries
into requests by max actions and max bytes; :func:`encode_bodies` does both and returns the bodies
with the row range each covers, so a failed item ``k`` of body ``j`` is row ``bounds[j] + k``.

Contract:

- Meta values: string columns are JSON-escaped (as ``json.dumps(ensure_ascii=False)``); integer
  columns (uint64 up to 2**64 - 1 included) are written as decimal strings; binary columns as their
  bytes, which must be UTF-8 (``ValueError`` naming the row otherwise); any other type is cast to
  string by Arrow first. Every input array passes Arrow's full validation (offsets, dictionary
  indices, UTF-8; ``_validate.pxi``) before the loop indexes it, else ``ValueError``. A null
  ``_id`` or ``routing`` leaves the field out (``index``/``create`` then get a server-generated id);
  a null ``_index`` value is an error here (the sink reports such rows to its error policy before
  calling the kernel).
- ``update`` wraps the document as ``{"doc":<doc>}`` or ``{"doc":<doc>,"doc_as_upsert":true}``.
- Action keys are written in the order ``_index``, ``_id``, ``routing``.
- The output of one call must stay below 2 GiB (a ``BinaryArray``); larger raises ``ValueError``.
- Nothing is retained: inputs may be released when the call returns. Large outputs (>= 8 MiB) are
  2 MiB aligned (transparent huge pages) and computed in two passes (exact entry sizes, then the
  copy, on two threads from 65,536 rows); when such an output is released, its block (up to
  512 MiB, one at a time) is kept for the next call instead of being unmapped, marked ``MADV_FREE``
  so the kernel may still reclaim it under memory pressure (see ``_bulk.h``).
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc

import json as _json
import re as _re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ACTIONS", "cut", "encode_bodies", "encode_bulk", "encode_entries", "split_bodies"]

ACTIONS = ("index", "create", "update", "delete")

# Rows at which threads=0 copies entries on two threads (as the JSON kernel splits its row loop).
cdef int64_t _PARALLEL_MIN_ROWS = 65536
cdef int _AUTO_THREADS = 2


cdef extern from "_bulk.h" nogil:
    enum:
        BF_NONE, BF_CONST, BF_STR, BF_INT
    enum:
        BE_OK, BE_NOMEM, BE_OVERFLOW, BE_INTERNAL

    ctypedef struct bfield:
        int kind
        const char *key
        int32_t keylen
        int64_t offset
        const uint8_t *validity
        const int32_t *offsets
        const uint8_t *data

    ctypedef struct bplan:
        const char *head
        int32_t headlen
        const char *tail
        int32_t taillen
        const char *doc_prefix
        int32_t doc_prefixlen
        const char *doc_suffix
        int32_t doc_suffixlen
        int has_doc
        int64_t doc_offset
        const int32_t *doc_offsets
        const uint8_t *doc_data
        bfield fields[3]
        int nfields

    int bulk_build(const bplan *pl, int64_t nrows, int32_t *offsets, char **out, int64_t *outlen,
                   int64_t *outcap, int nthreads)
    void bulk_release(char *p, int64_t cap)
    int bulk_sizes(const bplan *pl, int64_t nrows, int64_t base, int32_t *offsets)
    int bulk_write(const bplan *pl, int64_t nrows, const int32_t *offsets, char *buf, int nthreads)
    int bulk_reserve(char **buf, int64_t *cap, int64_t size, int64_t keep)
    int64_t bulk_cut(const int64_t *ends, int64_t n, int64_t max_actions, int64_t max_bytes,
                     int64_t *bounds)


include "_validate.pxi"
include "_owned.pxi"


def _meta_array(object values, str what):
    """Normalize a meta column: integers -> int64 (uint64 -> decimal text), strings -> string (int32
    offsets), binary -> the same bytes as string (must be UTF-8), else cast.

    Every input is validated first (offsets, dictionary indices, UTF-8: ``_validate.pxi``), and the
    result is what the row loop indexes, so invalid data raises ``ValueError`` naming ``what``.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        raise TypeError(f"{what} must be a pyarrow Array, got {type(values).__name__}")
    values = _validated(values, what)
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if pa.types.is_uint64(t):
        # Values above 2**63 - 1 do not fit the int64 the loop formats: Arrow's decimal text instead.
        return pc.cast(values, pa.string())
    if pa.types.is_integer(t):
        return values if pa.types.is_int64(t) else pc.cast(values, pa.int64())
    if pa.types.is_string(t):
        return values
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        # Written as text into the action line: the bytes must be UTF-8 (JSON has no raw bytes).
        text = values.view(pa.string() if pa.types.is_binary(t) else pa.large_string())
        try:
            text.validate(full=True)
        except pa.ArrowInvalid:
            bad = _first_invalid_utf8(values)
            raise ValueError(f"{what}: binary value at row {bad} is not valid UTF-8") from None
        return text if pa.types.is_binary(t) else pc.cast(text, pa.string())
    return pc.cast(values, pa.string())


def _first_invalid_utf8(values):
    """Index of the first value of a binary array that is not UTF-8 (``-1`` if none)."""
    for i, value in enumerate(values.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return i
    return -1


cdef int _set_field(bfield *f, object arr, bytes key, list keep) except -1:
    keep.append(arr)
    keep.append(key)
    bufs = arr.buffers()
    f.key = <const char *> key
    f.keylen = <int32_t> len(key)
    f.offset = arr.offset
    f.validity = _addr(bufs[0]) if arr.null_count else NULL
    if pa.types.is_int64(arr.type):
        f.kind = BF_INT
        f.offsets = NULL
        f.data = _addr(bufs[1])
    else:
        f.kind = BF_STR
        f.offsets = <const int32_t *> _addr(bufs[1])
        f.data = _addr(bufs[2])
    return 0


cdef int64_t _fill_plan(bplan *plan, list keep, object docs, str action, object index,
                        object index_values, object ids, object routing, bint doc_as_upsert,
                        Py_ssize_t num_rows) except -1:
    """Check the inputs of :func:`encode_entries` and describe them in ``plan`` (the objects whose
    buffers it points into go to ``keep``); returns the number of rows."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    if index is not None and index_values is not None:
        raise ValueError("give either index or index_values, not both")
    cdef bint has_doc = action != "delete"
    if has_doc and docs is None:
        raise ValueError(f"action {action!r} needs documents")
    if not has_doc and docs is not None:
        raise ValueError("action 'delete' takes no documents")
    cdef int64_t n = -1
    if docs is not None:
        if isinstance(docs, pa.ChunkedArray):
            docs = docs.combine_chunks()
        if not isinstance(docs, pa.Array) or not (pa.types.is_binary(docs.type) or pa.types.is_string(docs.type)):
            raise TypeError("docs must be a pyarrow binary or string array (int32 offsets)")
        if docs.null_count:
            raise ValueError("docs must not contain nulls")
        # The loop copies docs[offsets[i]:offsets[i + 1]]: offsets must be in range (not UTF-8:
        # the documents are copied as they are, see the contract).
        _validated(docs.view(pa.binary()) if pa.types.is_string(docs.type) else docs, "docs")
        n = len(docs)
    arrays = {}
    for name, values in (("index_values", index_values), ("ids", ids), ("routing", routing)):
        if values is not None:
            arr = _meta_array(values, name)
            if n >= 0 and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} values for {n} rows")
            n = len(arr)
            arrays[name] = arr
    if n < 0:
        if num_rows < 0:
            raise ValueError("cannot tell the number of rows: give docs, a meta array or num_rows")
        n = num_rows
    elif num_rows >= 0 and num_rows != n:
        raise ValueError(f"num_rows={num_rows} does not match the {n} rows of the inputs")

    head = ('{"' + action + '":{').encode()
    tail = b'}}\n'
    if action == "update":
        prefix = b'{"doc":'
        suffix = b',"doc_as_upsert":true}\n' if doc_as_upsert else b'}\n'
    else:
        prefix = b''
        suffix = b'\n'
    keep += [head, tail, prefix, suffix]
    plan[0].head = <const char *> head
    plan[0].headlen = <int32_t> len(head)
    plan[0].tail = <const char *> tail
    plan[0].taillen = <int32_t> len(tail)
    plan[0].doc_prefix = <const char *> prefix
    plan[0].doc_prefixlen = <int32_t> len(prefix)
    plan[0].doc_suffix = <const char *> suffix
    plan[0].doc_suffixlen = <int32_t> len(suffix)
    plan[0].has_doc = has_doc
    plan[0].nfields = 0
    if has_doc:
        keep.append(docs)
        dbufs = docs.buffers()
        plan[0].doc_offset = docs.offset
        plan[0].doc_offsets = <const int32_t *> _addr(dbufs[1])
        plan[0].doc_data = _addr(dbufs[2])
        if plan[0].doc_data == NULL:
            # Zero-length data buffer (all documents empty): any readable address will do.
            plan[0].doc_data = <const uint8_t *> <const char *> tail
    if index is not None:
        if not isinstance(index, str):
            raise TypeError(f"index must be a str, got {type(index).__name__}")
        const = ('"_index":' + _json.dumps(index, ensure_ascii=False)).encode("utf-8")
        keep.append(const)
        plan[0].fields[0].kind = BF_CONST
        plan[0].fields[0].key = <const char *> const
        plan[0].fields[0].keylen = <int32_t> len(const)
        plan[0].nfields = 1
    for name, key in (("index_values", b'"_index":"'), ("ids", b'"_id":"'), ("routing", b'"routing":"')):
        if name in arrays:
            _set_field(&plan[0].fields[plan[0].nfields], arrays[name], key, keep)
            plan[0].nfields += 1

    return n


def encode_entries(docs=None, *, str action="index", index=None, index_values=None, ids=None,
                   routing=None, bint doc_as_upsert=False, Py_ssize_t num_rows=-1, int threads=0):
    """Interleave action lines with ``docs`` (a ``BinaryArray`` of JSON documents, no nulls).

    ``index`` is a fixed index name, ``index_values`` / ``ids`` / ``routing`` are per-row arrays (see
    the module docstring for types and nulls). ``docs`` is required except for ``delete``, where it
    must be ``None`` and ``num_rows`` (or one of the arrays) gives the row count. Returns one entry per
    row as a ``pa.BinaryArray`` without nulls. ``threads=0`` copies on two threads from 65,536 rows
    on, else one; ``threads=n`` uses up to n (the output never depends on it). Raises ``ValueError``
    for an unknown action, mismatched lengths or an output over 2 GiB.
    """
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {threads}")
    cdef list keep = []
    cdef bplan plan
    cdef int64_t n = _fill_plan(&plan, keep, docs, action, index, index_values, ids, routing,
                                doc_as_upsert, num_rows)
    cdef int32_t *offsets = <int32_t *> malloc(sizeof(int32_t) * (n + 1))
    cdef char *data = NULL
    cdef int64_t total = 0, cap = 0
    cdef int err
    cdef int nthreads = threads if threads > 0 else (_AUTO_THREADS if n >= _PARALLEL_MIN_ROWS else 1)
    if offsets == NULL:
        raise MemoryError()
    try:
        with nogil:
            err = bulk_build(&plan, n, offsets, &data, &total, &cap, nthreads)
        if err == BE_NOMEM:
            raise MemoryError("out of memory while building _bulk entries")
        if err == BE_OVERFLOW:
            raise ValueError("_bulk entries of this batch exceed 2 GiB (a BinaryArray); use smaller batches")
        if err == BE_INTERNAL:
            raise RuntimeError("_bulk kernel: written entries do not match their planned sizes (a bug)")
        data_buf = _own(data, total, cap, bulk_release)
        data = NULL
        offsets_buf = _own(<char *> offsets, sizeof(int32_t) * (n + 1))
        offsets = NULL
        return pa.Array.from_buffers(pa.binary(), n, [None, offsets_buf, data_buf], null_count=0)
    finally:
        free(offsets)
        bulk_release(data, cap)


cdef int64_t _SLICE_ROWS = 65536
_ROW_IN_ERROR = _re.compile(r"row (\d+):")
cdef int _SLICE_COPY_THREADS = 1


def _tune(slice_rows=None, copy_threads=None):
    """Testing and benchmarking only: the row slice of :func:`encode_bulk` and its copy threads."""
    global _SLICE_ROWS, _SLICE_COPY_THREADS
    old = (_SLICE_ROWS, _SLICE_COPY_THREADS)
    if slice_rows is not None:
        _SLICE_ROWS = slice_rows
    if copy_threads is not None:
        _SLICE_COPY_THREADS = copy_threads
    return old


cdef object _raise_for(int err):
    if err == BE_NOMEM:
        raise MemoryError("out of memory while building _bulk entries")
    if err == BE_OVERFLOW:
        raise ValueError("_bulk entries of this batch exceed 2 GiB (a BinaryArray); use smaller batches")
    if err == BE_INTERNAL:
        raise RuntimeError("_bulk kernel: written entries do not match their planned sizes (a bug)")


def encode_bulk(batch, *, str action="index", index=None, index_column=None, id_column=None,
                routing_column=None, bint doc_as_upsert=False, columns=None, field_names=None,
                str nulls="null", str nan="error", int threads=0, index_values=None):
    """Entries for every row of ``batch`` (see :func:`encode_entries`).

    ``index`` (fixed), ``index_column``, or ``index_values`` (an array with one index name per row,
    e.g. from a date template); ``id_column`` and ``routing_column`` name meta columns.
    Documents hold ``columns`` (default: every column except the meta columns) through the JSON
    kernel with ``field_names``, ``nulls``, ``nan`` and ``threads`` as there.

    A batch of more than 65,536 rows is encoded slice by slice (documents of one slice, then its
    entries straight into the one output buffer), so the documents never exist for the whole batch:
    the slice's document buffer is reused from slice to slice while it is still in cache, instead
    of a fresh whole-batch buffer whose pages the kernel must fault in and zero. Same output.
    """
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(f"expected a pyarrow.RecordBatch, got {type(batch).__name__}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {threads}")
    names = batch.schema.names
    meta = [c for c in (index_column, id_column, routing_column) if c is not None]
    for c in meta:
        if c not in names:
            raise KeyError(f"column {c!r} is not in the batch (columns: {names})")
    if index_column is not None:
        if index_values is not None:
            raise ValueError("give either index_column or index_values, not both")
        index_values = batch.column(index_column)
    ids = batch.column(id_column) if id_column is not None else None
    routing = batch.column(routing_column) if routing_column is not None else None
    if action == "delete":
        return encode_entries(None, action=action, index=index, index_values=index_values, ids=ids,
                              routing=routing, num_rows=batch.num_rows, threads=threads)
    from arrowflow._ext.json_encode import encode_rows

    if columns is None:
        columns = [c for c in names if c not in meta]
    cdef int64_t n = batch.num_rows
    cdef int64_t step = _SLICE_ROWS
    if n <= step:
        docs = encode_rows(batch, columns=columns, field_names=field_names, nulls=nulls, nan=nan,
                           threads=threads)
        return encode_entries(docs, action=action, index=index, index_values=index_values, ids=ids,
                              routing=routing, doc_as_upsert=doc_as_upsert, num_rows=n,
                              threads=threads)
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    # Meta columns normalized once (slices of them are views).
    if index_values is not None:
        index_values = _meta_array(index_values, "index_values")
    if ids is not None:
        ids = _meta_array(ids, "ids")
    if routing is not None:
        routing = _meta_array(routing, "routing")
    cdef int32_t *offsets = <int32_t *> malloc(sizeof(int32_t) * (n + 1))
    if offsets == NULL:
        raise MemoryError()
    cdef char *data = NULL
    cdef int64_t cap = 0, start = 0, m = 0, pos = 0, want = 0
    cdef int err = BE_OK
    cdef int copy_threads = threads if threads > 0 else _SLICE_COPY_THREADS
    cdef bplan plan
    cdef list keep
    try:
        while start < n:
            m = min(step, n - start)
            try:
                docs = encode_rows(batch.slice(start, m), columns=columns, field_names=field_names,
                                   nulls=nulls, nan=nan, threads=threads)
            except ValueError as exc:
                # The JSON kernel names the row within the slice: name it within the batch.
                shift = start
                raise ValueError(
                    _ROW_IN_ERROR.sub(lambda mm: f"row {int(mm.group(1)) + shift}:", str(exc), count=1)
                ) from None
            keep = []
            _fill_plan(&plan, keep, docs, action, index,
                       index_values.slice(start, m) if index_values is not None else None,
                       ids.slice(start, m) if ids is not None else None,
                       routing.slice(start, m) if routing is not None else None,
                       doc_as_upsert, m)
            with nogil:
                err = bulk_sizes(&plan, m, pos, offsets + start)
                if err == BE_OK:
                    want = offsets[start + m]
                    if data == NULL:
                        # Sized for the whole batch from the first slice (+5%); grows if short.
                        want = want + (want - pos) * (n - start - m) // m * 21 // 20
                    err = bulk_reserve(&data, &cap, want, pos)
                if err == BE_OK:
                    err = bulk_write(&plan, m, offsets + start, data, copy_threads)
            _raise_for(err)
            pos = offsets[start + m]
            start += m
        data_buf = _own(data, pos, cap, bulk_release)
        data = NULL
        offsets_buf = _own(<char *> offsets, sizeof(int32_t) * (n + 1))
        offsets = NULL
        return pa.Array.from_buffers(pa.binary(), n, [None, offsets_buf, data_buf], null_count=0)
    finally:
        free(offsets)
        bulk_release(data, cap)


def cut(entries, *, max_actions=1000, max_bytes=5 * 1024 * 1024):
    """Row bounds of the requests that ``entries`` split into: ``bounds[j]:bounds[j+1]`` is request j.

    Greedy, in order: a request takes entries while it holds at most ``max_actions`` entries and at
    most ``max_bytes`` bytes (``None`` = no byte limit); an entry larger than ``max_bytes`` forms a
    request on its own. Returns an int64 numpy array of ``requests + 1`` values (``[0]`` when empty).
    """
    if isinstance(entries, pa.ChunkedArray):
        entries = entries.combine_chunks()
    if not isinstance(entries, pa.Array) or not pa.types.is_binary(entries.type):
        raise TypeError("entries must be a pyarrow BinaryArray")
    if max_actions is None or max_actions <= 0:
        raise ValueError(f"max_actions must be > 0, got {max_actions!r}")
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes!r}")
    cdef int64_t n = len(entries)
    cdef int64_t limit_actions = max_actions
    cdef int64_t limit_bytes = max_bytes if max_bytes is not None else (1 << 62)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    _validated(entries, "entries")
    ends = np.frombuffer(entries.buffers()[1], dtype=np.int32, count=entries.offset + n + 1)[entries.offset:]
    ends64 = np.ascontiguousarray(ends, dtype=np.int64)
    bounds = np.empty(n + 1, dtype=np.int64)
    cdef const int64_t[::1] e = ends64
    cdef int64_t[::1] b = bounds
    cdef int64_t count
    with nogil:
        count = bulk_cut(&e[0], n, limit_actions, limit_bytes, &b[0])
    return bounds[: count + 1].copy()


def split_bodies(entries, bounds):
    """The request bodies for ``bounds`` (from :func:`cut`): zero-copy slices of the entries' data.

    ``bounds`` must ascend from ``0`` to ``len(entries)`` (``ValueError`` otherwise: a negative
    bound must not count from the end).
    """
    if isinstance(entries, pa.ChunkedArray):
        entries = entries.combine_chunks()
    if not isinstance(entries, pa.Array) or not pa.types.is_binary(entries.type):
        raise TypeError("entries must be a pyarrow BinaryArray")
    _validated(entries, "entries")
    n = len(entries)
    b = np.asarray(bounds)
    if b.ndim != 1 or len(b) == 0 or not np.issubdtype(b.dtype, np.integer):
        raise ValueError("bounds must be a non-empty 1-D array of integers")
    if b[0] != 0 or b[len(b) - 1] != n or np.any(np.diff(b.astype(np.int64)) < 0):
        raise ValueError(f"bounds must ascend from 0 to {n} (the number of entries), got {b.tolist()[:8]}")
    if n == 0:
        return []
    data = entries.buffers()[2]
    ends = np.frombuffer(entries.buffers()[1], dtype=np.int32, count=entries.offset + n + 1)[entries.offset:]
    starts = ends[b.astype(np.int64)]
    if data is None:
        return [pa.py_buffer(b"") for _ in range(len(starts) - 1)]
    return [data.slice(int(a), int(b) - int(a)) for a, b in zip(starts[: len(starts) - 1].tolist(), starts[1:].tolist())]


def encode_bodies(batch, *, max_actions=1000, max_bytes=5 * 1024 * 1024, **options):
    """``(bodies, bounds)``: the ``_bulk`` request bodies of ``batch`` and their row ranges.

    Body ``j`` covers rows ``bounds[j]:bounds[j+1]``; ``options`` go to :func:`encode_bulk`.
    """
    entries = encode_bulk(batch, **options)
    bounds = cut(entries, max_actions=max_actions, max_bytes=max_bytes)
    return split_bodies(entries, bounds), bounds
