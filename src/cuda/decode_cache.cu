// SPDX-License-Identifier: Apache-2.0
/* decode_cache.cu — CUDA KV caches: device buffers, reset, filling from whole tensors (prefill
 * and append: history, rings, φ = avg of every block the tokens complete), the read counters,
 * the raw cmp tail (the CUDA row nsa_cuda_kv_ops, src/core/kv_cache.h), and the host side of a
 * decode step (nsa_cu_decode_step: the backends.cu row the router bound picks the step).
 * Not the step's attention (decode_step.cu) nor validation (src/core/kv_check.c and the
 * dispatch layer, src/route/kv_api.c and kv_fill.c, do it before calling here).
 * Invariant: a compressed token is the double mean of the same dtype values in the same order
 * as nsa_ref_compress_block, so a CUDA cache holds bitwise the CPU cache's compressed tokens.
 */
#include "decode_common.cuh"

#include <stdlib.h>
#include <string.h>

static nsa_cu_kv *kv_of(const nsa_kv_cache *c) { return (nsa_cu_kv *)c->dev; }

#define NBUF 20 /* device buffers of a cache: 8 of the CPU layout, 12 of state and scratch */

static nsa_status cu_kv_alloc(nsa_context *ctx, nsa_kv_cache *c) {
    const int ndev = nsa_device_cuda_count();
    if (c->desc.device.index < 0 || c->desc.device.index >= ndev)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "desc.device: CUDA device %d does not exist (%d "
                        "found)", c->desc.device.index, ndev);
    nsa_cu_kv *k = (nsa_cu_kv *)nsa_calloc(1, sizeof *k);
    if (!k) return nsa_fail(ctx, NSA_ERR_NOMEM, "cache: out of host memory");
    c->dev = k;
    const nsa_config *g = &c->desc.cfg;
    const size_t B = (size_t)c->desc.B, e = c->e, G = (size_t)(g->Hq / g->Hkv);
    k->nsplit = (int)((c->ncmp + 63) / 64);
    k->ncmp4 = (c->ncmp + 3) / 4 * 4;
    k->nsel_split = (int)(((int64_t)g->n * g->lp + 63) / 64);
    k->nsplit2 = k->nsel_split + (int)((c->nwin + 63) / 64);
    const size_t part1 = B * (size_t)g->Hkv * G * (size_t)(g->Dv + 2) * 4;
    const size_t sz[NBUF] = {B * (size_t)(c->desc.max_len * c->rk) * e,
                           B * (size_t)(c->desc.max_len * c->rv) * e,
                           B * (size_t)(c->nwin * c->rk) * e, B * (size_t)(c->nwin * c->rv) * e,
                           B * (size_t)(c->nraw * c->rk) * e, B * (size_t)(c->nraw * c->rv) * e,
                           B * (size_t)(c->ncmp * c->rk) * 8, B * (size_t)(c->ncmp * c->rv) * 8,
                           B * 8, B * 4 * 8, B * (size_t)c->desc.cfg.Hkv * 4,
                           B * (size_t)c->desc.cfg.Hq * (size_t)c->ncmp * 8,
                           B * (size_t)c->desc.cfg.Hkv * (size_t)k->ncmp4 * 8,
                           B * (size_t)(c->ncmp * c->rk) * e, B * (size_t)(c->ncmp * c->rv) * e,
                           B * (size_t)g->Hq * (size_t)k->ncmp4 * 4, part1 * (size_t)k->nsplit,
                           part1 * (size_t)k->nsplit2, B * (size_t)g->Hkv * (size_t)g->n * 8,
                           B * (size_t)g->Hkv * 16};
    void **dst[NBUF] = {(void **)&c->ks, (void **)&c->vs, (void **)&c->kw, (void **)&c->vw,
                        (void **)&c->kr, (void **)&c->vr, (void **)&c->kc, (void **)&c->vc,
                        (void **)&k->len, (void **)&k->reads, (void **)&k->selr, (void **)&k->sc,
                        (void **)&k->pg, &k->kcT, &k->vcT, (void **)&k->scf, (void **)&k->part,
                        (void **)&k->part2, (void **)&k->rng, (void **)&k->sync};
    for (int i = 0; i < NBUF; i++) {
        cudaError_t er = cudaMalloc(dst[i], sz[i] ? sz[i] : 1);
        if (er != cudaSuccess) {
            cudaGetLastError();
            *dst[i] = NULL;
            return nsa_fail(ctx, NSA_ERR_NOMEM, "cache: %zu bytes of device memory: %s", sz[i],
                            cudaGetErrorString(er));
        }
    }
    cudaError_t er = cudaMemset(k->len, 0, sz[8]);
    if (er == cudaSuccess) er = cudaMemset(k->reads, 0, sz[9]);
    if (er == cudaSuccess) er = cudaMemset(k->sync, 0, sz[19]);
    return nsa_cu_check(ctx, er, "cache: clear");
}

