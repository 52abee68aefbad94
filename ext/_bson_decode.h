/* BSON documents -> Arrow column buffers: the loop behind arrowflow._ext.bson_decode (see
 * bson_decode.pyx for the contract). Runs with the GIL released.
 *
 * Input: one buffer of concatenated BSON documents (what find_raw_batches returns). bd_count walks
 * the document headers; bd_decode walks every element of every document, appends the values of the
 * wanted top-level fields to per-column buffers, and skips the others by their length. Every read is
 * bounds-checked against the enclosing document, so malformed input is reported (BD_MALFORMED),
 * never read past. A value that does not fit its column stops the call with BD_SLOW (the caller then
 * checks the whole input with bd_validate and takes its general path for the whole batch).
 */
#ifndef ARROWFLOW_BSON_DECODE_H
#define ARROWFLOW_BSON_DECODE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_utf8.h"

/* Column kinds. */
enum { BK_BOOL, BK_I32, BK_I64, BK_F64, BK_STR, BK_BIN, BK_FSB12, BK_TS };
/* Results. */
enum { BD_OK, BD_SLOW, BD_MALFORMED, BD_NOMEM };
/* Slow-path reasons (err.code when BD_SLOW). */
enum { BS_TYPE, BS_RANGE, BS_UTF8, BS_SUBTYPE, BS_DUPLICATE, BS_DATETIME, BS_LENGTH, BS_DEPTH };
/* Malformed reasons (err.code when BD_MALFORMED). */
enum { BM_DOC_LEN, BM_DOC_END, BM_KEY, BM_VALUE, BM_STRING, BM_BINARY, BM_BOOL, BM_TYPE, BM_EOO, BM_CODE };
/* Nesting depth up to which skipped embedded documents are checked (deeper: the slow path). */
#define BD_MAX_DEPTH 100

/* Python's datetime range in milliseconds since the epoch (0001-01-01 .. 9999-12-31T23:59:59.999):
 * pymongo refuses to decode a BSON datetime outside it by default. */
#define BD_MIN_MS (-62135596800000LL)
#define BD_MAX_MS (253402300799999LL)
/* |integer| up to 2**53 converts to float64 (pyarrow's own rule for Python ints). */
#define BD_EXACT_INT (9007199254740992LL)

typedef struct {
    int kind;
    const uint8_t *name;
    int32_t namelen;
    int64_t ts_mul;      /* BK_TS: milliseconds * ts_mul = value in the column's unit */
    uint8_t *valid;      /* n bytes: 1 = a value */
    uint8_t *values;     /* fixed width: n * width bytes (bool: one byte per row) */
    int64_t *offsets;    /* BK_STR / BK_BIN: n + 1 */
    uint8_t *buf;        /* BK_STR / BK_BIN: values, grown with realloc */
    int64_t len, cap;
    int64_t seen;        /* last row that set this column (duplicate keys) */
} bdcol;

typedef struct {
    int64_t row;         /* document index */
    int64_t pos;         /* byte offset in the input */
    int32_t column;      /* column index (BD_SLOW) or -1 */
    int32_t code;        /* BS_* / BM_* */
    int32_t btype;       /* BSON type byte involved */
} bderr;

static inline int32_t bd_rd32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
}

static inline int64_t bd_rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return (int64_t)v; /* little-endian hosts only (x86-64, aarch64) */
}

/* Number of documents in d[0:len], checking each header (length >= 5, inside the buffer, ends with
 * NUL); -1 with err set when one is wrong. */
static int64_t bd_count(const uint8_t *d, int64_t len, bderr *err) {
    int64_t pos = 0, n = 0;
    while (pos < len) {
        if (len - pos < 5) {
            err->row = n; err->pos = pos; err->code = BM_DOC_LEN;
            return -1;
        }
        int64_t dl = bd_rd32(d + pos);
        if (dl < 5 || dl > len - pos) {
            err->row = n; err->pos = pos; err->code = BM_DOC_LEN;
            return -1;
        }
        if (d[pos + dl - 1] != 0) {
            err->row = n; err->pos = pos + dl - 1; err->code = BM_DOC_END;
            return -1;
        }
        pos += dl;
        n++;
    }
    return n;
}

