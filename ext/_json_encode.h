/* The JSON row encoder: a tree of jnode "encoder program" nodes (built by ext/json_encode.pyx while it holds
 * the GIL) walked row by row with no Python API at all, so every function here runs without the GIL.
 *
 * Contract of the walk:
 *  - A node describes one Arrow array by raw buffer addresses plus its offset; index arguments are
 *    logical (0 = the array's first element as pyarrow shows it), physical = node->offset + index.
 *  - Every writer reserves the worst case of what it writes before writing, so the hot path does one
 *    capacity check per value. Failure (out of memory, NaN under nan=error, a row past the int32
 *    offset range) stops the walk: the writer returns -1 and leaves the reason in the jstate.
 *  - Output is one growable buffer per thread; the caller stitches thread buffers together.
 */
#ifndef ARROWFLOW_JSON_ENCODE_H
#define ARROWFLOW_JSON_ENCODE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "_json_dtoa.h"
#include "_threads.h"

enum {
    JT_NULL = 0,
    JT_BOOL,
    JT_I8, JT_I16, JT_I32, JT_I64,
    JT_U8, JT_U16, JT_U32, JT_U64,
    JT_F16, JT_F32, JT_F64,
    JT_STR, JT_LSTR, JT_STRVIEW,
    JT_BIN, JT_LBIN, JT_FSB,
    JT_TS, JT_DATE32, JT_DATE64, JT_TIME32, JT_TIME64,
    JT_DEC128, JT_DEC256, JT_DEC32, JT_DEC64,
    JT_LIST, JT_LLIST, JT_FSL,
    JT_STRUCT, JT_MAP, JT_DICT
};

enum { JE_OK = 0, JE_NOMEM = 1, JE_NAN = 2, JE_OVERFLOW = 3 };

typedef struct jnode {
    int type;
    int64_t offset;
    const uint8_t *validity; /* NULL when the array has no nulls */
    const uint8_t *data;     /* values / views / indices / fixed-size bytes */
    const uint8_t *offsets;  /* list/string/binary/map offsets */
    const uint8_t **vbufs;   /* string_view variadic data buffers */
    int32_t width;           /* fixed_size_binary byte width, fixed_size_list size, int width of dict indices */
    int32_t unit;            /* timestamps/times: 0 s, 1 ms, 2 us, 3 ns */
    int32_t scale;           /* decimals */
    int32_t tz;              /* timestamps: 1 -> append 'Z' */
    int32_t index_signed;    /* dictionary indices signedness */
    int32_t quote_key;       /* map keys: 1 -> wrap the key's JSON text in quotes */
    int32_t nchildren;
    struct jnode **children;
    char **keys;             /* struct/top level: '"name":' already escaped */
    int32_t *keylens;
    int32_t column;          /* top-level column index this node belongs to (for error messages) */
    int32_t maybe_null;      /* 0 -> no element can be null (no validity, not null/dictionary type) */
    int32_t quoted;          /* 1 -> write the (number/bool/decimal) value inside quotes: "1.5" */
} jnode;

typedef struct jstate {
    char *buf;
    int64_t pos;
    int64_t cap;
    int omit_nulls;
    int nan_null;
    int err;
    int32_t err_column;
    int64_t err_row;
    int64_t row; /* current logical batch row, for errors */
} jstate;

/* Large output buffers are 2 MiB aligned and marked for transparent huge pages: the output of a big
 * batch is written once, front to back, and with 4 KiB pages the kernel's page faults (one per 4 KiB,
 * each zeroing a page) cost about as much as the encoding itself. The block stays an ordinary malloc
 * block (free/realloc work; glibc serves it with mmap and grows it with mremap, without copying). */
#define JS_HUGE_MIN ((int64_t)8 << 20)
#define JS_HUGE_ALIGN ((int64_t)2 << 20)

static void js_advise_huge(char *p, int64_t size) {
#ifdef MADV_HUGEPAGE
    uintptr_t a = ((uintptr_t)p + (uintptr_t)JS_HUGE_ALIGN - 1) & ~(uintptr_t)(JS_HUGE_ALIGN - 1);
    uintptr_t e = ((uintptr_t)p + (uintptr_t)size) & ~(uintptr_t)(JS_HUGE_ALIGN - 1);
    if (e > a) madvise((void *)a, e - a, MADV_HUGEPAGE); /* advice only: failure is harmless */
#else
    (void)p;
    (void)size;
#endif
}

static int js_grow(jstate *st, int64_t need) {
    int64_t ncap = st->cap ? st->cap : 4096;
    while (ncap < st->pos + need) ncap *= 2;
    char *nb;
    if (st->buf == NULL && ncap >= JS_HUGE_MIN) {
        ncap = (ncap + JS_HUGE_ALIGN - 1) & ~(JS_HUGE_ALIGN - 1);
        nb = (char *)aligned_alloc((size_t)JS_HUGE_ALIGN, (size_t)ncap);
    } else {
        nb = (char *)realloc(st->buf, (size_t)ncap);
    }
    if (nb == NULL) {
        st->err = JE_NOMEM;
        return -1;
    }
    if (ncap >= JS_HUGE_MIN) js_advise_huge(nb, ncap);
    st->buf = nb;
    st->cap = ncap;
    return 0;
}