static void cu_kv_release(nsa_kv_cache *c) {
    nsa_cu_kv *k = kv_of(c);
    void *p[8] = {c->ks, c->vs, c->kw, c->vw, c->kr, c->vr, c->kc, c->vc};
    for (int i = 0; i < 8; i++)
        if (p[i]) cudaFree(p[i]);
    c->ks = c->vs = c->kw = c->vw = c->kr = c->vr = NULL;
    c->kc = c->vc = NULL;
    if (k) {
        void *q[12] = {k->len, k->reads, k->selr, k->sc, k->pg, k->kcT, k->vcT,
                       k->scf, k->part, k->part2, k->rng, k->sync};
        for (int i = 0; i < 12; i++)
            if (q[i]) cudaFree(q[i]);
        free(k);
    }
    c->dev = NULL;
}

static nsa_status cu_kv_reset(nsa_context *ctx, nsa_kv_cache *c, int b) {
    nsa_cu_kv *k = kv_of(c);
    cudaStream_t st = (cudaStream_t)ctx->stream;
    const size_t first = b < 0 ? 0 : (size_t)b, rows = b < 0 ? (size_t)c->desc.B : 1;
    cudaError_t er = cudaMemsetAsync(k->len + first, 0, rows * 8, st);
    if (er == cudaSuccess) er = cudaMemsetAsync(k->reads + first * 4, 0, rows * 32, st);
    return nsa_cu_check(ctx, er, "cache: reset");
}

/* Grid: one thread per (bi, t, h, e) of the tokens t ≥ t_from, 256 per block. Copies the
 * element's bits into history (slots = 0: position p) or a ring (slot p % slots). */
template <typename T>
__global__ void fill_tokens_kernel(nsa_cu_view src, T *dst, int64_t slots, int64_t rows, int b0,
                                   int64_t S0, int64_t t_from, int64_t nt, int H, int D,
                                   int64_t n) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int e = (int)(idx % D);
    int64_t r = idx / D;
    const int h = (int)(r % H);
    r /= H;
    const int64_t t = t_from + r % nt, bi = r / nt, p = S0 + t;
    const int64_t slot = slots ? p % slots : p;
    dst[(((b0 + bi) * rows + slot) * H + h) * D + e] =
        ((const T *)src.p)[bi * src.sb + t * src.st + h * src.sh + e * src.sd];
}

/* Grid: one thread per (bi, block ii, h, e), 256 per block. Block i = c0 + ii: the double sum,
 * in ascending row order, of raw positions i·d .. i·d+l-1 (p ≥ S0 from the tensor, earlier ones
 * from the raw ring, which still holds them), divided by l; or, with ext, the caller's
 * compressed token ii. */
template <typename T>
__global__ void fill_cmp_kernel(nsa_cu_view src, const T *ring, nsa_cu_view ext, int use_ext,
                                double *out, T *outT, int b0, int64_t S0, int64_t c0, int64_t nC, int H,
                                int D, int l, int d, int64_t nraw, int64_t ncmp, int64_t n) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int e = (int)(idx % D);
    int64_t r = idx / D;
    const int h = (int)(r % H);
    r /= H;
    const int64_t ii = r % nC, bi = r / nC, i = c0 + ii;
    double v;
    if (use_ext) {
        v = (double)nsa_cu_ld<T>(ext, bi, ii, h, e);
    } else {
        double s = 0.0;
        for (int q = 0; q < l; q++) {
            const int64_t p = i * d + q;
            s += p >= S0 ? (double)nsa_cu_ld<T>(src, bi, p - S0, h, e)
                         : (double)nsa_cu_f<T>(ring[(((b0 + bi) * nraw + p % nraw) * H + h) * D + e]);
        }
        v = s / (double)l;
    }
    out[(((b0 + bi) * ncmp + i) * H + h) * D + e] = v;
    outT[(((b0 + bi) * ncmp + i) * H + h) * D + e] = nsa_cu_to<T>((float)v);
}

__global__ void set_len_kernel(int64_t *len, int b0, int64_t Bp, int64_t value) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < Bp) len[b0 + i] = value;
}

