/* BSON document encoder: the row loop behind arrowflow._ext.bson_encode (see bson_encode.pyx for the contract).
 *
 * The Cython side turns each column into a tree of bnodes (type code + raw Arrow buffer addresses);
 * this file walks that tree per row with the GIL released, appending one BSON document per row to a
 * growable buffer. Every write goes through bs_reserve(), which refuses once an allocation failed, so
 * an out-of-memory condition can never write past the buffer.
 *
 * Indexing: a node is always addressed with a *logical* index i into the pyarrow array it was planned
 * from; the physical slot is node->offset + i. List offsets and fixed-size-list positions are logical
 * indices into the child (pyarrow's `.values` ignores the parent's offset), struct children are
 * planned with `.field(k)` (which already applies the parent's offset), so they share the parent's i.
 */
#ifndef ARROWFLOW_BSON_ENCODE_H
#define ARROWFLOW_BSON_ENCODE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    BT_NULL, BT_BOOL, BT_I8, BT_I16, BT_I32, BT_I64, BT_U8, BT_U16, BT_U32, BT_U64,
    BT_F32, BT_F64, BT_STR, BT_LSTR, BT_BIN, BT_LBIN, BT_FSB, BT_OID,
    BT_TS, BT_DATE32, BT_DATE64, BT_DEC128, BT_LIST, BT_LLIST, BT_FSL, BT_STRUCT, BT_MAP
};

/* Row-level errors (the row is dropped in "collect" mode, or the call raises). */
enum {
    BE_OK, BE_NOMEM, BE_U64_RANGE, BE_DEC_INEXACT, BE_DEC_EXPONENT, BE_TS_RANGE, BE_KEY_NUL,
    BE_TOO_LARGE
};

typedef struct bnode {
    int type;
    int64_t offset;
    const uint8_t *validity;
    const uint8_t *data;
    const uint8_t *offsets;
    int32_t width;      /* fixed_size_binary byte width, fixed_size_list size */
    int64_t ts_mul;     /* timestamp value * ts_mul / ts_div (floored) = milliseconds */
    int64_t ts_div;
    int32_t scale;      /* decimal128 scale: BSON exponent = -scale */
    int32_t column;     /* top-level column index, for error reports */
    int32_t nchildren;
    struct bnode **children;
    char **keys;        /* NUL-terminated member names (struct / top-level document) */
    int32_t *keylens;   /* without the NUL */
} bnode;

typedef struct bstate {
    uint8_t *buf;
    int64_t pos;
    int64_t cap;
    int omit_nulls;
    int err;            /* error of the current row (BE_*) */
    int32_t err_column;
} bstate;

typedef struct btask {
    bstate st;
    const bnode *top;
    int64_t start, end;
    int collect;        /* 1: drop failing rows and record them; 0: stop at the first failure */
    int32_t *offsets;   /* out: offsets[k + 1] = end of the k-th document written (relative) */
    int64_t nout;       /* documents written */
    int64_t *failed_rows;  /* rows dropped (collect) or the failing row (stop) */
    int32_t *failed_codes;
    int32_t *failed_columns;
    int64_t nfailed, failcap;
    int fatal;          /* BE_NOMEM / BE_TOO_LARGE / first row error in stop mode */
} btask;

static int bs_reserve(bstate *st, int64_t need) {
    if (st->err == BE_NOMEM) return 0;
    if (st->pos + need <= st->cap) return 1;
    int64_t nc = st->cap ? st->cap * 2 : 65536;
    while (nc < st->pos + need) nc *= 2;
    uint8_t *nb = (uint8_t *)realloc(st->buf, (size_t)nc);
    if (nb == NULL) {
        st->err = BE_NOMEM;
        return 0;
    }
    st->buf = nb;
    st->cap = nc;
    return 1;
}

static inline void bs_fail(bstate *st, const bnode *n, int code) {
    if (st->err == BE_OK) {
        st->err = code;
        st->err_column = n->column;
    }
}

