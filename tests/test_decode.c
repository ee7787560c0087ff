// SPDX-License-Identifier: Apache-2.0
/* test_decode.c — decode equals prefill (docs/design.md §1.6), bitwise on the reference: from an
 * empty
 * cache, after a prefill of T0 tokens on and off block boundaries, with stale or poisoned slots,
 * rows of different lengths in one batch, the caller's own φ (cmp_external), and append.
 * Every case runs f32, bf16 and f16 with fresh random inputs; outputs carry guard bytes.
 */
#include "test_decode_util.h"

#include "ref/kv_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const nsa_dtype dtypes[3] = {NSA_DTYPE_F32, NSA_DTYPE_BF16, NSA_DTYPE_F16};
static int no_win; /* 1: decode steps pass no window tensors (legal when w == 0) */

static nsa_context *new_ctx(void) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "1"); /* prefill on the reference too */
    nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", "0");
    return ctx;
}

/* Decodes tokens [t0, T) of every row of s through cache and checks each output row against
 * the prefill of all T tokens. Returns 1 when all rows matched. */
static int decode_rest(nsa_context *ctx, nsa_kv_cache *cache, const seq *s, int64_t t0,
                       const tbuf *ref) {
    step_in st;
    step_new(&st, s);
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)s->B);
    int ok = 1;
    for (int64_t t = t0; t < s->T && ok; t++) {
        for (int b = 0; b < s->B; b++) pos[b] = t;
        step_fill(&st, s, pos);
        if (no_win) st.a.k_win = st.a.v_win = (nsa_tensor){0};
        if (nsa_decode_step(ctx, cache, &st.a) != NSA_OK) {
            fprintf(stderr, "decode at t=%lld: %s\n", (long long)t, nsa_context_message(ctx));
            ok = 0;
        }
        for (int b = 0; b < s->B && ok; b++)
            if (!step_out_equals(&st, ref, b, t)) {
                fprintf(stderr, "%s: row %d differs from prefill at t=%lld (t0=%lld)\n",
                        nsa_dtype_name(s->dt), b, (long long)t, (long long)t0);
                ok = 0;
            }
        if (!tb_guard_ok(&st.out)) ok = 0;
    }
    free(pos);
    step_free(&st);
    return ok;
}

static void empty_equals_prefill(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    for (int i = 0; i < 3; i++) {
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), dtypes[i], 2, 75));
        nsa_kv_cache *c = dec_cache(ctx, &s, 2, 75, 0);
        CHECK(c, "%s", nsa_context_message(ctx));
        CHECK(decode_rest(ctx, c, &s, 0, &s.out), "%s", nsa_dtype_name(dtypes[i]));
        CHECK(nsa_kv_cache_len(c, 0) == 75 && nsa_kv_cache_len(c, 1) == 75);
        nsa_kv_cache_destroy(c);
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

/* l=8, d=4, lp=8: blocks emit at S = 8, 12, 16, ...; T0 before l (5), between emissions (10),
 * exactly at one (12), after several selection blocks off (43) and on (48) a boundary. */
static void prefill_then_decode(void) {
    static const int t0s[] = {1, 5, 10, 12, 43, 48, 74};
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    for (int i = 0; i < 3; i++) {
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), dtypes[i], 2, 75));
        for (size_t k = 0; k < sizeof t0s / sizeof t0s[0]; k++) {
            const int T0 = t0s[k];
            nsa_kv_cache *c = dec_cache(ctx, &s, 2, 80, 0);
            CHECK(c);
            tbuf po = tb_new4(s.dt, 2, T0, s.c.Hq, s.c.Dv, 0.0);
            nsa_fwd_args a = seq_fwd(&s, T0, &po.t);
            CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, c, &a, NULL));
            CHECK(nsa_kv_cache_len(c, 0) == T0 && nsa_kv_cache_len(c, 1) == T0);
            for (int b = 0; b < 2; b++)
                for (int64_t e = 0; e < (int64_t)T0 * s.c.Hq * s.c.Dv; e++)
                    CHECK(same_bits(&po, b * (int64_t)T0 * s.c.Hq * s.c.Dv + e, &s.out,
                                    b * (int64_t)75 * s.c.Hq * s.c.Dv + e),
                          "prefill output of %d tokens differs from the forward", T0);
            CHECK(tb_guard_ok(&po));
            CHECK(decode_rest(ctx, c, &s, T0, &s.out), "%s T0=%d", nsa_dtype_name(s.dt), T0);
            tb_free(&po);
            nsa_kv_cache_destroy(c);
        }
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

