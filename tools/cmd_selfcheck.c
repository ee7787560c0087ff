// SPDX-License-Identifier: Apache-2.0
/* cmd_selfcheck.c — `nsa selfcheck`: runs NSA forward and backward on fresh random inputs through
 * the public API and prints what it verified: causality, full coverage (selection over every
 * block equals the full window), and the backward of every input against central differences.
 * Not the test suite (tests/ holds one case per invariant); a quick proof on this machine.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static float *fill(int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; x && i < n; i++) x[i] = (float)urand();
    return x;
}

/* Max |a - b| over n. */
static double maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static int check_forward(nsa_context *ctx) {
    const int B = 1, T = 200, Hq = 4, Hkv = 2, Dk = 16, Dv = 16;
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = 16; c.d = 8; c.lp = 16; c.n = 4; c.w = 32;
    float *q = fill((int64_t)B * T * Hq * Dk), *k = fill((int64_t)B * T * Hkv * Dk);
    float *v = fill((int64_t)B * T * Hkv * Dv), *g = fill((int64_t)B * T * Hq * 3);
    float *o1 = calloc((size_t)(B * T * Hq * Dv), sizeof(float));
    float *o2 = calloc((size_t)(B * T * Hq * Dv), sizeof(float));
    if (!q || !k || !v || !g || !o1 || !o2) {
        fprintf(stderr, "nsa selfcheck: out of memory\n");
        return 1;
    }
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = nsa_tensor_4d(q, NSA_DTYPE_F32, B, T, Hq, Dk);
    a.k_cmp = a.k_sel = a.k_win = nsa_tensor_4d(k, NSA_DTYPE_F32, B, T, Hkv, Dk);
    a.v_cmp = a.v_sel = a.v_win = nsa_tensor_4d(v, NSA_DTYPE_F32, B, T, Hkv, Dv);
    a.gates = nsa_tensor_4d(g, NSA_DTYPE_F32, B, T, Hq, 3);
    a.out = nsa_tensor_4d(o1, NSA_DTYPE_F32, B, T, Hq, Dv);
    int fails = 0;
    if (nsa_forward(ctx, &a) != NSA_OK) {
        fprintf(stderr, "nsa selfcheck: forward failed: %s\n", nsa_context_message(ctx));
        return 1;
    }
    /* causality: change every token after t0; rows <= t0 must not move by a single bit */
    const int t0 = 117;
    for (int64_t i = (int64_t)(t0 + 1) * Hq * Dk; i < (int64_t)T * Hq * Dk; i++) q[i] = (float)urand();
    for (int64_t i = (int64_t)(t0 + 1) * Hkv * Dk; i < (int64_t)T * Hkv * Dk; i++) k[i] = (float)urand();
    for (int64_t i = (int64_t)(t0 + 1) * Hkv * Dv; i < (int64_t)T * Hkv * Dv; i++) v[i] = (float)urand();
    a.out.data = o2;
    nsa_status st = nsa_forward(ctx, &a);
    double dc = maxdiff(o1, o2, (int64_t)(t0 + 1) * Hq * Dv);
    printf("causality: rows 0..%d unchanged after changing tokens %d..%d: max diff %g  %s\n", t0,
           t0 + 1, T - 1, dc, st == NSA_OK && dc == 0 ? "ok" : "FAIL");
    fails += st != NSA_OK || dc != 0;
    /* full coverage: n·lp >= T and w >= T, gates (0, 1, 0) and (0, 0, 1) give the same output */
    a.cfg.n = (T + c.lp - 1) / c.lp;
    a.cfg.w = T;
    for (int64_t i = 0; i < (int64_t)B * T * Hq; i++) g[3 * i] = 0, g[3 * i + 1] = 1, g[3 * i + 2] = 0;
    a.out.data = o1;
    st = nsa_forward(ctx, &a);
    for (int64_t i = 0; i < (int64_t)B * T * Hq; i++) g[3 * i + 1] = 0, g[3 * i + 2] = 1;
    a.out.data = o2;
    if (st == NSA_OK) st = nsa_forward(ctx, &a);
    double df = maxdiff(o1, o2, (int64_t)B * T * Hq * Dv);
    printf("full coverage: selection over all blocks equals the full window: max diff %g  %s\n",
           df, st == NSA_OK && df < 1e-6 ? "ok" : "FAIL");
    fails += !(st == NSA_OK && df < 1e-6);
    printf("  (forward: B=%d T=%d Hq=%d Hkv=%d Dk=%d Dv=%d l=%d d=%d lp=%d n=%d w=%d, one K/V)\n",
           B, T, Hq, Hkv, Dk, Dv, c.l, c.d, c.lp, c.n, c.w);
    free(q); free(k); free(v); free(g); free(o1); free(o2);
    return fails;
}

