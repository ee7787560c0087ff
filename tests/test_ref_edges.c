// SPDX-License-Identifier: Apache-2.0
/* test_ref_edges.c — the reference at its edges: no NaN when a branch has no key (T < l,
 * T < lp, w = 0, absent optional inputs, n·lp ≥ T), guard bytes after every output and inputs
 * left untouched, non-contiguous (transposed, padded) tensors, thread-count determinism of the
 * forward, and bf16/f16 results that are exactly the f32 results rounded.
 */
#include "ref_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static nsa_config edge_cfg(int l, int d, int lp, int n, int w) {
    nsa_config c = nsa_config_default(4, 2, 5, 3);
    c.l = l;
    c.d = d;
    c.lp = lp;
    c.n = n;
    c.w = w;
    return c;
}

/* Forward and backward of one edge problem: every output finite except lse = -inf exactly where
 * the branch has no key (then its output is 0); every gradient finite. */
static void edge_case(const char *what, nsa_config c, int T, unsigned flags, int drop_win,
                      int drop_cmp) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const int B = 2;
    prob p;
    prob_init(&p, c, NSA_DTYPE_F32, B, T, P_EXTRAS | flags);
    if (drop_win) {
        memset(&p.a.k_win, 0, sizeof p.a.k_win);
        memset(&p.a.v_win, 0, sizeof p.a.v_win);
    }
    if (drop_cmp) {
        memset(&p.a.k_cmp, 0, sizeof p.a.k_cmp);
        memset(&p.a.v_cmp, 0, sizeof p.a.v_cmp);
    }
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    pgrad g;
    pgrad_init(&g, &p);
    CHECK_OK(ctx, nsa_backward(ctx, &p.a, &g.g));
    CHECK(prob_guards_ok(&p) && pgrad_guards_ok(&g), "%s: guard bytes overwritten", what);
    for (int64_t i = 0; i < tb_numel(&p.out); i++)
        CHECK(isfinite(tb_get(&p.out, i)), "%s: out[%lld] not finite", what, (long long)i);
    for (int k = 0; k < 8; k++)
        for (int64_t i = 0; g.d[k].base && i < tb_numel(&g.d[k]); i++)
            CHECK(isfinite(tb_get(&g.d[k], i)), "%s: %s[%lld] not finite", what, pgrad_names[k],
                  (long long)i);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int none[3] = {t + 1 < c.l,
                                 c.n_init == 0 && c.n_local == 0 && t + 1 < c.lp,
                                 c.w == 0};
            for (int h = 0; h < c.Hq; h++) {
                const int64_t row = ((int64_t)b * T + t) * c.Hq + h;
                for (int br = 0; br < 3; br++) {
                    double l = tb_get(&p.lse[br], row);
                    CHECK(none[br] ? l == -INFINITY : isfinite(l), "%s: lse of branch %d at t=%d "
                          "is %g", what, br, t, l);
                    for (int e = 0; e < c.Dv; e++) {
                        double o = tb_get(&p.ob[br], row * c.Dv + e);
                        CHECK(none[br] ? o == 0.0 : isfinite(o), "%s: branch %d output at t=%d "
                              "is %g", what, br, t, o);
                    }
                }
            }
        }
    pgrad_free(&g);
    prob_free(&p);
    nsa_context_destroy(ctx);
}

static void no_nan_edges(void) {
    edge_case("T < l", edge_cfg(8, 4, 8, 3, 4), 5, 0, 0, 0);
    edge_case("T < lp", edge_cfg(4, 2, 16, 3, 4), 9, 0, 0, 0);
    edge_case("w = 0, k_win/v_win absent", edge_cfg(4, 2, 4, 3, 0), 13, 0, 1, 0);
    edge_case("n·lp >= T, w >= T", edge_cfg(4, 2, 4, 8, 40), 20, 0, 0, 0);
    edge_case("compressed, T < l, k_cmp absent", edge_cfg(8, 4, 8, 3, 2), 6, P_CMP_COMPRESSED, 0, 1);
    edge_case("T = 1", edge_cfg(1, 1, 1, 3, 1), 1, 0, 0, 0);
    nsa_config c = edge_cfg(4, 2, 8, 1, 0);
    c.n_init = c.n_local = 0; /* no forced block: no key before the first complete block */
    edge_case("no forced blocks", c, 17, P_SHARED, 0, 0);
}