/* Offsets of the n documents (n + 1 entries); the input was checked by bd_count. The headers are
 * re-checked (a bytearray could change between the two calls): 0, or -1 if one no longer fits. */
static int bd_offsets(const uint8_t *d, int64_t len, int64_t n, int64_t *out) {
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        out[i] = pos;
        if (len - pos < 5) return -1;
        int64_t dl = bd_rd32(d + pos);
        if (dl < 5 || dl > len - pos) return -1;
        pos += dl;
    }
    out[n] = pos;
    return 0;
}

/* Size of the value of BSON type t at p, with avail bytes before the document's terminating NUL;
 * -1 (and *code) when it does not fit or is invalid. */
static int64_t bd_value_size(int t, const uint8_t *p, int64_t avail, int *code) {
    int64_t l;
    switch (t) {
    case 0x01: case 0x09: case 0x11: case 0x12:
        l = 8; break;
    case 0x10:
        l = 4; break;
    case 0x08:
        if (avail < 1) { *code = BM_VALUE; return -1; }
        if (p[0] > 1) { *code = BM_BOOL; return -1; }
        return 1;
    case 0x07:
        l = 12; break;
    case 0x13:
        l = 16; break;
    case 0x06: case 0x0A: case 0xFF: case 0x7F:
        return 0;
    case 0x02: case 0x0D: case 0x0E: case 0x0C: {
        if (avail < 4) { *code = BM_VALUE; return -1; }
        int64_t sl = bd_rd32(p);
        if (sl < 1 || sl > avail - 4 || p[4 + sl - 1] != 0) { *code = BM_STRING; return -1; }
        l = 4 + sl;
        if (t == 0x0C) l += 12;
        break;
    }
    case 0x03: case 0x04: {
        if (avail < 4) { *code = BM_VALUE; return -1; }
        int64_t dl = bd_rd32(p);
        if (dl < 5 || dl > avail || p[dl - 1] != 0) { *code = BM_DOC_LEN; return -1; }
        return dl;
    }
    case 0x05: {
        if (avail < 5) { *code = BM_VALUE; return -1; }
        int64_t bl = bd_rd32(p);
        if (bl < 0 || bl > avail - 5) { *code = BM_BINARY; return -1; }
        return 5 + bl;
    }
    case 0x0B: {
        const uint8_t *z1 = (const uint8_t *)memchr(p, 0, (size_t)avail);
        if (z1 == NULL) { *code = BM_STRING; return -1; }
        int64_t a = (z1 - p) + 1;
        const uint8_t *z2 = (const uint8_t *)memchr(p + a, 0, (size_t)(avail - a));
        if (z2 == NULL) { *code = BM_STRING; return -1; }
        return (z2 - p) + 1;
    }
    case 0x0F: {
        if (avail < 4) { *code = BM_VALUE; return -1; }
        int64_t cl = bd_rd32(p);
        if (cl < 14 || cl > avail) { *code = BM_VALUE; return -1; }
        return cl;
    }
    default:
        *code = BM_TYPE;
        return -1;
    }
    if (l > avail) { *code = BM_VALUE; return -1; }
    return l;
}

static int bd_append(bdcol *c, const uint8_t *src, int64_t n) {
    if (c->len + n > c->cap) {
        int64_t nc = c->cap ? c->cap * 2 : 65536;
        while (nc < c->len + n) nc *= 2;
        uint8_t *nb = (uint8_t *)realloc(c->buf, (size_t)nc);
        if (nb == NULL) return 0;
        c->buf = nb;
        c->cap = nc;
    }
    memcpy(c->buf + c->len, src, (size_t)n);
    c->len += n;
    return 1;
}

static const char bd_hex[] = "0123456789abcdef";

/* Stores value (BSON type t, size vs bytes at p) of row i into column c: BD_OK, BD_SLOW (code set)
 * or BD_NOMEM. */
