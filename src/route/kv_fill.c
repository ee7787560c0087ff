// SPDX-License-Identifier: Apache-2.0
/* kv_fill.c — the public entry points that fill a KV cache from whole tensors:
 * nsa_kv_cache_prefill (a routed forward that also fills the cache) and nsa_kv_cache_append
 * (fills without attention), both through the device's nsa_kv_ops.fill.
 * Not the decode step (kv_api.c). The CPU fill pushes token by token through nsa_kv_push, the
 * function a decode step uses, so every path leaves a row in the same state for the same tokens.
 * Invariant: everything is validated before the first byte of the cache changes.
 */
#include "route.h"

/* Rows [b0, b0 + Bp) exist. */
static nsa_status check_rows(nsa_context *ctx, const nsa_kv_cache *c, int64_t b0, int64_t Bp,
                             const char *field) {
    if (b0 < 0 || Bp < 0 || b0 + Bp > c->desc.B)
        return nsa_fail(ctx, NSA_ERR_CACHE, "%s: rows [%lld, %lld) outside the cache's %d rows",
                        field, (long long)b0, (long long)(b0 + Bp), c->desc.B);
    return NSA_OK;
}

static nsa_status check_room(nsa_context *ctx, const nsa_kv_cache *c, int64_t b, int64_t T) {
    if (T > c->desc.max_len - c->row[b].len)
        return nsa_fail(ctx, NSA_ERR_CACHE,
                        "cache row %lld: %lld + %lld tokens exceed max_len = %lld", (long long)b,
                        (long long)c->row[b].len, (long long)T, (long long)c->desc.max_len);
    return NSA_OK;
}

/* Fills T tokens of src's rows 0..Bp-1 into the empty cache rows b0..b0+Bp-1 (the device's
 * nsa_kv_ops.fill). */
static nsa_status fill(nsa_context *ctx, const nsa_kv_ops *ops, nsa_kv_cache *c,
                       const nsa_kv_src *src, int64_t b0, int64_t Bp, int64_t T) {
    if (Bp == 0 || T == 0) return NSA_OK; /* an empty document leaves its row empty */
    return ops->fill(ctx, c, src, (int)b0, Bp, T, 0);
}

nsa_status nsa_kv_cache_prefill(nsa_context *ctx, nsa_kv_cache *c, const nsa_fwd_args *fwd,
                                const nsa_prefill_extra *extra) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!c) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "cache: NULL pointer");
    nsa_shape s;
    NSA_TRY(nsa_args_check_fwd(ctx, fwd, &s));
    NSA_TRY(nsa_kv_check_cfg(ctx, c, &fwd->cfg));
    if (s.dt != c->desc.dtype)
        return nsa_fail(ctx, NSA_ERR_DTYPE, "q: dtype %s, the cache holds %s",
                        nsa_dtype_name(s.dt), nsa_dtype_name(c->desc.dtype));
    if (s.dev != c->desc.device.kind)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "q: not on the cache's device");
    if (fwd->cmp_compressed != c->desc.cmp_external)
        return nsa_fail(ctx, NSA_ERR_CACHE, "cmp_compressed: %d, the cache was made with "
                        "cmp_external = %d", fwd->cmp_compressed, c->desc.cmp_external);
    const int64_t b0 = extra ? extra->b0 : 0;
    const int64_t rows = s.n_docs > 0 ? s.n_docs : s.B; /* packed: document i → row b0 + i */
    NSA_TRY(check_rows(ctx, c, b0, rows, "extra.b0"));
    for (int64_t b = b0; b < b0 + rows; b++) {
        if (c->row[b].len != 0)
            return nsa_fail(ctx, NSA_ERR_CACHE, "cache row %lld holds %lld tokens; prefill needs "
                            "an empty row (nsa_kv_cache_reset)", (long long)b,
                            (long long)c->row[b].len);
        NSA_TRY(check_room(ctx, c, b, s.n_docs > 0 ? s.cu[b - b0 + 1] - s.cu[b - b0] : s.T));
    }
    const nsa_config *g = &fwd->cfg;
    int64_t ks[4] = {s.B, s.T, g->Hkv, g->Dk}, vs[4] = {s.B, s.T, g->Hkv, g->Dv};
    const nsa_tensor *rk = &fwd->k_cmp, *rv = &fwd->v_cmp;
    if (c->desc.cmp_external) {
        if (!extra) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "extra: NULL, a cmp_external cache "
                                    "needs the raw cmp tokens");
        NSA_TRY(nsa_check_tensor(ctx, "extra.raw_k_cmp", &extra->raw_k_cmp, s.dt, s.dev, 4, ks));
        NSA_TRY(nsa_check_tensor(ctx, "extra.raw_v_cmp", &extra->raw_v_cmp, s.dt, s.dev, 4, vs));
        rk = &extra->raw_k_cmp;
        rv = &extra->raw_v_cmp;
    } else if (extra && (nsa_present(&extra->raw_k_cmp) || nsa_present(&extra->raw_v_cmp))) {
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "extra.raw_k_cmp: only for a cmp_external "
                        "cache (this one computes φ = avg from k_cmp)");
    }
    const nsa_kv_ops *ops = NULL;
    NSA_TRY(nsa_kv_ops_of(ctx, c, &ops));
    NSA_TRY(nsa_forward(ctx, fwd));
    const int ext = c->desc.cmp_external;
    if (s.n_docs == 0) {
        nsa_kv_src src = {rk, rv, &fwd->k_sel, &fwd->v_sel, &fwd->k_win, &fwd->v_win,
                          ext ? &fwd->k_cmp : NULL, ext ? &fwd->v_cmp : NULL};
        return fill(ctx, ops, c, &src, b0, s.B, s.T);
    }
    /* nsa_forward re-read the same offsets into the same context buffer: s.cu is still valid */
    for (int64_t i = 0; i < s.n_docs; i++) {
        const int64_t t0 = s.cu[i], len = s.cu[i + 1] - t0;
        const int64_t c0 = s.cc[i], nc = s.cc[i + 1] - c0;
        nsa_tensor v[8] = {
            nsa_tensor_rows(rk, t0, len),           nsa_tensor_rows(rv, t0, len),
            nsa_tensor_rows(&fwd->k_sel, t0, len),  nsa_tensor_rows(&fwd->v_sel, t0, len),
            nsa_tensor_rows(&fwd->k_win, t0, len),  nsa_tensor_rows(&fwd->v_win, t0, len),
            nsa_tensor_rows(&fwd->k_cmp, c0, nc),   nsa_tensor_rows(&fwd->v_cmp, c0, nc)};
        nsa_kv_src src = {&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], ext ? &v[6] : NULL,
                          ext ? &v[7] : NULL};
        NSA_TRY(fill(ctx, ops, c, &src, b0 + i, 1, len));
    }
    return NSA_OK;
}

