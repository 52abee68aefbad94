# cython: language_level=3
"""Kafka's murmur2 hash and default partitioner over Arrow binary/string arrays.

Bit-for-bit the Java client's ``org.apache.kafka.common.utils.Utils.murmur2`` (seed ``0x9747b28c``,
signed 32-bit result) and the key-hash step of its default partitioner,
``(murmur2(key) & 0x7fffffff) % num_partitions`` (librdkafka's ``murmur2_random`` agrees).

Contract:

* Input: a ``pa.Array`` or ``pa.ChunkedArray`` of ``binary``, ``large_binary``, ``string``,
  ``large_string``, ``fixed_size_binary``, ``binary_view``/``string_view`` (cast to the large
  layout first) or a dictionary of any of those (the dictionary is hashed once, then taken).
  Sliced arrays are fine: the array offset is honoured for offsets and validity.
* Output: one ``pa.Int32Array`` (a ``ChunkedArray`` gives one combined array) of the same length;
  a null key gives a null output (Kafka sends null keys to the sticky partitioner; the caller
  decides what to do with them).
* The loop reads the Arrow offsets/data/validity buffers directly and releases the GIL; no Python
  object is built per key. The output buffers are allocated up front with ``pa.allocate_buffer``
  and wrapped with ``pa.Array.from_buffers`` (no copy).
* Errors: ``TypeError`` for an unsupported input type, ``ValueError`` naming ``num_partitions``
  when it is not in ``1 .. 2**31 - 1``. Nothing is written anywhere on failure.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.string cimport memset

import operator

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["murmur2", "partition"]


cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>

    /* Java's Utils.murmur2. Every value is uint32_t so that multiplication wraps exactly as Java's
       int does and right shifts are logical (Java's >>>). Bytes are assembled little-endian one by
       one: the compiler turns this into a single (unaligned) load on little-endian targets, and it
       stays correct on big-endian ones. */
    static inline uint32_t af_murmur2(const uint8_t *data, uint32_t length) {
        const uint32_t m = 0x5bd1e995u;
        uint32_t h = 0x9747b28cu ^ length;
        uint32_t n4 = length >> 2;
        for (uint32_t i = 0; i < n4; i++) {
            const uint8_t *p = data + ((size_t)i << 2);
            uint32_t k = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
                         | ((uint32_t)p[3] << 24);
            k *= m;
            k ^= k >> 24;
            k *= m;
            h *= m;
            h ^= k;
        }
        uint32_t rest = length & 3u;
        if (length >= 4) {
            /* Branch-free tail: with random key lengths a switch on length % 4 mispredicts most
               of the time. The tail bytes are the top `rest` bytes of the key's last 4 bytes
               (always inside the key, so never read past the buffer). Java's switch xors the
               same bytes into h (the fall-through) and multiplies once when rest > 0. */
            const uint8_t *p = data + length - 4;
            uint64_t last = (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16)
                            | ((uint64_t)p[3] << 24);
            h ^= (uint32_t)(last >> (8 * (4 - rest)));  /* rest == 0: shift by 32 gives 0 */
            h = rest ? h * m : h;
        } else {
            /* Java's switch falls through: case 3 also runs cases 2 and 1. */
            switch (rest) {
                case 3: h ^= (uint32_t)data[2] << 16; /* fall through */
                case 2: h ^= (uint32_t)data[1] << 8;  /* fall through */
                case 1: h ^= (uint32_t)data[0];
                        h *= m;
            }
        }
        h ^= h >> 13;
        h *= m;
        h ^= h >> 15;
        return h;
    }

    /* mode 0: the raw hash; mode > 0: (hash & 0x7fffffff) % mode, the default partitioner.
       A hardware division costs more than the whole hash of a short key, so the modulo uses
       Lemire's "fastmod" (exact for every 32-bit dividend and divisor): M = 2**64 / d rounded up,
       a % d = ((M * a mod 2**64) * d) >> 64. */
    #if defined(__SIZEOF_INT128__)
    typedef struct { uint64_t m; uint32_t d; } af_mod_t;
    static inline af_mod_t af_mod_init(uint32_t d) {
        af_mod_t r; r.d = d; r.m = d ? UINT64_MAX / d + 1 : 0; return r;
    }
    static inline uint32_t af_mod(uint32_t a, af_mod_t md) {
        uint64_t low = md.m * a;
        return (uint32_t)(((__uint128_t)low * md.d) >> 64);
    }
    #else
    typedef struct { uint32_t d; } af_mod_t;
    static inline af_mod_t af_mod_init(uint32_t d) { af_mod_t r; r.d = d; return r; }
    static inline uint32_t af_mod(uint32_t a, af_mod_t md) { return a % md.d; }
    #endif

    #define AF_LOOP(HASH_EXPR)                                                         \
        if (mode > 0) {                                                                \
            af_mod_t md = af_mod_init((uint32_t)mode);                                 \
            for (int64_t i = 0; i < n; i++) {                                          \
                uint32_t h = (HASH_EXPR);                                              \
                out[i] = (int32_t)af_mod(h & 0x7fffffffu, md);                         \
            }                                                                          \
        } else {                                                                       \
            for (int64_t i = 0; i < n; i++) out[i] = (int32_t)(HASH_EXPR);             \
        }

    static void af_hash_offsets32(const int32_t *offsets, const uint8_t *data, int64_t n,
                                  int64_t mode, int32_t *out) {
        AF_LOOP(af_murmur2(data + offsets[i], (uint32_t)(offsets[i + 1] - offsets[i])))
    }

    static void af_hash_offsets64(const int64_t *offsets, const uint8_t *data, int64_t n,
                                  int64_t mode, int32_t *out) {
        AF_LOOP(af_murmur2(data + offsets[i], (uint32_t)(offsets[i + 1] - offsets[i])))
    }

    static void af_hash_fixed(const uint8_t *data, int64_t width, int64_t n, int64_t mode,
                              int32_t *out) {
        AF_LOOP(af_murmur2(data + i * width, (uint32_t)width))
    }

    /* Copy n validity bits starting at bit src_off into dst starting at bit dst_off (dst is
       zeroed beforehand), and zero the values of null slots so the output is deterministic. */
    static void af_copy_validity(const uint8_t *src, int64_t src_off, uint8_t *dst,
                                 int64_t dst_off, int64_t n, int32_t *values) {
        for (int64_t i = 0; i < n; i++) {
            int64_t s = src_off + i;
            if ((src[s >> 3] >> (s & 7)) & 1) {
                int64_t d = dst_off + i;
                dst[d >> 3] |= (uint8_t)(1u << (d & 7));
            } else {
                values[i] = 0;
            }
        }
    }

    static void af_set_valid(uint8_t *dst, int64_t dst_off, int64_t n) {
        for (int64_t i = 0; i < n; i++) {
            int64_t d = dst_off + i;
            dst[d >> 3] |= (uint8_t)(1u << (d & 7));
        }
    }
    """
    uint32_t af_murmur2(const uint8_t *data, uint32_t length) nogil
    void af_hash_offsets32(const int32_t *offsets, const uint8_t *data, int64_t n,
                           int64_t mode, int32_t *out) nogil
    void af_hash_offsets64(const int64_t *offsets, const uint8_t *data, int64_t n,
                           int64_t mode, int32_t *out) nogil
    void af_hash_fixed(const uint8_t *data, int64_t width, int64_t n, int64_t mode,
                       int32_t *out) nogil
    void af_copy_validity(const uint8_t *src, int64_t src_off, uint8_t *dst, int64_t dst_off,
                          int64_t n, int32_t *values) nogil
    void af_set_valid(uint8_t *dst, int64_t dst_off, int64_t n) nogil