/* Σ R·out after a forward of a; the selection goes to blocks. */
static double loss(nsa_context *ctx, const nsa_fwd_args *a, const float *R, int64_t n, int *ok) {
    *ok = nsa_forward(ctx, a) == NSA_OK;
    const float *out = a->out.data;
    double L = 0;
    for (int64_t i = 0; i < n; i++) L += (double)R[i] * out[i];
    return L;
}

/* Backward of every input against directional central differences of L = Σ R·out: along a
 * random direction u, (L(x + εu) − L(x − εu)) / 2ε must equal Σ dL/dx · u. Selection is piecewise
 * constant, so a step that changes any selected block is retried with a smaller ε. */
static int check_backward(nsa_context *ctx) {
    const int B = 2, T = 48, Hq = 4, Hkv = 1, Dk = 8, Dv = 6;
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = 8; c.d = 4; c.lp = 8; c.n = 3; c.w = 10;
    const int64_t nq = (int64_t)B * T * Hq * Dk, nk = (int64_t)B * T * Hkv * Dk;
    const int64_t nv = (int64_t)B * T * Hkv * Dv, ng = (int64_t)B * T * Hq * 3;
    const int64_t no = (int64_t)B * T * Hq * Dv, nb = (int64_t)B * T * Hkv * c.n;
    static const char *names[8] = {"q", "k_cmp", "v_cmp", "k_sel", "v_sel", "k_win", "v_win",
                                   "gates"};
    const int64_t len[8] = {nq, nk, nv, nk, nv, nk, nv, ng};
    float *x[8], *dx[8];
    for (int i = 0; i < 8; i++) {
        x[i] = fill(len[i]);
        dx[i] = calloc((size_t)len[i], sizeof(float));
    }
    for (int64_t i = 0; i < ng; i++) x[7][i] = 0.5f + 0.5f * x[7][i];
    float *out = calloc((size_t)no, sizeof(float)), *R = fill(no), *u = malloc(sizeof(float) * (size_t)nq);
    float *x0 = malloc(sizeof(float) * (size_t)nq);
    int32_t *b0 = malloc(sizeof(int32_t) * (size_t)nb), *b1 = malloc(sizeof(int32_t) * (size_t)nb);
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    nsa_tensor *in[8] = {&a.q, &a.k_cmp, &a.v_cmp, &a.k_sel, &a.v_sel, &a.k_win, &a.v_win, &a.gates};
    const int64_t h[8] = {Hq, Hkv, Hkv, Hkv, Hkv, Hkv, Hkv, Hq}, d[8] = {Dk, Dk, Dv, Dk, Dv, Dk, Dv, 3};
    for (int i = 0; i < 8; i++) *in[i] = nsa_tensor_4d(x[i], NSA_DTYPE_F32, B, T, h[i], d[i]);
    a.out = nsa_tensor_4d(out, NSA_DTYPE_F32, B, T, Hq, Dv);
    a.sel_blocks = nsa_tensor_4d(b0, NSA_DTYPE_I32, B, T, Hkv, c.n);
    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    g.dout = nsa_tensor_4d(R, NSA_DTYPE_F32, B, T, Hq, Dv);
    nsa_tensor *gi[8] = {&g.dq, &g.dk_cmp, &g.dv_cmp, &g.dk_sel, &g.dv_sel, &g.dk_win, &g.dv_win,
                         &g.dgates};
    for (int i = 0; i < 8; i++) *gi[i] = nsa_tensor_4d(dx[i], NSA_DTYPE_F32, B, T, h[i], d[i]);
    int fails = 0, ok = nsa_forward(ctx, &a) == NSA_OK && nsa_backward(ctx, &a, &g) == NSA_OK;
    if (!ok) {
        fprintf(stderr, "nsa selfcheck: backward failed: %s\n", nsa_context_message(ctx));
        fails = 1;
    }
    a.sel_blocks.data = b1;
    for (int i = 0; i < 8 && ok; i++) {
        memcpy(x0, x[i], sizeof(float) * (size_t)len[i]);
        for (int64_t e = 0; e < len[i]; e++) u[e] = (float)urand();
        double eps = 1e-2, an = 0, fd = 0;
        int tries = 0, flipped = 1;
        for (; tries < 5 && flipped; tries++, eps /= 4) {
            /* the actual f32 steps, so rounding of x ± εu does not count as error */
            double Lp, Lm;
            an = 0;
            for (int64_t e = 0; e < len[i]; e++) x[i][e] = (float)(x0[e] + eps * u[e]);
            Lp = loss(ctx, &a, R, no, &ok);
            flipped = memcmp(b0, b1, sizeof(int32_t) * (size_t)nb) != 0;
            for (int64_t e = 0; e < len[i]; e++) {
                an += (double)dx[i][e] * ((double)x[i][e] - (float)(x0[e] - eps * u[e]));
                x[i][e] = (float)(x0[e] - eps * u[e]);
            }
            Lm = loss(ctx, &a, R, no, &ok);
            flipped |= memcmp(b0, b1, sizeof(int32_t) * (size_t)nb) != 0;
            fd = Lp - Lm;
        }
        memcpy(x[i], x0, sizeof(float) * (size_t)len[i]);
        const double rel = fabs(fd - an) / fmax(fabs(an), 1e-3);
        const int pass = ok && !flipped && rel < 2e-3;
        printf("backward: %-5s step x +- eps*u: change of L predicted by the gradient %+.6e, "
               "measured %+.6e (rel err %.1e, eps %.0e)  %s\n", names[i], an, fd, rel, eps * 4,
               pass ? "ok" : (flipped ? "FAIL (selection kept flipping)" : "FAIL"));
        fails += !pass;
    }
    printf("  (backward: B=%d T=%d Hq=%d Hkv=%d (GQA %d) Dk=%d Dv=%d l=%d d=%d lp=%d n=%d w=%d, "
           "separate K/V per branch, raw cmp through phi = avg)\n",
           B, T, Hq, Hkv, Hq / Hkv, Dk, Dv, c.l, c.d, c.lp, c.n, c.w);
    for (int i = 0; i < 8; i++) {
        free(x[i]);
        free(dx[i]);
    }
    free(out); free(R); free(u); free(x0); free(b0); free(b1);
    return fails;
}

static int selfcheck_run(void *opts) {
    (void)opts;
    rng ^= (uint64_t)time(NULL);
    nsa_context *ctx;
    char msg[256];
    if (nsa_context_create(&ctx, msg, sizeof msg) != NSA_OK) {
        fprintf(stderr, "nsa selfcheck: %s\n", msg);
        return 1;
    }
    int fails = check_forward(ctx);
    fails += check_backward(ctx);
    printf("nsa selfcheck: %s\n", fails ? "FAILED" : "all checks passed");
    nsa_context_destroy(ctx);
    return fails ? 1 : 0;
}

const cli_command cmd_selfcheck = {
    "selfcheck", "run the reference on random inputs and print what was verified",
    "Runs NSA forward and backward on fresh random inputs through the public API and prints\n"
    "what it verified: causality, full coverage, and the backward of every input against\n"
    "central differences. Exit code 1 if a check fails.",
    NULL, 0, 0, selfcheck_run, NULL, NULL};
