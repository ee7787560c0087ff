// SPDX-License-Identifier: Apache-2.0
/* test_ref_backward.c — the reference backward: central finite differences in double of the
 * reference forward for every input (q, each branch's k/v raw and compressed, gates), bitwise
 * determinism over thread counts, reuse of sel_ranges, and the gradient aliasing rule.
 * Selection is piecewise constant: a perturbation that flips it is detected (the blocks are
 * compared) and that coordinate is skipped; few may be.
 */
#include "ref_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static nsa_config small_cfg(int Hq, int Hkv, int Dk, int Dv, int l, int d, int lp, int n, int w) {
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = l;
    c.d = d;
    c.lp = lp;
    c.n = n;
    c.w = w;
    return c;
}

/* Backward through the API (f32) against central differences of ut_loss (double). With
 * P_SHARED one dK and one dV tensor receive the three branches' sum. */
static void fd_check(nsa_config c, int B, int T, unsigned flags) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    pgrad g;
    prob_init(&p, c, NSA_DTYPE_F32, B, T, flags);
    pgrad_init(&g, &p);
    int gi[8] = {0, 1, 2, 3, 4, 5, 6, 7}; /* which gradient holds input k's derivative */
    if (flags & P_SHARED) {
        g.g.dk_win = g.g.dk_sel;
        g.g.dv_win = g.g.dv_sel;
        gi[5] = 3;
        gi[6] = 4;
        if (!(flags & P_CMP_COMPRESSED)) {
            g.g.dk_cmp = g.g.dk_sel;
            g.g.dv_cmp = g.g.dv_sel;
            gi[1] = 3;
            gi[2] = 4;
        }
    }
    CHECK_OK(ctx, nsa_backward(ctx, &p.a, &g.g));
    CHECK(pgrad_guards_ok(&g) && prob_guards_ok(&p), "guard bytes overwritten");

    tbuf *in[8];
    prob_inputs(&p, in);
    double *X[8];
    for (int k = 0; k < 8; k++) {
        X[k] = NULL;
        for (int j = 0; j < k; j++)
            if (in[j] == in[k]) X[k] = X[j];
        if (!X[k] && in[k]->base) X[k] = ut_doubles(in[k]);
    }
    double *R = ut_doubles(&g.dout);
    const int64_t nb = (int64_t)B * T * c.Hkv * c.n;
    int32_t *b0 = malloc(sizeof(int32_t) * (size_t)nb), *b1 = malloc(sizeof(int32_t) * (size_t)nb);
    ut_loss(&p, X[0], X[1], X[2], X[3], X[4], X[5], X[6], X[7], R, b0);
    const double eps = 1e-6;
    long checked = 0, skipped = 0;
    double worst = 0;
    int bad_k = -1;
    int64_t bad_i = -1;
    double bad_an = 0, bad_fd = 0;
    for (int k = 0; k < 8; k++) {
        int dup = 0;
        for (int j = 0; j < k; j++) dup |= in[j] == in[k];
        if (dup || !in[k]->base) continue;
        const tbuf *gr = &g.d[gi[k]];
        for (int64_t i = 0; i < tb_numel(in[k]); i++) {
            const double x0 = X[k][i];
            X[k][i] = x0 + eps;
            double lp_ = ut_loss(&p, X[0], X[1], X[2], X[3], X[4], X[5], X[6], X[7], R, b1);
            int flip = memcmp(b0, b1, sizeof(int32_t) * (size_t)nb) != 0;
            X[k][i] = x0 - eps;
            double lm_ = ut_loss(&p, X[0], X[1], X[2], X[3], X[4], X[5], X[6], X[7], R, b1);
            flip |= memcmp(b0, b1, sizeof(int32_t) * (size_t)nb) != 0;
            X[k][i] = x0;
            if (flip) {
                skipped++;
                continue;
            }
            const double fd = (lp_ - lm_) / (2 * eps), an = tb_get(gr, i);
            const double err = fabs(an - fd) / (1e-6 + 1e-5 * fabs(fd));
            checked++;
            if (!(err <= worst)) {
                worst = err;
                bad_k = k, bad_i = i, bad_an = an, bad_fd = fd;
            }
        }
    }
    CHECK(checked > 0 && skipped * 20 <= checked, "%ld coordinates skipped (selection flipped), "
                                                  "%ld checked", skipped, checked);
    static const char *in_names[8] = {"q", "k_cmp", "v_cmp", "k_sel", "v_sel", "k_win", "v_win",
                                      "gates"};
    CHECK(worst <= 1.0, "d/d %s[%lld]: backward %.9g, central difference %.9g (%ld checked)",
          bad_k >= 0 ? in_names[bad_k] : "?", (long long)bad_i, bad_an, bad_fd, checked);
    free(b0);
    free(b1);
    free(R);
    for (int k = 0; k < 8; k++) {
        int dup = 0;
        for (int j = 0; j < k; j++) dup |= X[j] == X[k];
        if (!dup) free(X[k]);
    }
    pgrad_free(&g);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* GQA ratio 1, raw cmp compressed inside (φ = avg), Dk != Dv, sparse selection. */
