// SPDX-License-Identifier: Apache-2.0
/* test_decode_ext.c — the caller's own φ (cmp_external) and nsa_kv_cache_append.
 * cmp_external: the test compresses with its own φ (a position-weighted mean, not avg), the
 * forward with cmp_compressed = 1 is the oracle, and decode feeds φ of raw_cmp_tail + the new
 * token. Append: the whole cache state after append (any chunking) equals the one after prefill.
 */
#include "test_decode_util.h"

#include "ref/kv_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const nsa_dtype dtypes[3] = {NSA_DTYPE_F32, NSA_DTYPE_BF16, NSA_DTYPE_F16};

static nsa_context *new_ctx(void) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "1");
    nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", "0");
    return ctx;
}

/* The test's φ: Σ_r (r+1)·x_r / Σ_r (r+1) over l rows of H·D values (row stride H·D), rounded to
 * the dtype by tb_set. x(r, i) gives element i of row r. */
typedef double (*row_get)(const void *src, int64_t r, int64_t i);
static void phi(const nsa_config *c, int D, row_get x, const void *src, tbuf *dst, int64_t off) {
    const double wsum = c->l * (c->l + 1) / 2.0;
    for (int64_t i = 0; i < (int64_t)c->Hkv * D; i++) {
        double acc = 0;
        for (int r = 0; r < c->l; r++) acc += (r + 1) * x(src, r, i);
        tb_set(dst, off + i, acc / wsum);
    }
}

/* φ over raw rows of a (B, T, Hkv, D) buffer: src = the first row's element index */
typedef struct {
    const tbuf *b;
    int64_t first, rs;
} raw_rows;
static double get_raw(const void *p, int64_t r, int64_t i) {
    const raw_rows *s = p;
    return tb_get(s->b, s->first + r * s->rs + i);
}
/* φ over l-1 tail rows then the new token */
typedef struct {
    const tbuf *tail;
    const tbuf *tok;
    int64_t tok_first, rs, l;
} tail_rows;
static double get_tail(const void *p, int64_t r, int64_t i) {
    const tail_rows *s = p;
    return r < s->l - 1 ? tb_get(s->tail, r * s->rs + i) : tb_get(s->tok, s->tok_first + i);
}

