/* test_ref_forward.c — invariants of the reference forward (DESIGN.md §5) against independent
 * dense computations written here, not through the library's row code. */
#include "harness.h"

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

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"full_coverage_dense", full_coverage_dense},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