#define JS_RESERVE(st, n) \
    do { \
        if ((st)->pos + (int64_t)(n) > (st)->cap && js_grow((st), (int64_t)(n))) return -1; \
    } while (0)
#define JS_PUT(st, c) ((st)->buf[(st)->pos++] = (char)(c))
#define JS_PUTS(st, s, n) \
    do { \
        memcpy((st)->buf + (st)->pos, (s), (size_t)(n)); \
        (st)->pos += (n); \
    } while (0)

static inline int jbit(const uint8_t *bits, int64_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

/* ---------------------------------------------------------------- integers */

static inline int jw_u64(char *p, uint64_t v) { return jd_write_u64_digits(p, v); }

static inline int jw_i64(char *p, int64_t v) {
    if (v < 0) {
        *p = '-';
        return 1 + jd_write_u64_digits(p + 1, (uint64_t)0 - (uint64_t)v);
    }
    return jd_write_u64_digits(p, (uint64_t)v);
}

static inline int64_t jn_read_int(const jnode *n, int64_t phys) {
    /* dictionary indices and other integer reads by width */
    switch (n->width) {
        case 1: return n->index_signed ? (int64_t)((const int8_t *)n->data)[phys] : (int64_t)n->data[phys];
        case 2: return n->index_signed ? (int64_t)((const int16_t *)n->data)[phys]
                                       : (int64_t)((const uint16_t *)n->data)[phys];
        case 4: return n->index_signed ? (int64_t)((const int32_t *)n->data)[phys]
                                       : (int64_t)((const uint32_t *)n->data)[phys];
        default: return ((const int64_t *)n->data)[phys];
    }
}

/* ---------------------------------------------------------------- strings */

static const char jhex[] = "0123456789abcdef";

/* 1 for bytes that JSON requires escaped: control characters, '"' and '\\'. */
static const uint8_t jneeds_esc[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

/* Nonzero if any of the 8 bytes is < 0x20, '"' or '\\' (SWAR: has-zero-byte tricks). */
static inline uint64_t jswar_special(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t lt = (w - ones * 0x20) & ~w;
    uint64_t q = w ^ (ones * 0x22);
    uint64_t bs = w ^ (ones * 0x5c);
    uint64_t zq = (q - ones) & ~q;
    uint64_t zb = (bs - ones) & ~bs;
    return (lt | zq | zb) & highs;
}

static inline char *jw_escape_byte(char *o, uint8_t c) {
    *o++ = '\\';
    switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            o[0] = 'u'; o[1] = '0'; o[2] = '0';
            o[3] = jhex[c >> 4]; o[4] = jhex[c & 15];
            o += 5;
    }
    return o;
}

/* Writes a quoted, escaped JSON string at o (6 * len + 2 bytes at most); returns the new end. Valid
 * UTF-8 passes through byte for byte. Clean 8-byte words are copied whole (SWAR test); while nothing
 * has been escaped yet, output offsets equal input offsets, so a string of >= 8 bytes finishes with
 * one overlapping word (its last 8 bytes) instead of a byte loop over the tail. */
static inline char *jw_str_body(char *o, const uint8_t *s, int64_t len) {
    *o++ = '"';
    char *o0 = o;
    int64_t i = 0;
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (!jswar_special(w)) {
            memcpy(o, &w, 8);
            o += 8;
            i += 8;
            continue;
        }
        for (int j = 0; j < 8; j++, i++) {
            uint8_t c = s[i];
            if (jneeds_esc[c]) o = jw_escape_byte(o, c);
            else *o++ = (char)c;
        }
    }
    if (i < len && len >= 8 && o - o0 == i) {
        uint64_t w;
        memcpy(&w, s + len - 8, 8);
        if (!jswar_special(w)) {
            memcpy(o0 + len - 8, &w, 8);
            o = o0 + len;
            *o++ = '"';
            return o;
        }
    }
    for (; i < len; i++) {
        uint8_t c = s[i];
        if (jneeds_esc[c]) o = jw_escape_byte(o, c);
        else *o++ = (char)c;
    }
    *o++ = '"';
    return o;
}

static inline int jw_string(jstate *st, const uint8_t *s, int64_t len) {
    JS_RESERVE(st, 6 * len + 2);
    st->pos = jw_str_body(st->buf + st->pos, s, len) - st->buf;
    return 0;
}

static const char jb64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static inline int jw_base64(jstate *st, const uint8_t *s, int64_t len) {
    JS_RESERVE(st, (len + 2) / 3 * 4 + 2);
    char *o = st->buf + st->pos;
    *o++ = '"';
    int64_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        o[0] = jb64[v >> 18]; o[1] = jb64[(v >> 12) & 63]; o[2] = jb64[(v >> 6) & 63]; o[3] = jb64[v & 63];
        o += 4;
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        o[0] = jb64[v >> 18]; o[1] = jb64[(v >> 12) & 63]; o[2] = '='; o[3] = '=';
        o += 4;
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        o[0] = jb64[v >> 18]; o[1] = jb64[(v >> 12) & 63]; o[2] = jb64[(v >> 6) & 63]; o[3] = '=';
        o += 4;
    }
    *o++ = '"';
    st->pos = o - st->buf;
    return 0;
}