static int bd_store(bdcol *c, int64_t i, int t, const uint8_t *p, int64_t vs, int *code) {
    switch (c->kind) {
    case BK_BOOL:
        if (t != 0x08) break;
        c->values[i] = p[0];
        c->valid[i] = 1;
        return BD_OK;
    case BK_I32:
        if (t == 0x10) {
            memcpy(c->values + 4 * i, p, 4);
        } else if (t == 0x12) {
            int64_t v = bd_rd64(p);
            if (v < INT32_MIN || v > INT32_MAX) { *code = BS_RANGE; return BD_SLOW; }
            int32_t w = (int32_t)v;
            memcpy(c->values + 4 * i, &w, 4);
        } else {
            break;
        }
        c->valid[i] = 1;
        return BD_OK;
    case BK_I64: {
        int64_t v;
        if (t == 0x12) v = bd_rd64(p);
        else if (t == 0x10) v = bd_rd32(p);
        else break;
        memcpy(c->values + 8 * i, &v, 8);
        c->valid[i] = 1;
        return BD_OK;
    }
    case BK_F64: {
        double v;
        if (t == 0x01) {
            memcpy(&v, p, 8);
        } else if (t == 0x10) {
            v = (double)bd_rd32(p);
        } else if (t == 0x12) {
            int64_t w = bd_rd64(p);
            if (w < -BD_EXACT_INT || w > BD_EXACT_INT) { *code = BS_RANGE; return BD_SLOW; }
            v = (double)w;
        } else {
            break;
        }
        memcpy(c->values + 8 * i, &v, 8);
        c->valid[i] = 1;
        return BD_OK;
    }
    case BK_STR:
        if (t == 0x02) {
            int64_t sl = vs - 5; /* without the length and the NUL */
            if (!af_utf8_valid(p + 4, sl)) { *code = BS_UTF8; return BD_SLOW; }
            if (!bd_append(c, p + 4, sl)) return BD_NOMEM;
        } else if (t == 0x07) {
            uint8_t hex[24];
            for (int k = 0; k < 12; k++) {
                hex[2 * k] = (uint8_t)bd_hex[p[k] >> 4];
                hex[2 * k + 1] = (uint8_t)bd_hex[p[k] & 15];
            }
            if (!bd_append(c, hex, 24)) return BD_NOMEM;
        } else {
            break;
        }
        c->valid[i] = 1;
        return BD_OK;
    case BK_BIN:
        if (t == 0x05) {
            if (p[4] != 0) { *code = BS_SUBTYPE; return BD_SLOW; }
            if (!bd_append(c, p + 5, vs - 5)) return BD_NOMEM;
        } else if (t == 0x07) {
            if (!bd_append(c, p, 12)) return BD_NOMEM;
        } else {
            break;
        }
        c->valid[i] = 1;
        return BD_OK;
    case BK_FSB12:
        if (t == 0x07) {
            memcpy(c->values + 12 * i, p, 12);
        } else if (t == 0x05) {
            if (p[4] != 0) { *code = BS_SUBTYPE; return BD_SLOW; }
            if (vs - 5 != 12) { *code = BS_LENGTH; return BD_SLOW; }
            memcpy(c->values + 12 * i, p + 5, 12);
        } else {
            break;
        }
        c->valid[i] = 1;
        return BD_OK;
    case BK_TS: {
        if (t != 0x09) break;
        int64_t ms = bd_rd64(p);
        if (ms < BD_MIN_MS || ms > BD_MAX_MS) { *code = BS_DATETIME; return BD_SLOW; }
        if (c->ts_mul > 1 && (ms > INT64_MAX / c->ts_mul || ms < INT64_MIN / c->ts_mul)) {
            *code = BS_RANGE;
            return BD_SLOW;
        }
        int64_t v = ms * c->ts_mul;
        memcpy(c->values + 8 * i, &v, 8);
        c->valid[i] = 1;
        return BD_OK;
    }
    }
    *code = BS_TYPE;
    return BD_SLOW;
}

