// SPDX-License-Identifier: Apache-2.0
/* test_varlen_kv.c — KV-cache prefill from packed documents: row b ← document b, and decode
 * then continues each document exactly (bitwise the plain forward of the longer document).
 * Not the packed forward itself (test_varlen.c). Document b is the first L_b tokens of row b of
 * a plain batch, so the expected outputs are that batch's own forward (causal: a prefix's
 * outputs are the whole row's first outputs).
 */
#include "test_decode_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies tokens [0, L) of row b of src (B, T, ...) to tokens [t0, t0 + L) of dst (1, *, ...). */
static void pack_row(tbuf *dst, int64_t t0, const tbuf *src, int b, int T, int64_t L) {
    const size_t row = src->bytes / (size_t)(src->t.shape[0] * T);
    memcpy((char *)dst->base + (size_t)t0 * row, (const char *)src->base + (size_t)b * T * row,
           (size_t)L * row);
}

/* Documents of 0 (an empty row), 1, l-1 = 7, l + d = 12 and 19 tokens of a batch of 5 rows of
 * 40; each row then decodes to 40 tokens. */
static void prefill_docs_then_decode(void) {
    enum { B = 5, T = 40 };
    static const int L[B] = {0, 1, 7, 12, 19};
    static const nsa_dtype dts[2] = {NSA_DTYPE_F32, NSA_DTYPE_BF16};
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "1");
    for (int di = 0; di < 2; di++) {
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), dts[di], B, T), "%s", nsa_context_message(ctx));
        const nsa_config *c = &s.c;
        int32_t cu[B + 1] = {0};
        int mx = 0;
        for (int b = 0; b < B; b++) {
            cu[b + 1] = cu[b] + L[b];
            mx = L[b] > mx ? L[b] : mx;
        }
        const int P = cu[B];
        tbuf *src[8] = {&s.q, &s.kc, &s.vc, &s.ks, &s.vs, &s.kw, &s.vw, &s.g};
        tbuf pk[8], out = tb_new4(s.dt, 1, P, c->Hq, c->Dv, 0.0);
        for (int j = 0; j < 8; j++) {
            pk[j] = tb_new4(s.dt, 1, P, src[j]->t.shape[2], src[j]->t.shape[3], 0.0);
            for (int b = 0; b < B; b++) pack_row(&pk[j], cu[b], src[j], b, T, L[b]);
        }
        int64_t cs[1] = {B + 1};
        tbuf cut = tb_new(NSA_DTYPE_I32, 1, cs, 0.0);
        memcpy(cut.base, cu, sizeof cu);
        nsa_fwd_args a;
        memset(&a, 0, sizeof a);
        a.cfg = *c;
        a.q = pk[0].t, a.k_cmp = pk[1].t, a.v_cmp = pk[2].t, a.k_sel = pk[3].t;
        a.v_sel = pk[4].t, a.k_win = pk[5].t, a.v_win = pk[6].t, a.gates = pk[7].t;
        a.out = out.t;
        a.cu_seqlens = cut.t;
        a.max_seqlen = mx;
        nsa_kv_cache *kv = dec_cache(ctx, &s, B, T, 0);
        CHECK(kv);
        CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, kv, &a, NULL));
        CHECK(tb_guard_ok(&out));
        const int64_t rowe = (int64_t)c->Hq * c->Dv;
        for (int b = 0; b < B; b++) {
            CHECK(nsa_kv_cache_len(kv, b) == L[b], "row %d holds %lld tokens, expected %d", b,
                  (long long)nsa_kv_cache_len(kv, b), L[b]);
            for (int64_t e = 0; e < L[b] * rowe; e++)
                CHECK(same_bits(&out, cu[b] * rowe + e, &s.out, (int64_t)b * T * rowe + e),
                      "%s: prefill output of document %d differs from its row's forward",
                      nsa_dtype_name(s.dt), b);
        }
        /* decode every row from its own length to T */
        step_in st;
        step_new(&st, &s);
        int64_t pos[B];
        for (int t = 0; t < T; t++) {
            int any = 0;
            for (int b = 0; b < B; b++) {
                pos[b] = L[b] + t < T ? L[b] + t : -1;
                any |= pos[b] >= 0;
            }
            if (!any) break;
            step_fill(&st, &s, pos);
            CHECK_OK(ctx, nsa_decode_step(ctx, kv, &st.a));
            for (int b = 0; b < B; b++)
                if (pos[b] >= 0)
                    CHECK(step_out_equals(&st, &s.out, b, pos[b]),
                          "%s: decode of document %d at t=%lld differs from the forward",
                          nsa_dtype_name(s.dt), b, (long long)pos[b]);
        }
        step_free(&st);
        nsa_kv_cache_destroy(kv);
        tb_free(&cut);
        tb_free(&out);
        for (int j = 0; j < 8; j++) tb_free(&pk[j]);
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

/* More documents than the cache has rows from b0, or a document longer than max_len: refused
 * with NSA_ERR_CACHE before anything is filled. */
