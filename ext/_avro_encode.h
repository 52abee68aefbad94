/* Arrow column buffers -> schemaless Avro records: the row loop of ext/avro_encode.pyx.
 *
 * One output entry per row: the optional header (the Confluent 5 bytes) then one Avro record whose
 * fields are described by one afe_col each (Avro kind, union layout, the Arrow source buffers). The
 * encoding is fastavro's schemaless_writer's, byte for byte: zigzag varints, IEEE floats little-
 * endian, length-prefixed strings/bytes, raw fixed, enum index, union branch index. A row a field
 * rejects (see the AFE_E_* codes) is rolled back: its entry is empty, ok[i] = 0 and err_code[i] /
 * err_field[i] say why. No Python API is used: the caller runs afe_encode without the GIL.
 */
#ifndef ARROWFLOW_AVRO_ENCODE_H
#define ARROWFLOW_AVRO_ENCODE_H

#include <stdint.h>
#include <string.h>

/* Avro kinds (the same codes as _avro_decode.h's AFA_*). */
enum {
    AFE_NULL = 0, AFE_BOOL = 1, AFE_INT = 2, AFE_LONG = 3, AFE_FLOAT = 4, AFE_DOUBLE = 5,
    AFE_STRING = 6, AFE_BYTES = 7, AFE_FIXED = 8, AFE_ENUM = 9, AFE_DATE = 10, AFE_TS_MS = 11,
    AFE_TS_US = 12,
};

/* Arrow source layouts. */
enum {
    AFS_NONE = 0, AFS_BOOL = 1, AFS_I8 = 2, AFS_I16 = 3, AFS_I32 = 4, AFS_I64 = 5, AFS_U8 = 6,
    AFS_U16 = 7, AFS_U32 = 8, AFS_U64 = 9, AFS_F32 = 10, AFS_F64 = 11, AFS_BIN32 = 12,
    AFS_BIN64 = 13, AFS_FSB = 14,
};

/* Why a row failed. */
enum {
    AFE_E_OK = 0,
    AFE_E_NULL = 1,       /* null in a field that is not a ["null", T] union */
    AFE_E_INT_RANGE = 2,  /* outside int32 in a ["null", "int"] union */
    AFE_E_LONG_RANGE = 3, /* an unsigned value above 2**63 - 1 */
    AFE_E_FIXED = 4,      /* length differs from the fixed size */
    AFE_E_ENUM = 5,       /* not one of the enum's symbols (index < 0) */
    AFE_E_DATE = 6,       /* outside Python's date range */
    AFE_E_TS = 7,         /* outside Python's datetime range */
};

typedef struct {
    int32_t kind;
    int32_t union_;         /* 0 plain, 1 ["null", T], 2 [T, "null"] */
    int32_t src;            /* AFS_* */
    int32_t width;          /* AFS_FSB width */
    int64_t param;          /* fixed size */
    int64_t offset;         /* the Arrow array's offset */
    const uint8_t *valid;   /* validity bitmap or NULL */
    const uint8_t *values;  /* values (or data for binary layouts) */
    const uint8_t *offsets; /* int32/int64 offsets for AFS_BIN32/AFS_BIN64 */
    int64_t lo, hi;         /* accepted source range (dates, timestamps) */
    int64_t mul, div;       /* timestamps: avro = floor(v * mul / div) (one of them is 1) */
} afe_col;

static inline uint8_t *afe_varint(uint8_t *p, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        *p++ = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    *p++ = (uint8_t)z;
    return p;
}

static inline int afe_isvalid(const afe_col *c, int64_t i) {
    if (c->valid == NULL)
        return 1;
    int64_t j = c->offset + i;
    return (c->valid[j >> 3] >> (j & 7)) & 1;
}

/* The integer at row i; returns 0 for an unsigned value beyond int64. */
static inline int afe_int(const afe_col *c, int64_t i, int64_t *out) {
    int64_t j = c->offset + i;
    switch (c->src) {
    case AFS_I8: *out = ((const int8_t *)c->values)[j]; return 1;
    case AFS_I16: { int16_t v; memcpy(&v, c->values + 2 * j, 2); *out = v; return 1; }
    case AFS_I32: { int32_t v; memcpy(&v, c->values + 4 * j, 4); *out = v; return 1; }
    case AFS_I64: { int64_t v; memcpy(&v, c->values + 8 * j, 8); *out = v; return 1; }
    case AFS_U8: *out = c->values[j]; return 1;
    case AFS_U16: { uint16_t v; memcpy(&v, c->values + 2 * j, 2); *out = v; return 1; }
    case AFS_U32: { uint32_t v; memcpy(&v, c->values + 4 * j, 4); *out = v; return 1; }
    case AFS_U64: {
        uint64_t v;
        memcpy(&v, c->values + 8 * j, 8);
        if (v > (uint64_t)INT64_MAX)
            return 0;
        *out = (int64_t)v;
        return 1;
    }
    default: return 0;
    }
}

static inline int64_t afe_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b) != 0 && ((a < 0) != (b < 0)))
        q--;
    return q;
}

