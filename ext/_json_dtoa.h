/* Shortest round-trip double -> decimal text (Schubfach), written from
 * R. Giulietti, "The Schubfach way to render doubles" (2020).
 *
 * jd_write_double(buf, v) writes the same text as Python's repr(float) for every finite double:
 * the shortest digit string that reads back to the identical double (closest to the exact value,
 * ties to even digit), in fixed notation when -4 < decimal point <= 16 ("0.1", "1234.5", "100.0",
 * "0.0001") and scientific otherwise ("1e+16", "1.5e-07", "5e-324"). At most 25 bytes of text, 48 touched;
 * NaN and infinities must be handled by the caller (JSON has no text for them).
 *
 * Why Schubfach: one 128x64-bit multiply per boundary, no bignums, no trial-and-error digit loop,
 * and a 617-entry table (ext/_json_dtoa_table.h) generated with exact rational arithmetic.
 */
#ifndef ARROWFLOW_JSON_DTOA_H
#define ARROWFLOW_JSON_DTOA_H

#include <stdint.h>
#include <string.h>

#include "_json_dtoa_table.h"

static const char jd_digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* floor(log10(2^e)), floor(log10(3/4 * 2^e)), floor(log2(10^e)): exact on the ranges used here
 * (checked against exact rationals for |e| <= 1100 resp. 330). */
static inline int32_t jd_floor_log10_pow2(int32_t e) { return (e * 1262611) >> 22; }
static inline int32_t jd_floor_log10_three_quarters_pow2(int32_t e) { return (e * 1262611 - 524031) >> 22; }
static inline int32_t jd_floor_log2_pow10(int32_t e) { return (e * 1741647) >> 19; }

/* floor(g * cp / 2^128), with the lowest bit forced to 1 when the discarded part is non-zero
 * ("round to odd" keeps enough information for the exact comparisons that follow). */
static inline uint64_t jd_round_to_odd(const uint64_t g[2], uint64_t cp) {
    unsigned __int128 x = (unsigned __int128)g[1] * cp;
    unsigned __int128 y = (unsigned __int128)g[0] * cp + (uint64_t)(x >> 64);
    uint64_t y1 = (uint64_t)(y >> 64);
    uint64_t y0 = (uint64_t)y;
    return y1 | (y0 > 1);
}

static inline uint64_t jd_rotr(uint64_t n, int r) { return (n >> r) | (n << (64 - r)); }

/* Divides the non-zero *m by 10 as often as it divides evenly; returns how often. No division: m is
 * divisible by 10^k iff rotr(m * 5^-k mod 2^64, k) <= (2^64 - 1) / 10^k, and then that value is
 * m / 10^k (the Granlund-Montgomery test Dragonbox uses). Steps of 8 while they divide, then one
 * step each of 4, 2, 1 (fewer than 8 zeros remain, so those steps remove exactly the rest). */
static inline int32_t jd_strip_zeros(uint64_t *m) {
    uint64_t v = *m, q;
    int32_t e = 0;
    while ((q = jd_rotr(v * 0xc767074b22e90e21ULL, 8)) <= 0x2af31dc461ULL) {
        v = q;
        e += 8;
    }
    if ((q = jd_rotr(v * 0xd288ce703afb7e91ULL, 4)) <= 0x68db8bac710cbULL) {
        v = q;
        e += 4;
    }
    if ((q = jd_rotr(v * 0x8f5c28f5c28f5c29ULL, 2)) <= 0x28f5c28f5c28f5cULL) {
        v = q;
        e += 2;
    }
    if ((q = jd_rotr(v * 0xcccccccccccccccdULL, 1)) <= 0x1999999999999999ULL) {
        v = q;
        e += 1;
    }
    *m = v;
    return e;
}

