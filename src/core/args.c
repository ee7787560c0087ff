// SPDX-License-Identifier: Apache-2.0
/* args.c — validation of nsa_forward / nsa_backward arguments, shared by every backend.
 * Not routing: it only decides whether the call is well formed and derives its shapes.
 * Invariant: after NSA_OK every present tensor matches its documented dims, dtype and device,
 * and every element offset and scratch size fits int64 / size_t.
 */
#include "internal.h"

static nsa_status check_dt(nsa_context *ctx, const char *name, nsa_dtype dt) {
    if (dt == NSA_DTYPE_F32 || dt == NSA_DTYPE_BF16 || dt == NSA_DTYPE_F16) return NSA_OK;
    return nsa_fail(ctx, NSA_ERR_DTYPE, "%s: dtype %s not allowed (f32, bf16 or f16)", name,
                    nsa_dtype_name(dt));
}

/* numel of (a, b, c, d) doubles must fit size_t: the reference keeps double copies. */
static nsa_status check_size(nsa_context *ctx, const char *name, int64_t a, int64_t b, int64_t c,
                             int64_t d) {
    int64_t x;
    if (!nsa_mul_ok(a, b, &x) || !nsa_mul_ok(x, c, &x) || !nsa_mul_ok(x, d, &x) ||
        !nsa_mul_ok(x, 8, &x) || (uint64_t)x > (uint64_t)SIZE_MAX)
        return nsa_fail(ctx, NSA_ERR_OVERFLOW, "%s: %lld x %lld x %lld x %lld elements overflow",
                        name, (long long)a, (long long)b, (long long)c, (long long)d);
    return NSA_OK;
}

/* Caller-supplied blocks (block_indices): shape, then every row ascending, causal, -1 only as
 * trailing padding. Read on the host, so CPU tensors only. With packed documents (s->n_docs)
 * the blocks count from each document's first token, like sel_blocks. */
static nsa_status check_given(nsa_context *ctx, const nsa_fwd_args *a, int64_t B, int64_t T,
                              const nsa_shape *s) {
    const nsa_tensor *g = &a->block_indices;
    if (!nsa_present(g)) return NSA_OK;
    const nsa_config *c = &a->cfg;
    int64_t bs[4] = {B, T, c->Hkv, c->n};
    NSA_TRY(nsa_check_tensor(ctx, "block_indices", g, NSA_DTYPE_I32, a->q.device.kind, 4, bs));
    if (g->device.kind != NSA_DEVICE_CPU)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "block_indices: caller-supplied blocks run on "
                        "the CPU only in this build (the CUDA pipelines select on the device)");
    int64_t doc = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            while (s->n_docs && t >= s->cu[doc + 1]) doc++;
            const int64_t pos = s->n_docs ? t - s->cu[doc] : t; /* the query's position */
            for (int h = 0; h < c->Hkv; h++) {
                int32_t prev = -1;
                for (int k = 0; k < c->n; k++) {
                    int32_t j = ((const int32_t *)g->data)[nsa_off4(g, b, t, h, k)];
                    const char *why = NULL;
                    if (j < -1) why = "is negative (-1 is the only padding)";
                    else if (j == -1) prev = INT32_MAX; /* padding: only -1 may follow */
                    else if (prev == INT32_MAX) why = "follows -1 padding";
                    else if (j <= prev) why = "is not above the previous block (ascending, "
                                              "no duplicates)";
                    else if ((int64_t)j > pos / c->lp) why = "starts after the query (j*lp > t)";
                    else prev = j;
                    if (why)
                        return nsa_fail(ctx, NSA_ERR_INVALID_ARG,
                                        "block_indices[%lld, %lld, %d, %d] = %d %s",
                                        (long long)b, (long long)t, h, k, (int)j, why);
                }
            }
        }
    return NSA_OK;
}