template <typename T>
static void fill_t(cudaStream_t st, nsa_kv_cache *c, const nsa_kv_src *src, int b0, int64_t Bp,
                   int64_t T_, int64_t S0) {
    const nsa_config *g = &c->desc.cfg;
    const int H = g->Hkv;
    const int64_t c0 = nsa_num_cmp(g, S0), nC = nsa_num_cmp(g, S0 + T_) - c0;
    for (int kv = 0; kv < 2; kv++) {
        const int D = kv ? g->Dv : g->Dk;
        const nsa_tensor *raw = kv ? src->v_cmp : src->k_cmp;
        T *ring = (T *)(kv ? c->vr : c->kr);
        if (nC > 0) { /* before the ring is overwritten: blocks read its older tokens */
            const int64_t n = Bp * nC * H * D;
            const nsa_tensor *ext = kv ? src->vc : src->kc;
            fill_cmp_kernel<T><<<nsa_cu_blocks(n, 256), 256, 0, st>>>(
                nsa_cu_view4(raw), ring, nsa_cu_view4(ext), c->desc.cmp_external, kv ? c->vc : c->kc,
                (T *)(kv ? kv_of(c)->vcT : kv_of(c)->kcT), b0, S0,
                c0, nC, H, D, g->l, g->d, c->nraw, c->ncmp, n);
        }
        struct { const nsa_tensor *t; void *dst; int64_t slots, rows; } part[3] = {
            {kv ? src->v_sel : src->k_sel, kv ? c->vs : c->ks, 0, c->desc.max_len},
            {kv ? src->v_win : src->k_win, kv ? c->vw : c->kw, c->nwin, c->nwin},
            {raw, ring, c->nraw, c->nraw}};
        for (int q = 0; q < 3; q++) {
            if (part[q].rows == 0 || !part[q].t || !part[q].t->data) continue;
            /* a ring keeps only its last `slots` tokens: older ones would race for a slot */
            const int64_t t_from = part[q].slots && T_ > part[q].slots ? T_ - part[q].slots : 0;
            const int64_t nt = T_ - t_from, n = Bp * nt * H * D;
            fill_tokens_kernel<T><<<nsa_cu_blocks(n, 256), 256, 0, st>>>(
                nsa_cu_view4(part[q].t), (T *)part[q].dst, part[q].slots, part[q].rows, b0, S0, t_from,
                nt, H, D, n);
        }
    }
}

static nsa_status cu_kv_fill(nsa_context *ctx, nsa_kv_cache *c, const nsa_kv_src *src, int b0,
                             int64_t Bp, int64_t T, int64_t S0) {
    if (Bp == 0 || T == 0) return NSA_OK;
    cudaStream_t st = (cudaStream_t)ctx->stream;
    switch (c->desc.dtype) {
    case NSA_DTYPE_BF16: fill_t<__nv_bfloat16>(st, c, src, b0, Bp, T, S0); break;
    case NSA_DTYPE_F16: fill_t<__half>(st, c, src, b0, Bp, T, S0); break;
    default: fill_t<float>(st, c, src, b0, Bp, T, S0); break;
    }
    set_len_kernel<<<nsa_cu_blocks(Bp, 128), 128, 0, st>>>(kv_of(c)->len, b0, Bp, S0 + T);
    NSA_CU_LAUNCHED(ctx, "cache fill");
    for (int64_t b = b0; b < b0 + Bp; b++) c->row[b].len = S0 + T;
    return NSA_OK;
}

static nsa_status cu_kv_reads(nsa_context *ctx, const nsa_kv_cache *c, int b,
                              nsa_decode_reads *out) {
    int64_t r[4];
    cudaStream_t st = (cudaStream_t)ctx->stream;
    NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(r, kv_of(c)->reads + (int64_t)b * 4, sizeof r,
                                              cudaMemcpyDeviceToHost, st), "cache: reads"));
    NSA_TRY(nsa_cu_check(ctx, cudaStreamSynchronize(st), "cache: reads"));
    memset(out, 0, sizeof *out);
    const int64_t S = r[3];
    if (S == 0) return NSA_OK; /* no step since creation or reset */
    const nsa_config *g = &c->desc.cfg;
    out->cmp = r[0];
    out->sel = r[1];
    out->win = r[2];
    out->total = r[0] + r[1] + r[2];
    out->budget = nsa_num_cmp(g, S) + (int64_t)g->n * g->lp + nsa_ix_win_len(g->w, S - 1);
    out->dense = S;
    return NSA_OK;
}

/* Grid: one thread per (r, h, e) of the l-1 tail tokens, 256 per block. */
template <typename T>
__global__ void tail_kernel(const T *ring, nsa_cu_view o, int b, int64_t S, int64_t nraw,
                            int64_t n1, int H, int D) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n1 * H * D) return;
    const int e = (int)(idx % D), h = (int)(idx / D % H);
    const int64_t r = idx / ((int64_t)D * H), slot = (S - n1 + r) % nraw;
    ((T *)o.p)[r * o.sb + h * o.st + e * o.sh] = ring[(((int64_t)b * nraw + slot) * H + h) * D + e];
}