/* Pointer and length of element phys of a string/binary-like node. */
static inline const uint8_t *jn_bytes(const jnode *n, int64_t phys, int64_t *len) {
    switch (n->type) {
        case JT_STR: case JT_BIN: {
            const int32_t *off = (const int32_t *)n->offsets;
            *len = off[phys + 1] - off[phys];
            return n->data + off[phys];
        }
        case JT_LSTR: case JT_LBIN: {
            const int64_t *off = (const int64_t *)n->offsets;
            *len = off[phys + 1] - off[phys];
            return n->data + off[phys];
        }
        case JT_FSB:
            *len = n->width;
            return n->data + phys * n->width;
        default: { /* JT_STRVIEW */
            const uint8_t *v = n->data + phys * 16;
            int32_t l, bi, bo;
            memcpy(&l, v, 4);
            *len = l;
            if (l <= 12) return v + 4;
            memcpy(&bi, v + 8, 4);
            memcpy(&bo, v + 12, 4);
            return n->vbufs[bi] + bo;
        }
    }
}

/* ---------------------------------------------------------------- floats */

static inline double jhalf_to_double(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (exp == 0) v = ldexp((double)mant, -24);
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexp((double)(mant | 1024), exp - 25);
    return sign ? -v : v;
}

static inline int jw_double(jstate *st, const jnode *n, double v) {
    JS_RESERVE(st, 48);
    uint64_t bits;
    memcpy(&bits, &v, 8);
    if (((bits >> 52) & 0x7ff) == 0x7ff) {
        if (!st->nan_null) {
            st->err = JE_NAN;
            st->err_column = n->column;
            st->err_row = st->row;
            return -1;
        }
        JS_PUTS(st, "null", 4);
        return 0;
    }
    st->pos += jd_write_double(st->buf + st->pos, v);
    return 0;
}

/* ---------------------------------------------------------------- dates and times */

static inline int64_t jfloordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

/* Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian). */
static inline char *jw_date(char *o, int64_t days) {
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += (m <= 2);
    if (y >= 0 && y <= 9999) {
        memcpy(o, jd_digit_pairs + 2 * (y / 100), 2);
        memcpy(o + 2, jd_digit_pairs + 2 * (y % 100), 2);
        o += 4;
    } else {
        /* ISO-8601 expanded years: a sign, then at least four digits. */
        uint64_t ay = y < 0 ? (uint64_t)(-y) : (uint64_t)y;
        *o++ = y < 0 ? '-' : '+';
        char t[24];
        int nd = jd_write_u64_digits(t, ay);
        for (int i = nd; i < 4; i++) *o++ = '0';
        memcpy(o, t, (size_t)nd);
        o += nd;
    }
    o[0] = '-';
    memcpy(o + 1, jd_digit_pairs + 2 * m, 2);
    o[3] = '-';
    memcpy(o + 4, jd_digit_pairs + 2 * d, 2);
    return o + 6;
}

/* Writes '.' and the fraction (0 <= frac < 10^(3 * unit)) with exactly 3, 6 or 9 digits for ms, us, ns
 * (nothing for seconds). Stores up to 16 bytes. */
static inline char *jw_frac(char *o, int64_t frac, int unit) {
    if (unit == 0) return o;
    *o++ = '.';
    uint64_t f = (uint64_t)frac;
    if (unit == 3) { /* 9 digits: the first, then 8 */
        uint32_t top = (uint32_t)(f / 100000000);
        *o++ = (char)('0' + top);
        jd_write_8digits(o, (uint32_t)(f - (uint64_t)top * 100000000));
        return o + 8;
    }
    /* 8 zero-padded digits, keep the last 3 (ms) or 6 (us): drop the leading zero bytes */
    int nd = unit * 3;
    uint64_t w = (jd_swar8_raw((uint32_t)f) | JD_ASCII_ZEROS) >> (8 * (8 - nd));
    memcpy(o, &w, 8);
    return o + nd;
}

/* HH:MM:SS for 0 <= sod < 360000 (32-bit constant divisions become multiplications). */
static inline char *jw_tod(char *o, int64_t sod) {
    uint32_t t = (uint32_t)sod;
    uint32_t h = t / 3600, rest = t - h * 3600;
    uint32_t m = rest / 60, sec = rest - m * 60;
    memcpy(o, jd_digit_pairs + 2 * h, 2);
    o[2] = ':';
    memcpy(o + 3, jd_digit_pairs + 2 * m, 2);
    o[5] = ':';
    memcpy(o + 6, jd_digit_pairs + 2 * sec, 2);
    return o + 8;
}

/* Splits v (in unit) into seconds and a non-negative fraction; constant divisors per unit so the
 * compiler turns the divisions into multiplications. */
static inline int64_t jsplit_secs(int64_t v, int unit, int64_t *frac) {
    int64_t secs;
    switch (unit) {
        case 0: *frac = 0; return v;
        case 1: secs = jfloordiv(v, 1000); *frac = v - secs * 1000; return secs;
        case 2: secs = jfloordiv(v, 1000000); *frac = v - secs * 1000000; return secs;
        default: secs = jfloordiv(v, 1000000000); *frac = v - secs * 1000000000; return secs;
    }
}

