/* DataGen fill loops (see ext/datagen.pyx for the contract).
 *
 * Randomness is counter-based: word(key, c) is the c-th output of SplitMix64 seeded with key,
 * i.e. mix64(key + (c + 1) * GAMMA). Every value is a pure function of (key, counter), so any
 * row range can be generated on its own: that gives prefix consistency, resumption anywhere and
 * splitting one column across threads for free. */
#ifndef AF_DATAGEN_H
#define AF_DATAGEN_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_threads.h"

#define DG_GAMMA 0x9E3779B97F4A7C15ULL

static inline uint64_t dg_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t dg_word(uint64_t key, uint64_t c) { return dg_mix64(key + (c + 1) * DG_GAMMA); }

/* [0, 1) with 53 random bits. */
static inline double dg_unit(uint64_t w) { return (double)(w >> 11) * 0x1.0p-53; }
/* (0, 1): never 0, so its log is finite. */
static inline double dg_unit_open(uint64_t w) { return ((double)(w >> 11) + 0.5) * 0x1.0p-53; }

static inline uint64_t dg_mulhi(uint64_t a, uint64_t b) {
    return (uint64_t)(((__uint128_t)a * b) >> 64);
}

enum { DG_INT = 0, DG_FLOAT = 1, DG_NORMAL = 2, DG_BITS = 3, DG_OFFSETS = 4, DG_BYTES = 5, DG_SEQ = 6 };

typedef struct {
    int kind;
    int width;            /* bytes per value (INT: 1/2/4/8, FLOAT: 4/8); OFFSETS: 4 or 8 */
    uint64_t key, key2;
    int64_t lo, hi;       /* the counter range this task fills: rows, or bytes for DG_BYTES */
    uint64_t ulow, span;  /* INT: low (two's complement), span = high - low + 1 (0 = 2**64);
                             SEQ: value of row 0 and step (two's complement, wrapping) */
    double a, b;          /* FLOAT: low, high; NORMAL: mean, std */
    uint64_t thr;         /* BITS: a row's bit is (u32 < thr) ^ invert */
    int invert;
    const uint8_t *alphabet; /* BYTES */
    uint64_t k;           /* BYTES: alphabet size */
    int digits;           /* BYTES: characters taken from one word */
    int shift;            /* BYTES: log2(k) when k is a power of two, else 0 */
    const uint16_t *pair; /* BYTES with k == 64: dg_build_pairs of the alphabet */
    void *out;            /* the whole output buffer (tasks index it with their counter range) */
    int64_t result;       /* BITS: bits set; OFFSETS: total length */
} dg_task;

/* ---- normal: Doornik's ZIGNOR ziggurat, 256 layers ------------------------------------------ */

#define DG_ZIG_C 256
#define DG_ZIG_R 3.6541528853610088
#define DG_ZIG_V 0.00492867323399

static double dg_zig_x[DG_ZIG_C + 1];
static double dg_zig_r[DG_ZIG_C];

static void dg_zig_init(void) {
    double f = exp(-0.5 * DG_ZIG_R * DG_ZIG_R);
    dg_zig_x[0] = DG_ZIG_V / f;
    dg_zig_x[1] = DG_ZIG_R;
    dg_zig_x[DG_ZIG_C] = 0.0;
    for (int i = 2; i < DG_ZIG_C; i++) {
        dg_zig_x[i] = sqrt(-2.0 * log(DG_ZIG_V / dg_zig_x[i - 1] + f));
        f = exp(-0.5 * dg_zig_x[i] * dg_zig_x[i]);
    }
    for (int i = 0; i < DG_ZIG_C; i++) dg_zig_r[i] = dg_zig_x[i + 1] / dg_zig_x[i];
}

/* The slow path of row c (about 1.3% of rows): extra words come from a per-row SplitMix64
 * stream seeded with mix64(key2 ^ c), so the row's value still depends on c alone. */
static double dg_normal_slow(uint64_t key2, uint64_t c, double u, int i) {
    uint64_t sub = dg_mix64(key2 ^ c);
    uint64_t j = 0;
    for (;;) {
        if (i == 0) {
            double x, y;
            do {
                x = log(dg_unit_open(dg_word(sub, j++))) / DG_ZIG_R;
                y = log(dg_unit_open(dg_word(sub, j++)));
            } while (-2.0 * y < x * x);
            return u < 0 ? x - DG_ZIG_R : DG_ZIG_R - x;
        }
        double x = u * dg_zig_x[i];
        double f0 = exp(-0.5 * (dg_zig_x[i] * dg_zig_x[i] - x * x));
        double f1 = exp(-0.5 * (dg_zig_x[i + 1] * dg_zig_x[i + 1] - x * x));
        if (f1 + dg_unit(dg_word(sub, j++)) * (f0 - f1) < 1.0) return x;
        uint64_t w = dg_word(sub, j++);
        u = 2.0 * dg_unit(w) - 1.0;
        i = (int)(w & 0xFF);
        if (fabs(u) < dg_zig_r[i]) return u * dg_zig_x[i];
    }
}

