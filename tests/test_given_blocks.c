// SPDX-License-Identifier: Apache-2.0
/* test_given_blocks.c — nsa_fwd_args.block_indices (fla's block_indices): the reference's own
 * selection handed back gives bitwise the same forward and backward; every malformed row is
 * refused with a message naming the element; a decode step reports the blocks it selected,
 * equal to the prefill's.
 * Not a test of selection itself (test_ref_select.c checks it against brute force).
 */
#include "ref_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Tokens [t0, t0 + len) of a (B, T, ...) tensor: a view along dim 1. */
static nsa_tensor rows(const nsa_tensor *t, int64_t t0, int64_t len) {
    nsa_tensor v = *t;
    v.data = (char *)t->data + (size_t)(t0 * t->stride[1]) * nsa_dtype_size(t->dtype);
    v.shape[1] = len;
    return v;
}

static nsa_config cfg_of(int n, int n_init, int n_local) {
    nsa_config c = nsa_config_default(4, 2, 8, 8);
    c.l = 8;
    c.d = 4;
    c.lp = 8;
    c.n = n;
    c.n_init = n_init;
    c.n_local = n_local;
    c.w = 8;
    return c;
}

/* A copy of p's sel_blocks output as an input tensor (its own guarded buffer). */
static tbuf blocks_copy(const prob *p) {
    tbuf b = tb_new4(NSA_DTYPE_I32, p->B, p->T, p->c.Hkv, p->c.n, 0.0);
    memcpy(b.base, p->blocks.base, p->blocks.bytes);
    return b;
}

