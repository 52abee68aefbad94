# cython: language_level=3
"""Random column generation for the DataGen source: counter-based, GIL released, no per-row objects.

Randomness. ``word(key, c)`` is the ``c``-th output of SplitMix64 seeded with ``key``:
``mix64(key + (c + 1) * 0x9E3779B97F4A7C15)`` (Stafford's "mix13" finalizer). A column's values are a
pure function of its stream key(s) and the row (or byte) counter, so generating ``n`` rows gives
exactly the first ``n`` rows of any longer run, and any range can be generated on any thread.
:func:`stream_key` derives the keys from ``(seed, block, field, stream)`` by chaining ``mix64``.

What a spec generates (row ``c``, ``w = word(key, c)``):

* ``("int", key, low, high, width)``: ``low + floor(w * span / 2**64)`` with ``span = high - low + 1``
  (``w`` itself for the full 64-bit range), stored in ``width`` bytes (two's complement). Bias at
  most ``span / 2**64`` per value (no rejection, so one word per row). -> ``Buffer``
* ``("float", key, low, high, width)``: ``low + (high - low) * u`` with ``u = (w >> 11) * 2**-53``,
  as float64 (``width`` 8) or float32 (4); a value that rounds up to ``high`` becomes the largest
  float below it, so the interval is ``[low, high)`` (``low`` when ``low == high``). -> ``Buffer``
* ``("normal", key, key2, mean, std)``: ``mean + std * z``, ``z`` from Doornik's 256-layer ZIGNOR
  ziggurat; the fast path (~99%) uses ``w`` alone (top 53 bits: the uniform, low 8: the layer), the
  rest draws from SplitMix64 seeded with ``mix64(key2 ^ c)``. -> ``Buffer`` of float64
* ``("seq", first, step)``: ``first + step * c`` as int64, wrapping modulo ``2**64``. -> ``Buffer``
* ``("bits", key, threshold, invert)``: a validity-style bitmap (LSB first, padding bits 0) whose
  bit ``c`` is ``(u32 < threshold) != invert``, ``u32`` the low (even ``c``) or high (odd ``c``)
  half of ``word(key, c // 2)``; ``threshold`` in ``[0, 2**32]``. -> ``(Buffer, bits set)``
* ``("string", len_key, byte_key, min_len, max_len, alphabet)``: lengths uniform in
  ``[min_len, max_len]`` (as ``int``, from ``len_key``) -> offsets (int32, or int64 when the data
  exceeds ``2**31 - 1`` bytes); data byte ``j`` is ``alphabet[digit(j % d, word(byte_key, j // d))]``
  where digit ``m`` of ``w`` is ``floor(k * frac(w * k**m / 2**64))`` for ``k = len(alphabet)``: for a
  power of two ``d = 64 // log2(k)`` and digits are exact bit fields; otherwise ``d`` is the largest
  with ``k**d <= 2**48`` and each character is within ``k**d / 2**64`` (< 2**-16) of uniform.
  Bytes never depend on row boundaries. -> ``(offsets Buffer, data Buffer, is_large)``

Threads: :func:`generate` fills all its specs in one call with the GIL released, on ``threads``
threads (``0``: two when ``n >= 8192``) taking chunks of 4096 rows (16384 string bytes) from a
shared queue, costliest columns first: first every fixed-width column and the string offsets (a
prefix sum, one task per column), then the string bytes. Small chunks matter on a shared machine:
a thread the OS schedules late leaves little behind for the others to wait on. Results do not
depend on the thread count.

Errors: ``ValueError`` for a malformed spec (unknown kind, bad width, ``high < low``, an empty
alphabet, a threshold outside ``[0, 2**32]``), ``MemoryError`` when a buffer cannot be allocated.
Nothing is retained after the call.
"""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport free, malloc

import pyarrow as pa

__all__ = ["generate", "stream_key", "word"]


cdef extern from "_datagen.h" nogil:
    enum:
        DG_INT, DG_FLOAT, DG_NORMAL, DG_BITS, DG_OFFSETS, DG_BYTES, DG_SEQ

    ctypedef struct dg_task:
        int kind
        int width
        uint64_t key, key2
        int64_t lo, hi
        uint64_t ulow, span
        double a, b
        uint64_t thr
        int invert
        const uint8_t *alphabet
        uint64_t k
        int digits
        int shift
        const uint16_t *pair
        void *out
        int64_t result

    uint64_t dg_mix64(uint64_t z)
    uint64_t dg_word(uint64_t key, uint64_t c)
    void dg_zig_init()
    void dg_build_pairs(const uint8_t *alpha, uint16_t *pair)
    int64_t dg_total_length(uint64_t key, int64_t n, int64_t lo, uint64_t span)
    void dg_run_tasks(dg_task *tasks, int ntasks, int threads)
    int dg_run_chunked(dg_task *cols, int ncols, int threads, int64_t chunk)

