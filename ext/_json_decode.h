/* Flat JSON objects -> one text column per wanted key (the kernel behind ext/json_decode.pyx).
 *
 * Every payload must be exactly one JSON object (RFC 8259 syntax, checked strictly, including the
 * values of keys that are not wanted, which are skipped). For each wanted key the scalar value is
 * appended to that key's output buffer as text: strings unescaped, numbers verbatim (after a
 * grammar check), booleans as "true"/"false"; null or a missing key make the slot null. The caller
 * casts the text columns to their types with Arrow's cast kernels.
 *
 * The first payload that does not fit stops the scan with an error code and its row: syntax errors,
 * a value kind other than the key's (AFJ_MISMATCH), a duplicate wanted key, an unexpected key when
 * `strict`, escapes in keys, lone surrogates, nesting deeper than AFJ_MAX_DEPTH. The caller then
 * falls back to the general path, which decides what each payload means; this scan never has to.
 * UTF-8 validity of the input is the caller's job (checked once over all payloads).
 */
#ifndef AF_JSON_DECODE_H
#define AF_JSON_DECODE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_threads.h"

enum { AFJ_OK = 0, AFJ_SYNTAX, AFJ_MISMATCH, AFJ_DUPLICATE, AFJ_UNEXPECTED, AFJ_UNSUPPORTED, AFJ_NOMEM };
enum { AFJ_KIND_STRING = 0, AFJ_KIND_NUMBER = 1, AFJ_KIND_BOOL = 2 };
#define AFJ_MAX_DEPTH 64

typedef struct {
    uint8_t *data;
    int64_t len;
    int64_t cap;
} afj_buf;