/* Column whose name is key[0:klen], or -1; *hint is the column expected next (documents usually
 * keep one field order). */
static inline int bd_match(const bdcol *cols, int ncols, const uint8_t *key, int64_t klen, int *hint) {
    int h = *hint;
    if (h < ncols && cols[h].namelen == klen && memcmp(cols[h].name, key, (size_t)klen) == 0) {
        *hint = h + 1;
        return h;
    }
    for (int k = 0; k < ncols; k++) {
        if (cols[k].namelen == klen && memcmp(cols[k].name, key, (size_t)klen) == 0) {
            *hint = k + 1;
            return k;
        }
    }
    return -1;
}

static int bd_key_ok(const uint8_t *key, int64_t klen) {
    for (int64_t j = 0; j < klen; j++)
        if (key[j] & 0x80) return af_utf8_valid(key, klen);
    return 1;
}

static int bd_check_doc(const uint8_t *p, int64_t dl, int is_array, int depth, int *code);

/* What pymongo's decoder checks in a value the kernel skips (value sizes are already checked): strings
 * are strict UTF-8 (BD_SLOW), datetimes within Python's range (BD_SLOW), subtype-2 binary lengths
 * agree (BD_SLOW), code-with-scope parts add up (BD_MALFORMED), embedded documents recursively. So a
 * page the kernel accepts is one pymongo decodes, and a page pymongo refuses is refused here or left
 * to the general path, which then raises as before. */
static int bd_check_value(int t, const uint8_t *p, int64_t vs, int depth, int *code) {
    switch (t) {
    case 0x02: case 0x0D: case 0x0E:
        if (!af_utf8_valid(p + 4, vs - 5)) { *code = BS_UTF8; return BD_SLOW; }
        return BD_OK;
    case 0x0C:
        if (!af_utf8_valid(p + 4, vs - 17)) { *code = BS_UTF8; return BD_SLOW; }
        return BD_OK;
    case 0x09: {
        int64_t ms = bd_rd64(p);
        if (ms < BD_MIN_MS || ms > BD_MAX_MS) { *code = BS_DATETIME; return BD_SLOW; }
        return BD_OK;
    }
    case 0x05:
        if (p[4] == 2 && (vs - 5 < 4 || bd_rd32(p + 5) != vs - 9)) { *code = BS_SUBTYPE; return BD_SLOW; }
        return BD_OK;
    case 0x0B: {
        int64_t a = (int64_t)strlen((const char *)p);
        if (!af_utf8_valid(p, a) || !af_utf8_valid(p + a + 1, vs - a - 2)) { *code = BS_UTF8; return BD_SLOW; }
        return BD_OK;
    }
    case 0x03: case 0x04:
        return bd_check_doc(p, vs, t == 0x04, depth + 1, code);
    case 0x0F: {
        int64_t sl = bd_rd32(p + 4);
        if (sl < 1 || sl > vs - 13 || p[8 + sl - 1] != 0) { *code = BM_CODE; return BD_MALFORMED; }
        int64_t dl = bd_rd32(p + 8 + sl);
        if (dl < 5 || 8 + sl + dl != vs || p[vs - 1] != 0) { *code = BM_CODE; return BD_MALFORMED; }
        if (!af_utf8_valid(p + 8, sl - 1)) { *code = BS_UTF8; return BD_SLOW; }
        return bd_check_doc(p + 8 + sl, dl, 0, depth + 1, code);
    }
    }
    return BD_OK;
}