static void prefill_docs_refused(void) {
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", "0");
    seq s;
    CHECK(seq_new(ctx, &s, dec_cfg(), NSA_DTYPE_F32, 1, 30));
    static const int32_t cu[4] = {0, 10, 10, 30};
    int64_t cs[1] = {4};
    tbuf cut = tb_new(NSA_DTYPE_I32, 1, cs, 0.0);
    memcpy(cut.base, cu, sizeof cu);
    nsa_fwd_args a = seq_fwd(&s, 30, &s.out.t);
    a.cu_seqlens = cut.t;
    a.max_seqlen = 20;
    nsa_kv_cache *small = dec_cache(ctx, &s, 3, 19, 0); /* document 2 has 20 tokens */
    nsa_kv_cache *few = dec_cache(ctx, &s, 2, 30, 0);   /* three documents, two rows */
    CHECK(small && few);
    nsa_status st = nsa_kv_cache_prefill(ctx, small, &a, NULL);
    CHECK(st == NSA_ERR_CACHE && strstr(nsa_context_message(ctx), "max_len"), "%s: %s",
          nsa_status_name(st), nsa_context_message(ctx));
    st = nsa_kv_cache_prefill(ctx, few, &a, NULL);
    CHECK(st == NSA_ERR_CACHE && strstr(nsa_context_message(ctx), "extra.b0"), "%s: %s",
          nsa_status_name(st), nsa_context_message(ctx));
    for (int b = 0; b < 3; b++) CHECK(nsa_kv_cache_len(small, b) == 0);
    for (int b = 0; b < 2; b++) CHECK(nsa_kv_cache_len(few, b) == 0);
    nsa_kv_cache_destroy(small);
    nsa_kv_cache_destroy(few);
    tb_free(&cut);
    seq_free(&s);
    nsa_context_destroy(ctx);
}

/* Tokens [t0, t0 + len) of t (dim 1): the test's own view, independent of the library's. */
static nsa_tensor rows(nsa_tensor t, int64_t t0, int64_t len) {
    t.data = (char *)t.data + t0 * t.stride[1] * (int64_t)nsa_dtype_size(t.dtype);
    t.shape[1] = len;
    return t;
}

/* A packed prefill leaves every byte of the cache as one prefill per document does (b0 = i),
 * with φ = avg and with caller-compressed tokens (cmp_external: k_cmp packed per document). */
static void prefill_docs_state(void) {
    enum { N = 4 };
    static const int L[N] = {5, 0, 12, 19};
    static const int32_t cu[N + 1] = {0, 5, 5, 17, 36};
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "1");
    for (int ext = 0; ext < 2; ext++) {
        seq s;
        CHECK(seq_new(ctx, &s, dec_cfg(), NSA_DTYPE_BF16, 1, 36), "%s", nsa_context_message(ctx));
        const nsa_config *c = &s.c;
        int64_t cc[N + 1];
        const int64_t Tc = nsa_num_cmp_docs(c, cu, N, cc);
        tbuf kcp = tb_new4(s.dt, 1, Tc, c->Hkv, c->Dk, 1.0);
        tbuf vcp = tb_new4(s.dt, 1, Tc, c->Hkv, c->Dv, 1.0);
        tbuf out = tb_new4(s.dt, 1, 36, c->Hq, c->Dv, 0.0);
        int64_t cs[1] = {N + 1};
        tbuf cut = tb_new(NSA_DTYPE_I32, 1, cs, 0.0);
        memcpy(cut.base, cu, sizeof cu);
        nsa_fwd_args a = seq_fwd(&s, 36, &out.t);
        nsa_prefill_extra ex;
        memset(&ex, 0, sizeof ex);
        if (ext) {
            a.cmp_compressed = 1;
            a.k_cmp = kcp.t, a.v_cmp = vcp.t;
            ex.raw_k_cmp = s.kc.t, ex.raw_v_cmp = s.vc.t;
        }
        nsa_kv_cache *A = dec_cache(ctx, &s, N, 36, ext), *Bc = dec_cache(ctx, &s, N, 36, ext);
        CHECK(A && Bc);
        nsa_fwd_args pa = a;
        pa.cu_seqlens = cut.t;
        pa.max_seqlen = 19;
        CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, A, &pa, &ex));
        for (int i = 0; i < N; i++) {
            if (L[i] == 0) continue; /* an empty document leaves its row empty */
            nsa_fwd_args d = a;
            nsa_tensor *ts[9] = {&d.q, &d.k_sel, &d.v_sel, &d.k_win, &d.v_win, &d.gates, &d.out,
                                 &d.k_cmp, &d.v_cmp};
            for (int k = 0; k < 9; k++)
                *ts[k] = k >= 7 && ext ? rows(*ts[k], cc[i], cc[i + 1] - cc[i])
                                       : rows(*ts[k], cu[i], L[i]);
            nsa_prefill_extra de = {i, {0}, {0}};
            if (ext) {
                de.raw_k_cmp = rows(s.kc.t, cu[i], L[i]);
                de.raw_v_cmp = rows(s.vc.t, cu[i], L[i]);
            }
            CHECK_OK(ctx, nsa_kv_cache_prefill(ctx, Bc, &d, &de));
        }
        size_t na, nb;
        unsigned char *sa = kv_snapshot(A, &na), *sb = kv_snapshot(Bc, &nb);
        CHECK(na == nb && !memcmp(sa, sb, na), "cmp_external=%d: the packed prefill's cache "
              "differs from the per-document prefills'", ext);
        free(sa), free(sb);
        nsa_kv_cache_destroy(A);
        nsa_kv_cache_destroy(Bc);
        tb_free(&cut), tb_free(&out), tb_free(&kcp), tb_free(&vcp);
        seq_free(&s);
    }
    nsa_context_destroy(ctx);
}

static const nsa_case cases[] = {
    {"prefill_docs_state", prefill_docs_state},
    {"prefill_docs_then_decode", prefill_docs_then_decode},
    {"prefill_docs_refused", prefill_docs_refused},
};

int main(int argc, char **argv) {
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