static inline double dg_normal(uint64_t key, uint64_t key2, uint64_t c) {
    uint64_t w = dg_word(key, c);
    double u = 2.0 * dg_unit(w) - 1.0;
    int i = (int)(w & 0xFF); /* the low 8 bits: disjoint from the 53 bits behind u */
    if (fabs(u) < dg_zig_r[i]) return u * dg_zig_x[i];
    return dg_normal_slow(key2, c, u, i);
}

/* ---- the fill loops --------------------------------------------------------------------------- */
/* Every loop reads the task into locals first: the build uses -fno-strict-aliasing, so a store
 * through an output pointer could alias the task and would force a reload per row otherwise. */

#define DG_INT_LOOP(T)                                                                        \
    do {                                                                                      \
        T *out = (T *)t->out;                                                                 \
        for (int64_t c = lo; c < hi; c++) {                                                   \
            uint64_t w = dg_word(key, (uint64_t)c);                                           \
            out[c] = (T)(low + (span ? dg_mulhi(w, span) : w));                               \
        }                                                                                     \
    } while (0)

static void dg_fill_int(dg_task *t) {
    const uint64_t low = t->ulow, span = t->span, key = t->key;
    const int64_t lo = t->lo, hi = t->hi;
    switch (t->width) {
        case 1: DG_INT_LOOP(uint8_t); break;
        case 2: DG_INT_LOOP(uint16_t); break;
        case 4: DG_INT_LOOP(uint32_t); break;
        default: DG_INT_LOOP(uint64_t); break;
    }
}

static void dg_fill_seq(dg_task *t) {
    uint64_t *out = (uint64_t *)t->out;
    const uint64_t first = t->ulow, step = t->span;
    const int64_t lo = t->lo, hi = t->hi;
    for (int64_t c = lo; c < hi; c++) out[c] = first + step * (uint64_t)c;
}

static void dg_fill_float(dg_task *t) {
    const double low = t->a, high = t->b, scale = t->b - t->a;
    const uint64_t key = t->key;
    const int64_t lo = t->lo, hi = t->hi;
    if (t->width == 8) {
        const double below = nextafter(high, -INFINITY);
        double *out = (double *)t->out;
        for (int64_t c = lo; c < hi; c++) {
            double v = low + scale * dg_unit(dg_word(key, (uint64_t)c));
            /* Rounding can land on high itself; the interval is half-open. */
            out[c] = (v >= high && high > low) ? below : v;
        }
    } else {
        const float fhigh = (float)high;
        const float below = nextafterf(fhigh, -INFINITY);
        float *out = (float *)t->out;
        for (int64_t c = lo; c < hi; c++) {
            float v = (float)(low + scale * dg_unit(dg_word(key, (uint64_t)c)));
            out[c] = (v >= fhigh && high > low) ? below : v;
        }
    }
}

static void dg_fill_normal(dg_task *t) {
    double *out = (double *)t->out;
    const double mean = t->a, std = t->b;
    const uint64_t key = t->key, key2 = t->key2;
    const int64_t lo = t->lo, hi = t->hi;
    for (int64_t c = lo; c < hi; c++) out[c] = mean + std * dg_normal(key, key2, (uint64_t)c);
}

/* Row r's bit comes from 32 bits of word r / 2 (low half for even rows). The task covers whole
 * bytes: lo is a multiple of 8 and hi is either a multiple of 8 or the row count. */
