// SPDX-License-Identifier: Apache-2.0
/* kv_check.c — the checks of every KV-cache and decode argument: the cache descriptor and its
 * size formula, the config a call passes, rows, and the decode step's tensors.
 * Not the cache's buffers (each device's nsa_kv_ops) nor the entry points (src/route/kv_api.c).
 * Invariant: nsa_kv_cache_bytes is exactly what a cache of the checked desc allocates, and a
 * failing check names the field.
 */
#include "kv_cache.h"

#define KV_OBJECT_BYTES 256
#define KV_ROW_BYTES 64
_Static_assert(sizeof(struct nsa_kv_cache) <= KV_OBJECT_BYTES, "object bytes in the formula");
_Static_assert(sizeof(nsa_kv_row) == KV_ROW_BYTES, "row bytes in the formula");

int nsa_kv_emits(const nsa_config *c, int64_t t) {
    return t + 1 >= c->l && (t + 1 - c->l) % c->d == 0;
}

nsa_status nsa_kv_check_desc(nsa_context *ctx, const nsa_kv_cache_desc *d, nsa_kv_cache *c,
                             int64_t *blk, int64_t *bytes) {
    if (!d) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "desc: NULL pointer");
    NSA_TRY(nsa_check_config(ctx, &d->cfg));
    if (d->dtype != NSA_DTYPE_F32 && d->dtype != NSA_DTYPE_BF16 && d->dtype != NSA_DTYPE_F16)
        return nsa_fail(ctx, NSA_ERR_DTYPE, "desc.dtype: %s not allowed (f32, bf16 or f16)",
                        nsa_dtype_name(d->dtype));
    if (d->device.kind != NSA_DEVICE_CPU && d->device.kind != NSA_DEVICE_CUDA)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "desc.device: unknown device kind %d",
                        (int)d->device.kind);
    if (d->B < 1) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "desc.B: %d must be >= 1", d->B);
    if (d->max_len < 1 || d->max_len > INT32_MAX)
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "desc.max_len: %lld must be in [1, 2^31 - 1]",
                        (long long)d->max_len);
    if (d->cmp_external != 0 && d->cmp_external != 1)
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "desc.cmp_external: %d must be 0 or 1",
                        d->cmp_external);
    const nsa_config *g = &d->cfg;
    const int64_t e = (int64_t)nsa_dtype_size(d->dtype);
    const int64_t W = g->w < d->max_len ? g->w : d->max_len;
    const int64_t L = g->l < d->max_len ? g->l : d->max_len;
    const int64_t C = nsa_num_cmp(g, d->max_len) > 0 ? nsa_num_cmp(g, d->max_len) : 1;
    int64_t R, B2, x, y;
    /* B·R·(e·(max_len + W + L) + 8·C) + B·64 + 8·blk + 256 */
    if (!nsa_mul_ok(g->Hkv, (int64_t)g->Dk + g->Dv, &R) ||
        !nsa_mul_ok((int64_t)g->l * g->Hkv, g->Dk > g->Dv ? g->Dk : g->Dv, &B2) ||
        !nsa_mul_ok(e, d->max_len + W + L, &x) || !nsa_mul_ok(8, C, &y) ||
        x > INT64_MAX - y || !nsa_mul_ok(R, x + y, &x) || x > INT64_MAX - KV_ROW_BYTES ||
        !nsa_mul_ok(d->B, x + KV_ROW_BYTES, &x) || !nsa_mul_ok(8, B2, &y) ||
        x > INT64_MAX - y - KV_OBJECT_BYTES || (uint64_t)(x + y + KV_OBJECT_BYTES) > SIZE_MAX)
        return nsa_fail(ctx, NSA_ERR_OVERFLOW, "desc.max_len: a cache of %d x %lld tokens "
                        "overflows", d->B, (long long)d->max_len);
    if (c) {
        c->desc = *d;
        c->e = (size_t)e;
        c->rk = (int64_t)g->Hkv * g->Dk;
        c->rv = (int64_t)g->Hkv * g->Dv;
        c->nwin = W;
        c->nraw = L;
        c->ncmp = C;
    }
    if (blk) *blk = B2;
    if (bytes) *bytes = x + y + KV_OBJECT_BYTES;
    return NSA_OK;
}

