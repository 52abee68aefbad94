/* NATS client protocol frames -> message spans, and JetStream ack subjects -> numbers (the kernel
 * behind ext/nats_frames.pyx).
 *
 * A server sends a client, one after the other:
 *   MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n
 *   HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>\r\n<headers><payload>\r\n
 * and control lines (PING, PONG, +OK, -ERR ..., INFO {...}). afn_scan walks complete message frames
 * and records, per message, where its subject, reply subject and payload (headers excluded) are. It
 * stops, without consuming it, at the first frame it does not take: a control line, a status message
 * (an HMSG without reply subject whose header line is "NATS/1.0 <3-digit code>": JetStream's 404/408/
 * 409 answers to a pull request), an incomplete frame (more bytes needed), a malformed one, or once it
 * recorded `max_msgs` messages. The caller handles what it stopped at and calls again.
 *
 * afn_ack_numbers reads a JetStream ack subject ($JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
 * <consumer seq>.<timestamp ns>.<pending>, or the 11/12-token form with domain and account hash) into
 * its numbers.
 */
#ifndef AF_NATS_FRAMES_H
#define AF_NATS_FRAMES_H

#include <stdint.h>
#include <string.h>

enum { AFN_MORE = 0, AFN_FULL = 1, AFN_CONTROL = 2, AFN_STATUS = 3, AFN_BAD = 4 };
/* Fields recorded per message. */
enum { AFN_SUBJ_OFF, AFN_SUBJ_LEN, AFN_REPLY_OFF, AFN_REPLY_LEN, AFN_DATA_OFF, AFN_DATA_LEN, AFN_NFIELDS };
/* A protocol line longer than this without its \r\n is malformed (subjects are short). */
#define AFN_MAX_LINE 65536
#define AFN_MAX_SIZE ((int64_t)1 << 40)

static inline int afn_space(uint8_t c) { return c == ' ' || c == '\t'; }

/* Decimal digits [p, e) -> value; -1 when empty, not all digits, or over INT64_MAX. */
static inline int64_t afn_uint(const uint8_t *p, const uint8_t *e) {
    if (p >= e || e - p > 19) return -1;
    int64_t v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9') return -1;
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    return v;
}

typedef struct {
    int64_t pos;        /* where the scan stopped (start of the frame not taken) */
    int64_t ctl_end;    /* AFN_CONTROL / AFN_STATUS: end of that frame (after its \r\n); -1 if incomplete */
    int64_t status;     /* AFN_STATUS: the code */
    int64_t subj_off;   /* AFN_STATUS: its subject */
    int64_t subj_len;
} afn_stop;

/* Scan [start, end) of `buf`; record at most `max_msgs` messages into `out` (AFN_NFIELDS int64 each,
 * offsets relative to `buf`). Returns the stop reason; *count is the number recorded. */