static void dg_fill_bits(dg_task *t) {
    uint8_t *out = (uint8_t *)t->out;
    const uint64_t thr = t->thr, key = t->key;
    const uint8_t flip = t->invert ? 0xFF : 0x00;
    const int64_t hi = t->hi;
    int64_t set = 0;
    int64_t r = t->lo;
    for (; r + 8 <= hi; r += 8) {
        unsigned byte = 0;
        for (int q = 0; q < 4; q++) {
            uint64_t w = dg_word(key, (uint64_t)(r / 2 + q));
            byte |= (unsigned)((w & 0xFFFFFFFFULL) < thr) << (2 * q);
            byte |= (unsigned)((w >> 32) < thr) << (2 * q + 1);
        }
        byte = (byte ^ flip) & 0xFF;
        out[r >> 3] = (uint8_t)byte;
        set += __builtin_popcount(byte);
    }
    if (r < hi) {
        unsigned byte = 0;
        for (int64_t s = r; s < hi; s++) {
            uint64_t w = dg_word(key, (uint64_t)(s / 2));
            uint64_t u = (s & 1) ? (w >> 32) : (w & 0xFFFFFFFFULL);
            byte |= (unsigned)(u < thr) << (s - r);
        }
        byte ^= flip & ((1u << (hi - r)) - 1); /* padding bits stay 0 */
        out[r >> 3] = (uint8_t)byte;
        set += __builtin_popcount(byte);
    }
    t->result = set;
}

/* Lengths uniform in [min, min + span - 1] -> offsets (out[0] = 0). Sequential: the prefix sum. */
static void dg_fill_offsets(dg_task *t) {
    int64_t total = 0;
    const int64_t lo = (int64_t)t->ulow, n = t->hi;
    const uint64_t span = t->span, key = t->key;
    if (t->width == 4) {
        int32_t *out = (int32_t *)t->out;
        out[0] = 0;
        for (int64_t c = 0; c < n; c++) {
            total += lo + (int64_t)dg_mulhi(dg_word(key, (uint64_t)c), span);
            out[c + 1] = (int32_t)total;
        }
    } else {
        int64_t *out = (int64_t *)t->out;
        out[0] = 0;
        for (int64_t c = 0; c < n; c++) {
            total += lo + (int64_t)dg_mulhi(dg_word(key, (uint64_t)c), span);
            out[c + 1] = total;
        }
    }
    t->result = total;
}

/* Only the total (to size the offsets): the same lengths as dg_fill_offsets. */
static int64_t dg_total_length(uint64_t key, int64_t n, int64_t lo, uint64_t span) {
    int64_t total = 0;
    for (int64_t c = 0; c < n; c++) total += lo + (int64_t)dg_mulhi(dg_word(key, (uint64_t)c), span);
    return total;
}

/* Two characters per lookup for a 64-character alphabet: pair[v] holds the characters of the
 * 12-bit field v (digit m in the low byte, m + 1 in the high one, as they sit in memory). Built
 * once per column, outside the chunks. */
static void dg_build_pairs(const uint8_t *alpha, uint16_t *pair) {
    for (int v = 0; v < 4096; v++) pair[v] = (uint16_t)(alpha[v >> 6] | ((uint16_t)alpha[v & 63] << 8));
}

/* Byte j of the data is digit j % digits of word j / digits. Digit m of w is
 * floor(k * frac(w * k**m / 2**64)): the base-k digits of w / 2**64, exact for a power of two
 * (a shift and a mask) and within k**digits / 2**64 of uniform otherwise. */
static void dg_fill_bytes(dg_task *t) {
    uint8_t *out = (uint8_t *)t->out;
    const uint8_t *alpha = t->alphabet;
    const int d = t->digits;
    const uint64_t key = t->key, k = t->k;
    const int64_t hi = t->hi;
    int64_t j = t->lo;
    if (k == 1) {
        memset(out + j, alpha[0], (size_t)(hi - j));
        return;
    }
    uint64_t c = (uint64_t)(j / d);
    int m0 = (int)(j % d);
    if (t->shift) {
        const int b = t->shift;
        const uint64_t mask = k - 1;
        /* A partial first word, then whole words, then a partial last one. */
        if (m0) {
            uint64_t w = dg_word(key, c++);
            for (int m = m0; m < d && j < hi; m++) out[j++] = alpha[(w >> (64 - b * (m + 1))) & mask];
        }
        if (b == 6 && t->pair != NULL) {
            const uint16_t *pair = t->pair;
            for (; j + 10 <= hi; j += 10) {
                uint64_t w = dg_word(key, c++);
                uint8_t *o = out + j;
                uint16_t p0 = pair[(w >> 52) & 4095], p1 = pair[(w >> 40) & 4095],
                         p2 = pair[(w >> 28) & 4095], p3 = pair[(w >> 16) & 4095],
                         p4 = pair[(w >> 4) & 4095];
                memcpy(o, &p0, 2); memcpy(o + 2, &p1, 2); memcpy(o + 4, &p2, 2);
                memcpy(o + 6, &p3, 2); memcpy(o + 8, &p4, 2);
            }
        }
        while (j < hi) {
            uint64_t w = dg_word(key, c++);
            for (int m = 0; m < d && j < hi; m++) out[j++] = alpha[(w >> (64 - b * (m + 1))) & mask];
        }
    } else {
        while (j < hi) {
            uint64_t w = dg_word(key, c++);
            /* Skip to digit m0 of the first word. */
            for (int m = 0; m < m0; m++) w *= k;
            for (int m = m0; m < d && j < hi; m++) {
                __uint128_t p = (__uint128_t)w * k;
                out[j++] = alpha[(uint64_t)(p >> 64)];
                w = (uint64_t)p;
            }
            m0 = 0;
        }
    }
}