nsa_status nsa_kv_check_cfg(nsa_context *ctx, const nsa_kv_cache *c, const nsa_config *cfg) {
    const nsa_config *m = &c->desc.cfg;
#define SAME(f)                                                                                    \
    if (cfg->f != m->f)                                                                            \
        return nsa_fail(ctx, NSA_ERR_CACHE, "cfg." #f ": %g, the cache was made for %g",          \
                        (double)cfg->f, (double)m->f);
    SAME(l) SAME(d) SAME(lp) SAME(n) SAME(n_init) SAME(n_local) SAME(w) SAME(scale)
    SAME(Hq) SAME(Hkv) SAME(Dk) SAME(Dv)
#undef SAME
    return NSA_OK;
}

nsa_status nsa_kv_check_row(nsa_context *ctx, const nsa_kv_cache *c, int b) {
    if (!c) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "cache: NULL pointer");
    if (b < 0 || b >= c->desc.B)
        return nsa_fail(ctx, NSA_ERR_CACHE, "b: row %d out of range [0, %d)", b, c->desc.B);
    return NSA_OK;
}

nsa_status nsa_decode_check(nsa_context *ctx, const nsa_kv_cache *c, const nsa_decode_args *a,
                            int64_t *t_max) {
    if (!c) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "cache: NULL pointer");
    if (!a) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "args: NULL pointer");
    NSA_TRY(nsa_kv_check_cfg(ctx, c, &a->cfg));
    const nsa_config *g = &c->desc.cfg;
    const nsa_dtype dt = c->desc.dtype;
    const nsa_device_kind dev = c->desc.device.kind;
    const int B = c->desc.B;
    int64_t qs[4] = {B, 1, g->Hq, g->Dk}, gs[4] = {B, 1, g->Hq, 3}, os[4] = {B, 1, g->Hq, g->Dv};
    int64_t ks[4] = {B, 1, g->Hkv, g->Dk}, vs[4] = {B, 1, g->Hkv, g->Dv};
    NSA_TRY(nsa_check_tensor(ctx, "q", &a->q, dt, dev, 4, qs));
    NSA_TRY(nsa_check_tensor(ctx, "k_cmp", &a->k_cmp, dt, dev, 4, ks));
    NSA_TRY(nsa_check_tensor(ctx, "v_cmp", &a->v_cmp, dt, dev, 4, vs));
    NSA_TRY(nsa_check_tensor(ctx, "k_sel", &a->k_sel, dt, dev, 4, ks));
    NSA_TRY(nsa_check_tensor(ctx, "v_sel", &a->v_sel, dt, dev, 4, vs));
    if (g->w > 0) {
        NSA_TRY(nsa_check_tensor(ctx, "k_win", &a->k_win, dt, dev, 4, ks));
        NSA_TRY(nsa_check_tensor(ctx, "v_win", &a->v_win, dt, dev, 4, vs));
    }
    NSA_TRY(nsa_check_tensor(ctx, "gates", &a->gates, dt, dev, 4, gs));
    NSA_TRY(nsa_check_tensor(ctx, "out", &a->out, dt, dev, 4, os));
    int64_t bs[4] = {B, 1, g->Hkv, g->n};
    NSA_TRY(nsa_check_opt_tensor(ctx, "sel_blocks", &a->sel_blocks, NSA_DTYPE_I32, dev, 4, bs));
    if (nsa_present(&a->sel_blocks) && dev == NSA_DEVICE_CUDA)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel_blocks: a decode step reports its blocks "
                        "on CPU caches only in this build");

    int emits = 0;
    *t_max = -1;
    for (int b = 0; b < B; b++) {
        if (a->active && !a->active[b]) continue;
        const int64_t t = c->row[b].len;
        if (t >= c->desc.max_len)
            return nsa_fail(ctx, NSA_ERR_CACHE, "cache row %d: full at max_len = %lld (reset it, "
                            "or make a longer cache)", b, (long long)c->desc.max_len);
        if (t > *t_max) *t_max = t;
        emits |= nsa_kv_emits(g, t);
    }
    if (c->desc.cmp_external && emits) {
        NSA_TRY(nsa_check_tensor(ctx, "kc_new", &a->kc_new, dt, dev, 4, ks));
        NSA_TRY(nsa_check_tensor(ctx, "vc_new", &a->vc_new, dt, dev, 4, vs));
    } else if (!c->desc.cmp_external && (nsa_present(&a->kc_new) || nsa_present(&a->vc_new))) {
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "kc_new: only for a cmp_external cache (this "
                        "one computes φ = avg from k_cmp)");
    }
    return NSA_OK;
}