/* Nothing at or past a row's length is read: slots poisoned with NaN, or holding a longer,
 * different sequence before a reset, change no bit of the decode. */
static void causality_stale(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    for (int i = 0; i < 3; i++) {
        seq x, y;
        CHECK(seq_new(ctx, &x, dec_cfg(), dtypes[i], 1, 60));
        CHECK(seq_new(ctx, &y, dec_cfg(), dtypes[i], 1, 70));
        nsa_kv_cache *c = dec_cache(ctx, &x, 1, 70, 0);
        CHECK(c);
        kv_poison(c);
        CHECK(decode_rest(ctx, c, &x, 0, &x.out), "poisoned slots leak (%s)", nsa_dtype_name(x.dt));
        CHECK_OK(ctx, nsa_kv_cache_reset(ctx, c, 0));
        CHECK(decode_rest(ctx, c, &y, 0, &y.out));
        CHECK_OK(ctx, nsa_kv_cache_reset(ctx, c, -1));
        CHECK(nsa_kv_cache_len(c, 0) == 0);
        CHECK(decode_rest(ctx, c, &x, 0, &x.out), "stale tokens of a longer sequence leak (%s)",
              nsa_dtype_name(x.dt));
        nsa_kv_cache_destroy(c);
        seq_free(&x);
        seq_free(&y);
    }
    nsa_context_destroy(ctx);
}

/* Rows prefilled to 0, 9 and 30 tokens, then stepped with random active masks, so rows sit at
 * different positions in every step: each equals its prefill and its own B=1 decode. */
static void batch_mixed_lengths(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    for (int i = 0; i < 3; i++) {
        const int B = 3, T = 70;
        const int T0[3] = {0, 9, 30};
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), dtypes[i], B, T));
        nsa_kv_cache *c = dec_cache(ctx, &s, B, T, 0), *alone = dec_cache(ctx, &s, 1, T, 0);
        CHECK(c && alone);
        for (int b = 1; b < B; b++) {
            /* row b of s as a (1, T0, ...) view */
            seq one = s;
            tbuf *bufs[] = {&one.q, &one.kc, &one.vc, &one.ks, &one.vs, &one.kw, &one.vw, &one.g};
            for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) {
                bufs[k]->t.data = (char *)bufs[k]->t.data +
                                  b * bufs[k]->t.stride[0] * (int64_t)nsa_dtype_size(s.dt);
                bufs[k]->t.shape[0] = 1;
            }
            tbuf po = tb_new4(s.dt, 1, T0[b], s.c.Hq, s.c.Dv, 0.0);
            nsa_fwd_args a = seq_fwd(&one, T0[b], &po.t);
            nsa_prefill_extra ex = {b, {0}, {0}};
            CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, c, &a, &ex));
            tb_free(&po);
        }
        step_in st;
        step_new(&st, &s);
        int64_t pos[3];
        for (int step = 0; step < 80; step++) {
            int any = 0;
            for (int b = 0; b < B; b++) {
                int64_t t = nsa_kv_cache_len(c, b);
                pos[b] = t < T && nsa_rng_uniform() < 0.7 ? t : -1;
                any |= pos[b] >= 0;
            }
            if (!any) continue;
            memset(st.out.base, 0x7f, st.out.bytes);
            step_fill(&st, &s, pos);
            CHECK_OK(ctx, nsa_decode_step(ctx, c, &st.a));
            for (int b = 0; b < B; b++) {
                if (pos[b] < 0) {
                    for (int64_t e = 0; e < (int64_t)s.c.Hq * s.c.Dv; e++)
                        CHECK(((unsigned char *)st.out.base)[(b * s.c.Hq * s.c.Dv + e) *
                                                             (int64_t)nsa_dtype_size(s.dt)] == 0x7f,
                              "inactive row %d written", b);
                    continue;
                }
                CHECK(step_out_equals(&st, &s.out, b, pos[b]), "row %d t=%lld", b, (long long)pos[b]);
            }
            CHECK(tb_guard_ok(&st.out));
        }
        /* row 2 alone, from a prefill of its 30 tokens, against the batch's outputs (= s.out) */
        {
            seq one = s;
            tbuf *bufs[] = {&one.q, &one.kc, &one.vc, &one.ks, &one.vs, &one.kw, &one.vw, &one.g, &one.out};
            for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) {
                bufs[k]->t.data = (char *)bufs[k]->t.data +
                                  2 * bufs[k]->t.stride[0] * (int64_t)nsa_dtype_size(s.dt);
                bufs[k]->t.shape[0] = 1;
                bufs[k]->base = bufs[k]->t.data;
            }
            one.B = 1;
            tbuf po = tb_new4(s.dt, 1, T0[2], s.c.Hq, s.c.Dv, 0.0);
            nsa_fwd_args a = seq_fwd(&one, T0[2], &po.t);
            CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, alone, &a, NULL));
            tb_free(&po);
            CHECK(decode_rest(ctx, alone, &one, T0[2], &one.out), "row 2 decoded alone");
        }
        step_free(&st);
        nsa_kv_cache_destroy(c);
        nsa_kv_cache_destroy(alone);
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