/* A per-thread, direct-mapped cache of rendered dates ('YYYY-MM-DDT') by day since the epoch, for one
 * timestamp column: timestamps in a batch usually span few days, and the civil-date computation is
 * the expensive part of a timestamp. Only four-digit years are cached (fixed width). */
#define JDATE_SLOTS 1024
typedef struct jdate_slot {
    int64_t day; /* JDATE_EMPTY when unused */
    char text[16];
} jdate_slot;
#define JDATE_EMPTY INT64_MIN
#define JDATE_MIN_DAY (-719528) /* 0000-01-01 */
#define JDATE_MAX_DAY 2932896   /* 9999-12-31 */

/* Writes "YYYY-MM-DDTHH:MM:SS[.fff...][Z]" (quoted) for v in n's unit; at most 64 bytes stored. */
static inline char *jw_timestamp_to(char *o, const jnode *n, int64_t v, jdate_slot *cache) {
    int64_t frac;
    int64_t secs = jsplit_secs(v, n->unit, &frac);
    int64_t days = jfloordiv(secs, 86400);
    int64_t sod = secs - days * 86400;
    *o++ = '"';
    if (cache != NULL && days >= JDATE_MIN_DAY && days <= JDATE_MAX_DAY) {
        jdate_slot *slot = &cache[(uint64_t)days & (JDATE_SLOTS - 1)];
        if (slot->day != days) {
            char *e = jw_date(slot->text, days);
            *e = 'T';
            slot->day = days;
        }
        memcpy(o, slot->text, 16);
        o += 11;
    } else {
        o = jw_date(o, days);
        *o++ = 'T';
    }
    o = jw_tod(o, sod);
    o = jw_frac(o, frac, n->unit);
    if (n->tz) *o++ = 'Z';
    *o++ = '"';
    return o;
}

static inline int jw_timestamp(jstate *st, const jnode *n, int64_t v) {
    JS_RESERVE(st, 64);
    st->pos = jw_timestamp_to(st->buf + st->pos, n, v, NULL) - st->buf;
    return 0;
}

static inline int jw_time(jstate *st, const jnode *n, int64_t v) {
    JS_RESERVE(st, 40);
    int64_t frac;
    int64_t secs = jsplit_secs(v, n->unit, &frac);
    char *o = st->buf + st->pos;
    *o++ = '"';
    if (secs < 0 || secs >= 100 * 3600) {
        /* Outside a day: not a valid Arrow time; write hours as a plain integer rather than garbage. */
        int64_t h = jfloordiv(secs, 3600);
        int64_t rest = secs - h * 3600;
        o += jw_i64(o, h);
        *o++ = ':';
        memcpy(o, jd_digit_pairs + 2 * (rest / 60), 2);
        o[2] = ':';
        memcpy(o + 3, jd_digit_pairs + 2 * (rest % 60), 2);
        o += 5;
    } else {
        o = jw_tod(o, secs);
    }
    o = jw_frac(o, frac, n->unit);
    *o++ = '"';
    st->pos = o - st->buf;
    return 0;
}

/* ---------------------------------------------------------------- decimals */

/* Writes |limbs| (little-endian 64-bit limbs, already non-negative) as decimal digits into the end
 * of tmp; returns the start pointer. */
static inline char *jdec_digits(uint64_t *limbs, int nlimbs, char *end) {
    char *t = end;
    for (;;) {
        int top = nlimbs - 1;
        while (top >= 0 && limbs[top] == 0) top--;
        if (top < 0) break;
        if (top == 0 && limbs[0] < 10000000000000000000ULL) {
            uint64_t m = limbs[0];
            while (m) {
                *--t = (char)('0' + m % 10);
                m /= 10;
            }
            break;
        }
        unsigned __int128 rem = 0;
        for (int i = top; i >= 0; i--) {
            unsigned __int128 cur = (rem << 64) | limbs[i];
            limbs[i] = (uint64_t)(cur / 10000000000000000000ULL);
            rem = cur % 10000000000000000000ULL;
        }
        uint64_t r = (uint64_t)rem;
        for (int i = 0; i < 19; i++) {
            *--t = (char)('0' + r % 10);
            r /= 10;
        }
    }
    if (t == end) *--t = '0';
    return t;
}

