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
#include <sys/mman.h>

#include "_threads.h"

enum { BF_NONE = 0, BF_CONST = 1, BF_STR = 2, BF_INT = 3 };
enum { BE_OK = 0, BE_NOMEM = 1, BE_OVERFLOW = 2, BE_INTERNAL = 3 };

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

static const char bulk_digits2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Decimal digits of u (1..20). */
static inline int bulk_ndigits(uint64_t u) {
    int n = 1;
    for (;;) {
        if (u < 10) return n;
        if (u < 100) return n + 1;
        if (u < 1000) return n + 2;
        if (u < 10000) return n + 3;
        u /= 10000;
        n += 4;
    }
}

/* Length of bulk_int's text for v. */
static inline int bulk_int_len(int64_t v) {
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return bulk_ndigits(u) + (v < 0);
}

static inline char *bulk_int(char *p, int64_t v) {
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) *p++ = '-';
    int n = bulk_ndigits(u);
    char *e = p + n;
    char *q = e;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--q = bulk_digits2[d + 1];
        *--q = bulk_digits2[d];
    }
    if (u >= 10) {
        unsigned d = (unsigned)u * 2;
        *--q = bulk_digits2[d + 1];
        *--q = bulk_digits2[d];
    } else {
        *--q = (char)('0' + u);
    }
    return e;
}

static inline int bulk_valid(const bfield *f, int64_t row) {
    if (f->validity == NULL) return 1;
    int64_t i = row + f->offset;
    return (f->validity[i >> 3] >> (i & 7)) & 1;
}

/* Exact size of one row's entry. */
static inline int64_t bulk_row_len(const bplan *pl, int64_t r) {
    int64_t n = pl->headlen + pl->taillen;
    int written = 0;
    for (int k = 0; k < pl->nfields; k++) {
        const bfield *f = &pl->fields[k];
        if (f->kind == BF_CONST) {
            n += f->keylen;
            written++;
            continue;
        }
        if (!bulk_valid(f, r)) continue;
        written++;
        n += f->keylen + 1; /* key with opening quote, closing quote */
        int64_t i = r + f->offset;
        if (f->kind == BF_INT) {
            n += bulk_int_len(((const int64_t *)f->data)[i]);
        } else {
            int32_t a = f->offsets[i], b = f->offsets[i + 1];
            n += bulk_escaped_len(f->data + a, b - a);
        }
    }
    if (written > 1) n += written - 1; /* commas */
    if (pl->has_doc) {
        int64_t i = r + pl->doc_offset;
        n += pl->doc_prefixlen + pl->doc_suffixlen + (pl->doc_offsets[i + 1] - pl->doc_offsets[i]);
    }
    return n;
}

/* Writes the entries of rows [start, end) at p (sized by bulk_row_len); returns the end. */
static char *bulk_write_rows(const bplan *pl, int64_t start, int64_t end, char *p) {
    for (int64_t r = start; r < end; r++) {
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
    }
    return p;
}

/* Large outputs: 2 MiB aligned and advised for transparent huge pages (as in _json_encode.h: with
 * 4 KiB pages, faulting in a freshly allocated output costs about as much as writing it). */
#define BULK_HUGE_MIN ((int64_t)8 << 20)
#define BULK_HUGE_ALIGN ((int64_t)2 << 20)

/* One released large output block is kept for the next call (a sink encodes batch after batch of
 * similar size): its pages are already mapped, so the next output is written without page faults or
 * the kernel zeroing every page, which otherwise costs about as much as the copy itself. While it
 * waits the block is marked MADV_FREE, so under memory pressure the kernel may take its pages back
 * (they then come back zeroed on the next write, as for a fresh block). At most BULK_CACHE_MAX. */
#define BULK_CACHE_MAX ((int64_t)512 << 20)
static pthread_mutex_t bulk_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static char *bulk_cache_ptr = NULL;
static int64_t bulk_cache_cap = 0;