/* NSA_FORCE_BRANCH and NSA_STRICT_ASSERTS hold in decode as in the forward: with each branch
 * forced, decode still equals the (forced) prefill, and strict asserts find no violation. */
static void flags_as_forward(void) {
    static const char *branches[3] = {"cmp", "sel", "win"};
    for (int i = 0; i < 3; i++) {
        nsa_context *ctx = new_ctx();
        CHECK(ctx);
        CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_FORCE_BRANCH", branches[i]));
        CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_STRICT_ASSERTS", "1"));
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), dtypes[i], 1, 50));
        nsa_kv_cache *c = dec_cache(ctx, &s, 1, 50, 0);
        CHECK(c);
        CHECK(decode_rest(ctx, c, &s, 0, &s.out), "NSA_FORCE_BRANCH=%s", branches[i]);
        nsa_counters k;
        CHECK_OK(ctx, nsa_context_counters(ctx, &k));
        CHECK(k.causality_violations == 0);
        nsa_kv_cache_destroy(c);
        seq_free(&s);
        nsa_context_destroy(ctx);
    }
}

/* Edge configs: l = d = lp = 1 with n = 1 and no initial block; w = 0 with no window tensors at
 * all; w and l longer than the cache (max_len 6 < l = 8 < w). */
static void edge_configs(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    nsa_config c1 = dec_cfg(), c2 = dec_cfg(), c3 = dec_cfg();
    c1.l = c1.d = c1.lp = 1;
    c1.n = 1;
    c1.n_init = 0;
    c1.n_local = 1;
    c2.w = 0;
    c3.w = 100;
    const nsa_config cs[3] = {c1, c2, c3};
    const int T[3] = {30, 40, 6};
    for (int i = 0; i < 3; i++) {
        seq s;
        CHECK(seq_new(ctx, &s, cs[i], dtypes[i], 2, T[i]));
        nsa_kv_cache *c = dec_cache(ctx, &s, 2, T[i], 0);
        CHECK(c, "%s", nsa_context_message(ctx));
        const int T0 = T[i] / 3;
        tbuf po = tb_new4(s.dt, 2, T0, s.c.Hq, s.c.Dv, 0.0);
        nsa_fwd_args a = seq_fwd(&s, T0, &po.t);
        if (i == 1) a.k_win = a.v_win = (nsa_tensor){0};
        CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, c, &a, NULL));
        no_win = i == 1;
        CHECK(decode_rest(ctx, c, &s, T0, &s.out), "edge config %d", i);
        no_win = 0;
        tb_free(&po);
        nsa_kv_cache_destroy(c);
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"empty_equals_prefill", empty_equals_prefill},
        {"prefill_then_decode", prefill_then_decode},
        {"causality_stale", causality_stale},
        {"batch_mixed_lengths", batch_mixed_lengths},
        {"flags_as_forward", flags_as_forward},
        {"edge_configs", edge_configs},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
