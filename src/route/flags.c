// SPDX-License-Identifier: Apache-2.0
/* flags.c — the NSA_* flags of docs/contract.md: defaults, parsing, environment.
 * Read once into the context at creation; nsa_context_set_flag changes one later. The router
 * reads ctx->flags, never the environment.
 * Invariant: a malformed value is NSA_ERR_FLAG naming the flag and the value; nothing is
 * silently ignored and a failed set leaves the flags as they were.
 */
#include "route.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nsa_flags_default(nsa_flags *f) {
    memset(f, 0, sizeof *f);
    f->force_parity = 0;
    f->use_win_mask = 1;
    f->use_cmp_mask = 1;
    f->use_sel_pack = 1;
    f->use_fa2 = -1;
    f->use_fa2_win = -1;
    f->use_fa2_cmp = -1;
    f->fa2_min_len_win = -1;
    f->fa2_min_len_cmp = -1;
    f->use_triton_sel = -1;
    f->triton_sel_force = 0;
    f->use_hopper = 0;
    f->force_branch = -1;
    f->strict_asserts = 0;
    f->log_limit = 10;
}

static int parse_bool(const char *v, int *out) {
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = 1; return 1; }
        if (strcasecmp(v, no[i]) == 0) { *out = 0; return 1; }
    }
    return 0;
}

static int parse_count(const char *v, int64_t *out) {
    if (!*v) return 0;
    for (const char *p = v; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    errno = 0;
    long long x = strtoll(v, NULL, 10);
    if (errno) return 0;
    *out = (int64_t)x;
    return 1;
}

typedef enum { K_BOOL, K_TRI, K_COUNT, K_BRANCH } kind;

typedef struct {
    const char *name;
    kind k;
    size_t off;
    const char *help; /* what a valid value looks like, for the error message */
} flag_row;

#define ROW(n, k, f, h) {n, k, offsetof(nsa_flags, f), h}
static const flag_row rows[] = {
    ROW("NSA_FORCE_PARITY", K_BOOL, force_parity, "0 or 1"),
    ROW("NSA_USE_WIN_MASK", K_BOOL, use_win_mask, "0 or 1"),
    ROW("NSA_USE_CMP_MASK", K_BOOL, use_cmp_mask, "0 or 1"),
    ROW("NSA_USE_SEL_PACK", K_BOOL, use_sel_pack, "0 or 1"),
    ROW("NSA_USE_FA2", K_TRI, use_fa2, "0 or 1"),
    ROW("NSA_USE_FA2_WIN", K_TRI, use_fa2_win, "0 or 1"),
    ROW("NSA_USE_FA2_CMP", K_TRI, use_fa2_cmp, "0 or 1"),
    ROW("NSA_FA2_MIN_LEN_WIN", K_COUNT, fa2_min_len_win, "a non-negative integer"),
    ROW("NSA_FA2_MIN_LEN_CMP", K_COUNT, fa2_min_len_cmp, "a non-negative integer"),
    ROW("NSA_USE_TRITON_SEL", K_TRI, use_triton_sel, "0 or 1"),
    ROW("NSA_TRITON_SEL_FORCE", K_BOOL, triton_sel_force, "0 or 1"),
    ROW("NSA_USE_HOPPER", K_BOOL, use_hopper, "0 or 1"),
    ROW("NSA_FORCE_BRANCH", K_BRANCH, force_branch, "cmp, sel or win"),
    ROW("NSA_STRICT_ASSERTS", K_BOOL, strict_asserts, "0 or 1"),
    ROW("NSA_LOG_LIMIT", K_COUNT, log_limit, "a non-negative integer"),
};
#undef ROW

static nsa_status apply(nsa_context *ctx, nsa_flags *f, const flag_row *r, const char *v) {
    char *base = (char *)f + r->off;
    int b;
    int64_t c;
    switch (r->k) {
    case K_BOOL:
    case K_TRI:
        if (!parse_bool(v, &b)) break;
        *(int *)base = b;
        return NSA_OK;
    case K_COUNT:
        if (!parse_count(v, &c)) break;
        *(int64_t *)base = c;
        return NSA_OK;
    case K_BRANCH:
        if (strcasecmp(v, "cmp") == 0) { *(int *)base = NSA_BRANCH_CMP; return NSA_OK; }
        if (strcasecmp(v, "sel") == 0) { *(int *)base = NSA_BRANCH_SEL; return NSA_OK; }
        if (strcasecmp(v, "win") == 0) { *(int *)base = NSA_BRANCH_WIN; return NSA_OK; }
        if (*v == '\0' || strcasecmp(v, "none") == 0) { *(int *)base = -1; return NSA_OK; }
        break;
    }
    return nsa_fail(ctx, NSA_ERR_FLAG, "%s: malformed value \"%s\" (expected %s)", r->name, v,
                    r->help);
}

nsa_status nsa_flags_from_env(nsa_context *ctx, nsa_flags *out) {
    nsa_flags f = *out;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *v = getenv(rows[i].name);
        if (!v) continue;
        NSA_TRY(apply(ctx, &f, &rows[i], v));
    }
    *out = f;
    return NSA_OK;
}

nsa_status nsa_context_set_flag(nsa_context *ctx, const char *name, const char *value) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!name) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "name: NULL pointer");
    if (!value) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "value: NULL pointer");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (strcmp(rows[i].name, name) != 0) continue;
        nsa_flags f = ctx->flags;
        NSA_TRY(apply(ctx, &f, &rows[i], value));
        ctx->flags = f;
        return NSA_OK;
    }
    return nsa_fail(ctx, NSA_ERR_FLAG, "%s: unknown flag", name);
}

/* The value of row r in f, as it would be written in the environment. */
static void value_of(const nsa_flags *f, const flag_row *r, char *buf, size_t len) {
    const char *base = (const char *)f + r->off;
    switch (r->k) {
    case K_BOOL: snprintf(buf, len, "%d", *(const int *)base); break;
    case K_TRI:
        if (*(const int *)base < 0) snprintf(buf, len, "unset");
        else snprintf(buf, len, "%d", *(const int *)base);
        break;
    case K_COUNT:
        if (*(const int64_t *)base < 0) snprintf(buf, len, "unset");
        else snprintf(buf, len, "%lld", (long long)*(const int64_t *)base);
        break;
    case K_BRANCH: {
        int b = *(const int *)base;
        snprintf(buf, len, "%s", b < 0 ? "none" : nsa_branch_name((nsa_branch)b));
        break;
    }
    }
}

nsa_status nsa_context_flags_format(const nsa_context *ctx, char *buf, size_t len) {
    if (!ctx || !buf || !len) return NSA_ERR_INVALID_ARG;
    nsa_flags def;
    nsa_flags_default(&def);
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char v[32], dv[32];
        value_of(&ctx->flags, &rows[i], v, sizeof v);
        value_of(&def, &rows[i], dv, sizeof dv);
        int k = snprintf(buf + at, len - at, "%s=%s (%s)\n", rows[i].name, v,
                         strcmp(v, dv) ? "set" : "default");
        if (k < 0 || (size_t)k >= len - at) break;
        at += (size_t)k;
    }
    return NSA_OK;
}