/* Guard bytes after every output (forward and backward) in every dtype, inputs unchanged. */
static void guard_bytes_all_outputs(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const nsa_dtype dts[3] = {NSA_DTYPE_F32, NSA_DTYPE_BF16, NSA_DTYPE_F16};
    for (int k = 0; k < 3; k++) {
        prob p;
        prob_init(&p, edge_cfg(4, 2, 8, 3, 7), dts[k], 2, 37, P_EXTRAS);
        pgrad g;
        pgrad_init(&g, &p);
        tbuf *in[8];
        prob_inputs(&p, in);
        void *copy[8];
        for (int i = 0; i < 8; i++) {
            copy[i] = malloc(in[i]->bytes + 1);
            memcpy(copy[i], in[i]->base, in[i]->bytes);
        }
        CHECK_OK(ctx, nsa_forward(ctx, &p.a));
        CHECK_OK(ctx, nsa_backward(ctx, &p.a, &g.g));
        CHECK(prob_guards_ok(&p), "%s: guard bytes after a forward output overwritten",
              nsa_dtype_name(dts[k]));
        CHECK(pgrad_guards_ok(&g), "%s: guard bytes after a gradient overwritten",
              nsa_dtype_name(dts[k]));
        for (int i = 0; i < 8; i++) {
            CHECK(!memcmp(copy[i], in[i]->base, in[i]->bytes), "%s: input %d modified",
                  nsa_dtype_name(dts[k]), i);
            free(copy[i]);
        }
        pgrad_free(&g);
        prob_free(&p);
    }
    nsa_context_destroy(ctx);
}

/* A copy of t in a transposed layout (dims 1 and 2 swapped in memory) with 3 elements of padding
 * after each innermost row. *mem receives the allocation. */
static nsa_tensor strided_copy(const nsa_tensor *t, void **mem) {
    const int nd = t->ndim, perm[5] = {0, 2, 1, 3, 4};
    const size_t esz = nsa_dtype_size(t->dtype);
    nsa_tensor s = *t;
    int64_t st = 1;
    for (int k = nd - 1; k >= 0; k--) {
        const int dim = nd >= 3 ? perm[k] : k;
        s.stride[dim] = st;
        st *= t->shape[dim] + (k == nd - 1 ? 3 : 0);
    }
    *mem = calloc((size_t)st + 1, esz);
    s.data = *mem;
    int64_t idx[5] = {0}, n = nsa_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i, so = 0, to = 0;
        for (int k = nd - 1; k >= 0; k--) {
            idx[k] = r % t->shape[k];
            r /= t->shape[k];
            so += idx[k] * s.stride[k];
            to += idx[k] * t->stride[k];
        }
        memcpy((char *)s.data + so * (int64_t)esz, (char *)t->data + to * (int64_t)esz, esz);
    }
    return s;
}

/* Every element of strided s equals contiguous c bitwise. */
static bool same_elements(const nsa_tensor *s, const nsa_tensor *c) {
    const size_t esz = nsa_dtype_size(c->dtype);
    int64_t n = nsa_tensor_numel(c);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i, so = 0;
        for (int k = c->ndim - 1; k >= 0; k--) {
            so += (r % c->shape[k]) * s->stride[k];
            r /= c->shape[k];
        }
        if (memcmp((char *)s->data + so * (int64_t)esz, (char *)c->data + i * (int64_t)esz, esz))
            return false;
    }
    return true;
}

/* Transposed and padded inputs, outputs and gradients give bitwise the contiguous results. */
static void strided_inputs(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const unsigned flag_sets[2] = {P_EXTRAS, P_EXTRAS | P_CMP_COMPRESSED};
    for (int fs = 0; fs < 2; fs++) {
        prob p;
        prob_init(&p, edge_cfg(4, 2, 4, 3, 6), NSA_DTYPE_BF16, 2, 29, flag_sets[fs]);
        pgrad g;
        pgrad_init(&g, &p);
        CHECK_OK(ctx, nsa_forward(ctx, &p.a));
        CHECK_OK(ctx, nsa_backward(ctx, &p.a, &g.g));
        nsa_fwd_args a = p.a;
        nsa_bwd_args gb = g.g;
        nsa_tensor *fa[] = {&a.q,       &a.k_cmp,   &a.v_cmp,   &a.k_sel,   &a.v_sel,
                            &a.k_win,   &a.v_win,   &a.gates,   &a.out,     &a.out_cmp,
                            &a.out_sel, &a.out_win, &a.lse_cmp, &a.lse_sel, &a.lse_win,
                            &a.sel_blocks, &a.sel_ranges};
        nsa_tensor *ga[] = {&gb.dout,  &gb.dq,     &gb.dk_cmp, &gb.dv_cmp, &gb.dk_sel,
                            &gb.dv_sel, &gb.dk_win, &gb.dv_win, &gb.dgates};
        const int nfa = 17, nga = 9;
        void *mem[26];
        for (int i = 0; i < nfa; i++) *fa[i] = strided_copy(fa[i], &mem[i]);
        for (int i = 0; i < nga; i++) *ga[i] = strided_copy(ga[i], &mem[nfa + i]);
        for (int i = 8; i < nfa; i++) memset(mem[i], 0x7f, 8); /* outputs: poison the start */
        CHECK_OK(ctx, nsa_forward(ctx, &a));
        nsa_fwd_args ab = a;
        ab.sel_ranges.data = NULL; /* backward recomputes the selection from strided inputs */
        CHECK_OK(ctx, nsa_backward(ctx, &ab, &gb));
        const nsa_tensor *fc[] = {&p.a.out,     &p.a.out_cmp,  &p.a.out_sel,    &p.a.out_win,
                                  &p.a.lse_cmp, &p.a.lse_sel,  &p.a.lse_win,    &p.a.sel_blocks,
                                  &p.a.sel_ranges};
        for (int i = 0; i < 9; i++)
            CHECK(same_elements(fa[8 + i], fc[i]), "forward output %d differs when strided", i);
        for (int i = 1; i < nga; i++)
            CHECK(same_elements(ga[i], &g.d[i - 1].t), "%s differs when strided",
                  pgrad_names[i - 1]);
        for (int i = 0; i < nfa + nga; i++) free(mem[i]);
        pgrad_free(&g);
        prob_free(&p);
    }
    nsa_context_destroy(ctx);
}