static inline void bs_i32(bstate *st, int32_t v) {
    uint32_t u = (uint32_t)v;
    uint8_t *p = st->buf + st->pos;
    p[0] = (uint8_t)u; p[1] = (uint8_t)(u >> 8); p[2] = (uint8_t)(u >> 16); p[3] = (uint8_t)(u >> 24);
    st->pos += 4;
}

static inline void bs_i64(bstate *st, int64_t v) {
    uint64_t u = (uint64_t)v;
    uint8_t *p = st->buf + st->pos;
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(u >> (8 * k));
    st->pos += 8;
}

static inline void bs_patch_len(bstate *st, int64_t start) {
    int64_t len = st->pos - start;
    uint8_t *p = st->buf + start;
    uint32_t u = (uint32_t)len;
    p[0] = (uint8_t)u; p[1] = (uint8_t)(u >> 8); p[2] = (uint8_t)(u >> 16); p[3] = (uint8_t)(u >> 24);
}

/* Element header: type byte, key, NUL; reserves `extra` bytes more for a fixed-size value. */
static inline int bs_head(bstate *st, uint8_t type, const char *key, int32_t klen, int64_t extra) {
    if (!bs_reserve(st, 2 + (int64_t)klen + extra)) return 0;
    uint8_t *p = st->buf + st->pos;
    p[0] = type;
    memcpy(p + 1, key, (size_t)klen);
    p[1 + klen] = 0;
    st->pos += 2 + klen;
    return 1;
}

static inline int bn_valid(const bnode *n, int64_t i) {
    if (n->type == BT_NULL) return 0;
    if (n->validity == NULL) return 1;
    int64_t j = n->offset + i;
    return (n->validity[j >> 3] >> (j & 7)) & 1;
}