static void cmp_external_equals_forward(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    static const int t0s[] = {0, 6, 12, 43};
    for (int di = 0; di < 3; di++) {
        const int B = 2, T = 60;
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), dtypes[di], B, T));
        const nsa_config *c = &s.c;
        const int64_t Tc = nsa_num_cmp(c, T), rk = (int64_t)c->Hkv * c->Dk, rv = (int64_t)c->Hkv * c->Dv;
        tbuf kcomp = tb_new4(s.dt, B, Tc, c->Hkv, c->Dk, 1.0), vcomp = tb_new4(s.dt, B, Tc, c->Hkv, c->Dv, 1.0);
        for (int b = 0; b < B; b++)
            for (int64_t i = 0; i < Tc; i++) {
                raw_rows rk_src = {&s.kc, (b * T + i * c->d) * rk, rk}, rv_src = {&s.vc, (b * T + i * c->d) * rv, rv};
                phi(c, c->Dk, get_raw, &rk_src, &kcomp, (b * Tc + i) * rk);
                phi(c, c->Dv, get_raw, &rv_src, &vcomp, (b * Tc + i) * rv);
            }
        tbuf ref = tb_new4(s.dt, B, T, c->Hq, c->Dv, 0.0);
        nsa_fwd_args fa = seq_fwd(&s, T, &ref.t);
        fa.cmp_compressed = 1;
        fa.k_cmp = kcomp.t;
        fa.v_cmp = vcomp.t;
        CHECK_OK(ctx, nsa_forward(ctx, &fa));
        tbuf tk = tb_new4(s.dt, 1, c->l - 1, c->Hkv, c->Dk, 0.0), tv = tb_new4(s.dt, 1, c->l - 1, c->Hkv, c->Dv, 0.0);
        nsa_tensor tk3 = nsa_tensor_3d(tk.base, s.dt, c->l - 1, c->Hkv, c->Dk);
        nsa_tensor tv3 = nsa_tensor_3d(tv.base, s.dt, c->l - 1, c->Hkv, c->Dv);
        for (size_t k = 0; k < sizeof t0s / sizeof t0s[0]; k++) {
            const int T0 = t0s[k];
            nsa_kv_cache *cache = dec_cache(ctx, &s, B, T, 1);
            CHECK(cache);
            if (T0 > 0) {
                tbuf po = tb_new4(s.dt, B, T0, c->Hq, c->Dv, 0.0);
                nsa_fwd_args a = seq_fwd(&s, T0, &po.t);
                a.cmp_compressed = 1;
                a.k_cmp = kcomp.t;
                a.v_cmp = vcomp.t;
                a.k_cmp.shape[1] = a.v_cmp.shape[1] = nsa_num_cmp(c, T0);
                nsa_prefill_extra ex = {0, seq_view(&s.kc, T0), seq_view(&s.vc, T0)};
                CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, cache, &a, &ex));
                tb_free(&po);
            }
            step_in st;
            step_new(&st, &s);
            int64_t pos[2];
            for (int64_t t = T0; t < T; t++) {
                pos[0] = pos[1] = t;
                step_fill(&st, &s, pos);
                int emit = nsa_kv_cache_emits_next(cache, 0);
                const int want = t + 1 >= c->l && (t + 1 - c->l) % c->d == 0;
                CHECK(emit == want, "emits_next at t=%lld", (long long)t);
                st.a.kc_new = emit ? st.kcn.t : (nsa_tensor){0};
                st.a.vc_new = emit ? st.vcn.t : (nsa_tensor){0};
                for (int b = 0; b < B && emit; b++) {
                    CHECK_OK(ctx, nsa_kv_cache_raw_cmp_tail(ctx, cache, b, tk3, tv3));
                    for (int64_t e = 0; e < (c->l - 1) * rk; e++)
                        CHECK(same_bits(&tk, e, &s.kc, (b * T + t - c->l + 1) * rk + e), "raw tail");
                    CHECK(tb_guard_ok(&tk) && tb_guard_ok(&tv));
                    tail_rows ks_ = {&tk, &st.kc, b * rk, rk, c->l}, vs_ = {&tv, &st.vc, b * rv, rv, c->l};
                    phi(c, c->Dk, get_tail, &ks_, &st.kcn, b * rk);
                    phi(c, c->Dv, get_tail, &vs_, &st.vcn, b * rv);
                }
                CHECK_OK(ctx, nsa_decode_step(ctx, cache, &st.a));
                for (int b = 0; b < B; b++)
                    CHECK(step_out_equals(&st, &ref, b, t), "%s T0=%d row %d t=%lld",
                          nsa_dtype_name(s.dt), T0, b, (long long)t);
                CHECK(tb_guard_ok(&st.out));
            }
            step_free(&st);
            nsa_kv_cache_destroy(cache);
        }
        tb_free(&tk); tb_free(&tv); tb_free(&ref); tb_free(&kcomp); tb_free(&vcomp);
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

/* Appends tokens [t0, t1) of every row of s (cmp_external: with their compressed tokens). */
static nsa_status append_range(nsa_context *ctx, nsa_kv_cache *c, const seq *s, int t0, int t1,
                               const tbuf *kcomp, const tbuf *vcomp) {
    nsa_kv_append_args a;
    memset(&a, 0, sizeof a);
    const tbuf *src[6] = {&s->kc, &s->vc, &s->ks, &s->vs, &s->kw, &s->vw};
    nsa_tensor *dst[6] = {&a.k_cmp, &a.v_cmp, &a.k_sel, &a.v_sel, &a.k_win, &a.v_win};
    for (int i = 0; i < 6; i++) {
        *dst[i] = src[i]->t;
        dst[i]->data = (char *)dst[i]->data + t0 * dst[i]->stride[1] * (int64_t)nsa_dtype_size(s->dt);
        dst[i]->shape[1] = t1 - t0;
    }
    if (kcomp) {
        const int64_t c0 = nsa_num_cmp(&s->c, t0), c1 = nsa_num_cmp(&s->c, t1);
        a.kc = kcomp->t;
        a.vc = vcomp->t;
        a.kc.data = (char *)a.kc.data + c0 * a.kc.stride[1] * (int64_t)nsa_dtype_size(s->dt);
        a.vc.data = (char *)a.vc.data + c0 * a.vc.stride[1] * (int64_t)nsa_dtype_size(s->dt);
        a.kc.shape[1] = a.vc.shape[1] = c1 - c0;
    }
    return nsa_kv_cache_append(ctx, c, &a);
}