static inline int jw_decimal(jstate *st, const jnode *n, int64_t phys) {
    int nlimbs = n->type == JT_DEC256 ? 4 : 2;
    uint64_t limbs[4];
    if (n->type == JT_DEC32 || n->type == JT_DEC64) {
        int64_t v = n->type == JT_DEC32 ? (int64_t)((const int32_t *)n->data)[phys]
                                        : ((const int64_t *)n->data)[phys];
        limbs[0] = (uint64_t)v;
        limbs[1] = v < 0 ? ~0ULL : 0;
    } else {
        memcpy(limbs, n->data + phys * 8 * nlimbs, (size_t)(8 * nlimbs));
    }
    int neg = (limbs[nlimbs - 1] >> 63) != 0;
    if (neg) { /* two's complement negate */
        unsigned carry = 1;
        for (int i = 0; i < nlimbs; i++) {
            limbs[i] = ~limbs[i] + carry;
            carry = carry && limbs[i] == 0;
        }
    }
    char tmp[96];
    char *end = tmp + sizeof tmp;
    char *t = jdec_digits(limbs, nlimbs, end);
    int nd = (int)(end - t);
    int scale = n->scale;
    int64_t worst = nd + (scale > 0 ? scale : -scale) + 4;
    JS_RESERVE(st, worst);
    char *o = st->buf + st->pos;
    if (neg) *o++ = '-';
    if (scale <= 0) {
        memcpy(o, t, (size_t)nd);
        o += nd;
        if (!(nd == 1 && t[0] == '0'))
            for (int i = 0; i < -scale; i++) *o++ = '0';
    } else if (nd <= scale) {
        *o++ = '0';
        *o++ = '.';
        for (int i = nd; i < scale; i++) *o++ = '0';
        memcpy(o, t, (size_t)nd);
        o += nd;
    } else {
        memcpy(o, t, (size_t)(nd - scale));
        o += nd - scale;
        *o++ = '.';
        memcpy(o, t + nd - scale, (size_t)scale);
        o += scale;
    }
    st->pos = o - st->buf;
    return 0;
}

/* ---------------------------------------------------------------- the walk */

static int jn_is_null_slow(const jnode *n, int64_t i);
static int jn_write(jstate *st, const jnode *n, int64_t i);

static inline int jn_is_null(const jnode *n, int64_t i) { return n->maybe_null && jn_is_null_slow(n, i); }

static int jn_is_null_slow(const jnode *n, int64_t i) {
    if (n->type == JT_NULL) return 1;
    if (n->validity && !jbit(n->validity, n->offset + i)) return 1;
    if (n->type == JT_DICT) return jn_is_null(n->children[0], jn_read_int(n, n->offset + i));
    return 0;
}

static inline int jw_null(jstate *st) {
    JS_RESERVE(st, 4);
    JS_PUTS(st, "null", 4);
    return 0;
}

/* Writes the members of a struct-like node (top level or struct) at logical index i, no braces. */
static inline int jw_members(jstate *st, const jnode *n, int64_t i) {
    int first = 1;
    for (int32_t c = 0; c < n->nchildren; c++) {
        const jnode *ch = n->children[c];
        int isnull = jn_is_null(ch, i);
        if (isnull && st->omit_nulls) continue;
        int32_t kl = n->keylens[c];
        JS_RESERVE(st, kl + 33);
        if (!first) JS_PUT(st, ',');
        first = 0;
        /* keys are allocated with 32 bytes of padding: a fixed-size copy beats a memcpy call */
        if (kl <= 32) {
            memcpy(st->buf + st->pos, n->keys[c], 32);
            st->pos += kl;
        } else {
            JS_PUTS(st, n->keys[c], kl);
        }
        if (isnull) {
            if (jw_null(st)) return -1;
        } else if (jn_write(st, ch, i)) {
            return -1;
        }
    }
    return 0;
}

static int jw_map(jstate *st, const jnode *n, int64_t start, int64_t end) {
    const jnode *kn = n->children[0], *vn = n->children[1];
    int first = 1;
    JS_RESERVE(st, 1);
    JS_PUT(st, '{');
    for (int64_t j = start; j < end; j++) {
        int vnull = jn_is_null(vn, j);
        if (vnull && st->omit_nulls) continue;
        JS_RESERVE(st, 2);
        if (!first) JS_PUT(st, ',');
        first = 0;
        if (jn_is_null(kn, j)) {
            JS_RESERVE(st, 6);
            JS_PUTS(st, "\"null\"", 6);
        } else if (n->quote_key) {
            JS_PUT(st, '"');
            if (jn_write(st, kn, j)) return -1;
            JS_RESERVE(st, 1);
            JS_PUT(st, '"');
        } else if (jn_write(st, kn, j)) {
            return -1;
        }
        JS_RESERVE(st, 1);
        JS_PUT(st, ':');
        if (vnull) {
            if (jw_null(st)) return -1;
        } else if (jn_write(st, vn, j)) {
            return -1;
        }
    }
    JS_RESERVE(st, 1);
    JS_PUT(st, '}');
    return 0;
}

static int jw_array(jstate *st, const jnode *ch, int64_t start, int64_t end) {
    JS_RESERVE(st, 1);
    JS_PUT(st, '[');
    for (int64_t j = start; j < end; j++) {
        if (j > start) {
            JS_RESERVE(st, 1);
            JS_PUT(st, ',');
        }
        if (jn_is_null(ch, j)) {
            if (jw_null(st)) return -1;
        } else if (jn_write(st, ch, j)) {
            return -1;
        }
    }
    JS_RESERVE(st, 1);
    JS_PUT(st, ']');
    return 0;
}

