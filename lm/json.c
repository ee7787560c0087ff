// SPDX-License-Identifier: Apache-2.0
/* json.c — a minimal JSON object writer for the heartbeat (JSON Lines, docs/design.md §4).
 * Not a parser and not nested: one flat object per line, string, number and number-array values.
 * Invariant: the output is always valid JSON — strings are escaped, and a non-finite number is
 * written as null.
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

static void key(lm_json *j, const char *k) {
    put(j, j->first ? "\"%s\":" : ",\"%s\":", k);
    j->first = 0;
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

void lm_json_str(lm_json *j, const char *k, const char *val) {
    key(j, k);
    put(j, "\"");
    for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
        if (*p == '"' || *p == '\\') put(j, "\\%c", *p);
        else if (*p == '\n') put(j, "\\n");
        else if (*p < 0x20 || *p >= 0x7f) put(j, "\\u%04x", *p);
        else put(j, "%c", *p);
    }
    put(j, "\"");
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