/* Checks an embedded document of dl bytes at p (dl >= 5 and p[dl - 1] == 0 already checked). */
static int bd_check_doc(const uint8_t *p, int64_t dl, int is_array, int depth, int *code) {
    if (depth > BD_MAX_DEPTH) { *code = BS_DEPTH; return BD_SLOW; }
    int64_t q = 4, end = dl - 1;
    while (q < end) {
        int t = p[q];
        if (t == 0) { *code = BM_EOO; return BD_MALFORMED; }
        q++;
        const uint8_t *z = (const uint8_t *)memchr(p + q, 0, (size_t)(end - q));
        if (z == NULL) { *code = BM_KEY; return BD_MALFORMED; }
        int64_t klen = z - (p + q);
        /* pymongo decodes the keys of documents, not those of arrays */
        if (!is_array && !bd_key_ok(p + q, klen)) { *code = BM_KEY; return BD_MALFORMED; }
        q += klen + 1;
        int64_t vs = bd_value_size(t, p + q, end - q, code);
        if (vs < 0) return BD_MALFORMED;
        int rc = bd_check_value(t, p + q, vs, depth, code);
        if (rc != BD_OK) return rc;
        q += vs;
    }
    return BD_OK;
}

/* A document being walked by bd_validate: the next element at q, the terminating NUL at end. */
typedef struct {
    int64_t q, end;
    int is_array;
} bdframe;

/* The structure of every document of d[0:len] (n documents, counted by bd_count), at every depth:
 * each element's type is known, its key NUL-terminated inside its document (and UTF-8 outside
 * arrays), its value inside its document (bd_value_size), embedded documents and code-with-scope
 * parts consistent. What it does not check is what pymongo's decoder refuses cleanly (string
 * encodings, datetime ranges, subtype-2 lengths). Iterative, with a heap stack: no depth limit and
 * no recursion, whatever the nesting. BD_OK, BD_MALFORMED (err set) or BD_NOMEM.
 *
 * Why: bd_decode stops at the first value that does not fit its column (BD_SLOW) and nested values
 * deeper than BD_MAX_DEPTH are not walked; the caller then hands the bytes to pymongo's decoder,
 * which bounds a nested value by the rest of the whole buffer instead of its enclosing document and
 * can read past the buffer. So before any BD_SLOW answer the whole input is checked here. */
static int bd_validate(const uint8_t *d, int64_t len, int64_t n, bderr *err) {
    bdframe *stack = NULL;
    int64_t cap = 0, top = 0, pos = 0;
    int rc = BD_OK;
    for (int64_t i = 0; i < n && rc == BD_OK; i++) {
        int64_t dl = len - pos >= 5 ? bd_rd32(d + pos) : -1;
        if (dl < 5 || dl > len - pos || d[pos + dl - 1] != 0) {
            err->row = i; err->pos = pos; err->code = BM_DOC_LEN;
            rc = BD_MALFORMED;
            break;
        }
        int64_t entry[3] = {pos + 4, pos + dl - 1, 0};
        top = 0;
        for (;;) {
            if (top == cap) {
                int64_t nc = cap ? cap * 2 : 64;
                bdframe *ns = (bdframe *)realloc(stack, (size_t)nc * sizeof(bdframe));
                if (ns == NULL) { rc = BD_NOMEM; break; }
                stack = ns;
                cap = nc;
            }
            if (entry[1] >= 0) {
                stack[top].q = entry[0];
                stack[top].end = entry[1];
                stack[top].is_array = (int)entry[2];
                top++;
                entry[1] = -1;
            }
            if (top == 0) break;
            bdframe *f = &stack[top - 1];
            if (f->q >= f->end) { top--; continue; }
            int64_t q = f->q, end = f->end;
            int t = d[q];
            if (t == 0) {
                err->row = i; err->pos = q; err->code = BM_EOO;
                rc = BD_MALFORMED;
                break;
            }
            q++;
            const uint8_t *z = (const uint8_t *)memchr(d + q, 0, (size_t)(end - q));
            if (z == NULL) {
                err->row = i; err->pos = q; err->code = BM_KEY;
                rc = BD_MALFORMED;
                break;
            }
            int64_t klen = z - (d + q);
            if (!f->is_array && !bd_key_ok(d + q, klen)) {
                err->row = i; err->pos = q; err->code = BM_KEY;
                rc = BD_MALFORMED;
                break;
            }
            q += klen + 1;
            int code = 0;
            int64_t vs = bd_value_size(t, d + q, end - q, &code);
            if (vs < 0) {
                err->row = i; err->pos = q; err->code = code; err->btype = t;
                rc = BD_MALFORMED;
                break;
            }
            f->q = q + vs;
            if (t == 0x03 || t == 0x04) {
                /* bd_value_size checked 5 <= vs and the NUL at q + vs - 1 */
                entry[0] = q + 4; entry[1] = q + vs - 1; entry[2] = t == 0x04;
            } else if (t == 0x0F) {
                const uint8_t *p = d + q;
                int64_t sl = bd_rd32(p + 4);
                int64_t sdl = sl >= 1 && sl <= vs - 13 && p[8 + sl - 1] == 0 ? bd_rd32(p + 8 + sl) : -1;
                if (sdl < 5 || 8 + sl + sdl != vs || p[vs - 1] != 0) {
                    err->row = i; err->pos = q; err->code = BM_CODE; err->btype = t;
                    rc = BD_MALFORMED;
                    break;
                }
                entry[0] = q + 8 + sl + 4; entry[1] = q + vs - 1; entry[2] = 0;
            }
        }
        pos += dl;
    }
    free(stack);
    return rc;
}

