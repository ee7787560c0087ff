// SPDX-License-Identifier: Apache-2.0
/* test_ref_forward.c — invariants of the reference forward (docs/design.md §5) against independent
 * dense computations written here, not through the library's row code: full coverage equals
 * dense causal attention, each branch alone equals its dense masked equivalent, causality.
 * Selection itself (brute force, ties, groups, Eq. 9) is checked in test_ref_select.c.
 */
#include "ref_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Dense causal attention of (B,T,Hq,Dk) q over (B,T,Hkv,D) k, v, in double, into out (B,T,Hq,Dv);
 * keys of query t are positions [lo(t), t] with lo(t) = max(0, t - w + 1) (w = 0: all). */
static void dense(const tbuf *q, const tbuf *k, const tbuf *v, int B, int T, int Hq, int Hkv,
                  int Dk, int Dv, int w, double scale, double *out) {
    int G = Hq / Hkv;
    double *s = malloc(sizeof(double) * (size_t)T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                int hk = h / G, lo = w > 0 && t - w + 1 > 0 ? t - w + 1 : 0;
                double mx = -INFINITY;
                for (int j = lo; j <= t; j++) {
                    double dot = 0;
                    for (int e = 0; e < Dk; e++)
                        dot += tb_get(q, (((int64_t)b * T + t) * Hq + h) * Dk + e) *
                               tb_get(k, (((int64_t)b * T + j) * Hkv + hk) * Dk + e);
                    s[j] = dot * scale;
                    if (s[j] > mx) mx = s[j];
                }
                double sum = 0;
                for (int j = lo; j <= t; j++) sum += (s[j] = exp(s[j] - mx));
                for (int e = 0; e < Dv; e++) {
                    double acc = 0;
                    for (int j = lo; j <= t; j++)
                        acc += s[j] / sum * tb_get(v, (((int64_t)b * T + j) * Hkv + hk) * Dv + e);
                    out[(((int64_t)b * T + t) * Hq + h) * Dv + e] = acc;
                }
            }
    free(s);
}

/* n·lp ≥ T and w ≥ T: selection and window each see every key ≤ t, so with gates (0, a, 1-a)
 * the output is dense causal attention. */
static void full_coverage_dense(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_config c = nsa_config_default(4, 2, 16, 8);
    c.l = 8; c.d = 4; c.lp = 8; c.n = 6; c.w = 64;
    const int B = 2, T = 45;
    tbuf q = tb_new4(NSA_DTYPE_F32, B, T, 4, 16, 1.0);
    tbuf k = tb_new4(NSA_DTYPE_F32, B, T, 2, 16, 1.0);
    tbuf v = tb_new4(NSA_DTYPE_F32, B, T, 2, 8, 1.0);
    tbuf g = tb_new4(NSA_DTYPE_F32, B, T, 4, 3, 1.0);
    tbuf o = tb_new4(NSA_DTYPE_F32, B, T, 4, 8, 0.0);
    for (int64_t i = 0; i < (int64_t)B * T * 4; i++) {
        double a = nsa_rng_uniform();
        tb_set(&g, 3 * i, 0.0);
        tb_set(&g, 3 * i + 1, a);
        tb_set(&g, 3 * i + 2, 1.0 - (double)(float)a);
    }
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = q.t;
    a.k_cmp = a.k_sel = a.k_win = k.t;
    a.v_cmp = a.v_sel = a.v_win = v.t;
    a.gates = g.t;
    a.out = o.t;
    CHECK_OK(ctx, nsa_forward(ctx, &a));
    double *ref = malloc(sizeof(double) * (size_t)(B * T * 4 * 8));
    dense(&q, &k, &v, B, T, 4, 2, 16, 8, 0, 1.0 / sqrt(16.0), ref);
    double maxerr = 0;
    for (int64_t i = 0; i < (int64_t)B * T * 4 * 8; i++) {
        double e = fabs(tb_get(&o, i) - ref[i]);
        if (!(e <= maxerr)) maxerr = e;
    }
    CHECK(maxerr < 1e-5, "max |out - dense| = %g", maxerr);
    CHECK(tb_guard_ok(&o), "guard bytes after out overwritten");
    free(ref);
    tb_free(&q); tb_free(&k); tb_free(&v); tb_free(&g); tb_free(&o);
    nsa_context_destroy(ctx);
}

static nsa_config fwd_cfg(void) {
    nsa_config c = nsa_config_default(4, 2, 8, 6);
    c.l = 8;
    c.d = 4;
    c.lp = 8;
    c.n = 3;
    c.w = 11;
    return c;
}