dg_zig_init()

DEF _MASK64 = 0xFFFFFFFFFFFFFFFF
# Below this many rows a second thread costs more than it saves.
_PARALLEL_MIN_ROWS = 8192
_INT32_MAX = 2**31 - 1
# Relative cost per row of each kind (orders the task queue).
_COST = {"normal": 0, "string": 1, "float": 2, "int": 3, "bits": 4, "seq": 5}


def stream_key(seed, block, field, stream):
    """The key of one random stream: ``mix64`` chained over the seed's low and high 64 bits,
    ``block``, ``field`` and ``stream`` (each must be within ``[0, 2**64)``; the seed ``[0, 2**128)``)."""
    parts = (seed & _MASK64, seed >> 64, block, field, stream)
    cdef uint64_t k = 0x6A09E667F3BCC909
    for p in parts:
        if p < 0 or p > _MASK64:
            raise ValueError(f"stream_key parts must be within [0, 2**64), got {p!r}")
        k = dg_mix64(k ^ <uint64_t> p)
    return k


def word(key, c):
    """``word(key, c)``: the ``c``-th output of SplitMix64 seeded with ``key`` (for tests)."""
    return dg_word(<uint64_t> key, <uint64_t> c)


include "_owned.pxi"


cdef int _digits(uint64_t k):
    """Characters per 64-bit word for an alphabet of ``k`` characters (see the module docstring)."""
    cdef int d = 1
    cdef int b
    if k <= 1:
        return 64
    if k & (k - 1) == 0:
        b = 0
        while (<uint64_t> 1 << b) < k:
            b += 1
        return 64 // b
    # The largest d with k**d <= 2**48.
    p = k
    while p * k <= 2**48:
        p *= k
        d += 1
    return d


cdef int _shift(uint64_t k):
    cdef int b = 0
    if k <= 1 or k & (k - 1):
        return 0
    while (<uint64_t> 1 << b) < k:
        b += 1
    return b