nsa_status nsa_args_check_fwd(nsa_context *ctx, const nsa_fwd_args *a, nsa_shape *s) {
    if (!a) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "args: NULL pointer");
    const nsa_config *c = &a->cfg;
    NSA_TRY(nsa_check_config(ctx, c));
    if (!a->q.data) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "q: NULL data");
    NSA_TRY(check_dt(ctx, "q", a->q.dtype));
    if (a->q.device.kind != NSA_DEVICE_CPU && a->q.device.kind != NSA_DEVICE_CUDA)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "q: unknown device kind %d", (int)a->q.device.kind);
    if (a->q.ndim != 4)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "q: ndim %d, expected 4 (B, T, Hq, Dk)", a->q.ndim);
    const nsa_dtype dt = a->q.dtype;
    const nsa_device_kind dev = a->q.device.kind;
    const int64_t B = a->q.shape[0], T = a->q.shape[1];
    int64_t qs[4] = {-1, -1, c->Hq, c->Dk};
    NSA_TRY(nsa_check_tensor(ctx, "q", &a->q, dt, dev, 4, qs));
    NSA_TRY(check_size(ctx, "q", B, T, c->Hq, c->Dk > c->Dv ? c->Dk : c->Dv));
    NSA_TRY(check_size(ctx, "k_sel", B, T, c->Hkv, c->Dk + c->Dv));
    /* the selection scratch: (B, T, Hkv, n) blocks and their (lo, hi) ranges */
    NSA_TRY(check_size(ctx, "cfg.n", B, T, c->Hkv, 2 * (int64_t)c->n));
    nsa_shape_tokens(s, c, T);
    NSA_TRY(nsa_varlen_check(ctx, a, B, T, s));
    const int64_t Tc = s->Tc;

    int64_t kshape[4] = {B, T, c->Hkv, c->Dk}, vshape[4] = {B, T, c->Hkv, c->Dv};
    int64_t kcs[4] = {B, a->cmp_compressed ? Tc : T, c->Hkv, c->Dk};
    int64_t vcs[4] = {B, a->cmp_compressed ? Tc : T, c->Hkv, c->Dv};
    if (a->cmp_compressed && Tc == 0) {
        NSA_TRY(nsa_check_opt_tensor(ctx, "k_cmp", &a->k_cmp, dt, dev, 4, kcs));
        NSA_TRY(nsa_check_opt_tensor(ctx, "v_cmp", &a->v_cmp, dt, dev, 4, vcs));
    } else {
        NSA_TRY(nsa_check_tensor(ctx, "k_cmp", &a->k_cmp, dt, dev, 4, kcs));
        NSA_TRY(nsa_check_tensor(ctx, "v_cmp", &a->v_cmp, dt, dev, 4, vcs));
    }
    NSA_TRY(nsa_check_tensor(ctx, "k_sel", &a->k_sel, dt, dev, 4, kshape));
    NSA_TRY(nsa_check_tensor(ctx, "v_sel", &a->v_sel, dt, dev, 4, vshape));
    if (c->w > 0) {
        NSA_TRY(nsa_check_tensor(ctx, "k_win", &a->k_win, dt, dev, 4, kshape));
        NSA_TRY(nsa_check_tensor(ctx, "v_win", &a->v_win, dt, dev, 4, vshape));
    } else {
        NSA_TRY(nsa_check_opt_tensor(ctx, "k_win", &a->k_win, dt, dev, 4, kshape));
        NSA_TRY(nsa_check_opt_tensor(ctx, "v_win", &a->v_win, dt, dev, 4, vshape));
    }
    int64_t gs[4] = {B, T, c->Hq, 3}, os[4] = {B, T, c->Hq, c->Dv}, ls[3] = {B, T, c->Hq};
    int64_t bs[4] = {B, T, c->Hkv, c->n}, rs[5] = {B, T, c->Hkv, c->n, 2};
    NSA_TRY(nsa_check_tensor(ctx, "gates", &a->gates, dt, dev, 4, gs));
    NSA_TRY(nsa_check_tensor(ctx, "out", &a->out, dt, dev, 4, os));
    NSA_TRY(nsa_check_opt_tensor(ctx, "out_cmp", &a->out_cmp, dt, dev, 4, os));
    NSA_TRY(nsa_check_opt_tensor(ctx, "out_sel", &a->out_sel, dt, dev, 4, os));
    NSA_TRY(nsa_check_opt_tensor(ctx, "out_win", &a->out_win, dt, dev, 4, os));
    NSA_TRY(nsa_check_opt_tensor(ctx, "lse_cmp", &a->lse_cmp, NSA_DTYPE_F32, dev, 3, ls));
    NSA_TRY(nsa_check_opt_tensor(ctx, "lse_sel", &a->lse_sel, NSA_DTYPE_F32, dev, 3, ls));
    NSA_TRY(nsa_check_opt_tensor(ctx, "lse_win", &a->lse_win, NSA_DTYPE_F32, dev, 3, ls));
    NSA_TRY(nsa_check_opt_tensor(ctx, "sel_blocks", &a->sel_blocks, NSA_DTYPE_I32, dev, 4, bs));
    NSA_TRY(nsa_check_opt_tensor(ctx, "sel_ranges", &a->sel_ranges, NSA_DTYPE_I32, dev, 5, rs));
    NSA_TRY(check_given(ctx, a, B, T, s));
    if (T > INT32_MAX)
        return nsa_fail(ctx, NSA_ERR_OVERFLOW, "q: T = %lld exceeds int32 token indices",
                        (long long)T);

    s->B = B;
    s->Hq = c->Hq;
    s->Hkv = c->Hkv;
    s->G = c->Hq / c->Hkv;
    s->Dk = c->Dk;
    s->Dv = c->Dv;
    s->dt = dt;
    s->dev = dev;
    s->scale = (double)nsa_config_scale(c);
    return NSA_OK;
}