/* Decompose a finite, non-zero |v| into digits * 10^exp10 (digits has no trailing zeros). */
static inline void jd_to_decimal(uint64_t bits, uint64_t *digits, int32_t *exp10) {
    uint64_t ieee_mant = bits & ((1ULL << 52) - 1);
    uint32_t ieee_exp = (uint32_t)((bits >> 52) & 0x7ff);
    uint64_t c;
    int32_t q;
    if (ieee_exp != 0) {
        c = (1ULL << 52) | ieee_mant;
        q = (int32_t)ieee_exp - 1075;
        /* Small integers: exact, and the common case for integer-valued data. */
        if (q <= 0 && q >= -52 && (c & ((1ULL << -q) - 1)) == 0) {
            uint64_t m = c >> -q;
            *exp10 = jd_strip_zeros(&m);
            *digits = m;
            return;
        }
    } else {
        c = ieee_mant;
        q = -1074;
    }
    int even = (c & 1) == 0;
    int lower_closer = (ieee_mant == 0 && ieee_exp > 1);
    int32_t k = lower_closer ? jd_floor_log10_three_quarters_pow2(q) : jd_floor_log10_pow2(q);
    int32_t h = q + jd_floor_log2_pow10(-k) + 1; /* in [1, 4] */
    const uint64_t *g = jd_g_table[-k - JD_G_MIN];
    uint64_t cb = c << 2;
    uint64_t cbl = cb - 2 + (uint64_t)lower_closer;
    uint64_t cbr = cb + 2;
    uint64_t vbl = jd_round_to_odd(g, cbl << h);
    uint64_t vb = jd_round_to_odd(g, cb << h);
    uint64_t vbr = jd_round_to_odd(g, cbr << h);
    uint64_t lower = vbl + !even;
    uint64_t upper = vbr - !even;
    uint64_t s = vb >> 2;
    uint64_t out;
    int32_t e10;
    if (s >= 10) {
        /* At most one multiple of 10^(k+1) fits in the rounding interval; prefer it (shorter). */
        uint64_t sp = s / 10;
        int up_inside = lower <= 40 * sp;
        int wp_inside = 40 * sp + 40 <= upper;
        if (up_inside != wp_inside) {
            out = sp + (uint64_t)wp_inside;
            e10 = k + 1;
            goto strip;
        }
    }
    {
        int u_inside = lower <= 4 * s;
        int w_inside = 4 * s + 4 <= upper;
        if (u_inside != w_inside) {
            out = s + (uint64_t)w_inside;
            e10 = k;
            goto strip;
        }
        uint64_t mid = 4 * s + 2;
        int round_up = vb > mid || (vb == mid && (s & 1) != 0);
        out = s + (uint64_t)round_up;
        e10 = k;
    }
strip:
    e10 += jd_strip_zeros(&out);
    *digits = out;
    *exp10 = e10;
}

static const uint64_t jd_pow10[20] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
    1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL,
    100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
    1000000000000000000ULL, 10000000000000000000ULL};

/* Number of decimal digits of v (1 for 0). */
static inline int jd_count_digits(uint64_t v) {
    v |= 1; /* 0 has one digit; setting the low bit never changes a non-zero count */
    int t = ((64 - __builtin_clzll(v)) * 1233) >> 12;
    return t - (v < jd_pow10[t]) + 1;
}

/* Writes exactly the digits of m right to left, ending just before end (8-digit chunks in 32-bit
 * arithmetic, then digit pairs). */