def generate(list specs, int64_t n, int threads=0):
    """Fill ``n`` rows for every spec (see the module docstring); returns one result per spec."""
    cdef int nspecs = len(specs)
    cdef int ntasks = 0
    cdef int i, t, nbytes_tasks, rc
    cdef int64_t chunk = 4096  # rows per queued task (x4 for string bytes)
    cdef dg_task *tasks = NULL
    cdef dg_task *task
    cdef int64_t total, lo_len
    cdef uint64_t span, ukey
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {threads}")
    if threads == 0:
        threads = 2 if n >= _PARALLEL_MIN_ROWS else 1
    results = [None] * nspecs
    keep = []  # buffers and alphabets referenced by the tasks
    string_specs = []
    nstrings = sum(1 for spec in specs if spec[0] == "string")
    # Costliest first, so that the shared queue ends balanced.
    order = sorted(range(nspecs), key=lambda j: _COST.get(specs[j][0], 9))
    tasks = <dg_task *> malloc(sizeof(dg_task) * (nspecs + nstrings + 1))
    if tasks == NULL:
        raise MemoryError()
    try:
        # Phase 1: every fixed-width column and every string column's offsets.
        for i in order:
            spec = specs[i]
            kind = spec[0]
            task = &tasks[ntasks]
            task.lo = 0
            task.hi = n
            task.result = 0
            if kind == "int":
                _, key, low, high, width = spec
                if width not in (1, 2, 4, 8):
                    raise ValueError(f"int width must be 1, 2, 4 or 8, got {width!r}")
                if high < low:
                    raise ValueError(f"high ({high}) must be >= low ({low})")
                if high - low >= 2**64:
                    raise ValueError(f"high - low must be < 2**64, got {high - low}")
                buf = pa.allocate_buffer(n * width)
                task.kind = DG_INT
                task.width = width
                task.key = <uint64_t> key
                task.ulow = <uint64_t> (low & _MASK64)
                task.span = <uint64_t> ((high - low + 1) & _MASK64)
                task.out = <void *>_addr(buf)
                results[i] = buf
            elif kind == "seq":
                _, first, step = spec
                buf = pa.allocate_buffer(n * 8)
                task.kind = DG_SEQ
                task.ulow = <uint64_t> (first & _MASK64)
                task.span = <uint64_t> (step & _MASK64)
                task.out = <void *>_addr(buf)
                results[i] = buf
            elif kind == "float":
                _, key, low, high, width = spec
                if width not in (4, 8):
                    raise ValueError(f"float width must be 4 or 8, got {width!r}")
                if high < low:
                    raise ValueError(f"high ({high}) must be >= low ({low})")
                buf = pa.allocate_buffer(n * width)
                task.kind = DG_FLOAT
                task.width = width
                task.key = <uint64_t> key
                task.a = low
                task.b = high
                task.out = <void *>_addr(buf)
                results[i] = buf
            elif kind == "normal":
                _, key, key2, mean, std = spec
                buf = pa.allocate_buffer(n * 8)
                task.kind = DG_NORMAL
                task.key = <uint64_t> key
                task.key2 = <uint64_t> key2
                task.a = mean
                task.b = std
                task.out = <void *>_addr(buf)
                results[i] = buf
            elif kind == "bits":
                _, key, thr, invert = spec
                if not 0 <= thr <= 2**32:
                    raise ValueError(f"threshold must be within [0, 2**32], got {thr!r}")
                buf = pa.allocate_buffer((n + 7) // 8)
                task.kind = DG_BITS
                task.key = <uint64_t> key
                task.thr = <uint64_t> thr
                task.invert = 1 if invert else 0
                task.out = <void *>_addr(buf)
                results[i] = buf
            elif kind == "string":
                _, len_key, byte_key, min_len, max_len, alphabet = spec
                if not 0 <= min_len <= max_len:
                    raise ValueError(f"need 0 <= min_len <= max_len, got ({min_len}, {max_len})")
                alphabet = bytes(alphabet)
                if not alphabet:
                    raise ValueError("alphabet must not be empty")
                lo_len = min_len
                span = <uint64_t> (max_len - min_len + 1)
                # int32 offsets unless the data could exceed them; then count exactly.
                large = n * max_len > _INT32_MAX
                if large:
                    ukey = <uint64_t> len_key
                    with nogil:
                        total = dg_total_length(ukey, n, lo_len, span)
                    large = total > _INT32_MAX
                obuf = pa.allocate_buffer((n + 1) * (8 if large else 4))
                task.kind = DG_OFFSETS
                task.width = 8 if large else 4
                task.key = <uint64_t> len_key
                task.ulow = <uint64_t> lo_len
                task.span = span
                task.out = <void *>_addr(obuf)
                keep.append(alphabet)
                string_specs.append((i, ntasks, obuf, byte_key, alphabet, large))
            else:
                raise ValueError(f"unknown spec kind {kind!r}")
            ntasks += 1
        with nogil:
            rc = dg_run_chunked(tasks, ntasks, threads, chunk)
        if rc != 0:
            raise MemoryError()
        for t, i in enumerate(order):
            if specs[i][0] == "bits":
                results[i] = (results[i], tasks[t].result)

        # Phase 2: the string bytes (their total is known only now).
        if string_specs:
            nbytes_tasks = 0
            for i, t, obuf, byte_key, alphabet, large in string_specs:
                total = tasks[t].result
                dbuf = pa.allocate_buffer(total)
                results[i] = (obuf, dbuf, large)
                keep.append(dbuf)
                task = &tasks[nspecs + nbytes_tasks]
                task.kind = DG_BYTES
                task.key = <uint64_t> byte_key
                task.lo = 0
                task.hi = total
                task.result = 0
                task.alphabet = <const uint8_t *> (<bytes> alphabet)
                task.k = len(alphabet)
                task.digits = _digits(task.k)
                task.shift = _shift(task.k)
                task.pair = NULL
                if task.k == 64:
                    pairs = bytearray(8192)
                    keep.append(pairs)
                    task.pair = <const uint16_t *> (<char *> pairs)
                    dg_build_pairs(task.alphabet, <uint16_t *> task.pair)
                task.out = <void *>_addr(dbuf)
                nbytes_tasks += 1
            with nogil:
                rc = dg_run_chunked(tasks + nspecs, nbytes_tasks, threads, chunk)
            if rc != 0:
                raise MemoryError()
    finally:
        free(tasks)
    return results
