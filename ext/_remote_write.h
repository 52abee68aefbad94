/* Prometheus remote-write 1.0 WriteRequest encoding (protobuf wire format), no I/O, no Python.
 *
 *   WriteRequest { repeated TimeSeries timeseries = 1; }
 *   TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
 *   Label        { string name = 1; string value = 2; }
 *   Sample       { double value = 1; int64 timestamp = 2; }
 *
 * Fields equal to their proto3 default (a +0.0 value, a 0 timestamp) are left out, exactly as the
 * protobuf runtime serializes them, so the bytes equal `WriteRequest.SerializeToString()`.
 *
 * Two stages:
 *  - rw_encode_labels: one row -> the concatenated `Label` fields (tag 1) of its TimeSeries, with the
 *    label pairs sorted by name (bytewise, as the remote-write spec requires), empty/null values
 *    dropped (Prometheus treats an empty value as an absent label), names validated.
 *  - rw_encode_request: samples already ordered (series, timestamp) -> one WriteRequest; runs of
 *    equal series ids become one TimeSeries. Sized exactly in a first pass, written in a second.
 */
#ifndef ARROWFLOW_REMOTE_WRITE_H
#define ARROWFLOW_REMOTE_WRITE_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

enum { RW_OK = 0, RW_NO_NAME = 1, RW_DUP_LABEL = 2, RW_BAD_LABEL = 3, RW_BAD_NAME = 4 };

static inline int rw_varint_len(uint64_t v) {
    int n = 1;
    while (v >= 0x80) { v >>= 7; n++; }
    return n;
}

static inline uint8_t *rw_put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) { *p++ = (uint8_t)(v | 0x80); v >>= 7; }
    *p++ = (uint8_t)v;
    return p;
}

/* ---------------------------------------------------------------- labels */

/* One label source: a fixed name, and either a constant value or a large_string column. */
typedef struct {
    const uint8_t *name;
    int64_t name_len;
    const uint8_t *const_value;   /* non-NULL: every row has this value */
    int64_t const_len;
    const int64_t *offsets;       /* large_string offsets (already shifted by the array offset) */
    const uint8_t *data;
    const uint8_t *validity;      /* NULL: no nulls */
    int64_t voff;                 /* the array offset, for validity bits */
} rw_col;

/* An optional map<string, string> column: entry range per row, keys/items as large_string. */
typedef struct {
    const int32_t *offsets;       /* n + 1 absolute offsets into the children */
    const uint8_t *map_validity;
    int64_t map_voff;
    const int64_t *key_offsets;
    const uint8_t *key_data;
    const int64_t *item_offsets;
    const uint8_t *item_data;
    const uint8_t *item_validity;
    int64_t item_voff;
} rw_map;

typedef struct {
    const uint8_t *name;
    int64_t name_len;
    const uint8_t *value;
    int64_t value_len;
} rw_pair;

static inline int rw_bit(const uint8_t *bits, int64_t i) {
    return bits == NULL || ((bits[i >> 3] >> (i & 7)) & 1);
}

static inline int rw_cmp(const rw_pair *a, const rw_pair *b) {
    int64_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, (size_t)n);
    if (c) return c;
    return (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

/* [a-zA-Z_][a-zA-Z0-9_]*  (colons also allowed in metric names) */
static inline int rw_valid_name(const uint8_t *s, int64_t n, int allow_colon) {
    if (n <= 0) return 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
                 || (i > 0 && c >= '0' && c <= '9') || (allow_colon && c == ':');
        if (!ok) return 0;
    }
    return 1;
}

static inline int64_t rw_label_size(const rw_pair *p) {
    int64_t inner = 1 + rw_varint_len((uint64_t)p->name_len) + p->name_len
                    + 1 + rw_varint_len((uint64_t)p->value_len) + p->value_len;
    return 1 + rw_varint_len((uint64_t)inner) + inner;
}

/* Writes one row's labels at out; returns bytes written (0 on an invalid row, with *err set).
 * scratch holds room for ncols + the row's map entries. */
