// SPDX-License-Identifier: Apache-2.0
/* kv_cache.c — the KV cache object: size formula, create/destroy/reset, queries, and the one
 * function that appends a token (nsa_kv_push) shared by prefill, append and decode.
 * Not attention: decode.c runs the step, kv_fill.c validates and fills from tensors.
 * Invariant: nsa_kv_cache_bytes is exactly what nsa_kv_cache_create allocates, and a compressed
 * token is computed by nsa_ref_compress_block over the same double rows the forward uses.
 */
#include "kv_cache.h"

#include <stdlib.h>

#define KV_OBJECT_BYTES 256
#define KV_ROW_BYTES 64
_Static_assert(sizeof(struct nsa_kv_cache) <= KV_OBJECT_BYTES, "object bytes in the formula");
_Static_assert(sizeof(nsa_kv_row) == KV_ROW_BYTES, "row bytes in the formula");

int nsa_kv_emits(const nsa_config *c, int64_t t) {
    return t + 1 >= c->l && (t + 1 - c->l) % c->d == 0;
}

/* The sizes of desc's buffers (elements per row of the batch), all overflow-checked. */
typedef struct {
    int64_t R, W, L, C, blk, total;
} kv_sizes;

static int sizes_of(const nsa_kv_cache_desc *d, kv_sizes *z) {
    const nsa_config *c = &d->cfg;
    int64_t e = (int64_t)nsa_dtype_size(d->dtype), x, y;
    z->W = c->w < d->max_len ? c->w : d->max_len;
    z->L = c->l < d->max_len ? c->l : d->max_len;
    z->C = nsa_num_cmp(c, d->max_len) > 0 ? nsa_num_cmp(c, d->max_len) : 1;
    /* B·R·(e·(max_len + W + L) + 8·C) + B·64 + 8·blk + 256 */
    if (!nsa_mul_ok(c->Hkv, (int64_t)c->Dk + c->Dv, &z->R) ||
        !nsa_mul_ok((int64_t)c->l * c->Hkv, c->Dk > c->Dv ? c->Dk : c->Dv, &z->blk) ||
        !nsa_mul_ok(e, d->max_len + z->W + z->L, &x) || !nsa_mul_ok(8, z->C, &y) ||
        x > INT64_MAX - y || !nsa_mul_ok(z->R, x + y, &x) || x > INT64_MAX - KV_ROW_BYTES ||
        !nsa_mul_ok(d->B, x + KV_ROW_BYTES, &x) || !nsa_mul_ok(8, z->blk, &y) ||
        x > INT64_MAX - y - KV_OBJECT_BYTES || (uint64_t)(x + y + KV_OBJECT_BYTES) > SIZE_MAX)
        return 0;
    z->total = x + y + KV_OBJECT_BYTES;
    return 1;
}

/* Every desc field except device support; the message names the field. */
static nsa_status check_desc(nsa_context *ctx, const nsa_kv_cache_desc *d, kv_sizes *z) {
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
    if (!sizes_of(d, z))
        return nsa_fail(ctx, NSA_ERR_OVERFLOW, "desc.max_len: a cache of %d x %lld tokens overflows",
                        d->B, (long long)d->max_len);
    return NSA_OK;
}

size_t nsa_kv_cache_bytes(const nsa_kv_cache_desc *desc) {
    kv_sizes z;
    if (check_desc(NULL, desc, &z) != NSA_OK) return 0;
    return (size_t)z.total;
}

nsa_status nsa_kv_cache_create(nsa_context *ctx, const nsa_kv_cache_desc *desc,
                               nsa_kv_cache **out) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!out) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "out: NULL pointer");
    *out = NULL;
    kv_sizes z;
    NSA_TRY(check_desc(ctx, desc, &z));
    nsa_kv_cache *c = nsa_calloc(1, KV_OBJECT_BYTES);
    if (!c) return nsa_fail(ctx, NSA_ERR_NOMEM, "cache: out of memory");
    const nsa_config *g = &desc->cfg;
    c->desc = *desc;
    c->e = nsa_dtype_size(desc->dtype);
    c->rk = (int64_t)g->Hkv * g->Dk;
    c->rv = (int64_t)g->Hkv * g->Dv;
    c->nwin = z.W;
    c->nraw = z.L;
    c->ncmp = z.C;
    const size_t B = (size_t)desc->B, e = c->e;
    int ok = 1;
    const int on_dev = desc->device.kind == NSA_DEVICE_CUDA; /* buffers on the device */