include "_owned.pxi"


cdef object _normalize(object arr):
    """Map view types onto the offset layout the loops read; reject everything else."""
    cdef object t = arr.type
    if (
        pa.types.is_binary(t)
        or pa.types.is_string(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_large_string(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        return arr
    if pa.types.is_binary_view(t):
        return pc.cast(arr, pa.large_binary())
    if pa.types.is_string_view(t):
        return pc.cast(arr, pa.large_string())
    raise TypeError(
        "murmur2 keys must be binary, large_binary, string, large_string, fixed_size_binary, "
        f"binary_view, string_view or a dictionary of those; got {t}"
    )


include "_validate.pxi"


cdef object _as_bytes(object arr):
    """``arr`` with string types viewed as their binary counterparts (the same buffers)."""
    cdef object t = arr.type
    if pa.types.is_string(t):
        return arr.view(pa.binary())
    if pa.types.is_large_string(t):
        return arr.view(pa.large_binary())
    return arr


cdef void _hash_chunk(object arr, int64_t mode, int32_t *out, uint8_t *validity,
                      int64_t out_pos) except *:
    """Hash one (non-dictionary) array into ``out[0:len]``, its validity into ``validity`` at bit ``out_pos``."""
    cdef int64_t n = len(arr)
    cdef int64_t off = arr.offset
    cdef int64_t width
    cdef const uint8_t *vbits
    cdef const uint8_t *data
    cdef const int32_t *off32
    cdef const int64_t *off64
    cdef object t = arr.type
    if n == 0:
        return
    bufs = arr.buffers()
    vbits = _addr(bufs[0]) if arr.null_count else NULL
    if pa.types.is_fixed_size_binary(t):
        width = t.byte_width
        data = _addr(bufs[1])
        if data != NULL:
            data = data + off * width
        with nogil:
            af_hash_fixed(data, width, n, mode, out)
    elif pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        off64 = (<const int64_t *> _addr(bufs[1])) + off
        data = _addr(bufs[2])
        with nogil:
            af_hash_offsets64(off64, data, n, mode, out)
    else:
        off32 = (<const int32_t *> _addr(bufs[1])) + off
        data = _addr(bufs[2])
        with nogil:
            af_hash_offsets32(off32, data, n, mode, out)
    if validity != NULL:
        if vbits != NULL:
            with nogil:
                af_copy_validity(vbits, off, validity, out_pos, n, out)
        else:
            with nogil:
                af_set_valid(validity, out_pos, n)


cdef object _run(object keys, int64_t mode):
    cdef list chunks
    cdef int64_t total = 0
    cdef int64_t nulls = 0
    cdef int64_t pos = 0
    cdef int32_t *out
    cdef uint8_t *validity = NULL
    if isinstance(keys, pa.ChunkedArray):
        chunks = list(keys.chunks)
        key_type = keys.type
    elif isinstance(keys, pa.Array):
        chunks = [keys]
        key_type = keys.type
    else:
        raise TypeError(f"keys must be a pyarrow Array or ChunkedArray, got {type(keys).__name__}")

    # The loops index offsets as they are: refuse invalid Arrow data (bytes are hashed, so string
    # keys are checked as binary: their UTF-8 does not matter here).
    for chunk in chunks:
        _validated(_as_bytes(chunk), "keys")

    if pa.types.is_dictionary(key_type):
        # Hash each distinct key once, then gather: cheaper than hashing repeated keys, and `take`
        # carries the index nulls into the output.
        hashed = []
        for chunk in chunks:
            hashed.append(pc.take(_run(chunk.dictionary, mode), chunk.indices))
        if not hashed:
            return pa.array([], type=pa.int32())
        return hashed[0] if len(hashed) == 1 else pa.concat_arrays(hashed)

    chunks = [_normalize(c) for c in chunks]
    for chunk in chunks:
        total += len(chunk)
        nulls += chunk.null_count

    values_buf = pa.allocate_buffer(total * 4)
    out = <int32_t *> _addr(values_buf)
    validity_buf = None
    if nulls:
        validity_buf = pa.allocate_buffer((total + 7) // 8)
        validity = <uint8_t *> _addr(validity_buf)
        memset(validity, 0, (total + 7) // 8)

    for chunk in chunks:
        _hash_chunk(chunk, mode, out + pos, validity, pos)
        pos += len(chunk)

    return pa.Array.from_buffers(pa.int32(), total, [validity_buf, values_buf], null_count=nulls)


def murmur2(keys):
    """Kafka's ``Utils.murmur2`` of every key, as a signed ``int32`` array (nulls stay null).

    Releases the GIL while hashing. ``TypeError`` for keys that are not binary/string-like.
    """
    return _run(keys, 0)


def partition(keys, num_partitions):
    """Kafka's default partition of every key: ``(murmur2(key) & 0x7fffffff) % num_partitions``.

    Null keys give null partitions (Kafka would use its sticky partitioner; the caller decides).
    ``ValueError`` naming ``num_partitions`` unless it is an int in ``1 .. 2**31 - 1``.
    """
    if isinstance(num_partitions, bool):
        raise TypeError("num_partitions must be an int, got bool")
    num_partitions = operator.index(num_partitions)  # accepts numpy integers, rejects floats
    if num_partitions <= 0 or num_partitions > 0x7FFFFFFF:
        raise ValueError(f"num_partitions must be between 1 and 2**31 - 1, got {num_partitions!r}")
    return _run(keys, num_partitions)
