/* Schemaless Avro records -> Arrow column buffers: the row loop of ext/avro_decode.pyx.
 *
 * One payload per row holds one Avro record (optionally after the 5-byte Confluent header) whose
 * fields are flat: null, boolean, int, long, float, double, string, bytes, fixed, enum, the logical
 * types date / (local-)timestamp-millis / (local-)timestamp-micros, and unions of null with one of
 * those. The decoder is strict: a payload that is not exactly one such record (truncated, an
 * unknown union branch or enum index, a varint longer than 10 bytes or beyond 64 bits, a boolean
 * byte other than 0 or 1, an int beyond 32 bits, invalid UTF-8, a date or timestamp outside what
 * Python's datetime can hold, trailing bytes, a wrong header) is marked "not decoded" and its
 * partial output is rolled back; the caller decodes those rows on its general path, which decides
 * what they mean. Nothing is read outside [offsets[i], offsets[i + 1]).
 *
 * No Python API is used: the caller runs afa_decode without the GIL.
 */
#ifndef ARROWFLOW_AVRO_DECODE_H
#define ARROWFLOW_AVRO_DECODE_H

#include <stdint.h>
#include <string.h>

#include "_utf8.h"

enum {
    AFA_NULL = 0,
    AFA_BOOL = 1,
    AFA_INT = 2,      /* int -> int32 */
    AFA_LONG = 3,     /* long -> int64 */
    AFA_FLOAT = 4,
    AFA_DOUBLE = 5,
    AFA_STRING = 6,   /* UTF-8 checked */
    AFA_BYTES = 7,
    AFA_FIXED = 8,    /* param: size */
    AFA_ENUM = 9,     /* param: number of symbols; output int32 index */
    AFA_DATE = 10,    /* int days, within date.min..date.max */
    AFA_TS_MS = 11,   /* long millis, within datetime.min..datetime.max */
    AFA_TS_US = 12,   /* long micros, within datetime.min..datetime.max */
};

enum { AFA_OK = 0, AFA_OVERFLOW = 1 };

/* Union layout per field: 0 plain, 1 ["null", T], 2 [T, "null"]. */

/* Python's datetime range as microseconds / days from the Unix epoch. */
#define AFA_MIN_US (-62135596800000000LL)
#define AFA_MAX_US (253402300799999999LL)
#define AFA_MIN_DAY (-719162LL)
#define AFA_MAX_DAY (2932896LL)

/* A zigzag varint of at most 10 bytes whose value fits 64 bits. */
static inline int afa_long(const uint8_t **pp, const uint8_t *end, int64_t *out) {
    const uint8_t *p = *pp;
    if (p < end && !(*p & 0x80)) {
        uint64_t v = *p;
        *pp = p + 1;
        *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
        return 1;
    }
    uint64_t v = 0;
    int shift = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end)
            return 0;
        uint8_t b = *p++;
        if (i == 9 && (b & 0xFE))
            return 0;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
            return 1;
        }
        shift += 7;
    }
    return 0;
}

/* Per-field outputs. values: fixed-width column (n_rows * width bytes, NULL for null; bool uses 1 byte per
 * row, enum int32 indices, fixed `param` bytes); valid: one byte per row (unions only); offsets:
 * int32 (n_rows + 1) for string/bytes, with data/cap their byte buffer and used its fill. */
typedef struct {
    uint8_t *values;
    uint8_t *valid;
    int32_t *offsets;
    uint8_t *data;
    int64_t cap;
    int64_t used;
} afa_col;

