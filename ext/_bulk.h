/* Elasticsearch/OpenSearch _bulk entries: action line + source line per row (see bulk.pyx).
 *
 * Everything here runs without the GIL and allocates only the output buffers. A row's entry is
 *
 *     <head>{meta fields}}}\n<doc_prefix><document><doc_suffix>
 *
 * where head is '{"index":{' (or create/update/delete), the meta fields are '"_index":"..."',
 * '"_id":"..."', '"routing":"..."' (a null value leaves its field out), and the document part is
 * absent for delete. Strings are escaped exactly as Python's json.dumps(ensure_ascii=False) does, so
 * the pure-Python reference can compare bytes.
 */
#ifndef ARROWFLOW_BULK_H
#define ARROWFLOW_BULK_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { BF_NONE = 0, BF_CONST = 1, BF_STR = 2, BF_INT = 3 };
enum { BE_OK = 0, BE_NOMEM = 1, BE_OVERFLOW = 2 };

typedef struct {
    int kind;                 /* BF_* */
    const char *key;          /* '"_id":"' for BF_STR/BF_INT, or the whole rendered field for BF_CONST */
    int32_t keylen;
    int64_t offset;           /* array offset (rows) */
    const uint8_t *validity;  /* NULL when the column has no nulls */
    const int32_t *offsets;   /* BF_STR */
    const uint8_t *data;      /* BF_STR: utf-8 bytes; BF_INT: int64 values */
} bfield;

typedef struct {
    const char *head; int32_t headlen;
    const char *tail; int32_t taillen;             /* '}}\n' */
    const char *doc_prefix; int32_t doc_prefixlen;
    const char *doc_suffix; int32_t doc_suffixlen;
    int has_doc;
    int64_t doc_offset;                            /* docs array offset (rows) */
    const int32_t *doc_offsets;
    const uint8_t *doc_data;
    bfield fields[3];
    int nfields;
} bplan;

static const char bulk_hex[] = "0123456789abcdef";

/* Bytes json.dumps(ensure_ascii=False) needs for s[0:n] (without the quotes). */
static inline int64_t bulk_escaped_len(const uint8_t *s, int64_t n) {
    int64_t out = n;
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x20) {
            out += (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') ? 1 : 5;
        } else if (c == '"' || c == '\\') {
            out += 1;
        }
    }
    return out;
}

static inline char *bulk_escape(char *p, const uint8_t *s, int64_t n) {
    int64_t start = 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        memcpy(p, s + start, (size_t)(i - start));
        p += i - start;
        start = i + 1;
        *p++ = '\\';
        switch (c) {
            case '"': *p++ = '"'; break;
            case '\\': *p++ = '\\'; break;
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            default:
                *p++ = 'u'; *p++ = '0'; *p++ = '0';
                *p++ = bulk_hex[c >> 4]; *p++ = bulk_hex[c & 15];
        }
    }
    memcpy(p, s + start, (size_t)(n - start));
    return p + (n - start);
}