#define ALLOC(p, n, sz)                                                                            \
    do {                                                                                           \
        if ((n) > 0 && !((p) = nsa_calloc((size_t)(n), (sz)))) ok = 0;                             \
    } while (0)
    if (!on_dev) {
    ALLOC(c->ks, B * (size_t)(desc->max_len * c->rk), e);
    ALLOC(c->vs, B * (size_t)(desc->max_len * c->rv), e);
    ALLOC(c->kw, B * (size_t)(c->nwin * c->rk), e);
    ALLOC(c->vw, B * (size_t)(c->nwin * c->rv), e);
    ALLOC(c->kr, B * (size_t)(c->nraw * c->rk), e);
    ALLOC(c->vr, B * (size_t)(c->nraw * c->rv), e);
    ALLOC(c->kc, B * (size_t)(c->ncmp * c->rk), sizeof(double));
    ALLOC(c->vc, B * (size_t)(c->ncmp * c->rv), sizeof(double));
    }
    ALLOC(c->row, B, sizeof(nsa_kv_row));
    ALLOC(c->blk, (size_t)z.blk, sizeof(double));
#undef ALLOC
    if (!ok) {
        nsa_kv_cache_destroy(c);
        return nsa_fail(ctx, NSA_ERR_NOMEM, "cache: out of memory for %lld bytes",
                        (long long)z.total);
    }
    if (on_dev) {
        nsa_status st = nsa_device_cuda_kv_alloc(ctx, c);
        if (st != NSA_OK) {
            nsa_kv_cache_destroy(c);
            return st;
        }
    }
    *out = c;
    return NSA_OK;
}

void nsa_kv_cache_destroy(nsa_kv_cache *c) {
    if (!c) return;
    if (c->desc.device.kind == NSA_DEVICE_CUDA) nsa_device_cuda_kv_free(c); /* NULLs them */
    free(c->ks);
    free(c->vs);
    free(c->kw);
    free(c->vw);
    free(c->kr);
    free(c->vr);
    free(c->kc);
    free(c->vc);
    free(c->row);
    free(c->blk);
    free(c);
}

static nsa_status check_row(nsa_context *ctx, const nsa_kv_cache *c, int b) {
    if (!c) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "cache: NULL pointer");
    if (b < 0 || b >= c->desc.B)
        return nsa_fail(ctx, NSA_ERR_CACHE, "b: row %d out of range [0, %d)", b, c->desc.B);
    return NSA_OK;
}

nsa_status nsa_kv_cache_reset(nsa_context *ctx, nsa_kv_cache *c, int b) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (c && b == -1) {
        memset(c->row, 0, sizeof(nsa_kv_row) * (size_t)c->desc.B);
        return c->desc.device.kind == NSA_DEVICE_CUDA ? nsa_device_cuda_kv_reset(ctx, c, -1)
                                                      : NSA_OK;
    }
    NSA_TRY(check_row(ctx, c, b));
    memset(&c->row[b], 0, sizeof c->row[b]);
    return c->desc.device.kind == NSA_DEVICE_CUDA ? nsa_device_cuda_kv_reset(ctx, c, b) : NSA_OK;
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
    NSA_TRY(check_row(ctx, c, b));
    if (!out) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "out: NULL pointer");
    if (c->desc.device.kind == NSA_DEVICE_CUDA) return nsa_device_cuda_kv_reads(ctx, c, b, out);
    *out = c->row[b].reads;
    return NSA_OK;
}

nsa_status nsa_kv_cache_raw_cmp_tail(nsa_context *ctx, const nsa_kv_cache *c, int b, nsa_tensor k,
                                     nsa_tensor v) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    NSA_TRY(check_row(ctx, c, b));
    const nsa_config *g = &c->desc.cfg;
    const int64_t n = g->l - 1, S = c->row[b].len;
    if (n == 0) return NSA_OK;
    if (S < n)
        return nsa_fail(ctx, NSA_ERR_CACHE, "b: row %d holds %lld tokens, fewer than l-1 = %lld",
                        b, (long long)S, (long long)n);
    int64_t ksh[3] = {n, g->Hkv, g->Dk}, vsh[3] = {n, g->Hkv, g->Dv};
    NSA_TRY(nsa_check_tensor(ctx, "k", &k, c->desc.dtype, c->desc.device.kind, 3, ksh));
    NSA_TRY(nsa_check_tensor(ctx, "v", &v, c->desc.dtype, c->desc.device.kind, 3, vsh));
    if (c->desc.device.kind == NSA_DEVICE_CUDA) return nsa_device_cuda_kv_tail(ctx, c, b, &k, &v);
    for (int64_t r = 0; r < n; r++) {
        const int64_t slot = (S - n + r) % c->nraw;
        const unsigned char *kr = c->kr + ((int64_t)b * c->nraw + slot) * c->rk * (int64_t)c->e;
        const unsigned char *vr = c->vr + ((int64_t)b * c->nraw + slot) * c->rv * (int64_t)c->e;
        for (int h = 0; h < g->Hkv; h++) {
            for (int e = 0; e < g->Dk; e++)
                memcpy((char *)k.data + (r * k.stride[0] + h * k.stride[1] + e * k.stride[2]) * c->e,
                       kr + ((int64_t)h * g->Dk + e) * c->e, c->e);
            for (int e = 0; e < g->Dv; e++)
                memcpy((char *)v.data + (r * v.stride[0] + h * v.stride[1] + e * v.stride[2]) * c->e,
                       vr + ((int64_t)h * g->Dv + e) * c->e, c->e);
        }
    }
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