static int64_t rw_encode_row_labels(int64_t row, const rw_col *cols, int ncols, const rw_map *map,
                                    rw_pair *scratch, uint8_t *out, int *err) {
    int np = 0;
    *err = RW_OK;
    for (int c = 0; c < ncols; c++) {
        const rw_col *col = &cols[c];
        rw_pair pr;
        pr.name = col->name;
        pr.name_len = col->name_len;
        if (col->const_value != NULL) {
            pr.value = col->const_value;
            pr.value_len = col->const_len;
        } else {
            if (!rw_bit(col->validity, col->voff + row)) continue;
            pr.value = col->data + col->offsets[row];
            pr.value_len = col->offsets[row + 1] - col->offsets[row];
        }
        if (pr.value_len == 0) continue;
        scratch[np++] = pr;
    }
    if (map != NULL && rw_bit(map->map_validity, map->map_voff + row)) {
        for (int64_t e = map->offsets[row]; e < map->offsets[row + 1]; e++) {
            if (!rw_bit(map->item_validity, map->item_voff + e)) continue;
            rw_pair pr;
            pr.name = map->key_data + map->key_offsets[e];
            pr.name_len = map->key_offsets[e + 1] - map->key_offsets[e];
            pr.value = map->item_data + map->item_offsets[e];
            pr.value_len = map->item_offsets[e + 1] - map->item_offsets[e];
            if (pr.value_len == 0) continue;
            if (!rw_valid_name(pr.name, pr.name_len, 0)) { *err = RW_BAD_LABEL; return 0; }
            scratch[np++] = pr;
        }
    }
    /* Insertion sort: a series has a handful of labels. */
    for (int i = 1; i < np; i++) {
        rw_pair key = scratch[i];
        int j = i - 1;
        while (j >= 0 && rw_cmp(&scratch[j], &key) > 0) { scratch[j + 1] = scratch[j]; j--; }
        scratch[j + 1] = key;
    }
    int has_name = 0;
    for (int i = 0; i < np; i++) {
        if (i > 0 && rw_cmp(&scratch[i - 1], &scratch[i]) == 0) { *err = RW_DUP_LABEL; return 0; }
        if (scratch[i].name_len == 8 && memcmp(scratch[i].name, "__name__", 8) == 0) {
            has_name = 1;
            if (!rw_valid_name(scratch[i].value, scratch[i].value_len, 1)) { *err = RW_BAD_NAME; return 0; }
        }
    }
    if (!has_name) { *err = RW_NO_NAME; return 0; }
    uint8_t *p = out;
    for (int i = 0; i < np; i++) {
        const rw_pair *pr = &scratch[i];
        int64_t inner = 1 + rw_varint_len((uint64_t)pr->name_len) + pr->name_len
                        + 1 + rw_varint_len((uint64_t)pr->value_len) + pr->value_len;
        *p++ = 0x0a;
        p = rw_put_varint(p, (uint64_t)inner);
        *p++ = 0x0a;
        p = rw_put_varint(p, (uint64_t)pr->name_len);
        memcpy(p, pr->name, (size_t)pr->name_len);
        p += pr->name_len;
        *p++ = 0x12;
        p = rw_put_varint(p, (uint64_t)pr->value_len);
        memcpy(p, pr->value, (size_t)pr->value_len);
        p += pr->value_len;
    }
    return (int64_t)(p - out);
}

/* Encodes n rows; out_offsets gets n + 1 int64 offsets (a large_binary array). Returns the number of invalid rows (their error codes in errs, their labels empty). */
static int64_t rw_encode_labels(int64_t n, const rw_col *cols, int ncols, const rw_map *map,
                                rw_pair *scratch, uint8_t *out, int64_t *out_offsets, int8_t *errs) {
    int64_t pos = 0, bad = 0;
    out_offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int err;
        pos += rw_encode_row_labels(i, cols, ncols, map, scratch, out + pos, &err);
        errs[i] = (int8_t)err;
        if (err) bad++;
        out_offsets[i + 1] = pos;
    }
    return bad;
}

/* ---------------------------------------------------------------- WriteRequest */

static inline int64_t rw_sample_size(double v, int64_t ts) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    int64_t inner = (bits ? 9 : 0) + (ts ? 1 + rw_varint_len((uint64_t)ts) : 0);
    return 1 + rw_varint_len((uint64_t)inner) + inner;
}

/* Pass 1: the TimeSeries body size of every run of equal series ids (in `order`).
 * run_sizes has room for n entries; returns the total WriteRequest size, and *nruns. */
static int64_t rw_size_request(int64_t n, const int64_t *order, const int64_t *series,
                               const int64_t *lab_off, const double *values, const int64_t *ts,
                               int64_t *run_sizes, int64_t *nruns) {
    int64_t total = 0, r = 0, i = 0;
    while (i < n) {
        int64_t s = series[order[i]];
        int64_t body = lab_off[s + 1] - lab_off[s];
        while (i < n && series[order[i]] == s) {
            int64_t k = order[i];
            body += rw_sample_size(values[k], ts[k]);
            i++;
        }
        run_sizes[r++] = body;
        total += 1 + rw_varint_len((uint64_t)body) + body;
    }
    *nruns = r;
    return total;
}

/* Pass 2: write the WriteRequest into out (exactly the size pass 1 returned). */
static void rw_write_request(int64_t n, const int64_t *order, const int64_t *series,
                             const int64_t *lab_off, const uint8_t *lab_data, const double *values,
                             const int64_t *ts, const int64_t *run_sizes, uint8_t *out) {
    uint8_t *p = out;
    int64_t r = 0, i = 0;
    while (i < n) {
        int64_t s = series[order[i]];
        *p++ = 0x0a;
        p = rw_put_varint(p, (uint64_t)run_sizes[r++]);
        int64_t ll = lab_off[s + 1] - lab_off[s];
        memcpy(p, lab_data + lab_off[s], (size_t)ll);
        p += ll;
        while (i < n && series[order[i]] == s) {
            int64_t k = order[i];
            double v = values[k];
            int64_t t = ts[k];
            uint64_t bits;
            memcpy(&bits, &v, 8);
            int64_t inner = (bits ? 9 : 0) + (t ? 1 + rw_varint_len((uint64_t)t) : 0);
            *p++ = 0x12;
            p = rw_put_varint(p, (uint64_t)inner);
            if (bits) {
                *p++ = 0x09;
                memcpy(p, &bits, 8); /* little-endian targets: protobuf's fixed64 byte order */
                p += 8;
            }
            if (t) {
                *p++ = 0x10;
                p = rw_put_varint(p, (uint64_t)t);
            }
            i++;
        }
    }
}

#endif
