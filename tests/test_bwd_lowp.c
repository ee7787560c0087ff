// SPDX-License-Identifier: Apache-2.0
/* test_bwd_lowp.c — the yardstick of the tensor-core backward tests (tests/gpu/gpu_bwd_lowp.c:
 * the backward as an eager framework computes it in the dtype) checked on the CPU against the
 * double reference: in f32 it must be the reference up to f32 rounding (so it computes the
 * right thing: key sets, gates, φ backward, aliased sums, forced branch); in bf16 its error must
 * be that of rounding (non-zero, a few u at most), or it would be no yardstick.
 * Runs everywhere (no GPU); fresh random inputs; gradients guarded.
 */
#include "gpu/gpu_bwd_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One problem: the reference backward and the low-precision run in dt; per gradient field the
 * max and rms of |lp − ref| relative to rms(ref) into emax / erms (the worst field). */
static int compare(nsa_config c, int B, int T, nsa_dtype dt, int shared, int force, double *emax,
                   double *erms) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return 0;
    if (force >= 0 && nsa_context_set_flag(ctx, "NSA_FORCE_BRANCH", force == 0 ? "cmp"
                                                                    : force == 1 ? "sel" : "win") != NSA_OK)
        return 0;
    tbuf q = tb_new4(dt, B, T, c.Hq, c.Dk, 1.0), k[3], v[3];
    for (int i = 0; i < 3; i++) {
        k[i] = i && shared ? k[0] : tb_new4(dt, B, T, c.Hkv, c.Dk, 1.0);
        v[i] = i && shared ? v[0] : tb_new4(dt, B, T, c.Hkv, c.Dv, 1.0);
    }
    tbuf gt = tb_new4(dt, B, T, c.Hq, 3, 0.0), out = tb_new4(dt, B, T, c.Hq, c.Dv, 0.0);
    tbuf dout = tb_new4(dt, B, T, c.Hq, c.Dv, 1.0);
    tb_uniform(&gt, 0.0, 1.0);
    const int64_t rs[5] = {B, T, c.Hkv, c.n, 2};
    tbuf rg = tb_new(NSA_DTYPE_I32, 5, rs, 0.0);
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = q.t;
    a.k_cmp = k[0].t; a.v_cmp = v[0].t; a.k_sel = k[1].t; a.v_sel = v[1].t;
    a.k_win = k[2].t; a.v_win = v[2].t;
    a.gates = gt.t;
    a.out = out.t;
    a.sel_ranges = rg.t;
    int ok = nsa_forward(ctx, &a) == NSA_OK;
    const int64_t sh[8][4] = {{B, T, c.Hq, c.Dk},  {B, T, c.Hkv, c.Dk}, {B, T, c.Hkv, c.Dv},
                              {B, T, c.Hkv, c.Dk}, {B, T, c.Hkv, c.Dv}, {B, T, c.Hkv, c.Dk},
                              {B, T, c.Hkv, c.Dv}, {B, T, c.Hq, 3}};
    tbuf g[8];
    for (int i = 0; i < 8; i++) g[i] = tb_new(dt, 4, sh[i], 0.0); /* gradients take the dtype */
    nsa_bwd_args gb;
    memset(&gb, 0, sizeof gb);
    gb.dout = dout.t;
    gb.dq = g[0].t;
    gb.dk_cmp = g[1].t; gb.dv_cmp = g[2].t;
    gb.dk_sel = shared ? g[1].t : g[3].t; gb.dv_sel = shared ? g[2].t : g[4].t;
    gb.dk_win = shared ? g[1].t : g[5].t; gb.dv_win = shared ? g[2].t : g[6].t;
    gb.dgates = g[7].t;
    ok = ok && nsa_backward(ctx, &a, &gb) == NSA_OK;
    double *lp[8] = {NULL};
    gb_lowp_force = force;
    ok = ok && gb_lowp_backward(&a, &dout.t, &rg.t, shared, lp);
    gb_lowp_force = -1;
    *emax = *erms = 0.0;
    for (int i = 0; ok && i < 8; i++) {
        if (shared && i >= 3 && i <= 6) continue; /* summed into fields 1 and 2 */
        ok = tb_guard_ok(&g[i]);
        const int64_t n = tb_numel(&g[i]);
        double ss = 0.0, es = 0.0, em = 0.0;
        for (int64_t x = 0; x < n; x++) {
            const double r = tb_get(&g[i], x), e = fabs(lp[i][x] - r);
            ss += r * r;
            es += e * e;
            em = e > em ? e : em;
        }
        const double rms = sqrt(ss / (double)n);
        if (rms == 0.0) continue; /* a forced-off branch: nothing to compare */
        const double m = em / rms, s = sqrt(es / (double)n) / rms;
        *emax = m > *emax ? m : *emax;
        *erms = s > *erms ? s : *erms;
    }
    for (int i = 0; i < 8; i++) {
        free(lp[i]);
        tb_free(&g[i]);
    }
    tb_free(&q);
    for (int i = 0; i < 3; i++) {
        if (i && shared) continue;
        tb_free(&k[i]);
        tb_free(&v[i]);
    }
    tb_free(&gt); tb_free(&out); tb_free(&dout); tb_free(&rg);
    nsa_context_destroy(ctx);
    return ok;
}