/* One branch alone (one-hot gates) against dense attention over that branch's visible keys,
 * built here: cmp = the avg-compressed blocks with i·d + l − 1 ≤ t (computed here from the raw
 * tokens unless given compressed); sel = the raw tokens ≤ t of the blocks returned in
 * sel_blocks; win = the band [t − w + 1, t]. Checks out, out_<branch> and lse_<branch>. */
static void branch_check(int br, unsigned flags) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const nsa_config c = fwd_cfg();
    const int B = 2, T = 53, Hq = c.Hq, Hkv = c.Hkv, G = Hq / Hkv, Dk = c.Dk, Dv = c.Dv;
    prob p;
    prob_init(&p, c, NSA_DTYPE_F32, B, T, P_EXTRAS | flags);
    for (int64_t i = 0; i < (int64_t)B * T * Hq; i++)
        for (int k = 0; k < 3; k++) tb_set(&p.g, 3 * i + k, k == br ? 1.0 : 0.0);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    CHECK(prob_guards_ok(&p), "guard bytes overwritten");
    const int64_t Tc = nsa_num_cmp(&c, T);
    tbuf *in[8];
    prob_inputs(&p, in);
    double *q = ut_doubles(&p.q), *K = ut_doubles(in[1 + 2 * br]), *V = ut_doubles(in[2 + 2 * br]);
    int64_t nk = T;
    if (br == NSA_BRANCH_CMP && !(flags & P_CMP_COMPRESSED)) { /* φ = avg, computed here */
        double *kc = calloc((size_t)(B * Tc * Hkv * Dk + 1), sizeof(double));
        double *vc = calloc((size_t)(B * Tc * Hkv * Dv + 1), sizeof(double));
        for (int b = 0; b < B; b++)
            for (int64_t i = 0; i < Tc; i++)
                for (int h = 0; h < Hkv; h++)
                    for (int r = 0; r < c.l; r++) {
                        const int64_t src = ((int64_t)b * T + i * c.d + r) * Hkv + h;
                        const int64_t dst = ((int64_t)b * Tc + i) * Hkv + h;
                        for (int e = 0; e < Dk; e++) kc[dst * Dk + e] += K[src * Dk + e] / c.l;
                        for (int e = 0; e < Dv; e++) vc[dst * Dv + e] += V[src * Dv + e] / c.l;
                    }
        free(K);
        free(V);
        K = kc;
        V = vc;
    }
    if (br == NSA_BRANCH_CMP) nk = Tc;
    unsigned char *mask = malloc((size_t)T);
    double *o = malloc(sizeof(double) * (size_t)Dv), worst = 0, worst_lse = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                const int hk = h / G;
                for (int64_t j = 0; j < nk; j++) {
                    if (br == NSA_BRANCH_CMP) mask[j] = j * c.d + c.l - 1 <= t;
                    if (br == NSA_BRANCH_WIN) mask[j] = j <= t && j > t - c.w;
                    if (br == NSA_BRANCH_SEL) {
                        mask[j] = 0;
                        for (int k = 0; k < c.n; k++) {
                            int blk = (int)tb_get(&p.blocks, (((int64_t)b * T + t) * Hkv + hk) * c.n + k);
                            mask[j] |= blk >= 0 && j / c.lp == blk && j <= t;
                        }
                    }
                }
                const int64_t kvb = (int64_t)b * nk * Hkv + hk;
                double lse = ut_attend(q + (((int64_t)b * T + t) * Hq + h) * Dk, K + kvb * Dk,
                                       (int64_t)Hkv * Dk, V + kvb * Dv, (int64_t)Hkv * Dv, mask, nk,
                                       Dk, Dv, 1.0 / sqrt((double)Dk), o);
                const int64_t row = ((int64_t)b * T + t) * Hq + h;
                for (int e = 0; e < Dv; e++) {
                    worst = fmax(worst, fabs(tb_get(&p.out, row * Dv + e) - o[e]));
                    worst = fmax(worst, fabs(tb_get(&p.ob[br], row * Dv + e) - o[e]));
                }
                double l = tb_get(&p.lse[br], row);
                if (lse == -INFINITY)
                    CHECK(l == -INFINITY, "lse at b=%d t=%d h=%d: %g, expected -inf", b, t, h, l);
                else
                    worst_lse = fmax(worst_lse, fabs(l - lse) / (1 + fabs(lse)));
            }
    CHECK(worst < 2e-6, "max |out - dense masked| = %g", worst);
    CHECK(worst_lse < 1e-6, "max relative lse error %g", worst_lse);
    free(mask);
    free(o);
    free(q);
    free(K);
    free(V);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