/* A block of at least size bytes; *cap gets its capacity (pass it to bulk_release). */
static char *bulk_alloc(int64_t size, int64_t *cap) {
    if (size < 64) size = 64;
    if (size < BULK_HUGE_MIN) {
        *cap = size;
        return (char *)malloc((size_t)size);
    }
    char *p = NULL;
    pthread_mutex_lock(&bulk_cache_lock);
    if (bulk_cache_ptr != NULL && bulk_cache_cap >= size) {
        p = bulk_cache_ptr;
        *cap = bulk_cache_cap;
        bulk_cache_ptr = NULL;
        bulk_cache_cap = 0;
    }
    pthread_mutex_unlock(&bulk_cache_lock);
    if (p != NULL) return p;
    int64_t c = (size + BULK_HUGE_ALIGN - 1) & ~(BULK_HUGE_ALIGN - 1);
    p = (char *)aligned_alloc((size_t)BULK_HUGE_ALIGN, (size_t)c);
#ifdef MADV_HUGEPAGE
    if (p != NULL) madvise(p, (size_t)c, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
    *cap = c;
    return p;
}

/* Gives back a block from bulk_alloc (with the GIL or without: the cache has its own lock). */
static void bulk_release(char *p, int64_t cap) {
    if (p == NULL) return;
    if (cap < BULK_HUGE_MIN || cap > BULK_CACHE_MAX) {
        free(p);
        return;
    }
#ifdef MADV_FREE
    madvise(p, (size_t)cap, MADV_FREE);
#endif
    char *old = NULL;
    pthread_mutex_lock(&bulk_cache_lock);
    if (bulk_cache_ptr == NULL || bulk_cache_cap <= cap) {
        old = bulk_cache_ptr; /* keep the larger block */
        bulk_cache_ptr = p;
        bulk_cache_cap = cap;
    } else {
        old = p;
    }
    pthread_mutex_unlock(&bulk_cache_lock);
    free(old);
}

typedef struct {
    const bplan *pl;
    int64_t start, end;
    char *p;   /* where row start's entry goes */
    char *got; /* where the writer ended (checked against the planned end) */
} btask;

static void *bulk_task_run(void *arg) {
    btask *t = (btask *)arg;
    t->got = bulk_write_rows(t->pl, t->start, t->end, t->p);
    return NULL;
}

/* Pass 1: the end of every row's entry, offsets[r + 1] = base + the sizes of rows [0, r] (offsets[0]
 * is set to base). Cheap: meta values and document offsets only. BE_OVERFLOW past 2 GiB. */
static int bulk_sizes(const bplan *pl, int64_t nrows, int64_t base, int32_t *offsets) {
    int64_t pos = base;
    if (pos > 2147483647) return BE_OVERFLOW;
    offsets[0] = (int32_t)pos;
    for (int64_t r = 0; r < nrows; r++) {
        pos += bulk_row_len(pl, r);
        if (pos > 2147483647) return BE_OVERFLOW;
        offsets[r + 1] = (int32_t)pos;
    }
    return BE_OK;
}

/* Pass 2: writes rows [0, nrows) into buf at the places offsets (from bulk_sizes) give, each of up to
 * nthreads threads writing one row range at its final place (no growing, no stitching). */
static int bulk_write(const bplan *pl, int64_t nrows, const int32_t *offsets, char *buf, int nthreads) {
    if (nthreads > 16) nthreads = 16;
    if (nthreads > nrows) nthreads = nrows > 0 ? (int)nrows : 1;
    if (nthreads < 1) nthreads = 1;
    btask tasks[16];
    for (int t = 0; t < nthreads; t++) {
        tasks[t].pl = pl;
        tasks[t].start = nrows * t / nthreads;
        tasks[t].end = nrows * (t + 1) / nthreads;
        tasks[t].p = buf + offsets[tasks[t].start];
        tasks[t].got = NULL;
    }
    af_fork_join(bulk_task_run, tasks, sizeof(btask), nthreads);
    for (int t = 0; t < nthreads; t++)
        if (tasks[t].got != buf + offsets[tasks[t].end]) return BE_INTERNAL;
    return BE_OK;
}

/* Makes room for size bytes in *buf (capacity *cap, from bulk_alloc), keeping its first keep bytes. */
static int bulk_reserve(char **buf, int64_t *cap, int64_t size, int64_t keep) {
    if (size <= *cap && *buf != NULL) return BE_OK;
    if (*buf == NULL) {
        *buf = bulk_alloc(size, cap);
        return *buf == NULL ? BE_NOMEM : BE_OK;
    }
    int64_t ncap = *cap * 2;
    if (ncap < size) ncap = size;
    char *nb = bulk_alloc(ncap, &ncap);
    if (nb == NULL) return BE_NOMEM;
    memcpy(nb, *buf, (size_t)keep);
    bulk_release(*buf, *cap);
    *buf = nb;
    *cap = ncap;
    return BE_OK;
}

/* Writes rows [0, nrows) into one new buffer on up to nthreads threads; offsets[0..nrows] get the
 * entry boundaries. Returns BE_*; on success *out owns the data (give it back with
 * bulk_release(*out, *outcap)) and *outlen is its length. */
static int bulk_build(const bplan *pl, int64_t nrows, int32_t *offsets, char **out, int64_t *outlen,
                      int64_t *outcap, int nthreads) {
    int err = bulk_sizes(pl, nrows, 0, offsets);
    if (err != BE_OK) return err;
    int64_t cap = 0;
    char *buf = bulk_alloc(offsets[nrows], &cap);
    if (buf == NULL) return BE_NOMEM;
    err = bulk_write(pl, nrows, offsets, buf, nthreads);
    if (err != BE_OK) {
        bulk_release(buf, cap);
        return err;
    }
    *out = buf;
    *outlen = offsets[nrows];
    *outcap = cap;
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