static nsa_config cfg(int Hq, int Hkv, int Dk, int Dv, int l, int d, int lp, int n, int w) {
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = l; c.d = d; c.lp = lp; c.n = n; c.w = w;
    return c;
}

/* f32: the low-precision run is the reference up to f32 rounding of each intermediate (sums of
 * at most a few hundred terms: 2e-5 of the field's rms, worst element). */
static void lowp_f32_is_the_reference(void) {
    struct { nsa_config c; int B, T, shared, force; } cs[] = {
        {cfg(8, 2, 32, 24, 16, 8, 32, 3, 24), 2, 90, 0, -1},  /* GQA 4, Dk != Dv */
        {cfg(8, 2, 32, 32, 16, 8, 32, 3, 24), 1, 77, 1, -1},  /* one K/V, summed gradients */
        {cfg(4, 4, 16, 16, 16, 8, 16, 3, 8), 1, 13, 0, -1},   /* T < l: no compressed block */
        {cfg(6, 1, 16, 16, 8, 4, 16, 4, 12), 1, 60, 0, 0},    /* G 6, NSA_FORCE_BRANCH=cmp */
        {cfg(6, 1, 16, 16, 8, 4, 16, 4, 12), 1, 60, 0, 2},    /* ... win */
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        double em, es;
        CHECK(compare(cs[i].c, cs[i].B, cs[i].T, NSA_DTYPE_F32, cs[i].shared, cs[i].force, &em,
                      &es));
        printf("  f32 case %zu: max %.2e, rms %.2e of rms(ref)\n", i, em, es);
        CHECK(em <= 2e-5, "case %zu: max error %.3g of rms(ref)", i, em);
    }
}

/* bf16: the run rounds (its error is not zero) and only rounds (a few u of the field's rms). */
static void lowp_bf16_is_rounding(void) {
    const double u = 1.0 / 256;
    double em, es;
    CHECK(compare(cfg(8, 2, 64, 32, 16, 8, 32, 4, 48), 1, 150, NSA_DTYPE_BF16, 0, -1, &em, &es));
    printf("  bf16: max %.3f u, rms %.3f u of rms(ref)\n", em / u, es / u);
    CHECK(es >= 0.05 * u && es <= 4.0 * u, "error rms %.3g u", es / u);
    CHECK(em <= 64.0 * u, "max error %.3g u", em / u);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"lowp_f32_is_the_reference", lowp_f32_is_the_reference},
        {"lowp_bf16_is_rounding", lowp_bf16_is_rounding},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