/* The forward gives the same bytes run after run and for 1, 2, 3 or the default threads. */
static void determinism_forward_threads(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const int threads[5] = {1, 2, 3, 0, 1};
    prob p[5];
    for (int r = 0; r < 5; r++) {
        prob_init(&p[r], edge_cfg(8, 4, 8, 4, 9), NSA_DTYPE_F16, 3, 71, P_EXTRAS);
        if (r) {
            tbuf *i0[8], *ir[8];
            prob_inputs(&p[0], i0);
            prob_inputs(&p[r], ir);
            for (int i = 0; i < 8; i++) memcpy(ir[i]->base, i0[i]->base, i0[i]->bytes);
        }
        CHECK_OK(ctx, nsa_context_set_threads(ctx, threads[r]));
        CHECK_OK(ctx, nsa_forward(ctx, &p[r].a));
    }
    for (int r = 1; r < 5; r++) {
        CHECK(ut_same_bytes(&p[0].out, &p[r].out), "out differs with %d threads", threads[r]);
        CHECK(ut_same_bytes(&p[0].blocks, &p[r].blocks), "blocks differ with %d threads",
              threads[r]);
        for (int br = 0; br < 3; br++)
            CHECK(ut_same_bytes(&p[0].ob[br], &p[r].ob[br]) &&
                      ut_same_bytes(&p[0].lse[br], &p[r].lse[br]),
                  "branch %d differs with %d threads", br, threads[r]);
    }
    for (int r = 0; r < 5; r++) prob_free(&p[r]);
    nsa_context_destroy(ctx);
}

/* With inputs exact in every dtype, bf16 and f16 outputs and gradients are exactly the f32
 * ones rounded to nearest even: the dtype changes only the final store. */
static void dtypes_round_f32(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const nsa_dtype dts[3] = {NSA_DTYPE_F32, NSA_DTYPE_BF16, NSA_DTYPE_F16};
    prob p[3];
    pgrad g[3];
    for (int k = 0; k < 3; k++) prob_init(&p[k], edge_cfg(4, 2, 8, 3, 5), dts[k], 2, 31, 0);
    for (int k = 0; k < 3; k++) pgrad_init(&g[k], &p[k]);
    tbuf *in[3][8];
    for (int k = 0; k < 3; k++) prob_inputs(&p[k], in[k]);
    for (int i = 0; i < 8; i++)
        for (int64_t e = 0; e < tb_numel(in[0][i]); e++) {
            double x = nsa_rng_int(-128, 128) / 64.0;
            for (int k = 0; k < 3; k++) tb_set(in[k][i], e, x);
        }
    for (int64_t e = 0; e < tb_numel(&g[0].dout); e++) {
        double x = nsa_rng_int(-128, 128) / 64.0;
        for (int k = 0; k < 3; k++) tb_set(&g[k].dout, e, x);
    }
    for (int k = 0; k < 3; k++) {
        CHECK_OK(ctx, nsa_forward(ctx, &p[k].a));
        CHECK_OK(ctx, nsa_backward(ctx, &p[k].a, &g[k].g));
    }
    for (int k = 1; k < 3; k++) {
        uint16_t (*rnd)(float) = dts[k] == NSA_DTYPE_BF16 ? nsa_f32_to_bf16 : nsa_f32_to_f16;
        for (int64_t e = 0; e < tb_numel(&p[0].out); e++)
            CHECK(((uint16_t *)p[k].out.base)[e] == rnd(((float *)p[0].out.base)[e]),
                  "%s out[%lld] is not the f32 result rounded", nsa_dtype_name(dts[k]),
                  (long long)e);
        for (int i = 0; i < 8; i++)
            for (int64_t e = 0; e < tb_numel(&g[0].d[i]); e++)
                CHECK(((uint16_t *)g[k].d[i].base)[e] == rnd(((float *)g[0].d[i].base)[e]),
                      "%s %s[%lld] is not the f32 gradient rounded", nsa_dtype_name(dts[k]),
                      pgrad_names[i], (long long)e);
    }
    for (int k = 0; k < 3; k++) {
        pgrad_free(&g[k]);
        prob_free(&p[k]);
    }
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"no_nan_edges", no_nan_edges},
        {"guard_bytes_all_outputs", guard_bytes_all_outputs},
        {"strided_inputs", strided_inputs},
        {"determinism_forward_threads", determinism_forward_threads},
        {"dtypes_round_f32", dtypes_round_f32},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