/* The reference's own blocks handed back: every output bitwise the same, sel_blocks echoed. */
static void given_equals_selected(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p, q;
    prob_init(&p, cfg_of(3, 1, 1), NSA_DTYPE_F32, 2, 45, P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    tbuf given = blocks_copy(&p);
    prob_init(&q, cfg_of(3, 1, 1), NSA_DTYPE_F32, 2, 45, P_EXTRAS);
    tbuf *pin[8], *qin[8];
    prob_inputs(&p, pin);
    prob_inputs(&q, qin);
    for (int i = 0; i < 8; i++) memcpy(qin[i]->base, pin[i]->base, pin[i]->bytes);
    q.a.block_indices = given.t;
    CHECK_OK(ctx, nsa_forward(ctx, &q.a));
    CHECK(ut_same_bytes(&p.out, &q.out), "out differs with the selected blocks given");
    for (int b = 0; b < 3; b++) {
        CHECK(ut_same_bytes(&p.ob[b], &q.ob[b]), "branch %d output differs", b);
        CHECK(ut_same_bytes(&p.lse[b], &q.lse[b]), "branch %d lse differs", b);
    }
    CHECK(ut_same_bytes(&p.blocks, &q.blocks), "sel_blocks does not echo the given blocks");
    CHECK(ut_same_bytes(&p.ranges, &q.ranges), "sel_ranges differ");
    CHECK(prob_guards_ok(&q) && tb_guard_ok(&given), "guard bytes overwritten");
    tb_free(&given);
    prob_free(&q);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* Backward with the forward's own blocks given: every gradient bitwise the same. */
static void given_backward_equals_selected(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    prob_init(&p, cfg_of(4, 1, 2), NSA_DTYPE_F32, 1, 50, P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    tbuf given = blocks_copy(&p);
    nsa_fwd_args a = p.a;
    memset(&a.sel_ranges, 0, sizeof a.sel_ranges); /* make the backward select (or not) */
    pgrad g1, g2;
    pgrad_init(&g1, &p);
    pgrad_init(&g2, &p);
    memcpy(g2.dout.base, g1.dout.base, g1.dout.bytes);
    CHECK_OK(ctx, nsa_backward(ctx, &a, &g1.g));
    a.block_indices = given.t;
    CHECK_OK(ctx, nsa_backward(ctx, &a, &g2.g));
    for (int i = 0; i < 8; i++)
        CHECK(ut_same_bytes(&g1.d[i], &g2.d[i]), "%s differs with the selected blocks given",
              pgrad_names[i]);
    tb_free(&given);
    pgrad_free(&g1);
    pgrad_free(&g2);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* One bad element at (b, t, g, k) = (0, 20, 1, k): refused, message names it, out untouched. */
static void expect_refused(nsa_context *ctx, prob *p, tbuf *given, int k, int32_t v,
                           const char *why) {
    int32_t *row = (int32_t *)given->base + ((int64_t)20 * p->c.Hkv + 1) * p->c.n;
    int32_t keep[4];
    memcpy(keep, row, sizeof keep);
    row[0] = 0; /* a valid row for t = 20 (cur = 2): 0, 1, 2, -1 */
    row[1] = 1;
    row[2] = 2;
    row[3] = -1;
    row[k] = v;
    nsa_status st = nsa_forward(ctx, &p->a);
    char want[64];
    snprintf(want, sizeof want, "block_indices[0, 20, 1, %d] = %d %s", k, (int)v, why);
    CHECK(st == NSA_ERR_INVALID_ARG && strstr(nsa_context_message(ctx), want),
          "k=%d v=%d: status %s, message '%s' (wanted '%s')", k, (int)v, nsa_status_name(st),
          nsa_context_message(ctx), want);
    memcpy(row, keep, sizeof keep);
}

static void given_validation(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    prob_init(&p, cfg_of(4, 1, 2), NSA_DTYPE_F32, 1, 30, P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    tbuf given = blocks_copy(&p);
    p.a.block_indices = given.t;
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    expect_refused(ctx, &p, &given, 1, 0, "is not above");     /* duplicate */
    expect_refused(ctx, &p, &given, 2, 0, "is not above");     /* descending */
    expect_refused(ctx, &p, &given, 2, 3, "starts after");     /* 3·8 = 24 > t = 20 */
    expect_refused(ctx, &p, &given, 0, -2, "is negative");
    int32_t *row = (int32_t *)given.base + ((int64_t)20 * p.c.Hkv + 1) * p.c.n;
    row[0] = 0, row[1] = -1, row[2] = 2, row[3] = -1; /* a block after padding */
    nsa_status st = nsa_forward(ctx, &p.a);
    CHECK(st == NSA_ERR_INVALID_ARG &&
              strstr(nsa_context_message(ctx), "block_indices[0, 20, 1, 2] = 2 follows -1"),
          "message '%s'", nsa_context_message(ctx));
    memcpy(given.base, p.blocks.base, p.blocks.bytes);
    /* wrong dtype and shape name the field */
    nsa_tensor bad = given.t;
    bad.dtype = NSA_DTYPE_F32;
    p.a.block_indices = bad;
    st = nsa_forward(ctx, &p.a);
    CHECK(st == NSA_ERR_DTYPE && strstr(nsa_context_message(ctx), "block_indices: dtype f32"),
          "message '%s'", nsa_context_message(ctx));
    bad = given.t;
    bad.shape[3] = 3;
    p.a.block_indices = bad;
    st = nsa_forward(ctx, &p.a);
    CHECK(st == NSA_ERR_SHAPE && strstr(nsa_context_message(ctx), "block_indices: shape[3]"),
          "message '%s'", nsa_context_message(ctx));
    /* the backward validates them too */
    p.a.block_indices = given.t;
    ((int32_t *)given.base)[0] = 5; /* t = 0 may only name block 0 */
    pgrad g;
    pgrad_init(&g, &p);
    st = nsa_backward(ctx, &p.a, &g.g);
    CHECK(st == NSA_ERR_INVALID_ARG &&
              strstr(nsa_context_message(ctx), "block_indices[0, 0, 0, 0] = 5 starts after"),
          "backward: message '%s'", nsa_context_message(ctx));
    pgrad_free(&g);
    tb_free(&given);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* All -1: the sel branch sees no key (zero output, lse -inf); a sparser choice than the
 * reference's (block 0 only) changes only the sel branch. */
static void given_empty_rows(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    prob_init(&p, cfg_of(3, 1, 1), NSA_DTYPE_F32, 1, 20, P_EXTRAS);
    tbuf given = tb_new4(NSA_DTYPE_I32, 1, 20, p.c.Hkv, p.c.n, 0.0);
    for (int64_t i = 0; i < tb_numel(&given); i++) ((int32_t *)given.base)[i] = -1;
    p.a.block_indices = given.t;
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    for (int64_t i = 0; i < tb_numel(&p.ob[1]); i++)
        CHECK(tb_get(&p.ob[1], i) == 0.0, "sel output %lld not 0", (long long)i);
    for (int64_t i = 0; i < tb_numel(&p.lse[1]); i++)
        CHECK(tb_get(&p.lse[1], i) == -INFINITY, "sel lse %lld not -inf", (long long)i);
    CHECK(prob_guards_ok(&p) && tb_guard_ok(&given), "guard bytes overwritten");
    tb_free(&given);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* Prefill T tokens, then decode token by token: each step's reported blocks equal row t of a
 * forward over the whole sequence. */
static void decode_reports_blocks(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const int T = 40, T0 = 17;
    prob p;
    nsa_config c = cfg_of(3, 1, 1);
    prob_init(&p, c, NSA_DTYPE_F32, 1, T, P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    nsa_kv_cache_desc desc = {c, NSA_DTYPE_F32, {NSA_DEVICE_CPU, 0}, 1, T, 0};
    nsa_kv_cache *cache;
    CHECK_OK(ctx, nsa_kv_cache_create(ctx, &desc, &cache));
    nsa_kv_append_args ap;
    memset(&ap, 0, sizeof ap);
    ap.k_cmp = rows(&p.a.k_cmp, 0, T0);
    ap.v_cmp = rows(&p.a.v_cmp, 0, T0);
    ap.k_sel = rows(&p.a.k_sel, 0, T0);
    ap.v_sel = rows(&p.a.v_sel, 0, T0);
    ap.k_win = rows(&p.a.k_win, 0, T0);
    ap.v_win = rows(&p.a.v_win, 0, T0);
    CHECK_OK(ctx, nsa_kv_cache_append(ctx, cache, &ap));
    tbuf out = tb_new4(NSA_DTYPE_F32, 1, 1, c.Hq, c.Dv, 0.0);
    tbuf got = tb_new4(NSA_DTYPE_I32, 1, 1, c.Hkv, c.n, 0.0);
    for (int t = T0; t < T; t++) {
        nsa_decode_args d;
        memset(&d, 0, sizeof d);
        d.cfg = c;
        d.q = rows(&p.a.q, t, 1);
        d.k_cmp = rows(&p.a.k_cmp, t, 1);
        d.v_cmp = rows(&p.a.v_cmp, t, 1);
        d.k_sel = rows(&p.a.k_sel, t, 1);
        d.v_sel = rows(&p.a.v_sel, t, 1);
        d.k_win = rows(&p.a.k_win, t, 1);
        d.v_win = rows(&p.a.v_win, t, 1);
        d.gates = rows(&p.a.gates, t, 1);
        d.out = out.t;
        d.sel_blocks = got.t;
        CHECK_OK(ctx, nsa_decode_step(ctx, cache, &d));
        const int32_t *want = (const int32_t *)p.blocks.base + (int64_t)t * c.Hkv * c.n;
        CHECK(!memcmp(got.base, want, sizeof(int32_t) * (size_t)(c.Hkv * c.n)),
              "t=%d: decode's blocks differ from the prefill's", t);
        CHECK(tb_guard_ok(&got) && tb_guard_ok(&out), "guard bytes overwritten");
    }
    tb_free(&got);
    tb_free(&out);
    nsa_kv_cache_destroy(cache);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"given_equals_selected", given_equals_selected},
        {"given_backward_equals_selected", given_backward_equals_selected},
        {"given_validation", given_validation},
        {"given_empty_rows", given_empty_rows},
        {"decode_reports_blocks", decode_reports_blocks},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
