# cython: language_level=3
"""Batch -> JSON documents, one object per row (the encoding kernel behind arrowflow's JSON format).

How it works: with the GIL held, each selected column is turned into a small tree of C ``jnode``s (an
"encoder program": type code, raw Arrow buffer addresses, offset, pre-escaped keys). The row loop in
``_json_encode.h`` then walks that program with the GIL released, writing into one growable buffer per
thread. Batches of >= 65,536 rows are split into two row ranges encoded on two threads (``threads=0``),
then stitched: the first thread's buffer is sized for the whole batch up front (virtual memory, huge
pages), the others are copied after it, offsets shifted. Rows whose every key is written (no
``nulls="omit"`` with a nullable column) take a flat loop with the common column types inline.

Contract (shared by :func:`encode_rows` and :func:`encode_ndjson`):

- Keys follow column order (``columns`` selects and orders; ``field_names`` renames output keys).
- ``nulls="null"`` writes ``"k":null``; ``nulls="omit"`` leaves the key out (top level, struct fields
  and map entries). Null list elements are always written as ``null``.
- ``nan="error"`` raises ``ValueError`` naming the column and the row index (within the batch) of the
  first NaN/Infinity; ``nan="null"`` writes ``null`` in its place (the key stays).
- Floats use the shortest text that reads back to the identical double (Python ``repr`` rules);
  float16/float32 are widened to double first, so ``json.loads`` returns exactly ``to_pylist()``.
- A field (top-level, or a struct's child) whose metadata has ``QUOTE_KEY`` (``b"arrowflow.json.quote"``)
  set to ``b"1"`` is written as a JSON string of the same text (``"1.5"``, ``"-3"``): for number,
  boolean and decimal fields (``TypeError`` for others). DynamoDB's ``{"N": "..."}`` uses it.
- Nothing is retained: the input batch may be released as soon as the call returns.
- Hostile Arrow input is refused, not trusted: each selected column passes Arrow's full validation
  first (offsets and dictionary indices in range, strings UTF-8; ``_validate.pxi``), else
  ``ValueError`` naming the column, so the output is always JSON and no buffer is read out of range.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy

import json as _json
from collections.abc import Mapping, Sequence

import pyarrow as pa

__all__ = ["QUOTE_KEY", "encode_ndjson", "encode_rows"]

#: Field metadata key: ``{QUOTE_KEY: b"1"}`` writes the field's numbers as JSON strings.
QUOTE_KEY = b"arrowflow.json.quote"


cdef extern from "_json_encode.h" nogil:
    enum:
        JT_NULL, JT_BOOL, JT_I8, JT_I16, JT_I32, JT_I64, JT_U8, JT_U16, JT_U32, JT_U64,
        JT_F16, JT_F32, JT_F64, JT_STR, JT_LSTR, JT_STRVIEW, JT_BIN, JT_LBIN, JT_FSB,
        JT_TS, JT_DATE32, JT_DATE64, JT_TIME32, JT_TIME64, JT_DEC128, JT_DEC256, JT_DEC32, JT_DEC64,
        JT_LIST, JT_LLIST, JT_FSL, JT_STRUCT, JT_MAP, JT_DICT
    enum:
        JE_OK, JE_NOMEM, JE_NAN, JE_OVERFLOW

    ctypedef struct jnode:
        int type
        int64_t offset
        const uint8_t *validity
        const uint8_t *data
        const uint8_t *offsets
        const uint8_t **vbufs
        int32_t width
        int32_t unit
        int32_t scale
        int32_t tz
        int32_t index_signed
        int32_t quote_key
        int32_t nchildren
        jnode **children
        char **keys
        int32_t *keylens
        int32_t column
        int32_t maybe_null
        int32_t quoted

    ctypedef struct jstate:
        char *buf
        int64_t pos
        int64_t cap
        int omit_nulls
        int nan_null
        int err
        int32_t err_column
        int64_t err_row

    ctypedef struct jtask:
        jstate st
        const jnode *top
        int64_t start
        int64_t end
        int32_t *offsets
        int ndjson

    int jrun_tasks(jtask *tasks, int ntasks)


# Rows at which threads=0 starts splitting the batch across two threads.
cdef int64_t _PARALLEL_MIN_ROWS = 65536
cdef int _AUTO_THREADS = 2
cdef int _MAX_THREADS = 64

_UNITS = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_SIMPLE = {
    pa.types.is_boolean: JT_BOOL,
    pa.types.is_int8: JT_I8,
    pa.types.is_int16: JT_I16,
    pa.types.is_int32: JT_I32,
    pa.types.is_int64: JT_I64,
    pa.types.is_uint8: JT_U8,
    pa.types.is_uint16: JT_U16,
    pa.types.is_uint32: JT_U32,
    pa.types.is_uint64: JT_U64,
    pa.types.is_float16: JT_F16,
    pa.types.is_float32: JT_F32,
    pa.types.is_float64: JT_F64,
    pa.types.is_duration: JT_I64,
    pa.types.is_string: JT_STR,
    pa.types.is_large_string: JT_LSTR,
    pa.types.is_binary: JT_BIN,
    pa.types.is_large_binary: JT_LBIN,
    pa.types.is_date32: JT_DATE32,
    pa.types.is_date64: JT_DATE64,
    pa.types.is_time32: JT_TIME32,
    pa.types.is_time64: JT_TIME64,
}
# Value types whose JSON text is already a quoted string (usable as a map key as-is).
_STRING_TEXT = (JT_STR, JT_LSTR, JT_STRVIEW, JT_BIN, JT_LBIN, JT_FSB, JT_TS, JT_DATE32, JT_DATE64,
                JT_TIME32, JT_TIME64)


include "_validate.pxi"
include "_owned.pxi"




cdef class _Program:
    """The encoder program: C nodes for the selected columns plus everything that keeps them valid.

    ``arrays`` holds every pyarrow object whose buffers a node points into, so the addresses stay
    valid for the program's lifetime; ``_allocs`` holds every C allocation, freed on dealloc.
    """

    cdef jnode *top
    cdef list arrays
    cdef list _allocs
    cdef list names

    def __cinit__(self):
        self.top = NULL
        self.arrays = []
        self._allocs = []
        self.names = []

    def __dealloc__(self):
        cdef size_t p
        for p in self._allocs:
            free(<void *> p)

    cdef void *alloc(self, size_t size) except NULL:
        cdef void *p = calloc(1, size if size else 1)
        if p == NULL:
            raise MemoryError()
        self._allocs.append(<size_t> p)
        return p

    cdef jnode *new_node(self, int type, int32_t column) except NULL:
        cdef jnode *n = <jnode *> self.alloc(sizeof(jnode))
        n.type = type
        n.column = column
        return n

    cdef set_members(self, jnode *n, list keys, list children):
        """Attach struct-like members: rendered keys ('"name":') and child nodes."""
        cdef Py_ssize_t k, count = len(children)
        cdef bytes key
        n.nchildren = <int32_t> count
        n.children = <jnode **> self.alloc(sizeof(jnode *) * count)
        n.keys = <char **> self.alloc(sizeof(char *) * count)
        n.keylens = <int32_t *> self.alloc(sizeof(int32_t) * count)
        for k in range(count):
            key = (_json.dumps(keys[k], ensure_ascii=False) + ":").encode("utf-8")
            n.keys[k] = <char *> self.alloc(len(key) + 32)  # padding: see jw_members
            memcpy(n.keys[k], <char *> key, len(key))
            n.keylens[k] = <int32_t> len(key)
            n.children[k] = <jnode *> <size_t> children[k]

    cdef jnode *plan(self, object arr, int32_t column) except NULL:
        """Build the node for one array (recursively for nested types)."""
        if isinstance(arr.type, pa.ExtensionType):
            return self.plan(arr.storage, column)
        cdef jnode *n = self.plan_node(arr, column)
        n.maybe_null = n.validity != NULL or n.type == JT_NULL or n.type == JT_DICT
        return n

    cdef jnode *plan_field(self, object arr, object field, int32_t column) except NULL:
        """``plan`` for a struct member / top-level column, honouring its ``QUOTE_KEY`` metadata."""
        cdef jnode *n = self.plan(arr, column)
        cdef jnode *inner = n
        meta = field.metadata
        if meta and meta.get(QUOTE_KEY) == b"1":
            while inner.type == JT_DICT:
                inner = inner.children[0]
            if not (JT_BOOL <= inner.type <= JT_F64 or JT_DEC128 <= inner.type <= JT_DEC64):
                raise TypeError(
                    f"field {field.name!r}: quoted output ({QUOTE_KEY!r}) needs a number, boolean or "
                    f"decimal type, not {field.type}"
                )
            inner.quoted = 1
        return n

    cdef jnode *plan_node(self, object arr, int32_t column) except NULL:
        cdef jnode *n
        cdef object t = arr.type
        cdef object bufs
        cdef Py_ssize_t k
        cdef int code
        self.arrays.append(arr)
        if pa.types.is_dictionary(t):
            indices = arr.indices
            self.arrays.append(indices)
            n = self.new_node(JT_DICT, column)
            n.offset = indices.offset
            bufs = indices.buffers()
            n.validity = _addr(bufs[0]) if indices.null_count else NULL
            n.data = _addr(bufs[1])
            n.width = indices.type.bit_width // 8
            n.index_signed = 1 if pa.types.is_signed_integer(indices.type) else 0
            n.nchildren = 1
            n.children = <jnode **> self.alloc(sizeof(jnode *))
            n.children[0] = self.plan(arr.dictionary, column)
            return n
        bufs = arr.buffers()
        if pa.types.is_null(t):
            n = self.new_node(JT_NULL, column)
            n.offset = arr.offset
            return n
        code = -1
        for pred, c in _SIMPLE.items():
            if pred(t):
                code = c
                break
        if code == -1:
            if pa.types.is_timestamp(t):
                code = JT_TS
            elif pa.types.is_string_view(t):
                code = JT_STRVIEW
            elif pa.types.is_fixed_size_binary(t) and not pa.types.is_decimal(t):
                code = JT_FSB
            elif pa.types.is_decimal128(t):
                code = JT_DEC128
            elif pa.types.is_decimal256(t):
                code = JT_DEC256
            elif getattr(pa.types, "is_decimal32", None) is not None and pa.types.is_decimal32(t):
                code = JT_DEC32
            elif getattr(pa.types, "is_decimal64", None) is not None and pa.types.is_decimal64(t):
                code = JT_DEC64
            elif pa.types.is_large_list(t):
                code = JT_LLIST
            elif pa.types.is_map(t):
                code = JT_MAP
            elif pa.types.is_list(t):
                code = JT_LIST
            elif pa.types.is_fixed_size_list(t):
                code = JT_FSL
            elif pa.types.is_struct(t):
                code = JT_STRUCT
            else:
                raise TypeError(f"JSON encoding does not support Arrow type {t}")
        n = self.new_node(code, column)
        n.offset = arr.offset
        n.validity = _addr(bufs[0]) if arr.null_count else NULL
        if code in (JT_STR, JT_LSTR, JT_BIN, JT_LBIN):
            n.offsets = _addr(bufs[1])
            n.data = _addr(bufs[2])
        elif code == JT_STRVIEW:
            n.data = _addr(bufs[1])
            n.vbufs = <const uint8_t **> self.alloc(sizeof(uint8_t *) * (len(bufs) - 2))
            for k in range(2, len(bufs)):
                n.vbufs[k - 2] = _addr(bufs[k])
        elif code in (JT_LIST, JT_LLIST, JT_FSL, JT_MAP):
            if code == JT_FSL:
                n.width = t.list_size
            else:
                n.offsets = _addr(bufs[1])
            values = arr.values
            if code == JT_MAP:
                self.arrays.append(values)
                key_arr = values.field(0)
                n.nchildren = 2
                n.children = <jnode **> self.alloc(sizeof(jnode *) * 2)
                n.children[0] = self.plan(key_arr, column)
                n.children[1] = self.plan(values.field(1), column)
                n.quote_key = 1 if _key_needs_quotes(n.children[0]) else 0
            else:
                n.nchildren = 1
                n.children = <jnode **> self.alloc(sizeof(jnode *))
                n.children[0] = self.plan(values, column)
        elif code == JT_STRUCT:
            children = [
                <size_t> self.plan_field(arr.field(k), t.field(k), column) for k in range(t.num_fields)
            ]
            self.set_members(n, [t.field(k).name for k in range(t.num_fields)], children)
        else:
            n.data = _addr(bufs[1])
            if code == JT_FSB:
                n.width = t.byte_width
            elif code == JT_TS or code == JT_TIME32 or code == JT_TIME64:
                n.unit = _UNITS[t.unit]
                n.tz = 1 if code == JT_TS and t.tz is not None else 0
            elif code in (JT_DEC128, JT_DEC256, JT_DEC32, JT_DEC64):
                n.scale = t.scale
        return n


cdef bint _key_needs_quotes(jnode *k) except -1:
    """Map keys become JSON object keys: strings as they are, scalars as their quoted JSON text."""
    while k.type == JT_DICT:
        k = k.children[0]
    if k.type in _STRING_TEXT:
        return False
    if k.type in (JT_LIST, JT_LLIST, JT_FSL, JT_STRUCT, JT_MAP):
        raise TypeError("JSON encoding supports only scalar map keys, not nested types")
    return True


cdef _Program _build(object batch, object columns, object field_names):
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(f"expected a pyarrow.RecordBatch, got {type(batch).__name__}")
    schema_names = batch.schema.names
    if columns is None:
        indices = list(range(batch.num_columns))
    else:
        if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
            raise TypeError("columns must be a sequence of column names")
        indices = []
        for name in columns:
            if name not in schema_names:
                raise KeyError(f"column {name!r} is not in the batch (columns: {schema_names})")
            indices.append(schema_names.index(name))
    if field_names is not None and not isinstance(field_names, Mapping):
        raise TypeError("field_names must be a mapping of column name -> output key")
    names = [schema_names[i] for i in indices]
    keys = [field_names.get(nm, nm) if field_names is not None else nm for nm in names]
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"output keys must be str, got {key!r}")
    cdef _Program prog = _Program()
    prog.names = names
    cdef int32_t c
    children = []
    for c in range(len(indices)):
        column = _validated(batch.column(indices[c]), f"column {names[c]!r}")
        children.append(<size_t> prog.plan_field(column, batch.schema.field(indices[c]), c))
    prog.top = prog.new_node(JT_STRUCT, -1)
    prog.set_members(prog.top, keys, children)
    return prog


cdef int _thread_count(int64_t rows, int threads) except -1:
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {threads}")
    if threads == 0:
        threads = _AUTO_THREADS if rows >= _PARALLEL_MIN_ROWS else 1
    if threads > _MAX_THREADS:
        threads = _MAX_THREADS
    if threads > rows:
        threads = <int> rows if rows > 0 else 1
    return threads


cdef object _encode(object batch, object columns, object field_names, str nulls, str nan,
                    int threads, bint ndjson, bytes terminator=b""):
    if len(terminator) > 1:
        raise ValueError(f"terminator must be empty or one byte, got {terminator!r}")
    if nulls not in ("null", "omit"):
        raise ValueError(f"nulls must be 'null' or 'omit', got {nulls!r}")
    if nan not in ("error", "null"):
        raise ValueError(f"nan must be 'error' or 'null', got {nan!r}")
    cdef _Program prog = _build(batch, columns, field_names)
    cdef int64_t rows = batch.num_rows
    cdef int ntasks = _thread_count(rows, threads)
    cdef jtask *tasks = <jtask *> calloc(ntasks, sizeof(jtask))
    cdef int32_t *offsets = NULL
    cdef int t, err = JE_OK
    cdef int64_t total = 0, base, r, err_row = -1
    cdef int32_t err_column = -1
    cdef char *data = NULL
    if tasks == NULL:
        raise MemoryError()
    try:
        if not ndjson:
            offsets = <int32_t *> malloc(sizeof(int32_t) * (rows + 1))
            if offsets == NULL:
                raise MemoryError()
            offsets[0] = 0
        for t in range(ntasks):
            tasks[t].top = prog.top
            tasks[t].start = rows * t // ntasks
            tasks[t].end = rows * (t + 1) // ntasks
            tasks[t].offsets = offsets + tasks[t].start if offsets != NULL else NULL
            # -1: no terminator (any byte, NUL included, is a terminator)
            tasks[t].ndjson = 10 if ndjson else (terminator[0] if terminator else -1)
            tasks[t].st.omit_nulls = nulls == "omit"
            tasks[t].st.nan_null = nan == "null"
        with nogil:
            jrun_tasks(tasks, ntasks)
            for t in range(ntasks):
                if tasks[t].st.err == JE_NOMEM or tasks[t].st.err == JE_OVERFLOW:
                    err = tasks[t].st.err
                elif tasks[t].st.err == JE_NAN and err == JE_OK:
                    err = JE_NAN
                    err_row = tasks[t].st.err_row
                    err_column = tasks[t].st.err_column
                total += tasks[t].st.pos
            if err == JE_OK and not ndjson and total > 2147483647:
                err = JE_OVERFLOW
            if err == JE_OK:
                # Stitch: grow the first buffer in place (realloc of a large block is an mremap), copy
                # the others after it, and shift their row end offsets by where they now start.
                data = <char *> realloc(tasks[0].st.buf, total + 1)
                if data == NULL:
                    err = JE_NOMEM
                else:
                    tasks[0].st.buf = NULL
                    base = tasks[0].st.pos
                    for t in range(1, ntasks):
                        memcpy(data + base, tasks[t].st.buf, tasks[t].st.pos)
                        if offsets != NULL:
                            for r in range(tasks[t].start + 1, tasks[t].end + 1):
                                offsets[r] += <int32_t> base
                        base += tasks[t].st.pos
        if err == JE_NOMEM:
            raise MemoryError("out of memory while encoding JSON")
        if err == JE_OVERFLOW:
            raise ValueError(
                "JSON output of this batch exceeds 2 GiB, the limit of a BinaryArray; "
                "encode smaller batches (or use encode_ndjson)"
            )
        if err == JE_NAN:
            raise ValueError(
                f"column {prog.names[err_column]!r}, row {err_row}: NaN/Infinity has no JSON "
                "representation (nan='error'); pass nan='null' to write null instead"
            )
        data_buf = _own(data, total)
        data = NULL
        if ndjson:
            return data_buf
        offsets_buf = _own(<char *> offsets, sizeof(int32_t) * (rows + 1))
        offsets = NULL
        return pa.Array.from_buffers(pa.binary(), rows, [None, offsets_buf, data_buf], null_count=0)
    finally:
        for t in range(ntasks):
            free(tasks[t].st.buf)
        free(tasks)
        free(data)
        free(offsets)


def encode_rows(batch, *, columns=None, field_names=None, str nulls="null", str nan="error",
                int threads=0, bytes terminator=b""):
    """Encode each row of ``batch`` as one JSON object; returns a ``pa.BinaryArray`` (no nulls).

    ``threads=0`` picks two threads for batches of >= 65,536 rows, else one; ``threads=n`` uses up to
    n. Raises ``KeyError`` for an unknown column, ``TypeError`` for an unsupported type, and
    ``ValueError`` for a NaN/Infinity under ``nan="error"`` (naming column and row) or an output
    over 2 GiB. The GIL is released while rows are encoded. ``terminator`` (one byte, e.g. ``b","``)
    is appended to every document, inside its entry: the entries then concatenate into a JSON
    array's members (drop the last byte).
    """
    return _encode(batch, columns, field_names, nulls, nan, threads, False, terminator)


def encode_ndjson(batch, *, columns=None, field_names=None, str nulls="null", str nan="error",
                  int threads=0):
    """Like :func:`encode_rows`, but returns one ``pa.Buffer``: every document followed by ``b"\\n"``."""
    return _encode(batch, columns, field_names, nulls, nan, threads, True)
