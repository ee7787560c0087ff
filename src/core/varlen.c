// SPDX-License-Identifier: Apache-2.0
/* varlen.c — packed documents (cu_seqlens, docs/varlen.md): checking the offsets and viewing one
 * document of a packed call as a plain call of B = 1 over its own tokens.
 * Not execution: dispatch.c and kv_fill.c run the views; no kernel reads this file's offsets.
 * Invariant: a document's view covers exactly its tokens [cu[i], cu[i+1]) (and its compressed
 * rows [cc[i], cc[i+1])), so whatever runs on it cannot address another document.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int64_t nsa_num_cmp_docs(const nsa_config *cfg, const int32_t *cu_seqlens, int64_t n_docs,
                         int64_t *offsets) {
    if (!cfg || !cu_seqlens || n_docs < 0 || cfg->l < 1 || cfg->d < 1) return -1;
    int64_t sum = 0;
    if (offsets) offsets[0] = 0;
    for (int64_t i = 0; i < n_docs; i++) {
        const int64_t len = (int64_t)cu_seqlens[i + 1] - cu_seqlens[i];
        if (len < 0) return -1;
        sum += nsa_num_cmp(cfg, len);
        if (offsets) offsets[i + 1] = sum;
    }
    return sum;
}

/* ctx->docs of at least n int64 elements. */
static nsa_status docs_reserve(nsa_context *ctx, size_t n) {
    if (ctx->docs_cap >= n) return NSA_OK;
    int64_t *p = nsa_realloc(ctx->docs, sizeof(int64_t) * n);
    if (!p) return nsa_fail(ctx, NSA_ERR_NOMEM, "cu_seqlens: out of memory for %zu offsets", n);
    ctx->docs = p;
    ctx->docs_cap = n;
    return NSA_OK;
}

nsa_status nsa_varlen_check(nsa_context *ctx, const nsa_fwd_args *a, int64_t B, int64_t T,
                            nsa_shape *s) {
    s->n_docs = s->max_seqlen = 0;
    s->cu = s->cc = NULL;
    const nsa_tensor *cu = &a->cu_seqlens;
    if (!nsa_present(cu)) {
        if (a->max_seqlen != 0)
            return nsa_fail(ctx, NSA_ERR_SHAPE, "max_seqlen: %lld without cu_seqlens",
                            (long long)a->max_seqlen);
        return NSA_OK;
    }
    /* One status for every fault of the offsets: the contract (docs/varlen.md). */
    if (cu->dtype != NSA_DTYPE_I32)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "cu_seqlens: dtype %s, expected i32",
                        nsa_dtype_name(cu->dtype));
    if (cu->device.kind != a->q.device.kind || cu->device.index != a->q.device.index)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "cu_seqlens: not on q's device");
    if (cu->ndim != 1 || cu->shape[0] < 1 || cu->stride[0] < 0)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "cu_seqlens: ndim %d, shape[0] %lld: expected one "
                        "dim of n_docs + 1 >= 1 offsets", cu->ndim,
                        (long long)(cu->ndim >= 1 ? cu->shape[0] : 0));
    if (B != 1)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "cu_seqlens: packed documents need B = 1 (q has "
                        "B = %lld)", (long long)B);
    if (a->max_seqlen < 0 || a->max_seqlen > INT32_MAX)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "max_seqlen: %lld outside [0, 2^31 - 1]",
                        (long long)a->max_seqlen);
    const int64_t n = cu->shape[0] - 1;
    if ((uint64_t)n > (uint64_t)(SIZE_MAX / 16 - 1))
        return nsa_fail(ctx, NSA_ERR_OVERFLOW, "cu_seqlens: %lld documents", (long long)n);
    NSA_TRY(docs_reserve(ctx, 3 * (size_t)(n + 1)));
    int64_t *tok = ctx->docs, *cmp = ctx->docs + (n + 1);
    int32_t *raw = (int32_t *)(ctx->docs + 2 * (n + 1)); /* n + 1 i32 fit in n + 1 int64 */
    if (cu->device.kind == NSA_DEVICE_CUDA) {
        /* a strided device tensor: copy its whole span, then pick every stride[0]-th */
        int32_t *span = nsa_malloc(sizeof(int32_t) * (size_t)(n * cu->stride[0] + 1));
        if (!span) return nsa_fail(ctx, NSA_ERR_NOMEM, "cu_seqlens: out of memory");
        nsa_status st = nsa_device_cuda_read(ctx, span, cu->data,
                                             sizeof(int32_t) * (size_t)(n * cu->stride[0] + 1));
        for (int64_t i = 0; st == NSA_OK && i <= n; i++) raw[i] = span[i * cu->stride[0]];
        free(span);
        NSA_TRY(st);
    } else {
        for (int64_t i = 0; i <= n; i++) raw[i] = ((const int32_t *)cu->data)[i * cu->stride[0]];
    }
    if (raw[0] != 0)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "cu_seqlens[0]: %d, expected 0", raw[0]);
    for (int64_t i = 0; i < n; i++) {
        if (raw[i + 1] < raw[i])
            return nsa_fail(ctx, NSA_ERR_SHAPE, "cu_seqlens[%lld]: %d < cu_seqlens[%lld] = %d "
                            "(offsets must ascend)", (long long)(i + 1), raw[i + 1],
                            (long long)i, raw[i]);
        if ((int64_t)raw[i + 1] - raw[i] > a->max_seqlen)
            return nsa_fail(ctx, NSA_ERR_SHAPE, "max_seqlen: %lld, but document %lld has %lld "
                            "tokens", (long long)a->max_seqlen, (long long)i,
                            (long long)raw[i + 1] - raw[i]);
    }
    if (raw[n] != T)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "cu_seqlens[%lld]: %d, expected T = %lld",
                        (long long)n, raw[n], (long long)T);
    for (int64_t i = 0; i <= n; i++) tok[i] = raw[i];
    s->Tc = nsa_num_cmp_docs(&a->cfg, raw, n, cmp);
    s->nsel_max = (int)((a->max_seqlen + a->cfg.lp - 1) / a->cfg.lp);
    s->n_docs = n;
    s->max_seqlen = a->max_seqlen;
    s->cu = tok;
    s->cc = cmp;
    return NSA_OK;
}