nsa_status nsa_args_check_bwd(nsa_context *ctx, const nsa_fwd_args *a, const nsa_bwd_args *g,
                              const nsa_shape *s) {
    if (!g) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "grads: NULL pointer");
    const nsa_config *c = &a->cfg;
    const int64_t Tk = a->cmp_compressed ? s->Tc : s->T;
    int64_t os[4] = {s->B, s->T, c->Hq, c->Dv}, qs[4] = {s->B, s->T, c->Hq, c->Dk};
    int64_t ks[4] = {s->B, s->T, c->Hkv, c->Dk}, vs[4] = {s->B, s->T, c->Hkv, c->Dv};
    int64_t kcs[4] = {s->B, Tk, c->Hkv, c->Dk}, vcs[4] = {s->B, Tk, c->Hkv, c->Dv};
    int64_t gs[4] = {s->B, s->T, c->Hq, 3};
    NSA_TRY(nsa_check_tensor(ctx, "dout", &g->dout, s->dt, s->dev, 4, os));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dq", &g->dq, s->dt, s->dev, 4, qs));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dk_cmp", &g->dk_cmp, s->dt, s->dev, 4, kcs));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dv_cmp", &g->dv_cmp, s->dt, s->dev, 4, vcs));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dk_sel", &g->dk_sel, s->dt, s->dev, 4, ks));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dv_sel", &g->dv_sel, s->dt, s->dev, 4, vs));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dk_win", &g->dk_win, s->dt, s->dev, 4, ks));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dv_win", &g->dv_win, s->dt, s->dev, 4, vs));
    NSA_TRY(nsa_check_opt_tensor(ctx, "dgates", &g->dgates, s->dt, s->dev, 4, gs));
    static const char *const names[8] = {"dq",     "dk_cmp", "dv_cmp", "dk_sel",
                                         "dv_sel", "dk_win", "dv_win", "dgates"};
    const nsa_tensor *const ts[8] = {&g->dq,     &g->dk_cmp, &g->dv_cmp, &g->dk_sel,
                                     &g->dv_sel, &g->dk_win, &g->dv_win, &g->dgates};
    return nsa_check_disjoint(ctx, 8, names, ts);
}