/* The bytes of a binary value at row i. */
static inline void afe_bin(const afe_col *c, int64_t i, const uint8_t **s, int64_t *len) {
    int64_t j = c->offset + i;
    if (c->src == AFS_BIN32) {
        int32_t a, b;
        memcpy(&a, c->offsets + 4 * j, 4);
        memcpy(&b, c->offsets + 4 * (j + 1), 4);
        *s = c->values + a;
        *len = (int64_t)b - a;
    } else if (c->src == AFS_BIN64) {
        int64_t a, b;
        memcpy(&a, c->offsets + 8 * j, 8);
        memcpy(&b, c->offsets + 8 * (j + 1), 8);
        *s = c->values + a;
        *len = b - a;
    } else {
        *s = c->values + (int64_t)c->width * j;
        *len = c->width;
    }
}

/* Encode one field of row i at p; returns the new end, or NULL with *err set. */
static inline uint8_t *afe_field(const afe_col *c, int64_t i, uint8_t *p, int *err) {
    if (c->kind == AFE_NULL)
        return p; /* fastavro writes nothing, whatever the value */
    int valid = afe_isvalid(c, i);
    if (c->union_) {
        if (!valid) {
            *p++ = c->union_ == 1 ? 0 : 2;
            return p;
        }
        *p++ = c->union_ == 1 ? 2 : 0;
    } else if (!valid) {
        if (c->kind == AFE_BOOL) { /* fastavro writes False for None */
            *p++ = 0;
            return p;
        }
        *err = AFE_E_NULL;
        return NULL;
    }
    int64_t j = c->offset + i;
    int64_t v = 0;
    switch (c->kind) {
    case AFE_BOOL:
        *p++ = (c->values[j >> 3] >> (j & 7)) & 1;
        return p;
    case AFE_INT:
    case AFE_LONG:
    case AFE_ENUM:
        if (!afe_int(c, i, &v)) {
            *err = AFE_E_LONG_RANGE;
            return NULL;
        }
        if (c->kind == AFE_INT && c->union_ && (v < INT32_MIN || v > INT32_MAX)) {
            *err = AFE_E_INT_RANGE;
            return NULL;
        }
        if (c->kind == AFE_ENUM && v < 0) {
            *err = AFE_E_ENUM;
            return NULL;
        }
        return afe_varint(p, v);
    case AFE_DATE:
    case AFE_TS_MS:
    case AFE_TS_US:
        afe_int(c, i, &v);
        if (v < c->lo || v > c->hi) {
            *err = c->kind == AFE_DATE ? AFE_E_DATE : AFE_E_TS;
            return NULL;
        }
        if (c->mul != 1)
            v *= c->mul;
        else if (c->div != 1)
            v = afe_floordiv(v, c->div);
        return afe_varint(p, v);
    case AFE_FLOAT: {
        float f;
        if (c->src == AFS_F32) {
            /* fastavro gets the value widened to a Python float: a signalling NaN comes back quiet */
            uint32_t u;
            memcpy(&u, c->values + 4 * j, 4);
            if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu))
                u |= 0x00400000u;
            memcpy(p, &u, 4);
            return p + 4;
        } else {
            double d;
            memcpy(&d, c->values + 8 * j, 8);
            f = (float)d;
        }
        memcpy(p, &f, 4);
        return p + 4;
    }
    case AFE_DOUBLE: {
        double d;
        if (c->src == AFS_F32) {
            float f;
            memcpy(&f, c->values + 4 * j, 4);
            d = (double)f;
        } else {
            memcpy(&d, c->values + 8 * j, 8);
        }
        memcpy(p, &d, 8);
        return p + 8;
    }
    case AFE_STRING:
    case AFE_BYTES:
    case AFE_FIXED: {
        const uint8_t *s;
        int64_t len;
        afe_bin(c, i, &s, &len);
        if (c->kind == AFE_FIXED) {
            if (len != c->param) {
                *err = AFE_E_FIXED;
                return NULL;
            }
        } else {
            p = afe_varint(p, len);
        }
        memcpy(p, s, (size_t)len);
        return p + len;
    }
    default:
        return p;
    }
}

/* Encode rows [0, n): out must hold the caller's upper bound; offs gets n + 1 entries. Returns the
 * number of failed rows. */
static int64_t afe_encode(int64_t n, int nfields, const afe_col *cols, const uint8_t *header, int hlen,
                          uint8_t *out, int32_t *offs, uint8_t *ok, uint8_t *err_code, int32_t *err_field) {
    uint8_t *p = out;
    int64_t failed = 0;
    offs[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *start = p;
        if (hlen) {
            memcpy(p, header, (size_t)hlen);
            p += hlen;
        }
        int err = AFE_E_OK;
        for (int k = 0; k < nfields; k++) {
            p = afe_field(&cols[k], i, p, &err);
            if (p == NULL) {
                err_code[i] = (uint8_t)err;
                err_field[i] = k;
                break;
            }
        }
        if (p == NULL) {
            p = start;
            ok[i] = 0;
            failed++;
        } else {
            ok[i] = 1;
        }
        offs[i + 1] = (int32_t)(p - out);
    }
    return failed;
}

#endif