static inline int64_t floordiv64(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

/* Arrow decimal128 (two's complement unscaled int128 + scale) -> BSON decimal128 (IEEE 754-2008 BID):
 * sign | 14-bit exponent biased by 6176 | 113-bit coefficient. A coefficient over 34 digits is reduced
 * by its trailing zeros (exponent + 1 each, the value is unchanged); if digits remain it is inexact. */
static int bs_dec128(uint8_t *out, const uint8_t *src, int32_t scale) {
    uint64_t lo, hi;
    memcpy(&lo, src, 8);
    memcpy(&hi, src + 8, 8);
    unsigned __int128 v = ((unsigned __int128)hi << 64) | lo;
    int neg = (int64_t)hi < 0;
    if (neg) v = ~v + 1;
    const unsigned __int128 max_coef =
        (unsigned __int128)10000000000000000ULL * (unsigned __int128)1000000000000000000ULL - 1;
    int64_t exponent = -(int64_t)scale;
    while (v > max_coef) {
        if (v % 10 != 0) return BE_DEC_INEXACT;
        v /= 10;
        exponent++;
    }
    if (exponent < -6176 || exponent > 6111) return BE_DEC_EXPONENT;
    uint64_t biased = (uint64_t)(exponent + 6176);
    uint64_t clo = (uint64_t)v;
    uint64_t chi = (uint64_t)(v >> 64);
    uint64_t ohi = ((uint64_t)neg << 63) | (biased << 49) | (chi & ((1ULL << 49) - 1));
    for (int k = 0; k < 8; k++) out[k] = (uint8_t)(clo >> (8 * k));
    for (int k = 0; k < 8; k++) out[8 + k] = (uint8_t)(ohi >> (8 * k));
    return BE_OK;
}

static void bs_element(bstate *st, const bnode *n, int64_t i, const char *key, int32_t klen);

static inline void bs_null(bstate *st, const char *key, int32_t klen) {
    bs_head(st, 0x0A, key, klen, 0);
}

/* Body of an embedded document / array: int32 length, elements, NUL. */
static void bs_members(bstate *st, const bnode *n, int64_t i) {
    if (!bs_reserve(st, 4)) return;
    int64_t start = st->pos;
    st->pos += 4;
    for (int32_t k = 0; k < n->nchildren; k++) {
        const bnode *c = n->children[k];
        if (bn_valid(c, i)) {
            bs_element(st, c, i, n->keys[k], n->keylens[k]);
        } else if (!st->omit_nulls) {
            bs_null(st, n->keys[k], n->keylens[k]);
        }
        if (st->err == BE_NOMEM) return;
    }
    if (!bs_reserve(st, 1)) return;
    st->buf[st->pos++] = 0;
    bs_patch_len(st, start);
}

static void bs_array(bstate *st, const bnode *child, int64_t lo, int64_t hi) {
    if (!bs_reserve(st, 4)) return;
    int64_t start = st->pos;
    st->pos += 4;
    char key[24];
    for (int64_t k = lo; k < hi; k++) {
        /* Keys "0", "1", ...: the decimal index within this array. */
        int64_t idx = k - lo;
        char tmp[24];
        int32_t len = 0;
        do {
            tmp[len++] = (char)('0' + (idx % 10));
            idx /= 10;
        } while (idx);
        for (int32_t d = 0; d < len; d++) key[d] = tmp[len - 1 - d];
        if (bn_valid(child, k)) {
            bs_element(st, child, k, key, len);
        } else {
            bs_null(st, key, len);
        }
        if (st->err == BE_NOMEM) return;
    }
    if (!bs_reserve(st, 1)) return;
    st->buf[st->pos++] = 0;
    bs_patch_len(st, start);
}

static void bs_map(bstate *st, const bnode *n, int64_t lo, int64_t hi) {
    const bnode *kn = n->children[0];
    const bnode *vn = n->children[1];
    if (!bs_reserve(st, 4)) return;
    int64_t start = st->pos;
    st->pos += 4;
    for (int64_t k = lo; k < hi; k++) {
        int64_t kj = kn->offset + k;
        int64_t a, b;
        if (kn->type == BT_STR) {
            a = ((const int32_t *)kn->offsets)[kj];
            b = ((const int32_t *)kn->offsets)[kj + 1];
        } else {
            a = ((const int64_t *)kn->offsets)[kj];
            b = ((const int64_t *)kn->offsets)[kj + 1];
        }
        const char *key = (const char *)kn->data + a;
        int32_t klen = (int32_t)(b - a);
        if (b - a > 0x7fffffff - 64) {
            bs_fail(st, n, BE_TOO_LARGE);
            continue;
        }
        if (memchr(key, 0, (size_t)klen) != NULL) {
            bs_fail(st, n, BE_KEY_NUL);
            continue;
        }
        if (bn_valid(vn, k)) {
            bs_element(st, vn, k, key, klen);
        } else if (!st->omit_nulls) {
            bs_null(st, key, klen);
        }
        if (st->err == BE_NOMEM) return;
    }
    if (!bs_reserve(st, 1)) return;
    st->buf[st->pos++] = 0;
    bs_patch_len(st, start);
}

static void bs_bytes(bstate *st, const bnode *n, uint8_t type, const char *key, int32_t klen,
                     const uint8_t *src, int64_t len) {
    if (len > 0x7fffffff - 64) {
        bs_fail(st, n, BE_TOO_LARGE);
        bs_null(st, key, klen);
        return;
    }
    if (!bs_head(st, type, key, klen, len + 6)) return;
    if (type == 0x02) {
        bs_i32(st, (int32_t)(len + 1));
        memcpy(st->buf + st->pos, src, (size_t)len);
        st->pos += len;
        st->buf[st->pos++] = 0;
    } else {
        bs_i32(st, (int32_t)len);
        st->buf[st->pos++] = 0; /* binary subtype 0: generic */
        memcpy(st->buf + st->pos, src, (size_t)len);
        st->pos += len;
    }
}

/* One element for a valid slot i of node n. */
static void bs_element(bstate *st, const bnode *n, int64_t i, const char *key, int32_t klen) {
    int64_t j = n->offset + i;
    const uint8_t *d = n->data;
    switch (n->type) {
    case BT_BOOL:
        if (!bs_head(st, 0x08, key, klen, 1)) return;
        st->buf[st->pos++] = (d[j >> 3] >> (j & 7)) & 1;
        return;
    case BT_I8:
        if (!bs_head(st, 0x10, key, klen, 4)) return;
        bs_i32(st, ((const int8_t *)d)[j]);
        return;
    case BT_I16:
        if (!bs_head(st, 0x10, key, klen, 4)) return;
        bs_i32(st, ((const int16_t *)d)[j]);
        return;
    case BT_I32:
        if (!bs_head(st, 0x10, key, klen, 4)) return;
        bs_i32(st, ((const int32_t *)d)[j]);
        return;
    case BT_U8:
        if (!bs_head(st, 0x10, key, klen, 4)) return;
        bs_i32(st, d[j]);
        return;
    case BT_U16:
        if (!bs_head(st, 0x10, key, klen, 4)) return;
        bs_i32(st, ((const uint16_t *)d)[j]);
        return;
    case BT_U32:
        if (!bs_head(st, 0x12, key, klen, 8)) return;
        bs_i64(st, ((const uint32_t *)d)[j]);
        return;
    case BT_I64:
        if (!bs_head(st, 0x12, key, klen, 8)) return;
        bs_i64(st, ((const int64_t *)d)[j]);
        return;
    case BT_U64: {
        uint64_t v = ((const uint64_t *)d)[j];
        if (v > (uint64_t)INT64_MAX) {
            bs_fail(st, n, BE_U64_RANGE);
            bs_null(st, key, klen);
            return;
        }
        if (!bs_head(st, 0x12, key, klen, 8)) return;
        bs_i64(st, (int64_t)v);
        return;
    }
    case BT_F32:
    case BT_F64: {
        double v = n->type == BT_F32 ? (double)((const float *)d)[j] : ((const double *)d)[j];
        int64_t bits;
        memcpy(&bits, &v, 8);
        if (!bs_head(st, 0x01, key, klen, 8)) return;
        bs_i64(st, bits);
        return;
    }
    case BT_STR:
    case BT_BIN: {
        int64_t a = ((const int32_t *)n->offsets)[j], b = ((const int32_t *)n->offsets)[j + 1];
        bs_bytes(st, n, n->type == BT_STR ? 0x02 : 0x05, key, klen, d + a, b - a);
        return;
    }
    case BT_LSTR:
    case BT_LBIN: {
        int64_t a = ((const int64_t *)n->offsets)[j], b = ((const int64_t *)n->offsets)[j + 1];
        bs_bytes(st, n, n->type == BT_LSTR ? 0x02 : 0x05, key, klen, d + a, b - a);
        return;
    }
    case BT_FSB:
        bs_bytes(st, n, 0x05, key, klen, d + j * (int64_t)n->width, n->width);
        return;
    case BT_OID:
        if (!bs_head(st, 0x07, key, klen, 12)) return;
        memcpy(st->buf + st->pos, d + j * 12, 12);
        st->pos += 12;
        return;
    case BT_TS: {
        int64_t v = ((const int64_t *)d)[j], ms;
        if (n->ts_mul != 1) {
            if (__builtin_mul_overflow(v, n->ts_mul, &ms)) {
                bs_fail(st, n, BE_TS_RANGE);
                bs_null(st, key, klen);
                return;
            }
        } else {
            ms = floordiv64(v, n->ts_div);
        }
        if (!bs_head(st, 0x09, key, klen, 8)) return;
        bs_i64(st, ms);
        return;
    }
    case BT_DATE32:
        if (!bs_head(st, 0x09, key, klen, 8)) return;
        bs_i64(st, (int64_t)((const int32_t *)d)[j] * 86400000LL);
        return;
    case BT_DATE64:
        if (!bs_head(st, 0x09, key, klen, 8)) return;
        bs_i64(st, ((const int64_t *)d)[j]);
        return;
    case BT_DEC128: {
        uint8_t out[16];
        int rc = bs_dec128(out, d + j * 16, n->scale);
        if (rc != BE_OK) {
            bs_fail(st, n, rc);
            bs_null(st, key, klen);
            return;
        }
        if (!bs_head(st, 0x13, key, klen, 16)) return;
        memcpy(st->buf + st->pos, out, 16);
        st->pos += 16;
        return;
    }
    case BT_LIST:
    case BT_LLIST:
    case BT_FSL: {
        int64_t lo, hi;
        if (n->type == BT_LIST) {
            lo = ((const int32_t *)n->offsets)[j];
            hi = ((const int32_t *)n->offsets)[j + 1];
        } else if (n->type == BT_LLIST) {
            lo = ((const int64_t *)n->offsets)[j];
            hi = ((const int64_t *)n->offsets)[j + 1];
        } else {
            lo = j * (int64_t)n->width;
            hi = lo + n->width;
        }
        if (!bs_head(st, 0x04, key, klen, 0)) return;
        bs_array(st, n->children[0], lo, hi);
        return;
    }
    case BT_MAP: {
        int64_t lo = ((const int32_t *)n->offsets)[j], hi = ((const int32_t *)n->offsets)[j + 1];
        if (!bs_head(st, 0x03, key, klen, 0)) return;
        bs_map(st, n, lo, hi);
        return;
    }
    case BT_STRUCT:
        if (!bs_head(st, 0x03, key, klen, 0)) return;
        bs_members(st, n, i);
        return;
    default:
        bs_null(st, key, klen);
        return;
    }
}

static int bt_record_failure(btask *t, int64_t row, int code, int32_t column) {
    if (t->nfailed == t->failcap) {
        int64_t nc = t->failcap ? t->failcap * 2 : 16;
        int64_t *r = (int64_t *)realloc(t->failed_rows, sizeof(int64_t) * nc);
        if (r == NULL) return 0;
        t->failed_rows = r;
        int32_t *c = (int32_t *)realloc(t->failed_codes, sizeof(int32_t) * nc);
        if (c == NULL) return 0;
        t->failed_codes = c;
        int32_t *col = (int32_t *)realloc(t->failed_columns, sizeof(int32_t) * nc);
        if (col == NULL) return 0;
        t->failed_columns = col;
        t->failcap = nc;
    }
    t->failed_rows[t->nfailed] = row;
    t->failed_codes[t->nfailed] = code;
    t->failed_columns[t->nfailed] = column;
    t->nfailed++;
    return 1;
}

/* Encode rows [start, end) of the task; sets t->fatal on out-of-memory or (stop mode) a row error. */
static void bt_run(btask *t) {
    bstate *st = &t->st;
    t->offsets[0] = 0;
    for (int64_t r = t->start; r < t->end; r++) {
        int64_t row_start = st->pos;
        st->err = BE_OK;
        bs_members(st, t->top, r);
        if (st->err == BE_NOMEM) {
            t->fatal = BE_NOMEM;
            return;
        }
        if (st->err != BE_OK) {
            st->pos = row_start;
            if (!bt_record_failure(t, r, st->err, st->err_column)) {
                t->fatal = BE_NOMEM;
                return;
            }
            if (!t->collect) {
                t->fatal = st->err;
                return;
            }
            continue;
        }
        if (st->pos > 0x7fffffffLL) {
            t->fatal = BE_TOO_LARGE;
            return;
        }
        t->offsets[++t->nout] = (int32_t)st->pos;
    }
}

#endif