static void fd_gqa1_raw(void) { fd_check(small_cfg(2, 2, 4, 3, 4, 2, 4, 3, 5), 1, 19, 0); }

/* GQA ratio 4, already-compressed cmp k/v, two batch rows, one forced local block. */
static void fd_gqa4_compressed(void) {
    nsa_config c = small_cfg(4, 1, 3, 5, 4, 2, 4, 3, 6);
    c.n_local = 1;
    fd_check(c, 2, 23, P_CMP_COMPRESSED);
}

/* One K and one V for every branch, one dK and one dV receiving the sum; a custom scale. */
static void fd_shared_kv(void) {
    nsa_config c = small_cfg(4, 2, 5, 2, 6, 3, 6, 3, 4);
    c.scale = 0.7f;
    fd_check(c, 1, 21, P_SHARED);
}

/* l = lp = d (identity Eq. 9), window off, GQA ratio 4 with two groups. */
static void fd_identity_no_window(void) {
    nsa_config c = small_cfg(8, 2, 2, 3, 3, 3, 3, 4, 0);
    fd_check(c, 1, 14, 0);
}

/* Backward must not depend on the OpenMP thread count, nor differ run to run. */
static void determinism_threads(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    prob_init(&p, small_cfg(4, 2, 8, 6, 8, 4, 8, 3, 9), NSA_DTYPE_BF16, 3, 57, 0);
    pgrad g[4];
    const int threads[4] = {1, 3, 0, 1};
    for (int r = 0; r < 4; r++) {
        pgrad_init(&g[r], &p);
        if (r) memcpy(g[r].dout.base, g[0].dout.base, g[0].dout.bytes);
        CHECK_OK(ctx, nsa_context_set_threads(ctx, threads[r]));
        CHECK_OK(ctx, nsa_backward(ctx, &p.a, &g[r].g));
        CHECK(pgrad_guards_ok(&g[r]), "guard bytes overwritten");
    }
    for (int r = 1; r < 4; r++)
        for (int i = 0; i < 8; i++)
            CHECK(ut_same_bytes(&g[0].d[i], &g[r].d[i]), "%s differs with %d threads",
                  pgrad_names[i], threads[r]);
    for (int r = 0; r < 4; r++) pgrad_free(&g[r]);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* A present sel_ranges written by the forward gives bitwise the same gradients as recomputing
 * the selection; a non-causal range is rejected naming sel_ranges. */
static void sel_ranges_reused(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    prob_init(&p, small_cfg(4, 2, 4, 4, 4, 2, 4, 3, 4), NSA_DTYPE_F32, 2, 33, P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    pgrad g1, g2;
    pgrad_init(&g1, &p);
    pgrad_init(&g2, &p);
    memcpy(g2.dout.base, g1.dout.base, g1.dout.bytes);
    CHECK_OK(ctx, nsa_backward(ctx, &p.a, &g1.g));
    nsa_fwd_args a = p.a;
    memset(&a.sel_ranges, 0, sizeof a.sel_ranges);
    CHECK_OK(ctx, nsa_backward(ctx, &a, &g2.g));
    for (int i = 0; i < 8; i++)
        CHECK(ut_same_bytes(&g1.d[i], &g2.d[i]), "%s differs when sel_ranges is given",
              pgrad_names[i]);
    /* row t = 5 of batch 1, group 0: a range ending past t+1 */
    int32_t *r = (int32_t *)p.ranges.base + ((((int64_t)1 * 33 + 5) * 2 + 0) * p.c.n) * 2;
    r[1] = 7;
    nsa_status st = nsa_backward(ctx, &p.a, &g1.g);
    CHECK(st == NSA_ERR_INVALID_ARG && strstr(nsa_context_message(ctx), "sel_ranges"),
          "status %s, message '%s'", nsa_status_name(st), nsa_context_message(ctx));
    pgrad_free(&g1);
    pgrad_free(&g2);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* Identical views receive the sum of their gradients (to rounding of one f32 store). */
static void alias_identical_sum(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    prob_init(&p, small_cfg(2, 2, 4, 4, 4, 2, 4, 3, 6), NSA_DTYPE_F32, 1, 29, 0);
    pgrad sep, al;
    pgrad_init(&sep, &p);
    pgrad_init(&al, &p);
    memcpy(al.dout.base, sep.dout.base, sep.dout.bytes);
    CHECK_OK(ctx, nsa_backward(ctx, &p.a, &sep.g));
    al.g.dk_win = al.g.dk_sel;       /* dk_sel + dk_win */
    al.g.dv_cmp = al.g.dv_win = al.g.dv_sel; /* raw dv_cmp + dv_sel + dv_win */
    al.g.dk_cmp = al.g.dq;           /* Hq == Hkv and Dk == Dk: dq + raw dk_cmp */
    CHECK_OK(ctx, nsa_backward(ctx, &p.a, &al.g));
    double worst = 0;
    for (int64_t i = 0; i < tb_numel(&sep.d[3]); i++) {
        double e1 = fabs(tb_get(&al.d[3], i) - tb_get(&sep.d[3], i) - tb_get(&sep.d[5], i));
        double e2 = fabs(tb_get(&al.d[4], i) - tb_get(&sep.d[2], i) - tb_get(&sep.d[4], i) -
                         tb_get(&sep.d[6], i));
        double e3 = fabs(tb_get(&al.d[0], i) - tb_get(&sep.d[0], i) - tb_get(&sep.d[1], i));
        worst = fmax(worst, fmax(e1, fmax(e2, e3)));
    }
    CHECK(worst < 1e-5, "aliased gradient differs from the sum by %g", worst);
    CHECK(pgrad_guards_ok(&al), "guard bytes overwritten");
    pgrad_free(&sep);
    pgrad_free(&al);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

/* Any other overlap is an error naming both fields; interleaved disjoint views are fine. */
static void alias_overlap_rejected(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const int B = 1, T = 13, H = 2, D = 4;
    prob p;
    prob_init(&p, small_cfg(2, H, D, D, 4, 2, 4, 3, 3), NSA_DTYPE_F32, B, T, 0);
    pgrad ref, g;
    pgrad_init(&ref, &p);
    pgrad_init(&g, &p);
    memcpy(g.dout.base, ref.dout.base, ref.dout.bytes);
    CHECK_OK(ctx, nsa_backward(ctx, &p.a, &ref.g));
    /* one packed buffer (B, T, H, 2, D): dk_sel = [..., 0, :], dv_sel = [..., 1, :] */
    tbuf pk = tb_new(NSA_DTYPE_F32, 4, (int64_t[]){B, T, H, 2 * D}, 0.0);
    nsa_tensor dk = pk.t, dv = pk.t;
    dk.shape[3] = dv.shape[3] = D;
    dv.data = (float *)pk.base + D;
    g.g.dk_sel = dk;
    g.g.dv_sel = dv;
    CHECK_OK(ctx, nsa_backward(ctx, &p.a, &g.g));
    for (int64_t i = 0; i < tb_numel(&ref.d[3]); i++) {
        int64_t at = (i / D) * 2 * D + i % D;
        CHECK(tb_get(&pk, at) == tb_get(&ref.d[3], i) && tb_get(&pk, at + D) == tb_get(&ref.d[4], i),
              "packed dk/dv differ at %lld", (long long)i);
    }
    CHECK(tb_guard_ok(&pk), "guard bytes overwritten");
    /* views placed in one arena: a at its start, b shifted (or transposed over the same bytes) */
    tbuf arena = tb_new(NSA_DTYPE_F32, 1, (int64_t[]){2 * B * T * H * 2 * D + 64}, 0.0);
    struct {
        const char *a, *b;
        nsa_tensor *ta, *tb;
        int64_t shift; /* -1: b is a transposed (B, H, T, D) layout of the same bytes */
    } bad[] = {
        {"dk_sel", "dv_sel", &g.g.dk_sel, &g.g.dv_sel, 1},
        {"dk_sel", "dk_win", &g.g.dk_sel, &g.g.dk_win, -1},
        {"dq", "dgates", &g.g.dq, &g.g.dgates, 3},
        {"dv_cmp", "dk_win", &g.g.dv_cmp, &g.g.dk_win, 4 * T},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        nsa_tensor sa = *bad[k].ta, sb = *bad[k].tb;
        *bad[k].ta = nsa_tensor_make(arena.base, NSA_DTYPE_F32, 4, sa.shape);
        *bad[k].tb = nsa_tensor_make((float *)arena.base + (bad[k].shift > 0 ? bad[k].shift : 0),
                                     NSA_DTYPE_F32, 4, sb.shape);
        if (bad[k].shift < 0) {
            bad[k].tb->stride[2] = sb.shape[1] * sb.shape[3];
            bad[k].tb->stride[1] = sb.shape[3];
        }
        nsa_status st = nsa_backward(ctx, &p.a, &g.g);
        const char *m = nsa_context_message(ctx);
        CHECK(st == NSA_ERR_INVALID_ARG && strstr(m, bad[k].a) && strstr(m, bad[k].b),
              "%s/%s: status %s, message '%s'", bad[k].a, bad[k].b, nsa_status_name(st), m);
        *bad[k].ta = sa;
        *bad[k].tb = sb;
    }
    CHECK(tb_guard_ok(&arena), "guard bytes overwritten");
    tb_free(&arena);
    /* a gradient overlapping itself: a zero stride */
    g.g.dq.stride[1] = 0;
    nsa_status st = nsa_backward(ctx, &p.a, &g.g);
    CHECK(st == NSA_ERR_INVALID_ARG && strstr(nsa_context_message(ctx), "dq"), "status %s: %s",
          nsa_status_name(st), nsa_context_message(ctx));
    tb_free(&pk);
    pgrad_free(&ref);
    pgrad_free(&g);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"fd_gqa1_raw", fd_gqa1_raw},
        {"fd_gqa4_compressed", fd_gqa4_compressed},
        {"fd_shared_kv", fd_shared_kv},
        {"fd_identity_no_window", fd_identity_no_window},
        {"determinism_threads", determinism_threads},
        {"sel_ranges_reused", sel_ranges_reused},
        {"alias_identical_sum", alias_identical_sum},
        {"alias_overlap_rejected", alias_overlap_rejected},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