nsa_status nsa_kv_cache_append(nsa_context *ctx, nsa_kv_cache *c, const nsa_kv_append_args *a) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!c) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "cache: NULL pointer");
    if (!a) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "args: NULL pointer");
    const nsa_config *g = &c->desc.cfg;
    const nsa_dtype dt = c->desc.dtype;
    const nsa_device_kind dev = c->desc.device.kind;
    int64_t any4[4] = {-1, -1, g->Hkv, g->Dk};
    NSA_TRY(nsa_check_tensor(ctx, "k_sel", &a->k_sel, dt, dev, 4, any4));
    const int64_t Bp = a->k_sel.shape[0], T = a->k_sel.shape[1];
    NSA_TRY(check_rows(ctx, c, a->b0, Bp, "b0"));
    if (Bp == 0 || T == 0) return NSA_OK;
    const int64_t S0 = c->row[a->b0].len;
    for (int64_t b = a->b0; b < a->b0 + Bp; b++) {
        if (c->row[b].len != S0)
            return nsa_fail(ctx, NSA_ERR_CACHE, "b0: row %lld holds %lld tokens, row %d holds "
                            "%lld; append needs rows of equal length", (long long)b,
                            (long long)c->row[b].len, a->b0, (long long)S0);
        NSA_TRY(check_room(ctx, c, b, T));
    }
    int64_t ks[4] = {Bp, T, g->Hkv, g->Dk}, vs[4] = {Bp, T, g->Hkv, g->Dv};
    NSA_TRY(nsa_check_tensor(ctx, "k_cmp", &a->k_cmp, dt, dev, 4, ks));
    NSA_TRY(nsa_check_tensor(ctx, "v_cmp", &a->v_cmp, dt, dev, 4, vs));
    NSA_TRY(nsa_check_tensor(ctx, "v_sel", &a->v_sel, dt, dev, 4, vs));
    if (g->w > 0) {
        NSA_TRY(nsa_check_tensor(ctx, "k_win", &a->k_win, dt, dev, 4, ks));
        NSA_TRY(nsa_check_tensor(ctx, "v_win", &a->v_win, dt, dev, 4, vs));
    }
    const int64_t c0 = nsa_num_cmp(g, S0), Tc = nsa_num_cmp(g, S0 + T) - c0;
    int64_t kcs[4] = {Bp, Tc, g->Hkv, g->Dk}, vcs[4] = {Bp, Tc, g->Hkv, g->Dv};
    if (c->desc.cmp_external && Tc > 0) {
        NSA_TRY(nsa_check_tensor(ctx, "kc", &a->kc, dt, dev, 4, kcs));
        NSA_TRY(nsa_check_tensor(ctx, "vc", &a->vc, dt, dev, 4, vcs));
    } else if (!c->desc.cmp_external && (nsa_present(&a->kc) || nsa_present(&a->vc))) {
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "kc: only for a cmp_external cache (this one "
                        "computes φ = avg)");
    }
    const nsa_kv_ops *ops = NULL;
    NSA_TRY(nsa_kv_ops_of(ctx, c, &ops));
    nsa_kv_src src = {&a->k_cmp, &a->v_cmp, &a->k_sel, &a->v_sel, &a->k_win, &a->v_win,
                      &a->kc, &a->vc};
    return ops->fill(ctx, c, &src, a->b0, Bp, T, S0);
}