static inline int afj_reserve(afj_buf *b, int64_t extra) {
    if (b->len + extra <= b->cap) return 0;
    int64_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *p = (uint8_t *)realloc(b->data, (size_t)cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static inline const uint8_t *afj_ws(const uint8_t *p, const uint8_t *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static inline int afj_hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static inline int afj_hex4(const uint8_t *p, const uint8_t *e, uint32_t *out) {
    if (e - p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = afj_hex(p[i]);
        if (h < 0) return -1;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return 0;
}

/* A string starting after its opening quote. With `out` the unescaped bytes are appended to it.
 * Returns the position after the closing quote, or NULL with *err set. */
static const uint8_t *afj_string(const uint8_t *p, const uint8_t *e, afj_buf *out, int *err) {
    for (;;) {
        const uint8_t *run = p;
        /* Eight bytes at a time while none is a quote, a backslash or a control character. */
        while (e - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
            uint64_t special = ((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x);
            if (special & highs) break;
            p += 8;
        }
        while (p < e && *p != '"' && *p != '\\' && *p >= 0x20) p++;
        if (out && p > run) {
            if (afj_reserve(out, p - run)) { *err = AFJ_NOMEM; return NULL; }
            memcpy(out->data + out->len, run, (size_t)(p - run));
            out->len += p - run;
        }
        if (p >= e || *p < 0x20) { *err = AFJ_SYNTAX; return NULL; }
        if (*p == '"') return p + 1;
        /* a backslash */
        p++;
        if (p >= e) { *err = AFJ_SYNTAX; return NULL; }
        uint8_t c = *p++;
        uint8_t one;
        switch (c) {
            case '"': one = '"'; break;
            case '\\': one = '\\'; break;
            case '/': one = '/'; break;
            case 'b': one = '\b'; break;
            case 'f': one = '\f'; break;
            case 'n': one = '\n'; break;
            case 'r': one = '\r'; break;
            case 't': one = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (afj_hex4(p, e, &cp)) { *err = AFJ_SYNTAX; return NULL; }
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || afj_hex4(p + 2, e, &lo) || lo < 0xDC00
                        || lo > 0xDFFF) {
                        *err = AFJ_UNSUPPORTED; /* a lone surrogate: the general path decides */
                        return NULL;
                    }
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    *err = AFJ_UNSUPPORTED;
                    return NULL;
                }
                if (out) {
                    if (afj_reserve(out, 4)) { *err = AFJ_NOMEM; return NULL; }
                    uint8_t *w = out->data + out->len;
                    if (cp < 0x80) { w[0] = (uint8_t)cp; out->len += 1; }
                    else if (cp < 0x800) {
                        w[0] = (uint8_t)(0xC0 | (cp >> 6)); w[1] = (uint8_t)(0x80 | (cp & 0x3F)); out->len += 2;
                    } else if (cp < 0x10000) {
                        w[0] = (uint8_t)(0xE0 | (cp >> 12)); w[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                        w[2] = (uint8_t)(0x80 | (cp & 0x3F)); out->len += 3;
                    } else {
                        w[0] = (uint8_t)(0xF0 | (cp >> 18)); w[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                        w[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); w[3] = (uint8_t)(0x80 | (cp & 0x3F));
                        out->len += 4;
                    }
                }
                continue;
            }
            default: *err = AFJ_SYNTAX; return NULL;
        }
        if (out) {
            if (afj_reserve(out, 1)) { *err = AFJ_NOMEM; return NULL; }
            out->data[out->len++] = one;
        }
    }
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; returns the end or NULL. */
static inline const uint8_t *afj_number(const uint8_t *p, const uint8_t *e) {
    if (p < e && *p == '-') p++;
    if (p >= e) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') { while (p < e && *p >= '0' && *p <= '9') p++; }
    else return NULL;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

static inline const uint8_t *afj_literal(const uint8_t *p, const uint8_t *e, const char *lit, int n) {
    if (e - p < n || memcmp(p, lit, (size_t)n) != 0) return NULL;
    return p + n;
}

/* Skip (and check) any value. */
static const uint8_t *afj_skip(const uint8_t *p, const uint8_t *e, int depth, int *err) {
    if (p >= e) { *err = AFJ_SYNTAX; return NULL; }
    const uint8_t *q;
    switch (*p) {
        case '"': return afj_string(p + 1, e, NULL, err);
        case 't': q = afj_literal(p, e, "true", 4); break;
        case 'f': q = afj_literal(p, e, "false", 5); break;
        case 'n': q = afj_literal(p, e, "null", 4); break;
        case '{':
        case '[': {
            if (depth >= AFJ_MAX_DEPTH) { *err = AFJ_UNSUPPORTED; return NULL; }
            uint8_t close = *p == '{' ? '}' : ']';
            int obj = *p == '{';
            p = afj_ws(p + 1, e);
            if (p < e && *p == close) return p + 1;
            for (;;) {
                if (obj) {
                    if (p >= e || *p != '"') { *err = AFJ_SYNTAX; return NULL; }
                    p = afj_string(p + 1, e, NULL, err);
                    if (!p) return NULL;
                    p = afj_ws(p, e);
                    if (p >= e || *p != ':') { *err = AFJ_SYNTAX; return NULL; }
                    p = afj_ws(p + 1, e);
                }
                p = afj_skip(p, e, depth + 1, err);
                if (!p) return NULL;
                p = afj_ws(p, e);
                if (p < e && *p == ',') { p = afj_ws(p + 1, e); continue; }
                if (p < e && *p == close) return p + 1;
                *err = AFJ_SYNTAX;
                return NULL;
            }
        }
        default: q = afj_number(p, e); break;
    }
    if (!q) *err = AFJ_SYNTAX;
    return q;
}

/* Scan `n` payloads (data + int64 offsets). For key k: out_offsets[k] (n + 1 int64, out_offsets[k][0]
 * is set by the caller to 0), out_valid[k] (n bytes), bufs[k] (text). `seen` is scratch of nkeys
 * int64. Returns AFJ_OK or an error code with *bad_row set. */
static int afj_scan(const uint8_t *data, const int64_t *offsets, int64_t n, int nkeys, const uint8_t **keys,
                    const int64_t *keylens, const uint8_t *kinds, int strict, int64_t **out_offsets,
                    uint8_t **out_valid, afj_buf *bufs, int64_t *seen, int64_t *bad_row) {
    int err = AFJ_OK;
    int64_t row;
    for (int k = 0; k < nkeys; k++) seen[k] = -1;
    for (row = 0; row < n; row++) {
        const uint8_t *p = data + offsets[row];
        const uint8_t *e = data + offsets[row + 1];
        int hint = 0;
        p = afj_ws(p, e);
        if (p >= e || *p != '{') { err = AFJ_SYNTAX; goto fail; }
        p = afj_ws(p + 1, e);
        if (p < e && *p == '}') { p++; goto done; }
        for (;;) {
            if (p >= e || *p != '"') { err = AFJ_SYNTAX; goto fail; }
            const uint8_t *ks = ++p;
            while (p < e && *p != '"' && *p != '\\' && *p >= 0x20) p++;
            if (p >= e || *p < 0x20) { err = AFJ_SYNTAX; goto fail; }
            if (*p == '\\') { err = AFJ_UNSUPPORTED; goto fail; }
            int64_t klen = p - ks;
            p = afj_ws(p + 1, e);
            if (p >= e || *p != ':') { err = AFJ_SYNTAX; goto fail; }
            p = afj_ws(p + 1, e);
            /* Keys usually come in schema order: try the one after the last match first. */
            int idx = -1;
            for (int j = 0; j < nkeys; j++) {
                int k = hint + j;
                if (k >= nkeys) k -= nkeys;
                if (keylens[k] == klen && memcmp(keys[k], ks, (size_t)klen) == 0) { idx = k; break; }
            }
            if (idx < 0) {
                if (strict) { err = AFJ_UNEXPECTED; goto fail; }
                p = afj_skip(p, e, 1, &err);
                if (!p) goto fail;
            } else {
                if (seen[idx] == row) { err = AFJ_DUPLICATE; goto fail; }
                seen[idx] = row;
                hint = idx + 1 < nkeys ? idx + 1 : 0;
                afj_buf *b = &bufs[idx];
                if (p >= e) { err = AFJ_SYNTAX; goto fail; }
                uint8_t c = *p;
                if (c == 'n') {
                    p = afj_literal(p, e, "null", 4);
                    if (!p) { err = AFJ_SYNTAX; goto fail; }
                } else {
                    if (c == '"') {
                        if (kinds[idx] != AFJ_KIND_STRING) { err = AFJ_MISMATCH; goto fail; }
                        p = afj_string(p + 1, e, b, &err);
                        if (!p) goto fail;
                    } else if (c == 't' || c == 'f') {
                        if (kinds[idx] != AFJ_KIND_BOOL) { err = AFJ_MISMATCH; goto fail; }
                        const uint8_t *q = c == 't' ? afj_literal(p, e, "true", 4) : afj_literal(p, e, "false", 5);
                        if (!q) { err = AFJ_SYNTAX; goto fail; }
                        if (afj_reserve(b, q - p)) { err = AFJ_NOMEM; goto fail; }
                        memcpy(b->data + b->len, p, (size_t)(q - p));
                        b->len += q - p;
                        p = q;
                    } else if (c == '-' || (c >= '0' && c <= '9')) {
                        if (kinds[idx] != AFJ_KIND_NUMBER) { err = AFJ_MISMATCH; goto fail; }
                        const uint8_t *q = afj_number(p, e);
                        if (!q) { err = AFJ_SYNTAX; goto fail; }
                        if (afj_reserve(b, q - p)) { err = AFJ_NOMEM; goto fail; }
                        memcpy(b->data + b->len, p, (size_t)(q - p));
                        b->len += q - p;
                        p = q;
                    } else {
                        /* objects, arrays, anything else: not a scalar of this kind */
                        err = AFJ_MISMATCH;
                        goto fail;
                    }
                    out_valid[idx][row] = 1;
                }
            }
            p = afj_ws(p, e);
            if (p < e && *p == ',') { p = afj_ws(p + 1, e); continue; }
            if (p < e && *p == '}') { p++; break; }
            err = AFJ_SYNTAX;
            goto fail;
        }
    done:
        p = afj_ws(p, e);
        if (p != e) { err = AFJ_SYNTAX; goto fail; }
        for (int k = 0; k < nkeys; k++) out_offsets[k][row + 1] = bufs[k].len;
    }
    return AFJ_OK;
fail:
    *bad_row = row;
    return err;
}

/* Two row ranges scanned on two threads, then stitched: the second range's text is appended to the
 * first range's buffers and its offsets shifted. The result is identical to one afj_scan call; on
 * failure *bad_row is the first failing row overall. `seen` needs 2 * nkeys entries. */
typedef struct {
    const uint8_t *data;
    const int64_t *offsets;
    int64_t n;
    int nkeys;
    const uint8_t **keys;
    const int64_t *keylens;
    const uint8_t *kinds;
    int strict;
    int64_t **out_offsets;
    uint8_t **out_valid;
    afj_buf *bufs;
    int64_t *seen;
    int64_t bad_row;
    int rc;
} afj_task;

static void *afj_task_run(void *arg) {
    afj_task *t = (afj_task *)arg;
    t->rc = afj_scan(t->data, t->offsets, t->n, t->nkeys, t->keys, t->keylens, t->kinds, t->strict,
                     t->out_offsets, t->out_valid, t->bufs, t->seen, &t->bad_row);
    return NULL;
}

static int afj_scan2(const uint8_t *data, const int64_t *offsets, int64_t n, int nkeys, const uint8_t **keys,
                     const int64_t *keylens, const uint8_t *kinds, int strict, int64_t **out_offsets,
                     uint8_t **out_valid, afj_buf *bufs, afj_buf *bufs2, int64_t **offs2, uint8_t **valid2,
                     int64_t *seen, int64_t *bad_row) {
    int64_t mid = n / 2;
    for (int k = 0; k < nkeys; k++) {
        offs2[k] = out_offsets[k] + mid;
        valid2[k] = out_valid[k] + mid;
    }
    /* The first range's last end offset (out_offsets[k][mid]) is written by task 0, never by task 1. */
    afj_task t[2] = {
        {data, offsets, mid, nkeys, keys, keylens, kinds, strict, out_offsets, out_valid, bufs, seen, *bad_row,
         AFJ_OK},
        {data, offsets + mid, n - mid, nkeys, keys, keylens, kinds, strict, offs2, valid2, bufs2, seen + nkeys, -1,
         AFJ_OK},
    };
    af_fork_join(afj_task_run, t, sizeof(afj_task), 2);
    *bad_row = t[0].bad_row;
    if (t[0].rc != AFJ_OK) return t[0].rc;
    if (t[1].rc != AFJ_OK) {
        *bad_row = mid + t[1].bad_row;
        return t[1].rc;
    }
    for (int k = 0; k < nkeys; k++) {
        int64_t base = bufs[k].len;
        if (afj_reserve(&bufs[k], bufs2[k].len)) return AFJ_NOMEM;
        if (bufs2[k].len) memcpy(bufs[k].data + base, bufs2[k].data, (size_t)bufs2[k].len);
        bufs[k].len += bufs2[k].len;
        int64_t *o = out_offsets[k];
        for (int64_t i = mid + 1; i <= n; i++) o[i] += base;
    }
    return AFJ_OK;
}

#endif