/* Writes the (non-null) value at logical index i of node n, without the quotes of a quoted node. */
static int jn_write_raw(jstate *st, const jnode *n, int64_t i) {
    int64_t p = n->offset + i;
    switch (n->type) {
        case JT_NULL: return jw_null(st);
        case JT_BOOL:
            JS_RESERVE(st, 5);
            if (jbit(n->data, p)) JS_PUTS(st, "true", 4);
            else JS_PUTS(st, "false", 5);
            return 0;
        case JT_I8: JS_RESERVE(st, 24); st->pos += jw_i64(st->buf + st->pos, ((const int8_t *)n->data)[p]); return 0;
        case JT_I16: JS_RESERVE(st, 24); st->pos += jw_i64(st->buf + st->pos, ((const int16_t *)n->data)[p]); return 0;
        case JT_I32: JS_RESERVE(st, 24); st->pos += jw_i64(st->buf + st->pos, ((const int32_t *)n->data)[p]); return 0;
        case JT_I64: JS_RESERVE(st, 24); st->pos += jw_i64(st->buf + st->pos, ((const int64_t *)n->data)[p]); return 0;
        case JT_U8: JS_RESERVE(st, 24); st->pos += jw_u64(st->buf + st->pos, ((const uint8_t *)n->data)[p]); return 0;
        case JT_U16: JS_RESERVE(st, 24); st->pos += jw_u64(st->buf + st->pos, ((const uint16_t *)n->data)[p]); return 0;
        case JT_U32: JS_RESERVE(st, 24); st->pos += jw_u64(st->buf + st->pos, ((const uint32_t *)n->data)[p]); return 0;
        case JT_U64: JS_RESERVE(st, 24); st->pos += jw_u64(st->buf + st->pos, ((const uint64_t *)n->data)[p]); return 0;
        case JT_F16: return jw_double(st, n, jhalf_to_double(((const uint16_t *)n->data)[p]));
        case JT_F32: return jw_double(st, n, (double)((const float *)n->data)[p]);
        case JT_F64: return jw_double(st, n, ((const double *)n->data)[p]);
        case JT_STR: case JT_LSTR: case JT_STRVIEW: {
            int64_t len;
            const uint8_t *s = jn_bytes(n, p, &len);
            return jw_string(st, s, len);
        }
        case JT_BIN: case JT_LBIN: case JT_FSB: {
            int64_t len;
            const uint8_t *s = jn_bytes(n, p, &len);
            return jw_base64(st, s, len);
        }
        case JT_TS: return jw_timestamp(st, n, ((const int64_t *)n->data)[p]);
        case JT_DATE32:
        case JT_DATE64: {
            int64_t days = n->type == JT_DATE32 ? (int64_t)((const int32_t *)n->data)[p]
                                                : jfloordiv(((const int64_t *)n->data)[p], 86400000);
            JS_RESERVE(st, 40);
            char *o = st->buf + st->pos;
            *o++ = '"';
            o = jw_date(o, days);
            *o++ = '"';
            st->pos = o - st->buf;
            return 0;
        }
        case JT_TIME32: return jw_time(st, n, ((const int32_t *)n->data)[p]);
        case JT_TIME64: return jw_time(st, n, ((const int64_t *)n->data)[p]);
        case JT_DEC128: case JT_DEC256: case JT_DEC32: case JT_DEC64: return jw_decimal(st, n, p);
        case JT_LIST: {
            const int32_t *off = (const int32_t *)n->offsets;
            return jw_array(st, n->children[0], off[p], off[p + 1]);
        }
        case JT_LLIST: {
            const int64_t *off = (const int64_t *)n->offsets;
            return jw_array(st, n->children[0], off[p], off[p + 1]);
        }
        case JT_FSL: return jw_array(st, n->children[0], p * n->width, (p + 1) * n->width);
        case JT_MAP: {
            const int32_t *off = (const int32_t *)n->offsets;
            return jw_map(st, n, off[p], off[p + 1]);
        }
        case JT_STRUCT:
            JS_RESERVE(st, 1);
            JS_PUT(st, '{');
            if (jw_members(st, n, i)) return -1;
            JS_RESERVE(st, 1);
            JS_PUT(st, '}');
            return 0;
        case JT_DICT: return jn_write(st, n->children[0], jn_read_int(n, p));
    }
    return 0;
}

/* Writes the (non-null) value at logical index i of node n. */
static int jn_write(jstate *st, const jnode *n, int64_t i) {
    if (n->quoted) {
        JS_RESERVE(st, 1);
        JS_PUT(st, '"');
        if (jn_write_raw(st, n, i)) return -1;
        JS_RESERVE(st, 1);
        JS_PUT(st, '"');
        return 0;
    }
    return jn_write_raw(st, n, i);
}

/* Encodes rows [start, end) of the top-level node into st; offsets[k] (k = 1..end-start) receives the
 * end position (relative to st->buf) of row start+k-1. An ndjson >= 0 is a byte appended after each
 * document (and counted in its offsets): '\n' for NDJSON, ',' for encode_rows(terminator=b","), any
 * byte including NUL; -1 appends nothing. */
