// SPDX-License-Identifier: Apache-2.0
/* strict.c — NSA_STRICT_ASSERTS: causality checks of what a call is about to read. Every
 * selection range, window and compressed span of every query must end at or before t+1.
 * Not a debugger: it reports the first violation (status, message, counter, warn.causality log
 * line) and never aborts.
 * Invariant: the checks read only host copies; they never change the call's outputs.
 */
#include "route.h"

#include <stdio.h>

static nsa_status violation(nsa_context *ctx, const char *what) {
    ctx->counters.causality_violations++;
    nsa_log(ctx, "warn.causality", "NSA_STRICT_ASSERTS: %s", what);
    return nsa_fail(ctx, NSA_ERR_CAUSALITY, "NSA_STRICT_ASSERTS: %s", what);
}

nsa_status nsa_strict_ranges(nsa_context *ctx, const int32_t *ranges, int64_t B, int64_t T,
                             int Hkv, int n, int64_t t0) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int g = 0; g < Hkv; g++)
                for (int k = 0; k < n; k++) {
                    const int32_t *r = ranges + (((b * T + t) * Hkv + g) * n + k) * 2;
                    const int64_t pos = t0 + t;
                    if (r[0] >= 0 && r[1] >= r[0] && r[1] <= pos + 1) continue;
                    char what[200];
                    snprintf(what, sizeof what,
                             "sel range [%d, %d) of b=%lld t=%lld kv head %d slot %d reaches "
                             "past t+1=%lld",
                             r[0], r[1], (long long)b, (long long)pos, g, k, (long long)pos + 1);
                    return violation(ctx, what);
                }
    return NSA_OK;
}

/* The span of docs/design.md §1.1 (cmp: blocks i < num_cmp(t+1), raw tokens up to the end of the
 * last one) and §1.3 (win: [max(0, t-w+1), t+1)). */
static void span_default(const nsa_config *c, nsa_branch br, int64_t t, int64_t *lo,
                         int64_t *hi) {
    if (br == NSA_BRANCH_CMP) {
        int64_t nc = nsa_num_cmp(c, t + 1);
        *lo = 0;
        *hi = nc > 0 ? (nc - 1) * c->d + c->l : 0;
    } else {
        *lo = c->w > 0 ? nsa_ix_win_lo(c->w, t) : 0;
        *hi = c->w > 0 ? t + 1 : *lo;
    }
}

nsa_status nsa_strict_spans(nsa_context *ctx, const nsa_backend *be, nsa_branch br,
                            const nsa_fwd_work *w) {
    for (int64_t t = 0; t < w->s->T; t++) {
        int64_t lo, hi;
        if (be && be->span)
            be->span(be, br, w, t, &lo, &hi);
        else
            span_default(&w->a->cfg, br, t, &lo, &hi);
        if (lo >= 0 && hi >= lo && hi <= t + 1) continue;
        char what[200];
        snprintf(what, sizeof what, "%s span [%lld, %lld) of %s at t=%lld reaches past t+1",
                 nsa_branch_name(br), (long long)lo, (long long)hi, be ? be->name : "ref",
                 (long long)t);
        return violation(ctx, what);
    }
    return NSA_OK;
}
