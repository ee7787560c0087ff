/* cmd_selfcheck.c — `nsa selfcheck`: runs the reference NSA forward on fresh random inputs and
 * prints what it verified (full coverage equals dense causal attention; causality).
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static float *fill(int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = x ? (float)urand() : 0.0f;
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

int cmd_selfcheck(int argc, char **argv) {
    (void)argc;
    (void)argv;
    rng ^= (uint64_t)time(NULL);
    nsa_context *ctx;
    char msg[256];
    if (nsa_context_create(&ctx, msg, sizeof msg) != NSA_OK) {
        fprintf(stderr, "nsa selfcheck: %s\n", msg);
        return 1;
    }
    const int B = 1, T = 200, Hq = 4, Hkv = 2, Dk = 16, Dv = 16;
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = 16; c.d = 8; c.lp = 16; c.n = 4; c.w = 32;
    float *q = fill((int64_t)B * T * Hq * Dk), *k = fill((int64_t)B * T * Hkv * Dk);
    float *v = fill((int64_t)B * T * Hkv * Dv), *g = fill((int64_t)B * T * Hq * 3);
    float *o1 = calloc((size_t)(B * T * Hq * Dv), sizeof(float));
    float *o2 = calloc((size_t)(B * T * Hq * Dv), sizeof(float));
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = nsa_tensor_4d(q, NSA_DTYPE_F32, B, T, Hq, Dk);
    a.k_cmp = a.k_sel = a.k_win = nsa_tensor_4d(k, NSA_DTYPE_F32, B, T, Hkv, Dk);
    a.v_cmp = a.v_sel = a.v_win = nsa_tensor_4d(v, NSA_DTYPE_F32, B, T, Hkv, Dv);
    a.gates = nsa_tensor_4d(g, NSA_DTYPE_F32, B, T, Hq, 3);
    a.out = nsa_tensor_4d(o1, NSA_DTYPE_F32, B, T, Hq, Dv);
    int fails = 0;
    nsa_status st = nsa_forward(ctx, &a);
    if (st != NSA_OK) {
        fprintf(stderr, "nsa selfcheck: forward failed: %s\n", nsa_context_message(ctx));
        return 1;
    }
    /* causality: change every token after t0; rows <= t0 must not move by a single bit */
    const int t0 = 117;
    for (int64_t i = (int64_t)(t0 + 1) * Hq * Dk; i < (int64_t)T * Hq * Dk; i++) q[i] = (float)urand();
    for (int64_t i = (int64_t)(t0 + 1) * Hkv * Dk; i < (int64_t)T * Hkv * Dk; i++) k[i] = (float)urand();
    for (int64_t i = (int64_t)(t0 + 1) * Hkv * Dv; i < (int64_t)T * Hkv * Dv; i++) v[i] = (float)urand();
    a.out.data = o2;
    nsa_forward(ctx, &a);
    double dc = maxdiff(o1, o2, (int64_t)(t0 + 1) * Hq * Dv);
    printf("causality: rows 0..%d unchanged after changing tokens %d..%d: max diff %g  %s\n", t0,
           t0 + 1, T - 1, dc, dc == 0 ? "ok" : "FAIL");
    fails += dc != 0;
    /* full coverage: n·lp >= T and w >= T, gates (0, 1, 0) and (0, 0, 1) give the same output */
    c.n = (T + c.lp - 1) / c.lp;
    c.w = T;
    a.cfg = c;
    for (int64_t i = 0; i < (int64_t)B * T * Hq; i++) g[3 * i] = 0, g[3 * i + 1] = 1, g[3 * i + 2] = 0;
    a.out.data = o1;
    nsa_forward(ctx, &a);
    for (int64_t i = 0; i < (int64_t)B * T * Hq; i++) g[3 * i + 1] = 0, g[3 * i + 2] = 1;
    a.out.data = o2;
    nsa_forward(ctx, &a);
    double df = maxdiff(o1, o2, (int64_t)B * T * Hq * Dv);
    printf("full coverage: selection over all blocks equals the full window: max diff %g  %s\n",
           df, df < 1e-6 ? "ok" : "FAIL");
    fails += !(df < 1e-6);
    printf("nsa selfcheck: %s (B=%d T=%d Hq=%d Hkv=%d Dk=%d Dv=%d l=%d d=%d lp=%d)\n",
           fails ? "FAILED" : "all checks passed", B, T, Hq, Hkv, Dk, Dv, c.l, c.d, c.lp);
    free(q); free(k); free(v); free(g); free(o1); free(o2);
    nsa_context_destroy(ctx);
    return fails ? 1 : 0;
}
