// SPDX-License-Identifier: Apache-2.0
/* kv_api.c — the public KV-cache and decode entry points: check (src/core/kv_check.c), then the
 * cache's device operations (nsa_pipeline.kv) or, for a decode step, the router's backend.
 * Not the cache's buffers or any attention (the devices' rows) nor the fills (kv_fill.c).
 * Invariant: a decode step runs the backend nsa_route_plan binds for NSA_PASS_DECODE — the one
 * nsa_route_explain names for the same problem — and logs it once under decode.route.
 */
#include "route.h"

#include <stdlib.h>

nsa_status nsa_kv_ops_of(nsa_context *ctx, const nsa_kv_cache *c, const nsa_kv_ops **out) {
    const nsa_pipeline *pl = nsa_pipeline_for(c->desc.device.kind);
    if (!pl || !pl->kv)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "desc.device: a %s KV cache needs a %s build",
                        c->desc.device.kind == NSA_DEVICE_CUDA ? "CUDA" : "device",
                        c->desc.device.kind == NSA_DEVICE_CUDA ? "CUDA" : "matching");
    *out = pl->kv;
    return NSA_OK;
}

size_t nsa_kv_cache_bytes(const nsa_kv_cache_desc *desc) {
    int64_t bytes;
    if (nsa_kv_check_desc(NULL, desc, NULL, NULL, &bytes) != NSA_OK) return 0;
    return (size_t)bytes;
}

nsa_status nsa_kv_cache_create(nsa_context *ctx, const nsa_kv_cache_desc *desc,
                               nsa_kv_cache **out) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!out) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "out: NULL pointer");
    *out = NULL;
    nsa_kv_cache probe; /* every pointer NULL until its owner allocates it */
    memset(&probe, 0, sizeof probe);
    int64_t blk, bytes;
    NSA_TRY(nsa_kv_check_desc(ctx, desc, &probe, &blk, &bytes));
    const nsa_kv_ops *ops = NULL;
    NSA_TRY(nsa_kv_ops_of(ctx, &probe, &ops));
    nsa_kv_cache *c = nsa_calloc(1, sizeof *c);
    if (!c) return nsa_fail(ctx, NSA_ERR_NOMEM, "cache: out of memory");
    *c = probe;
    c->row = nsa_calloc((size_t)desc->B, sizeof(nsa_kv_row));
    c->blk = blk > 0 ? nsa_calloc((size_t)blk, sizeof(double)) : NULL;
    nsa_status st = NSA_OK;
    if (!c->row || (blk > 0 && !c->blk))
        st = nsa_fail(ctx, NSA_ERR_NOMEM, "cache: out of memory for %lld bytes",
                      (long long)bytes);
    if (st == NSA_OK) st = ops->alloc(ctx, c);
    if (st != NSA_OK) {
        nsa_kv_cache_destroy(c);
        return st;
    }
    *out = c;
    return NSA_OK;
}

void nsa_kv_cache_destroy(nsa_kv_cache *c) {
    if (!c) return;
    const nsa_pipeline *pl = nsa_pipeline_for(c->desc.device.kind);
    if (pl && pl->kv) pl->kv->release(c);
    free(c->row);
    free(c->blk);
    free(c);
}

nsa_status nsa_kv_cache_reset(nsa_context *ctx, nsa_kv_cache *c, int b) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!(c && b == -1)) NSA_TRY(nsa_kv_check_row(ctx, c, b));
    const nsa_kv_ops *ops = NULL;
    NSA_TRY(nsa_kv_ops_of(ctx, c, &ops));
    if (b == -1)
        memset(c->row, 0, sizeof(nsa_kv_row) * (size_t)c->desc.B);
    else
        memset(&c->row[b], 0, sizeof c->row[b]);
    return ops->reset(ctx, c, b);
}

int64_t nsa_kv_cache_len(const nsa_kv_cache *c, int b) {
    if (!c || b < 0 || b >= c->desc.B) return -1;
    return c->row[b].len;
}

int nsa_kv_cache_emits_next(const nsa_kv_cache *c, int b) {
    if (!c || b < 0 || b >= c->desc.B) return -1;
    return nsa_kv_emits(&c->desc.cfg, c->row[b].len);
}

nsa_status nsa_kv_cache_last_reads(nsa_context *ctx, const nsa_kv_cache *c, int b,
                                   nsa_decode_reads *out) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    NSA_TRY(nsa_kv_check_row(ctx, c, b));
    if (!out) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "out: NULL pointer");
    const nsa_kv_ops *ops = NULL;
    NSA_TRY(nsa_kv_ops_of(ctx, c, &ops));
    return ops->reads(ctx, c, b, out);
}

nsa_status nsa_kv_cache_raw_cmp_tail(nsa_context *ctx, const nsa_kv_cache *c, int b, nsa_tensor k,
                                     nsa_tensor v) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    NSA_TRY(nsa_kv_check_row(ctx, c, b));
    const nsa_config *g = &c->desc.cfg;
    const int64_t n = g->l - 1, S = c->row[b].len;
    if (n == 0) return NSA_OK;
    if (S < n)
        return nsa_fail(ctx, NSA_ERR_CACHE, "b: row %d holds %lld tokens, fewer than l-1 = %lld",
                        b, (long long)S, (long long)n);
    int64_t ksh[3] = {n, g->Hkv, g->Dk}, vsh[3] = {n, g->Hkv, g->Dv};
    NSA_TRY(nsa_check_tensor(ctx, "k", &k, c->desc.dtype, c->desc.device.kind, 3, ksh));
    NSA_TRY(nsa_check_tensor(ctx, "v", &v, c->desc.dtype, c->desc.device.kind, 3, vsh));
    const nsa_kv_ops *ops = NULL;
    NSA_TRY(nsa_kv_ops_of(ctx, c, &ops));
    return ops->tail(ctx, c, b, &k, &v);
}

/* The routing problem of a decode step whose newest token sits at position t_max. */
static nsa_route_problem decode_problem(const nsa_kv_cache *c, int64_t t_max) {
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = c->desc.cfg;
    p.B = c->desc.B;
    p.T = t_max + 1;
    p.dtype = c->desc.dtype;
    p.pass = NSA_PASS_DECODE;
    return p;
}

nsa_status nsa_decode_step(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    int64_t t_max;
    NSA_TRY(nsa_decode_check(ctx, c, a, &t_max));
    if (t_max < 0) return NSA_OK; /* no active row */
    const nsa_call call = {decode_problem(c, t_max), NSA_OPND_ALL, c->desc.cmp_external};
    nsa_device_caps caps;
    nsa_route_plan_t plan;
    NSA_TRY(nsa_device_caps_of(ctx, c->desc.device, &caps));
    NSA_TRY(nsa_route_plan(ctx, &call, &caps, &plan));
    const nsa_backend *be = plan.be[NSA_BRANCH_CMP];
    if (!be || !be->decode)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cache: no backend can decode on %s: %s",
                        caps.name, plan.d.reason[NSA_BRANCH_CMP]);
    nsa_log_once(ctx, "decode.route", "%s: %s", be->name, plan.d.reason[NSA_BRANCH_CMP]);
    ctx->counters.calls++;
    return be->decode(ctx, be, c, a);
}