static int afn_scan(const uint8_t *buf, int64_t start, int64_t end, int64_t max_msgs, int64_t *out,
                    int64_t *count, afn_stop *stop) {
    int64_t p = start;
    int64_t k = 0;
    int rc;
    stop->ctl_end = -1;
    stop->status = 0;
    stop->subj_off = stop->subj_len = 0;
    for (;;) {
        if (k >= max_msgs) { rc = AFN_FULL; break; }
        if (p >= end) { rc = AFN_MORE; break; }
        const uint8_t *line = buf + p;
        int64_t avail = end - p;
        int hmsg;
        if (avail >= 4 && memcmp(line, "MSG", 3) == 0 && afn_space(line[3])) hmsg = 0;
        else if (avail >= 5 && memcmp(line, "HMSG", 4) == 0 && afn_space(line[4])) hmsg = 1;
        else if (avail < 5 && (memcmp(line, "HMSG", (size_t)avail) == 0 || memcmp(line, "MSG ", (size_t)avail) == 0)) {
            rc = AFN_MORE; /* a frame's first bytes */
            break;
        } else {
            /* A control line: report where it ends (if it is complete). */
            const uint8_t *nl = memchr(line, '\n', (size_t)(avail < AFN_MAX_LINE ? avail : AFN_MAX_LINE));
            stop->ctl_end = nl ? (nl - buf) + 1 : -1;
            rc = (!nl && avail >= AFN_MAX_LINE) ? AFN_BAD : AFN_CONTROL;
            break;
        }
        const uint8_t *nl = memchr(line, '\n', (size_t)(avail < AFN_MAX_LINE ? avail : AFN_MAX_LINE));
        if (!nl) { rc = avail >= AFN_MAX_LINE ? AFN_BAD : AFN_MORE; break; }
        if (nl == line || nl[-1] != '\r') { rc = AFN_BAD; break; }
        /* Tokens between the verb and \r\n. */
        const uint8_t *tok[6], *tend[6];
        int nt = 0;
        const uint8_t *q = line + (hmsg ? 5 : 4), *le = nl - 1;
        while (q < le) {
            while (q < le && afn_space(*q)) q++;
            if (q >= le) break;
            if (nt == 6) { nt = 7; break; }
            tok[nt] = q;
            while (q < le && !afn_space(*q)) q++;
            tend[nt] = q;
            nt++;
        }
        int64_t hdr = 0, total;
        const uint8_t *rs = NULL, *re = NULL;
        if (!hmsg) {
            if (nt != 3 && nt != 4) { rc = AFN_BAD; break; }
            if (nt == 4) { rs = tok[2]; re = tend[2]; }
            total = afn_uint(tok[nt - 1], tend[nt - 1]);
        } else {
            if (nt != 4 && nt != 5) { rc = AFN_BAD; break; }
            if (nt == 5) { rs = tok[2]; re = tend[2]; }
            hdr = afn_uint(tok[nt - 2], tend[nt - 2]);
            total = afn_uint(tok[nt - 1], tend[nt - 1]);
            if (hdr < 0 || total < 0 || hdr > total) { rc = AFN_BAD; break; }
        }
        if (total < 0 || total > AFN_MAX_SIZE) { rc = AFN_BAD; break; }
        int64_t body = (nl - buf) + 1;
        if (end - body < total + 2) { rc = AFN_MORE; break; }
        if (buf[body + total] != '\r' || buf[body + total + 1] != '\n') { rc = AFN_BAD; break; }
        if (hmsg && rs == NULL && hdr >= 12 && memcmp(buf + body, "NATS/1.0 ", 9) == 0) {
            int64_t code = afn_uint(buf + body + 9, buf + body + 12);
            if (code >= 0 && (hdr == 12 || afn_space(buf[body + 12]) || buf[body + 12] == '\r')) {
                stop->ctl_end = body + total + 2;
                stop->status = code;
                stop->subj_off = tok[0] - buf;
                stop->subj_len = tend[0] - tok[0];
                rc = AFN_STATUS;
                break;
            }
        }
        int64_t *f = out + k * AFN_NFIELDS;
        f[AFN_SUBJ_OFF] = tok[0] - buf;
        f[AFN_SUBJ_LEN] = tend[0] - tok[0];
        f[AFN_REPLY_OFF] = rs ? rs - buf : 0;
        f[AFN_REPLY_LEN] = rs ? re - rs : 0;
        f[AFN_DATA_OFF] = body + hdr;
        f[AFN_DATA_LEN] = total - hdr;
        k++;
        p = body + total + 2;
    }
    stop->pos = p;
    *count = k;
    return rc;
}

/* A JetStream ack subject [s, s + n) -> delivered, stream seq, consumer seq, timestamp (ns), pending.
 * Returns 0, or -1 when it is not one. */
static int afn_ack_numbers(const uint8_t *s, int64_t n, int64_t *nums) {
    if (n < 8 || memcmp(s, "$JS.ACK.", 8) != 0) return -1;
    const uint8_t *tok[13], *tend[13];
    int nt = 0;
    const uint8_t *q = s, *e = s + n;
    while (nt < 13) {
        const uint8_t *d = memchr(q, '.', (size_t)(e - q));
        tok[nt] = q;
        tend[nt] = d ? d : e;
        nt++;
        if (!d) break;
        q = d + 1;
    }
    if (tend[nt - 1] != e) return -1; /* more than 13 tokens */
    /* 9 tokens: $JS.ACK.<stream>.<consumer>.<5 numbers>; 11: $JS.ACK.<domain>.<account hash>.<stream>.
     * <consumer>.<5 numbers>; 12: the same and a trailing random token. */
    int last;
    if (nt == 9 || nt == 11) last = nt - 1;
    else if (nt == 12) last = 10;
    else return -1;
    for (int i = 0; i < 5; i++) {
        int64_t v = afn_uint(tok[last - 4 + i], tend[last - 4 + i]);
        if (v < 0) return -1;
        nums[i] = v;
    }
    return 0;
}

#endif