static void dg_run_task(dg_task *t) {
    switch (t->kind) {
        case DG_INT: dg_fill_int(t); break;
        case DG_FLOAT: dg_fill_float(t); break;
        case DG_NORMAL: dg_fill_normal(t); break;
        case DG_BITS: dg_fill_bits(t); break;
        case DG_OFFSETS: dg_fill_offsets(t); break;
        case DG_BYTES: dg_fill_bytes(t); break;
        case DG_SEQ: dg_fill_seq(t); break;
    }
}

typedef struct {
    dg_task *tasks;
    int ntasks;
    int next; /* the next task to take (atomic) */
} dg_queue;

static void *dg_worker(void *arg) {
    dg_queue *q = (dg_queue *)arg;
    for (;;) {
        int i = __atomic_fetch_add(&q->next, 1, __ATOMIC_RELAXED);
        if (i >= q->ntasks) return NULL;
        dg_run_task(&q->tasks[i]);
    }
}

/* Runs the tasks (largest first is the caller's job) on `threads` threads including the calling
 * one, taking them from a shared queue. A thread that cannot be started is simply not used. */
static void dg_run_tasks(dg_task *tasks, int ntasks, int threads) {
    dg_queue q = {tasks, ntasks, 0};
    if (threads > 16) threads = 16;
    if (threads > ntasks) threads = ntasks;
    af_fork_join(dg_worker, &q, 0, threads); /* every thread takes tasks from the one queue */
}

/* Runs whole-column tasks on `threads` threads, cutting every splittable one into chunks of
 * `chunk` counter units (rows; bytes for DG_BYTES get 4 * chunk) so that a thread the OS does not
 * schedule promptly leaves little work behind: the others take the remaining chunks. Offsets
 * (a prefix sum) stay whole. BITS results are summed back into cols[i].result. Returns -1 when
 * out of memory (nothing was run), else 0. */
static int dg_run_chunked(dg_task *cols, int ncols, int threads, int64_t chunk) {
    if (threads <= 1) {
        for (int i = 0; i < ncols; i++) dg_run_task(&cols[i]);
        return 0;
    }
    int64_t count = 0;
    for (int i = 0; i < ncols; i++) {
        int64_t size = cols[i].kind == DG_BYTES ? 4 * chunk : chunk;
        int64_t len = cols[i].hi - cols[i].lo;
        count += (cols[i].kind == DG_OFFSETS || len <= size) ? 1 : (len + size - 1) / size;
    }
    dg_task *tasks = (dg_task *)malloc(sizeof(dg_task) * (size_t)(count ? count : 1));
    int *owner = (int *)malloc(sizeof(int) * (size_t)(count ? count : 1));
    if (tasks == NULL || owner == NULL) {
        free(tasks);
        free(owner);
        return -1;
    }
    int64_t k = 0;
    for (int i = 0; i < ncols; i++) {
        int64_t size = cols[i].kind == DG_BYTES ? 4 * chunk : chunk;
        if (cols[i].kind == DG_OFFSETS || cols[i].hi - cols[i].lo <= size) {
            tasks[k] = cols[i];
            owner[k++] = i;
            continue;
        }
        for (int64_t lo = cols[i].lo; lo < cols[i].hi; lo += size) {
            tasks[k] = cols[i];
            tasks[k].lo = lo;
            tasks[k].hi = lo + size < cols[i].hi ? lo + size : cols[i].hi;
            owner[k++] = i;
        }
    }
    dg_run_tasks(tasks, (int)count, threads);
    for (int i = 0; i < ncols; i++)
        if (cols[i].kind != DG_OFFSETS) cols[i].result = 0;
    for (int64_t j = 0; j < count; j++)
        if (tasks[j].kind == DG_OFFSETS) cols[owner[j]].result = tasks[j].result;
        else cols[owner[j]].result += tasks[j].result;
    free(tasks);
    free(owner);
    return 0;
}

#endif