/* Copies token (sb, si) of t (Hkv, D elements, cache dtype) into dst, element bits as they are. */
static void copy_token(const nsa_kv_cache *c, unsigned char *dst, const nsa_tensor *t, int64_t sb,
                       int64_t si, int D) {
    for (int h = 0; h < c->desc.cfg.Hkv; h++)
        for (int e = 0; e < D; e++)
            memcpy(dst + ((int64_t)h * D + e) * c->e,
                   (const char *)t->data + nsa_off4(t, sb, si, h, e) * (int64_t)c->e, c->e);
}

/* φ = avg of block i of row b from the raw ring (positions i·d .. i·d+l-1) into out. */
static void compress(nsa_kv_cache *c, int b, int64_t i, const unsigned char *ring, int64_t rs,
                     int D, double *out) {
    const nsa_config *g = &c->desc.cfg;
    for (int r = 0; r < g->l; r++) {
        const unsigned char *src = ring + ((int64_t)b * c->nraw + (i * g->d + r) % c->nraw) * rs *
                                              (int64_t)c->e;
        for (int64_t x = 0; x < rs; x++) c->blk[r * rs + x] = nsa_kv_get(c, src + x * c->e);
    }
    for (int h = 0; h < g->Hkv; h++)
        nsa_ref_compress_block(c->blk + (int64_t)h * D, rs, g->l, D, out + (int64_t)h * D);
}

void nsa_kv_push(nsa_kv_cache *c, int b, const nsa_kv_src *src, int64_t sb, int64_t si,
                 int64_t sc) {
    const nsa_config *g = &c->desc.cfg;
    const int64_t t = c->row[b].len, e = (int64_t)c->e;
    copy_token(c, c->ks + ((int64_t)b * c->desc.max_len + t) * c->rk * e, src->k_sel, sb, si, g->Dk);
    copy_token(c, c->vs + ((int64_t)b * c->desc.max_len + t) * c->rv * e, src->v_sel, sb, si, g->Dv);
    if (c->nwin > 0) {
        const int64_t slot = (int64_t)b * c->nwin + t % c->nwin;
        copy_token(c, c->kw + slot * c->rk * e, src->k_win, sb, si, g->Dk);
        copy_token(c, c->vw + slot * c->rv * e, src->v_win, sb, si, g->Dv);
    }
    const int64_t rslot = (int64_t)b * c->nraw + t % c->nraw;
    copy_token(c, c->kr + rslot * c->rk * e, src->k_cmp, sb, si, g->Dk);
    copy_token(c, c->vr + rslot * c->rv * e, src->v_cmp, sb, si, g->Dv);
    if (nsa_kv_emits(g, t)) {
        const int64_t i = (t + 1 - g->l) / g->d;
        double *kc = c->kc + ((int64_t)b * c->ncmp + i) * c->rk;
        double *vc = c->vc + ((int64_t)b * c->ncmp + i) * c->rv;
        if (c->desc.cmp_external) {
            for (int h = 0; h < g->Hkv; h++) {
                for (int x = 0; x < g->Dk; x++)
                    kc[h * g->Dk + x] = nsa_load(src->kc, nsa_off4(src->kc, sb, sc, h, x));
                for (int x = 0; x < g->Dv; x++)
                    vc[h * g->Dv + x] = nsa_load(src->vc, nsa_off4(src->vc, sb, sc, h, x));
            }
        } else {
            compress(c, b, i, c->kr, c->rk, g->Dk, kc);
            compress(c, b, i, c->vr, c->rv, g->Dv, vc);
        }
    }
    c->row[b].len = t + 1;
}