static inline char *bulk_int(char *p, int64_t v) {
    char tmp[24];
    int k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { tmp[k++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) *p++ = '-';
    while (k) *p++ = tmp[--k];
    return p;
}

static inline int bulk_valid(const bfield *f, int64_t row) {
    if (f->validity == NULL) return 1;
    int64_t i = row + f->offset;
    return (f->validity[i >> 3] >> (i & 7)) & 1;
}

/* Upper bound of one row's entry size. */
static inline int64_t bulk_row_bound(const bplan *pl, int64_t r) {
    int64_t n = pl->headlen + pl->taillen + pl->nfields; /* commas */
    for (int k = 0; k < pl->nfields; k++) {
        const bfield *f = &pl->fields[k];
        if (f->kind == BF_CONST) { n += f->keylen; continue; }
        if (!bulk_valid(f, r)) continue;
        n += f->keylen + 1;
        if (f->kind == BF_INT) {
            n += 20;
        } else {
            int64_t i = r + f->offset;
            int64_t len = f->offsets[i + 1] - f->offsets[i];
            n += len * 6; /* worst case: every byte \u00XX */
        }
    }
    if (pl->has_doc) {
        int64_t i = r + pl->doc_offset;
        n += pl->doc_prefixlen + pl->doc_suffixlen + (pl->doc_offsets[i + 1] - pl->doc_offsets[i]);
    }
    return n;
}

/* Writes rows [0, nrows) into a malloc'd buffer; offsets[0..nrows] get the entry boundaries.
 * Returns BE_*; on success *out owns the data and *outlen is its length. */
static int bulk_build(const bplan *pl, int64_t nrows, int32_t *offsets, char **out, int64_t *outlen) {
    /* First estimate: exact for the documents, 48 bytes per row for the meta fields; the row
     * loop grows the buffer when an id or index is longer. */
    int64_t cap = nrows * (int64_t)(pl->headlen + pl->taillen + 48);
    if (pl->has_doc)
        cap += nrows * (int64_t)(pl->doc_prefixlen + pl->doc_suffixlen) +
               (pl->doc_offsets[pl->doc_offset + nrows] - pl->doc_offsets[pl->doc_offset]);
    if (cap < 64) cap = 64;
    char *buf = (char *)malloc((size_t)cap);
    if (buf == NULL) return BE_NOMEM;
    int64_t pos = 0;
    offsets[0] = 0;
    for (int64_t r = 0; r < nrows; r++) {
        int64_t need = bulk_row_bound(pl, r);
        if (pos + need > cap) {
            int64_t ncap = cap * 2;
            if (ncap < pos + need) ncap = pos + need;
            char *nb = (char *)realloc(buf, (size_t)ncap);
            if (nb == NULL) { free(buf); return BE_NOMEM; }
            buf = nb;
            cap = ncap;
        }
        char *p = buf + pos;
        memcpy(p, pl->head, (size_t)pl->headlen);
        p += pl->headlen;
        int first = 1;
        for (int k = 0; k < pl->nfields; k++) {
            const bfield *f = &pl->fields[k];
            if (f->kind != BF_CONST && !bulk_valid(f, r)) continue;
            if (!first) *p++ = ',';
            first = 0;
            memcpy(p, f->key, (size_t)f->keylen);
            p += f->keylen;
            if (f->kind == BF_CONST) continue;
            int64_t i = r + f->offset;
            if (f->kind == BF_INT) {
                p = bulk_int(p, ((const int64_t *)f->data)[i]);
            } else {
                int32_t a = f->offsets[i], b = f->offsets[i + 1];
                p = bulk_escape(p, f->data + a, b - a);
            }
            *p++ = '"';
        }
        memcpy(p, pl->tail, (size_t)pl->taillen);
        p += pl->taillen;
        if (pl->has_doc) {
            int64_t i = r + pl->doc_offset;
            int32_t a = pl->doc_offsets[i], b = pl->doc_offsets[i + 1];
            memcpy(p, pl->doc_prefix, (size_t)pl->doc_prefixlen);
            p += pl->doc_prefixlen;
            memcpy(p, pl->doc_data + a, (size_t)(b - a));
            p += b - a;
            memcpy(p, pl->doc_suffix, (size_t)pl->doc_suffixlen);
            p += pl->doc_suffixlen;
        }
        pos = p - buf;
        if (pos > 2147483647) { free(buf); return BE_OVERFLOW; }
        offsets[r + 1] = (int32_t)pos;
    }
    *out = buf;
    *outlen = pos;
    return BE_OK;
}

/* Greedy chunking of entries [0, n) given their end offsets (offsets[0..n], any base): a chunk holds
 * at most max_actions entries and at most max_bytes bytes, except that an entry larger than max_bytes
 * forms a chunk on its own. bounds gets the first row of every chunk followed by n; returns the
 * number of chunks. bounds must hold n + 1 values. */
static int64_t bulk_cut(const int64_t *ends, int64_t n, int64_t max_actions, int64_t max_bytes,
                        int64_t *bounds) {
    int64_t nchunks = 0, start = 0;
    while (start < n) {
        int64_t base = ends[start];
        int64_t stop = start + 1; /* at least one entry per chunk */
        int64_t limit = start + max_actions < n ? start + max_actions : n;
        while (stop < limit && ends[stop + 1] - base <= max_bytes) stop++;
        bounds[nchunks++] = start;
        start = stop;
    }
    bounds[nchunks] = n;
    return nchunks;
}

#endif
