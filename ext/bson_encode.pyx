# cython: language_level=3
"""Batch -> BSON documents, one per row (the encoding kernel behind arrowflow's MongoDB sink).

How it works: with the GIL held, each selected column is turned into a small tree of C ``bnode``s
(type code + raw Arrow buffer addresses); the row loop in ``_bson_encode.h`` walks it with the GIL
released and appends every document to one growable buffer; the result is a ``pa.BinaryArray``
(offsets + that buffer, no copy, no Python object per row).

Type mapping (Arrow -> BSON):

- bool -> boolean; int8/int16/int32/uint8/uint16 -> int32; uint32/int64 -> int64; uint64 -> int64
  (a value above 2**63 - 1 is a row error); float16/float32/float64 -> double.
- string/large_string/string_view -> string; binary/large_binary/binary_view/fixed_size_binary ->
  binary (subtype 0); a top-level ``fixed_size_binary(12)`` column named in ``object_id`` (default:
  ``_id``) -> ObjectId.
- timestamp (any unit, any time zone: Arrow stores UTC) -> UTC datetime in milliseconds, floored
  (``us``/``ns`` lose their sub-millisecond part; ``s`` values that overflow int64 ms are a row
  error); date32/date64 -> UTC datetime at midnight.
- decimal32/64/128 -> decimal128 (IEEE 754-2008 BID, exponent = -scale, coefficient = the unscaled
  value; a coefficient over 34 digits loses its trailing zeros, and if it still has more than 34
  digits, it is a row error, as is an exponent outside BSON's range). decimal256 is not supported.
- list/large_list/fixed_size_list -> array (keys "0", "1", ...; null elements are written as null);
  struct -> embedded document; map with string keys -> embedded document (entries in order; a key
  containing NUL is a row error). Dictionary arrays are decoded first; extension types use their
  storage. Other types (time, duration, interval, union, decimal256) raise ``TypeError``.
- nulls: ``nulls="null"`` writes a BSON null, ``nulls="omit"`` leaves the key out (top level, struct
  fields, map values). Column and struct field names must not contain NUL (``ValueError``).

Keys follow column order (``columns`` selects and orders; ``field_names`` renames output keys). Nothing
is retained: the batch may be released as soon as the call returns. Each selected column passes
Arrow's full validation first (offsets and dictionary indices in range, strings UTF-8:
``_validate.pxi``); invalid Arrow data raises ``ValueError`` naming the column.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["encode_documents", "encode_documents_checked"]


cdef extern from "_bson_encode.h" nogil:
    enum:
        BT_NULL, BT_BOOL, BT_I8, BT_I16, BT_I32, BT_I64, BT_U8, BT_U16, BT_U32, BT_U64,
        BT_F32, BT_F64, BT_STR, BT_LSTR, BT_BIN, BT_LBIN, BT_FSB, BT_OID,
        BT_TS, BT_DATE32, BT_DATE64, BT_DEC128, BT_LIST, BT_LLIST, BT_FSL, BT_STRUCT, BT_MAP
    enum:
        BE_OK, BE_NOMEM, BE_U64_RANGE, BE_DEC_INEXACT, BE_DEC_EXPONENT, BE_TS_RANGE, BE_KEY_NUL,
        BE_TOO_LARGE

    ctypedef struct bnode:
        int type
        int64_t offset
        const uint8_t *validity
        const uint8_t *data
        const uint8_t *offsets
        int32_t width
        int64_t ts_mul
        int64_t ts_div
        int32_t scale
        int32_t column
        int32_t nchildren
        bnode **children
        char **keys
        int32_t *keylens

    ctypedef struct bstate:
        uint8_t *buf
        int64_t pos
        int64_t cap
        int omit_nulls
        int err
        int32_t err_column

    ctypedef struct btask:
        bstate st
        const bnode *top
        int64_t start
        int64_t end
        int collect
        int32_t *offsets
        int64_t nout
        int64_t *failed_rows
        int32_t *failed_codes
        int32_t *failed_columns
        int64_t nfailed
        int64_t failcap
        int fatal

    void bt_run(btask *t)


_MESSAGES = {
    BE_U64_RANGE: "uint64 value above 2**63 - 1 has no BSON integer type",
    BE_DEC_INEXACT: "decimal value has more than 34 significant digits (BSON decimal128 limit)",
    BE_DEC_EXPONENT: "decimal exponent outside the BSON decimal128 range",
    BE_TS_RANGE: "timestamp outside the range of a BSON datetime (int64 milliseconds)",
    BE_KEY_NUL: "map key contains a NUL character (not allowed in a BSON key)",
    BE_TOO_LARGE: "value or document over 2 GiB",
}

_SIMPLE = {
    pa.types.is_boolean: BT_BOOL,
    pa.types.is_int8: BT_I8,
    pa.types.is_int16: BT_I16,
    pa.types.is_int32: BT_I32,
    pa.types.is_int64: BT_I64,
    pa.types.is_uint8: BT_U8,
    pa.types.is_uint16: BT_U16,
    pa.types.is_uint32: BT_U32,
    pa.types.is_uint64: BT_U64,
    pa.types.is_float32: BT_F32,
    pa.types.is_float64: BT_F64,
    pa.types.is_string: BT_STR,
    pa.types.is_large_string: BT_LSTR,
    pa.types.is_binary: BT_BIN,
    pa.types.is_large_binary: BT_LBIN,
    pa.types.is_date32: BT_DATE32,
    pa.types.is_date64: BT_DATE64,
}
# Timestamp unit -> (multiplier, divisor) to milliseconds.
_TS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1000000)}


include "_validate.pxi"
include "_owned.pxi"




def _normalize(arr):
    """Rewrite types the C loop does not read directly into ones it does (vectorized, same length)."""
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        return _normalize(arr.storage)
    if pa.types.is_dictionary(t):
        return _normalize(arr.dictionary_decode())
    if pa.types.is_string_view(t):
        return pc.cast(arr, pa.large_string())
    if pa.types.is_binary_view(t):
        return pc.cast(arr, pa.large_binary())
    if pa.types.is_float16(t):
        return pc.cast(arr, pa.float32())
    is_d32 = getattr(pa.types, "is_decimal32", None)
    is_d64 = getattr(pa.types, "is_decimal64", None)
    if (is_d32 is not None and is_d32(t)) or (is_d64 is not None and is_d64(t)):
        return pc.cast(arr, pa.decimal128(t.precision, t.scale))
    return arr


cdef class _Program:
    """The encoder program: C nodes for the selected columns plus everything that keeps them valid.

    ``arrays`` holds every pyarrow object whose buffers a node points into; ``_allocs`` every C
    allocation, freed on dealloc.
    """

    cdef bnode *top
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

    cdef bnode *new_node(self, int type, int32_t column) except NULL:
        cdef bnode *n = <bnode *> self.alloc(sizeof(bnode))
        n.type = type
        n.column = column
        n.ts_mul = 1
        n.ts_div = 1
        return n

    cdef set_members(self, bnode *n, list keys, list children):
        cdef Py_ssize_t k, count = len(children)
        cdef bytes key
        n.nchildren = <int32_t> count
        n.children = <bnode **> self.alloc(sizeof(bnode *) * count)
        n.keys = <char **> self.alloc(sizeof(char *) * count)
        n.keylens = <int32_t *> self.alloc(sizeof(int32_t) * count)
        for k in range(count):
            key = keys[k].encode("utf-8")
            if b"\x00" in key:
                raise ValueError(f"BSON keys cannot contain NUL characters: {keys[k]!r}")
            n.keys[k] = <char *> self.alloc(len(key) + 1)
            memcpy(n.keys[k], <char *> key, len(key))
            n.keylens[k] = <int32_t> len(key)
            n.children[k] = <bnode *> <size_t> children[k]

    cdef bnode *plan(self, object arr, int32_t column, bint object_id) except NULL:
        """Build the node for one array (recursively for nested types)."""
        cdef bnode *n
        cdef int code = -1
        arr = _normalize(arr)
        self.arrays.append(arr)
        t = arr.type
        bufs = arr.buffers()
        if pa.types.is_null(t):
            n = self.new_node(BT_NULL, column)
            n.offset = arr.offset
            return n
        for pred, c in _SIMPLE.items():
            if pred(t):
                code = c
                break
        if code == -1:
            if pa.types.is_timestamp(t):
                code = BT_TS
            elif pa.types.is_decimal128(t):
                code = BT_DEC128
            elif pa.types.is_fixed_size_binary(t) and not pa.types.is_decimal(t):
                code = BT_OID if object_id and t.byte_width == 12 else BT_FSB
            elif pa.types.is_large_list(t):
                code = BT_LLIST
            elif pa.types.is_map(t):
                code = BT_MAP
            elif pa.types.is_list(t):
                code = BT_LIST
            elif pa.types.is_fixed_size_list(t):
                code = BT_FSL
            elif pa.types.is_struct(t):
                code = BT_STRUCT
            else:
                raise TypeError(f"BSON encoding does not support Arrow type {t}")
        n = self.new_node(code, column)
        n.offset = arr.offset
        n.validity = _addr(bufs[0]) if arr.null_count else NULL
        if code in (BT_STR, BT_LSTR, BT_BIN, BT_LBIN):
            n.offsets = _addr(bufs[1])
            n.data = _addr(bufs[2])
        elif code in (BT_LIST, BT_LLIST, BT_FSL, BT_MAP):
            if code == BT_FSL:
                n.width = t.list_size
            else:
                n.offsets = _addr(bufs[1])
            values = arr.values
            self.arrays.append(values)
            if code == BT_MAP:
                keys = _normalize(values.field(0))
                if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
                    raise TypeError(
                        f"BSON encoding supports only string map keys (a key becomes a field name), "
                        f"not {t.key_type}"
                    )
                n.nchildren = 2
                n.children = <bnode **> self.alloc(sizeof(bnode *) * 2)
                n.children[0] = self.plan(keys, column, False)
                n.children[1] = self.plan(values.field(1), column, False)
            else:
                n.nchildren = 1
                n.children = <bnode **> self.alloc(sizeof(bnode *))
                n.children[0] = self.plan(values, column, False)
        elif code == BT_STRUCT:
            children = [<size_t> self.plan(arr.field(k), column, False) for k in range(t.num_fields)]
            self.set_members(n, [t.field(k).name for k in range(t.num_fields)], children)
        else:
            n.data = _addr(bufs[1])
            if code == BT_FSB or code == BT_OID:
                n.width = t.byte_width
            elif code == BT_TS:
                n.ts_mul, n.ts_div = _TS[t.unit]
            elif code == BT_DEC128:
                n.scale = t.scale
        return n


cdef _Program _build(object batch, object columns, object field_names, object object_id):
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
    if object_id is None:
        oid_columns = {"_id"}
    elif isinstance(object_id, str):
        oid_columns = {object_id}
    else:
        oid_columns = set(object_id)
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
        col = _validated(batch.column(indices[c]), f"column {names[c]!r}")
        is_oid = names[c] in oid_columns
        if is_oid and object_id is not None:
            t = col.type
            if not (pa.types.is_fixed_size_binary(t) and t.byte_width == 12):
                raise TypeError(
                    f"object_id column {names[c]!r} must be fixed_size_binary(12), not {t}"
                )
        children.append(<size_t> prog.plan(col, c, is_oid))
    prog.top = prog.new_node(BT_STRUCT, -1)
    prog.set_members(prog.top, keys, children)
    return prog


cdef object _encode(object batch, object columns, object field_names, object object_id, str nulls,
                    bint collect):
    if nulls not in ("null", "omit"):
        raise ValueError(f"nulls must be 'null' or 'omit', got {nulls!r}")
    cdef _Program prog = _build(batch, columns, field_names, object_id)
    cdef int64_t rows = batch.num_rows
    cdef btask task
    memset_task(&task)
    task.top = prog.top
    task.start = 0
    task.end = rows
    task.collect = collect
    task.st.omit_nulls = nulls == "omit"
    task.offsets = <int32_t *> malloc(sizeof(int32_t) * (rows + 1))
    if task.offsets == NULL:
        raise MemoryError()
    cdef char *data = NULL
    try:
        with nogil:
            bt_run(&task)
            if task.fatal == BE_OK:
                # Shrink to fit (keeps a non-NULL pointer for an empty batch).
                data = <char *> realloc(task.st.buf, task.st.pos + 1)
                if data == NULL:
                    task.fatal = BE_NOMEM
                else:
                    task.st.buf = NULL
        if task.fatal == BE_NOMEM:
            raise MemoryError("out of memory while encoding BSON")
        if task.fatal == BE_TOO_LARGE and task.nfailed == 0:
            raise ValueError(
                "BSON output of this batch exceeds 2 GiB, the limit of a BinaryArray; encode smaller batches"
            )
        if task.fatal != BE_OK:
            row = task.failed_rows[0]
            column = prog.names[task.failed_columns[0]]
            raise ValueError(f"column {column!r}, row {row}: {_MESSAGES[task.failed_codes[0]]}")
        nout = task.nout
        data_buf = _own(data, task.st.pos)
        data = NULL
        offsets_buf = _own(<char *> task.offsets, sizeof(int32_t) * (nout + 1))
        task.offsets = NULL
        docs = pa.Array.from_buffers(pa.binary(), nout, [None, offsets_buf, data_buf], null_count=0)
        if not collect:
            return docs
        failed = np.empty(task.nfailed, dtype=np.int64)
        errors = []
        for k in range(task.nfailed):
            failed[k] = task.failed_rows[k]
            errors.append(
                f"column {prog.names[task.failed_columns[k]]!r}: {_MESSAGES[task.failed_codes[k]]}"
            )
        return docs, failed, errors
    finally:
        free(task.st.buf)
        free(task.offsets)
        free(task.failed_rows)
        free(task.failed_codes)
        free(task.failed_columns)
        free(data)


cdef inline void memset_task(btask *t) noexcept nogil:
    t.st.buf = NULL
    t.st.pos = 0
    t.st.cap = 0
    t.st.omit_nulls = 0
    t.st.err = BE_OK
    t.st.err_column = -1
    t.offsets = NULL
    t.nout = 0
    t.failed_rows = NULL
    t.failed_codes = NULL
    t.failed_columns = NULL
    t.nfailed = 0
    t.failcap = 0
    t.fatal = BE_OK
    t.collect = 0


def encode_documents(batch, *, columns=None, field_names=None, object_id=None, str nulls="null"):
    """Encode each row of ``batch`` as one BSON document; returns a ``pa.BinaryArray`` (no nulls).

    ``object_id``: top-level column name(s) encoded as ObjectId; they must be ``fixed_size_binary(12)``.
    Default ``None``: the column ``_id`` when it is ``fixed_size_binary(12)``, else nothing.
    Raises ``KeyError`` for an unknown column, ``TypeError`` for an unsupported type, ``ValueError``
    for a value BSON cannot hold (naming column and row) or an output over 2 GiB. The GIL is released
    while rows are encoded.
    """
    return _encode(batch, columns, field_names, object_id, nulls, False)


def encode_documents_checked(batch, *, columns=None, field_names=None, object_id=None,
                             str nulls="null"):
    """Like :func:`encode_documents`, but rows holding a value BSON cannot hold are left out.

    Returns ``(documents, failed_rows, errors)``: the documents of the good rows in row order, the
    int64 numpy array of the rows left out, and one message per left-out row.
    """
    return _encode(batch, columns, field_names, object_id, nulls, True)