static void branch_cmp_dense(void) { branch_check(NSA_BRANCH_CMP, 0); }
static void branch_cmp_compressed_dense(void) { branch_check(NSA_BRANCH_CMP, P_CMP_COMPRESSED); }
static void branch_sel_dense(void) { branch_check(NSA_BRANCH_SEL, 0); }
static void branch_win_banded(void) { branch_check(NSA_BRANCH_WIN, 0); }

/* Rows t ≤ t0 of every batch row of x and y hold the same bytes. */
static bool rows_same(const tbuf *x, const tbuf *y, int B, int T, int t0) {
    const size_t rb = x->bytes / (size_t)(B * T);
    for (int b = 0; b < B; b++)
        if (memcmp((char *)x->base + (size_t)b * T * rb, (char *)y->base + (size_t)b * T * rb,
                   rb * (size_t)(t0 + 1)))
            return false;
    return true;
}

/* Changing every input at positions after t0 (compressed blocks ending after t0) changes no bit
 * of any output at positions ≤ t0: out, each branch's output and lse, blocks, ranges. */
static void causality_check(unsigned flags) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_config c = fwd_cfg();
    const int B = 2, T = 61;
    prob p, p2;
    prob_init(&p, c, NSA_DTYPE_F32, B, T, P_EXTRAS | flags);
    prob_init(&p2, c, NSA_DTYPE_F32, B, T, P_EXTRAS | flags);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    tbuf *in[8], *in2[8];
    prob_inputs(&p, in);
    prob_inputs(&p2, in2);
    const int t0s[] = {0, c.l - 2, c.l - 1, c.lp, 30, T - 2};
    for (size_t k = 0; k < sizeof t0s / sizeof t0s[0]; k++) {
        const int t0 = t0s[k];
        for (int i = 0; i < 8; i++) { /* p2: p's inputs up to t0, its own random ones after */
            const bool comp = i >= 1 && i <= 2 && (flags & P_CMP_COMPRESSED);
            const int64_t Tx = comp ? nsa_num_cmp(&c, T) : T;
            const size_t rb = in[i]->bytes / (size_t)(B * Tx);
            const int64_t keep = comp ? nsa_num_cmp(&c, t0 + 1) : t0 + 1;
            for (int b = 0; b < B; b++)
                memcpy((char *)in2[i]->base + (size_t)b * Tx * rb,
                       (char *)in[i]->base + (size_t)b * Tx * rb, rb * (size_t)keep);
        }
        CHECK_OK(ctx, nsa_forward(ctx, &p2.a));
        const tbuf *o1[] = {&p.out,  &p.ob[0],  &p.ob[1],  &p.ob[2],  &p.lse[0],
                            &p.lse[1], &p.lse[2], &p.blocks, &p.ranges};
        const tbuf *o2[] = {&p2.out,  &p2.ob[0],  &p2.ob[1],  &p2.ob[2],  &p2.lse[0],
                            &p2.lse[1], &p2.lse[2], &p2.blocks, &p2.ranges};
        static const char *names[] = {"out",     "out_cmp", "out_sel", "out_win",   "lse_cmp",
                                      "lse_sel", "lse_win", "sel_blocks", "sel_ranges"};
        for (int i = 0; i < 9; i++)
            CHECK(rows_same(o1[i], o2[i], B, T, t0), "%s changed at a row <= t0 = %d", names[i], t0);
        CHECK(!rows_same(&p.out, &p2.out, B, T, T - 1), "the change after t0 = %d changed nothing", t0);
    }
    prob_free(&p);
    prob_free(&p2);
    nsa_context_destroy(ctx);
}

static void causality_bitwise(void) { causality_check(0); }
static void causality_bitwise_compressed(void) { causality_check(P_CMP_COMPRESSED); }
static void causality_bitwise_shared_kv(void) { causality_check(P_SHARED); }


int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"full_coverage_dense", full_coverage_dense},
        {"branch_cmp_dense", branch_cmp_dense},
        {"branch_cmp_compressed_dense", branch_cmp_compressed_dense},
        {"branch_sel_dense", branch_sel_dense},
        {"branch_win_banded", branch_win_banded},
        {"causality_bitwise", causality_bitwise},
        {"causality_bitwise_compressed", causality_bitwise_compressed},
        {"causality_bitwise_shared_kv", causality_bitwise_shared_kv},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