static void append_equals_prefill(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    for (int di = 0; di < 3; di++) {
        const int B = 2, T = 50;
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), dtypes[di], B, T));
        const nsa_config *c = &s.c;
        const int64_t Tc = nsa_num_cmp(c, T);
        tbuf kcomp = tb_new4(s.dt, B, Tc, c->Hkv, c->Dk, 1.0), vcomp = tb_new4(s.dt, B, Tc, c->Hkv, c->Dv, 1.0);
        for (int ext = 0; ext < 2; ext++) {
            for (int T0 = 1; T0 <= T; T0 += 7) {
                nsa_kv_cache *p = dec_cache(ctx, &s, B, T, ext), *a1 = dec_cache(ctx, &s, B, T, ext),
                             *a3 = dec_cache(ctx, &s, B, T, ext);
                CHECK(p && a1 && a3);
                tbuf po = tb_new4(s.dt, B, T0, c->Hq, c->Dv, 0.0);
                nsa_fwd_args fa = seq_fwd(&s, T0, &po.t);
                nsa_prefill_extra ex = {0, {0}, {0}};
                if (ext) {
                    fa.cmp_compressed = 1;
                    fa.k_cmp = kcomp.t;
                    fa.v_cmp = vcomp.t;
                    fa.k_cmp.shape[1] = fa.v_cmp.shape[1] = nsa_num_cmp(c, T0);
                    ex.raw_k_cmp = seq_view(&s.kc, T0);
                    ex.raw_v_cmp = seq_view(&s.vc, T0);
                }
                CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, p, &fa, &ex));
                const tbuf *kx = ext ? &kcomp : NULL, *vx = ext ? &vcomp : NULL;
                CHECK_OK(ctx, append_range(ctx, a1, &s, 0, T0, kx, vx));
                /* three chunks: cut inside blocks, at odd places */
                const int cut1 = T0 / 3, cut2 = T0 - T0 / 4;
                CHECK_OK(ctx, append_range(ctx, a3, &s, 0, cut1, kx, vx));
                CHECK_OK(ctx, append_range(ctx, a3, &s, cut1, cut2, kx, vx));
                CHECK_OK(ctx, append_range(ctx, a3, &s, cut2, T0, kx, vx));
                size_t np, n1, n3;
                unsigned char *sp = kv_snapshot(p, &np), *s1 = kv_snapshot(a1, &n1), *s3 = kv_snapshot(a3, &n3);
                CHECK(np == n1 && np == n3);
                CHECK(memcmp(sp, s1, np) == 0, "append state != prefill state (%s ext=%d T0=%d)",
                      nsa_dtype_name(s.dt), ext, T0);
                CHECK(memcmp(sp, s3, np) == 0, "chunked append state != prefill state (%s ext=%d T0=%d)",
                      nsa_dtype_name(s.dt), ext, T0);
                free(sp); free(s1); free(s3);
                tb_free(&po);
                nsa_kv_cache_destroy(p); nsa_kv_cache_destroy(a1); nsa_kv_cache_destroy(a3);
            }
        }
        tb_free(&kcomp); tb_free(&vcomp);
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"cmp_external_equals_forward", cmp_external_equals_forward},
        {"append_equals_prefill", append_equals_prefill},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