static int jenc_rows(jstate *st, const jnode *top, int64_t start, int64_t end, int32_t *offsets,
                     int ndjson) {
    for (int64_t r = start; r < end; r++) {
        st->row = r;
        JS_RESERVE(st, 1);
        JS_PUT(st, '{');
        if (jw_members(st, top, r)) return -1;
        JS_RESERVE(st, 2);
        JS_PUT(st, '}');
        if (ndjson >= 0) JS_PUT(st, (char)ndjson);
        if (offsets) {
            if (st->pos > INT32_MAX) {
                st->err = JE_OVERFLOW;
                return -1;
            }
            offsets[r - start + 1] = (int32_t)st->pos;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- the top-level row loop (fast path) */

/* Per-thread data for jenc_rows_flat: the rendered member prefixes ('{"key":' for the first column,
 * ',"key":' for the others, each followed by 32 bytes of padding so short ones are copied with one
 * fixed-size copy) and a date cache per timestamp column. Per thread, so nothing written in the row
 * loop is shared between threads. */
typedef struct jflat {
    int32_t ncols;
    char **prefix;
    int32_t *prefixlen;
    jdate_slot **dates; /* NULL for columns that are not timestamps */
    int64_t row_fixed;  /* bytes one row may touch, strings' text and fallback columns excluded */
} jflat;

static void jflat_free(jflat *f) {
    if (f->dates)
        for (int32_t c = 0; c < f->ncols; c++) free(f->dates[c]);
    if (f->prefix)
        for (int32_t c = 0; c < f->ncols; c++) free(f->prefix[c]);
    free(f->dates);
    free(f->prefix);
    free(f->prefixlen);
    memset(f, 0, sizeof *f);
}

static int jflat_init(jflat *f, const jnode *top) {
    int32_t nc = top->nchildren;
    memset(f, 0, sizeof *f);
    f->ncols = nc;
    f->prefix = (char **)calloc((size_t)nc + 1, sizeof(char *));
    f->prefixlen = (int32_t *)calloc((size_t)nc + 1, sizeof(int32_t));
    f->dates = (jdate_slot **)calloc((size_t)nc + 1, sizeof(jdate_slot *));
    if (!f->prefix || !f->prefixlen || !f->dates) return -1;
    f->row_fixed = 2;
    for (int32_t c = 0; c < nc; c++) {
        int32_t kl = top->keylens[c];
        f->prefix[c] = (char *)calloc((size_t)kl + 1 + 32, 1);
        if (!f->prefix[c]) return -1;
        f->prefix[c][0] = c == 0 ? '{' : ',';
        memcpy(f->prefix[c] + 1, top->keys[c], (size_t)kl);
        f->prefixlen[c] = kl + 1;
        f->row_fixed += (kl + 1 > 32 ? kl + 1 : 32) + 64;
        if (top->children[c]->type == JT_TS) {
            f->dates[c] = (jdate_slot *)malloc(sizeof(jdate_slot) * JDATE_SLOTS);
            if (!f->dates[c]) return -1;
            for (int k = 0; k < JDATE_SLOTS; k++) f->dates[c][k].day = JDATE_EMPTY;
        }
    }
    return 0;
}

/* Makes room for n more bytes at o (the write cursor, kept in a register instead of st->pos). */
#define JF_RESERVE(n) \
    do { \
        if ((int64_t)(n) > lim - o) { \
            st->pos = o - st->buf; \
            if (js_grow(st, (int64_t)(n))) return -1; \
            o = st->buf + st->pos; \
            lim = st->buf + st->cap; \
        } \
    } while (0)

/* Same output as jenc_rows, for the case where every row writes every key (no nulls="omit" with a
 * nullable column): fixed member prefixes, one capacity check per row (plus one per string), and
 * the common column types written inline; every other type goes through jn_write. */
static int jenc_rows_flat(jstate *st, const jnode *top, const jflat *f, int64_t start, int64_t end,
                          int32_t *offsets, int ndjson) {
    const int32_t nc = f->ncols;
    char *o = st->buf + st->pos;
    char *lim = st->buf + st->cap;
    for (int64_t r = start; r < end; r++) {
        JF_RESERVE(f->row_fixed);
        if (nc == 0) *o++ = '{';
        for (int32_t c = 0; c < nc; c++) {
            const jnode *ch = top->children[c];
            int32_t pl = f->prefixlen[c];
            if (pl <= 32) memcpy(o, f->prefix[c], 32);
            else memcpy(o, f->prefix[c], (size_t)pl);
            o += pl;
            if (ch->maybe_null && jn_is_null_slow(ch, r)) {
                memcpy(o, "null", 4);
                o += 4;
                continue;
            }
            int64_t p = ch->offset + r;
            switch (ch->quoted ? -1 : ch->type) {
                case JT_BOOL: {
                    int b = jbit(ch->data, p);
                    memcpy(o, b ? "true\0\0\0\0" : "false\0\0\0", 8);
                    o += 5 - b;
                    break;
                }
                case JT_I32: o += jw_i64(o, ((const int32_t *)ch->data)[p]); break;
                case JT_I64: o += jw_i64(o, ((const int64_t *)ch->data)[p]); break;
                case JT_F64:
                case JT_F32: {
                    double v = ch->type == JT_F64 ? ((const double *)ch->data)[p]
                                                  : (double)((const float *)ch->data)[p];
                    uint64_t bits;
                    memcpy(&bits, &v, 8);
                    if (((bits >> 52) & 0x7ff) == 0x7ff) {
                        if (!st->nan_null) {
                            st->pos = o - st->buf;
                            st->err = JE_NAN;
                            st->err_column = ch->column;
                            st->err_row = r;
                            return -1;
                        }
                        memcpy(o, "null", 4);
                        o += 4;
                    } else {
                        o += jd_write_double(o, v);
                    }
                    break;
                }
                case JT_STR: {
                    const int32_t *off = (const int32_t *)ch->offsets;
                    int64_t len = off[p + 1] - off[p];
                    JF_RESERVE(6 * len + f->row_fixed);
                    o = jw_str_body(o, ch->data + off[p], len);
                    break;
                }
                case JT_TS: o = jw_timestamp_to(o, ch, ((const int64_t *)ch->data)[p], f->dates[c]); break;
                default:
                    /* everything else: the generic writer, through st->pos */
                    st->pos = o - st->buf;
                    st->row = r;
                    if (jn_write(st, ch, r)) return -1;
                    o = st->buf + st->pos;
                    lim = st->buf + st->cap;
                    JF_RESERVE(f->row_fixed);
                    break;
            }
        }
        *o++ = '}';
        if (ndjson >= 0) *o++ = (char)ndjson;
        if (offsets) {
            int64_t pos = o - st->buf;
            if (pos > INT32_MAX) {
                st->pos = pos;
                st->err = JE_OVERFLOW;
                return -1;
            }
            offsets[r - start + 1] = (int32_t)pos;
        }
    }
    st->pos = o - st->buf;
    return 0;
}

/* Initial capacity for rows [start, end): fixed-width text at its maximum, strings at their byte
 * length (escapes are rare), nested types at a guess; growth (realloc, an mremap for large blocks,
 * so no copy) covers the rest. */
static int64_t jestimate(const jnode *top, int64_t start, int64_t end) {
    int64_t rows = end - start, total = 4096 + rows * 2;
    for (int32_t c = 0; c < top->nchildren; c++) {
        const jnode *ch = top->children[c];
        int64_t per = top->keylens[c] + 1;
        switch (ch->type) {
            case JT_NULL: per += 4; break;
            case JT_BOOL: per += 5; break;
            case JT_I8: case JT_U8: per += 4; break;
            case JT_I16: case JT_U16: per += 6; break;
            case JT_I32: case JT_U32: per += 11; break;
            case JT_I64: case JT_U64: per += 20; break;
            case JT_F16: case JT_F32: case JT_F64: per += 24; break;
            case JT_TS: per += 32; break;
            case JT_DATE32: case JT_DATE64: per += 12; break;
            case JT_TIME32: case JT_TIME64: per += 20; break;
            case JT_STR: {
                const int32_t *off = (const int32_t *)ch->offsets;
                per += 2;
                total += off[ch->offset + end] - off[ch->offset + start];
                break;
            }
            case JT_LSTR: {
                const int64_t *off = (const int64_t *)ch->offsets;
                per += 2;
                total += off[ch->offset + end] - off[ch->offset + start];
                break;
            }
            default: per += 48; break;
        }
        total += per * rows;
    }
    return total;
}

typedef struct jtask {
    jstate st;
    const jnode *top;
    int64_t start, end;
    int32_t *offsets; /* points at the shared offsets array, at this task's first row */
    int ndjson;       /* the byte appended after each document, or -1 for none */
} jtask;

static void *jtask_run(void *arg) {
    jtask *t = (jtask *)arg;
    /* Work on a copy of the state on this thread's stack: the tasks array is shared, and writing
     * st.pos there would bounce a cache line between the threads. */
    jstate st = t->st;
    if (st.cap == 0 && js_grow(&st, jestimate(t->top, t->start, t->end))) {
        t->st = st;
        return NULL;
    }
    int omit_possible = 0;
    for (int32_t c = 0; c < t->top->nchildren; c++)
        if (t->top->children[c]->maybe_null) omit_possible = st.omit_nulls;
    jflat f;
    if (!omit_possible) {
        if (jflat_init(&f, t->top)) st.err = JE_NOMEM;
        else jenc_rows_flat(&st, t->top, &f, t->start, t->end, t->offsets, t->ndjson);
        jflat_free(&f);
    } else {
        jenc_rows(&st, t->top, t->start, t->end, t->offsets, t->ndjson);
    }
    t->st = st;
    return NULL;
}

/* Runs ntasks tasks, the first on the calling thread and the others on new threads (af_fork_join:
 * a thread that cannot be started leaves its task to the calling thread). Returns 0. */
static int jrun_tasks(jtask *tasks, int ntasks) {
    /* The caller appends the other tasks' output to the first task's buffer: size that one for the
     * whole batch up front, so the stitch copies into pages that are already huge-page advised
     * instead of growing the block (a remap that loses the 2 MiB alignment). Virtual memory only:
     * pages are faulted in as they are written. */
    if (ntasks > 1 && tasks[0].st.cap == 0)
        js_grow(&tasks[0].st, jestimate(tasks[0].top, tasks[0].start, tasks[ntasks - 1].end));
    af_fork_join(jtask_run, tasks, sizeof(jtask), ntasks);
    return 0;
}

#endif