static inline void jd_write_digits_rtl(char *end, uint64_t m) {
    while (m >= 100000000ULL) {
        uint32_t lo = (uint32_t)(m % 100000000ULL);
        m /= 100000000ULL;
        uint32_t a = lo / 10000, b = lo % 10000;
        memcpy(end - 2, jd_digit_pairs + 2 * (b % 100), 2);
        memcpy(end - 4, jd_digit_pairs + 2 * (b / 100), 2);
        memcpy(end - 6, jd_digit_pairs + 2 * (a % 100), 2);
        memcpy(end - 8, jd_digit_pairs + 2 * (a / 100), 2);
        end -= 8;
    }
    uint32_t v = (uint32_t)m;
    while (v >= 100) {
        end -= 2;
        memcpy(end, jd_digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        memcpy(end - 2, jd_digit_pairs + 2 * v, 2);
    } else {
        end[-1] = (char)('0' + v);
    }
}

/* The 8 decimal digits of v < 10^8 (zero padded), one per byte, first digit in the lowest byte: i.e.
 * the little-endian word whose bytes are the digits in reading order, before adding '0'. SWAR: split
 * into two 4-digit halves (32-bit lanes), each into 2-digit pairs (16-bit lanes), each into digits
 * (bytes); the divisions by 100 and 10 are multiply-shifts exact for these ranges (< 10^4 resp. < 100),
 * and no lane overflows into its neighbour. */
static inline uint64_t jd_swar8_raw(uint32_t v) {
    uint64_t x = (uint64_t)(v / 10000) | ((uint64_t)(v % 10000) << 32);
    uint64_t q = ((x * 10486) >> 20) & 0x0000007F0000007FULL;
    x = q | ((x - 100 * q) << 16);
    q = ((x * 103) >> 10) & 0x000F000F000F000FULL;
    return q | ((x - 10 * q) << 8);
}

#define JD_ASCII_ZEROS 0x3030303030303030ULL

/* Stores exactly 8 digits of v < 10^8, zero padded. */
static inline void jd_write_8digits(char *p, uint32_t v) {
    uint64_t w = jd_swar8_raw(v) | JD_ASCII_ZEROS;
    memcpy(p, &w, 8);
}

/* Writes v < 10^8 without leading zeros ("0" for 0); returns the count. Always stores 8 bytes. */
static inline int jd_write_u32_short(char *p, uint32_t v) {
    uint64_t r = jd_swar8_raw(v);
    /* leading zero digits are the low zero bytes of r; keep at least one digit */
    int lz = r ? (__builtin_ctzll(r) >> 3) : 7;
    uint64_t w = (r | JD_ASCII_ZEROS) >> (8 * lz);
    memcpy(p, &w, 8);
    return 8 - lz;
}

/* Writes the decimal digits of m (no leading zeros) to p; returns the count (<= 20). Stores up to 24
 * bytes from p (whole 8-byte words past the last digit): callers reserve that much. */
static inline int jd_write_u64_digits(char *p, uint64_t m) {
    if (m < 100000000ULL) return jd_write_u32_short(p, (uint32_t)m);
    if (m < 10000000000000000ULL) {
        uint64_t hi = m / 100000000ULL;
        int n = jd_write_u32_short(p, (uint32_t)hi);
        jd_write_8digits(p + n, (uint32_t)(m - hi * 100000000ULL));
        return n + 8;
    }
    uint64_t hi = m / 10000000000000000ULL; /* <= 1844 */
    uint64_t rest = m - hi * 10000000000000000ULL;
    uint64_t mid = rest / 100000000ULL;
    int n = jd_write_u32_short(p, (uint32_t)hi);
    jd_write_8digits(p + n, (uint32_t)mid);
    jd_write_8digits(p + n + 8, (uint32_t)(rest - mid * 100000000ULL));
    return n + 16;
}

/* Python repr() text of a finite double. Returns bytes written (<= 25); p must have 48 writable
 * bytes (fixed-size copies overshoot the text; that is cheaper than exact-length memcpy calls). */
static inline int jd_write_double(char *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    char *start = p;
    if (bits >> 63) *p++ = '-';
    if ((bits << 1) == 0) {
        memcpy(p, "0.0", 3);
        return (int)(p - start) + 3;
    }
    uint64_t digits;
    int32_t e10;
    jd_to_decimal(bits, &digits, &e10);
    char d[48]; /* the digits, then slack for the 8-byte stores and 16-byte copies below */
    int n = jd_write_u64_digits(d, digits);
    int decpt = n + e10; /* value = 0.d1d2...dn * 10^decpt */
    if (decpt > 0 && decpt <= 16) {
        if (decpt >= n) {
            /* integer-valued: digits, zeros up to the point, ".0" */
            memcpy(p, d, 24);
            memcpy(p + n, "0000000000000000", 16);
            p += decpt;
            p[0] = '.';
            p[1] = '0';
            p += 2;
        } else {
            /* digits, then the tail again one to the right to open a slot for the point */
            memcpy(p, d, 16);
            p[decpt] = '.';
            memcpy(p + decpt + 1, d + decpt, 16);
            p += n + 1;
        }
    } else if (decpt <= 0 && decpt > -4) {
        memcpy(p, "0.000", 5);
        p += 2 - decpt;
        memcpy(p, d, 24);
        p += n;
    } else {
        *p++ = d[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, d + 1, 16);
            p += n - 1;
        }
        int x = decpt - 1;
        *p++ = 'e';
        if (x < 0) {
            *p++ = '-';
            x = -x;
        } else {
            *p++ = '+';
        }
        if (x >= 100) {
            *p++ = (char)('0' + x / 100);
            x %= 100;
        }
        memcpy(p, jd_digit_pairs + 2 * x, 2);
        p += 2;
    }
    return (int)(p - start);
}

#endif