/* Decodes the n documents of d[0:len] (checked by bd_count) into cols. */
static int bd_decode(const uint8_t *d, int64_t len, int64_t n, bdcol *cols, int ncols, bderr *err) {
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        /* re-checked: bd_count's answer is not trusted to still hold (a bytearray can change) */
        int64_t dl = len - pos >= 5 ? bd_rd32(d + pos) : -1;
        if (dl < 5 || dl > len - pos || d[pos + dl - 1] != 0) {
            err->row = i; err->pos = pos; err->code = BM_DOC_LEN;
            return BD_MALFORMED;
        }
        int64_t end = pos + dl - 1; /* the document's terminating NUL */
        int64_t p = pos + 4;
        int hint = 0;
        while (p < end) {
            int t = d[p];
            if (t == 0) {
                err->row = i; err->pos = p; err->code = BM_EOO;
                return BD_MALFORMED;
            }
            p++;
            const uint8_t *key = d + p;
            /* keys are short: a byte loop beats memchr's call; bit 7 seen = check UTF-8 */
            int64_t klen = 0, kmax = end - p;
            uint8_t high = 0;
            while (klen < kmax && key[klen] != 0) high |= key[klen++];
            if (klen == kmax) {
                err->row = i; err->pos = p; err->code = BM_KEY;
                return BD_MALFORMED;
            }
            if ((high & 0x80) && !af_utf8_valid(key, klen)) {
                err->row = i; err->pos = p; err->code = BM_KEY;
                return BD_MALFORMED;
            }
            p += klen + 1;
            int code = 0;
            int64_t vs = bd_value_size(t, d + p, end - p, &code);
            if (vs < 0) {
                err->row = i; err->pos = p; err->code = code; err->btype = t;
                return BD_MALFORMED;
            }
            int k = bd_match(cols, ncols, key, klen, &hint);
            if (k < 0) {
                int rc = bd_check_value(t, d + p, vs, 0, &code);
                if (rc != BD_OK) {
                    err->row = i; err->pos = p; err->column = -1; err->code = code; err->btype = t;
                    return rc;
                }
            } else {
                bdcol *c = &cols[k];
                if (c->seen == i) {
                    err->row = i; err->pos = p; err->column = k; err->code = BS_DUPLICATE; err->btype = t;
                    return BD_SLOW;
                }
                c->seen = i;
                if (t != 0x0A && t != 0x06) { /* null and undefined leave a null slot */
                    int rc = bd_store(c, i, t, d + p, vs, &code);
                    if (rc != BD_OK) {
                        err->row = i; err->pos = p; err->column = k; err->code = code; err->btype = t;
                        return rc;
                    }
                }
            }
            p += vs;
        }
        for (int k = 0; k < ncols; k++)
            if (cols[k].offsets != NULL) cols[k].offsets[i + 1] = cols[k].len;
        pos += dl;
    }
    return BD_OK;
}

#endif