nsa_tensor nsa_tensor_rows(const nsa_tensor *t, int64_t t0, int64_t len) {
    nsa_tensor v = *t;
    if (!nsa_present(t)) return v;
    v.data = (char *)t->data + t0 * t->stride[1] * (int64_t)nsa_dtype_size(t->dtype);
    v.shape[1] = len;
    return v;
}

void nsa_varlen_doc(const nsa_fwd_args *a, const nsa_shape *s, int64_t i, nsa_fwd_args *ai,
                    nsa_shape *si) {
    const int64_t t0 = s->cu[i], len = s->cu[i + 1] - s->cu[i];
    const int64_t c0 = s->cc[i], nc = s->cc[i + 1] - s->cc[i];
    *ai = *a;
    memset(&ai->cu_seqlens, 0, sizeof ai->cu_seqlens);
    ai->max_seqlen = 0;
#define ROWS(f) ai->f = nsa_tensor_rows(&a->f, t0, len)
    ROWS(q); ROWS(k_sel); ROWS(v_sel); ROWS(k_win); ROWS(v_win); ROWS(gates); ROWS(out);
    ROWS(out_cmp); ROWS(out_sel); ROWS(out_win); ROWS(lse_cmp); ROWS(lse_sel); ROWS(lse_win);
    ROWS(sel_blocks); ROWS(sel_ranges); ROWS(block_indices);
#undef ROWS
    const int cc = a->cmp_compressed; /* compressed rows, or raw tokens */
    ai->k_cmp = nsa_tensor_rows(&a->k_cmp, cc ? c0 : t0, cc ? nc : len);
    ai->v_cmp = nsa_tensor_rows(&a->v_cmp, cc ? c0 : t0, cc ? nc : len);
    *si = *s;
    si->B = 1;
    nsa_shape_tokens(si, &a->cfg, len);
    si->n_docs = si->max_seqlen = 0;
    si->cu = si->cc = NULL;
}

void nsa_varlen_doc_grads(const nsa_fwd_args *a, const nsa_bwd_args *g, const nsa_shape *s,
                          int64_t i, nsa_bwd_args *gi) {
    const int64_t t0 = s->cu[i], len = s->cu[i + 1] - s->cu[i];
    const int64_t c0 = s->cc[i], nc = s->cc[i + 1] - s->cc[i];
    *gi = *g;
#define ROWS(f) gi->f = nsa_tensor_rows(&g->f, t0, len)
    ROWS(dout); ROWS(dq); ROWS(dk_sel); ROWS(dv_sel); ROWS(dk_win); ROWS(dv_win); ROWS(dgates);
#undef ROWS
    const int cc = a->cmp_compressed;
    gi->dk_cmp = nsa_tensor_rows(&g->dk_cmp, cc ? c0 : t0, cc ? nc : len);
    gi->dv_cmp = nsa_tensor_rows(&g->dv_cmp, cc ? c0 : t0, cc ? nc : len);
}