template <typename T>
static void tail_t(cudaStream_t st, const nsa_kv_cache *c, int b, const nsa_tensor *k,
                   const nsa_tensor *v) {
    const nsa_config *g = &c->desc.cfg;
    const int64_t n1 = g->l - 1, S = c->row[b].len;
    for (int kv = 0; kv < 2; kv++) {
        const nsa_tensor *t = kv ? v : k;
        const int D = kv ? g->Dv : g->Dk;
        nsa_cu_view o = {t->data, t->stride[0], t->stride[1], t->stride[2], 0};
        const int64_t n = n1 * g->Hkv * D;
        tail_kernel<T><<<nsa_cu_blocks(n, 256), 256, 0, st>>>((const T *)(kv ? c->vr : c->kr), o,
                                                             b, S, c->nraw, n1, g->Hkv, D);
    }
}

static nsa_status cu_kv_tail(nsa_context *ctx, const nsa_kv_cache *c, int b, const nsa_tensor *k,
                             const nsa_tensor *v) {
    cudaStream_t st = (cudaStream_t)ctx->stream;
    switch (c->desc.dtype) {
    case NSA_DTYPE_BF16: tail_t<__nv_bfloat16>(st, c, b, k, v); break;
    case NSA_DTYPE_F16: tail_t<__half>(st, c, b, k, v); break;
    default: tail_t<float>(st, c, b, k, v); break;
    }
    NSA_CU_LAUNCHED(ctx, "cache: raw cmp tail");
    return NSA_OK;
}

nsa_status nsa_cu_decode_step(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a,
                              int fast) {
    const nsa_config *g = &c->desc.cfg;
    if (a->active && c->desc.B > 1024)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "active: a mask needs B <= 1024 on CUDA "
                        "(B = %d)", c->desc.B);
    nsa_cu_dec D;
    memset(&D, 0, sizeof D);
    D.B = c->desc.B; D.Hq = g->Hq; D.Hkv = g->Hkv; D.G = g->Hq / g->Hkv; D.Dk = g->Dk;
    D.Dv = g->Dv; D.l = g->l; D.d = g->d; D.lp = g->lp; D.n = g->n; D.n_init = g->n_init;
    D.n_local = g->n_local; D.w = g->w;
    D.max_len = c->desc.max_len; D.nwin = c->nwin; D.nraw = c->nraw; D.ncmp = c->ncmp;
    D.nsel_cap = (int)(c->desc.max_len / g->lp + 1);
    D.scale = (double)nsa_config_scale(g);
    D.force_branch = ctx->flags.force_branch;
    D.cmp_external = c->desc.cmp_external;
    D.ks = c->ks; D.vs = c->vs; D.kw = c->kw; D.vw = c->vw; D.kr = c->kr; D.vr = c->vr;
    D.kc = c->kc; D.vc = c->vc;
    D.st = *kv_of(c);
    D.q = nsa_cu_view4(&a->q); D.kcmp = nsa_cu_view4(&a->k_cmp); D.vcmp = nsa_cu_view4(&a->v_cmp);
    D.ksel = nsa_cu_view4(&a->k_sel);
    D.vsel = nsa_cu_view4(&a->v_sel);
    D.kwin = nsa_cu_view4(&a->k_win);
    D.vwin = nsa_cu_view4(&a->v_win);
    D.kcn = nsa_cu_view4(&a->kc_new);
    D.vcn = nsa_cu_view4(&a->vc_new);
    D.gates = nsa_cu_view4(&a->gates); D.out = nsa_cu_view4(&a->out);
    D.all_active = a->active == NULL;
    for (int b = 0; b < c->desc.B && b < 1024; b++)
        if (!a->active || a->active[b]) D.active[b / 32] |= 1u << (b % 32);
    /* the reference step (double, one block per row and KV head) unless the router allows the
       split-key step on this device (NSA_FORCE_PARITY=1 or an unaccepted profile) */
    int64_t S_max = 0;
    for (int b = 0; b < c->desc.B; b++)
        if ((!a->active || a->active[b]) && c->row[b].len + 1 > S_max) S_max = c->row[b].len + 1;
    if (!fast)
        NSA_TRY(nsa_cu_decode_launch(ctx, (cudaStream_t)ctx->stream, c->desc.dtype, &D));
    else
        NSA_TRY(nsa_cu_decode_fast(ctx, (cudaStream_t)ctx->stream, c->desc.dtype, &D, kv_of(c),
                                   S_max));
    for (int b = 0; b < c->desc.B; b++)
        if (!a->active || a->active[b]) c->row[b].len++;
    return NSA_OK;
}

extern "C" const nsa_kv_ops nsa_cuda_kv_ops = {cu_kv_alloc, cu_kv_release, cu_kv_reset,
                                               cu_kv_fill,  cu_kv_reads,   cu_kv_tail};
