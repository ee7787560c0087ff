// SPDX-License-Identifier: Apache-2.0
/* json.c — a minimal JSON object writer for the heartbeat (JSON Lines, docs/design.md §4).
 * Not a parser: one object per line; string, number, number-array and number-object values.
 * Invariant: the output is always valid JSON whatever the bytes of a string — valid UTF-8 kept,
 * control characters escaped, other bytes as \ufffd — and a non-finite number is null.
 */
#include "lm.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void put(lm_json *j, const char *fmt, ...) {
    if (j->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(j->buf ? j->buf + j->len : NULL, j->buf ? j->cap - j->len : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            j->oom = 1;
            return;
        }
        if (j->buf && j->len + (size_t)w < j->cap) {
            j->len += (size_t)w;
            return;
        }
        size_t nc = (j->cap ? j->cap * 2 : 256) + (size_t)w;
        char *nb = realloc(j->buf, nc);
        if (!nb) {
            j->oom = 1;
            return;
        }
        j->buf = nb;
        j->cap = nc;
    }
}

static void number(lm_json *j, double v) {
    if (isfinite(v)) put(j, "%.15g", v);
    else put(j, "null");
}

void lm_json_begin(lm_json *j) {
    j->len = 0;
    j->oom = 0;
    j->first = 1;
    put(j, "{");
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong form, no surrogate,
 * nothing above U+10FFFF), or 0 when p does not start one. Stops at a NUL: it is no
 * continuation byte. */
static int utf8_len(const unsigned char *p) {
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    int len;
    uint32_t cp;
    if (p[0] < 0x80) return 1;
    if ((p[0] & 0xe0) == 0xc0) len = 2, cp = p[0] & 0x1fu;
    else if ((p[0] & 0xf0) == 0xe0) len = 3, cp = p[0] & 0x0fu;
    else if ((p[0] & 0xf8) == 0xf0) len = 4, cp = p[0] & 0x07u;
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* Valid UTF-8 goes through unchanged (a path "données.txt" stays readable); '"', '\\' and
 * control characters (and DEL) are escaped; each byte that is not part of well-formed UTF-8
 * becomes \ufffd, so the line stays valid JSON whatever bytes a path holds. */
static void string(lm_json *j, const char *val) {
    put(j, "\"");
    for (const unsigned char *p = (const unsigned char *)val; *p;) {
        const int len = utf8_len(p);
        if (*p == '"' || *p == '\\') put(j, "\\%c", *p);
        else if (*p == '\n') put(j, "\\n");
        else if (*p == '\t') put(j, "\\t");
        else if (*p == '\r') put(j, "\\r");
        else if (*p < 0x20 || *p == 0x7f) put(j, "\\u%04x", *p);
        else if (!len) put(j, "\\ufffd");
        else put(j, "%.*s", len, (const char *)p);
        p += len ? len : 1;
    }
    put(j, "\"");
}

static void key(lm_json *j, const char *k) {
    if (!j->first) put(j, ",");
    j->first = 0;
    string(j, k);
    put(j, ":");
}

void lm_json_str(lm_json *j, const char *k, const char *val) {
    key(j, k);
    string(j, val);
}

void lm_json_obj(lm_json *j, const char *k, const char *const *names, const double *v, int n) {
    key(j, k);
    put(j, "{");
    for (int i = 0; i < n; i++) {
        if (i) put(j, ",");
        string(j, names[i]);
        put(j, ":");
        number(j, v[i]);
    }
    put(j, "}");
}

void lm_json_num(lm_json *j, const char *k, double val) {
    key(j, k);
    number(j, val);
}

void lm_json_int(lm_json *j, const char *k, int64_t val) {
    key(j, k);
    put(j, "%lld", (long long)val);
}

void lm_json_nums(lm_json *j, const char *k, const double *v, int n) {
    key(j, k);
    put(j, "[");
    for (int i = 0; i < n; i++) {
        if (i) put(j, ",");
        number(j, v[i]);
    }
    put(j, "]");
}

const char *lm_json_end(lm_json *j) {
    put(j, "}\n");
    return j->oom ? NULL : j->buf;
}

void lm_json_free(lm_json *j) {
    free(j->buf);
    memset(j, 0, sizeof *j);
}