/* Decode one value of `kind` into row `r` of `col`; 1 on success. */
static inline int afa_value(int kind, int64_t param, const uint8_t **pp, const uint8_t *end, afa_col *col,
                            int64_t r) {
    const uint8_t *p = *pp;
    int64_t v;
    switch (kind) {
    case AFA_NULL:
        return 1;
    case AFA_BOOL:
        if (p >= end || *p > 1)
            return 0;
        col->values[r] = *p;
        *pp = p + 1;
        return 1;
    case AFA_INT:
    case AFA_ENUM:
    case AFA_DATE: {
        if (!afa_long(pp, end, &v))
            return 0;
        if (kind == AFA_INT) {
            if (v < INT32_MIN || v > INT32_MAX)
                return 0;
        } else if (kind == AFA_ENUM) {
            if (v < 0 || v >= param)
                return 0;
        } else if (v < AFA_MIN_DAY || v > AFA_MAX_DAY) {
            return 0;
        }
        int32_t x = (int32_t)v;
        memcpy(col->values + 4 * r, &x, 4);
        return 1;
    }
    case AFA_LONG:
    case AFA_TS_MS:
    case AFA_TS_US:
        if (!afa_long(pp, end, &v))
            return 0;
        if (kind == AFA_TS_US && (v < AFA_MIN_US || v > AFA_MAX_US))
            return 0;
        if (kind == AFA_TS_MS && (v < AFA_MIN_US / 1000 || v > AFA_MAX_US / 1000))
            return 0;
        memcpy(col->values + 8 * r, &v, 8);
        return 1;
    case AFA_FLOAT: {
        if (end - p < 4)
            return 0;
        uint32_t f;
        memcpy(&f, p, 4);
        /* fastavro's float goes through a C double: a signalling NaN comes back quiet. */
        if ((f & 0x7F800000u) == 0x7F800000u && (f & 0x003FFFFFu) && !(f & 0x00400000u))
            f |= 0x00400000u;
        memcpy(col->values + 4 * r, &f, 4);
        *pp = p + 4;
        return 1;
    }
    case AFA_DOUBLE:
        if (end - p < 8)
            return 0;
        memcpy(col->values + 8 * r, p, 8);
        *pp = p + 8;
        return 1;
    case AFA_FIXED:
        if (end - p < param)
            return 0;
        memcpy(col->values + param * r, p, (size_t)param);
        *pp = p + param;
        return 1;
    case AFA_STRING:
    case AFA_BYTES: {
        if (!afa_long(&p, end, &v))
            return 0;
        if (v < 0 || v > end - p)
            return 0;
        if (kind == AFA_STRING && !af_utf8_valid(p, v))
            return 0;
        if (col->used + v > col->cap)
            return -1; /* cannot happen when cap >= the input size; reported, never written */
        memcpy(col->data + col->used, p, (size_t)v);
        col->used += v;
        *pp = p + v;
        return 1;
    }
    }
    return 0;
}

static inline int64_t afa_width(int kind, int64_t param) {
    switch (kind) {
    case AFA_BOOL:
        return 1;
    case AFA_INT:
    case AFA_ENUM:
    case AFA_DATE:
    case AFA_FLOAT:
        return 4;
    case AFA_LONG:
    case AFA_TS_MS:
    case AFA_TS_US:
    case AFA_DOUBLE:
        return 8;
    case AFA_FIXED:
        return param;
    }
    return 0;
}

/* Decode rows [0, n). `skip[i]` (when not NULL) nonzero: row i is not decoded (a null payload).
 * `ids`/`nids`: when nids > 0 each payload starts with the Confluent header and its schema id must
 * be one of `ids`. Decoded rows are written densely: `ok[i]` is set to 1 for each, `*n_out` counts
 * them. Returns AFA_OK, or AFA_OVERFLOW when a string/bytes column would pass 2**31 - 1 bytes (the
 * caller then decodes the call on its general path). */
static int afa_decode(const uint8_t *data, const int64_t *offsets, int64_t n, const uint8_t *skip,
                      const int64_t *ids, int nids, int nfields, const int32_t *kinds, const int32_t *unions,
                      const int64_t *params, afa_col *cols, int64_t *saved, uint8_t *ok, int64_t *n_out) {
    int64_t r = 0;
    for (int k = 0; k < nfields; k++)
        if (cols[k].offsets)
            cols[k].offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        ok[i] = 0;
        if (skip && skip[i])
            continue;
        const uint8_t *p = data + offsets[i];
        const uint8_t *end = data + offsets[i + 1];
        if (nids > 0) {
            if (end - p < 5 || p[0] != 0)
                continue;
            int64_t id = ((int64_t)p[1] << 24) | ((int64_t)p[2] << 16) | ((int64_t)p[3] << 8) | (int64_t)p[4];
            int found = 0;
            for (int j = 0; j < nids; j++)
                if (ids[j] == id)
                    found = 1;
            if (!found)
                continue;
            p += 5;
        }
        for (int k = 0; k < nfields; k++)
            saved[k] = cols[k].used;
        int good = 1;
        for (int k = 0; k < nfields && good; k++) {
            afa_col *col = &cols[k];
            int kind = kinds[k];
            if (unions[k]) {
                int64_t branch;
                if (!afa_long(&p, end, &branch) || (branch != 0 && branch != 1)) {
                    good = 0;
                    break;
                }
                int is_null = (unions[k] == 1) ? (branch == 0) : (branch == 1);
                col->valid[r] = (uint8_t)!is_null;
                if (is_null) {
                    int64_t w = afa_width(kind, params[k]);
                    if (w)
                        memset(col->values + w * r, 0, (size_t)w);
                    continue;
                }
            }
            int rc = afa_value(kind, params[k], &p, end, col, r);
            if (rc < 0)
                return AFA_OVERFLOW;
            if (!rc)
                good = 0;
        }
        if (!good || p != end) {
            for (int k = 0; k < nfields; k++)
                cols[k].used = saved[k];
            continue;
        }
        for (int k = 0; k < nfields; k++) {
            if (cols[k].offsets) {
                if (cols[k].used > INT32_MAX)
                    return AFA_OVERFLOW;
                cols[k].offsets[r + 1] = (int32_t)cols[k].used;
            }
        }
        ok[i] = 1;
        r++;
    }
    *n_out = r;
    return AFA_OK;
}

#endif
