// SPDX-License-Identifier: Apache-2.0
/* kv_cache.c — the CPU KV cache: its host buffers, reset, fill, reads and raw tail (the CPU row
 * nsa_ref_kv_ops), and the one function that appends a token (nsa_kv_push) shared by prefill,
 * append and decode.
 * Not the checks (src/core/kv_check.c), the entry points (src/route/kv_api.c) nor attention
 * (decode.c). Pure reference: no router, no device hook.
 * Invariant: a compressed token is computed by nsa_ref_compress_block over the same double rows
 * the forward uses.
 */
#include "kv_cache.h"

#include <stdlib.h>

static nsa_status cpu_alloc(nsa_context *ctx, nsa_kv_cache *c) {
    const size_t B = (size_t)c->desc.B, e = c->e;
    int ok = 1;
#define ALLOC(p, n, sz)                                                                            \
    do {                                                                                           \
        if ((n) > 0 && !((p) = nsa_calloc((size_t)(n), (sz)))) ok = 0;                             \
    } while (0)
    ALLOC(c->ks, B * (size_t)(c->desc.max_len * c->rk), e);
    ALLOC(c->vs, B * (size_t)(c->desc.max_len * c->rv), e);
    ALLOC(c->kw, B * (size_t)(c->nwin * c->rk), e);
    ALLOC(c->vw, B * (size_t)(c->nwin * c->rv), e);
    ALLOC(c->kr, B * (size_t)(c->nraw * c->rk), e);
    ALLOC(c->vr, B * (size_t)(c->nraw * c->rv), e);
    ALLOC(c->kc, B * (size_t)(c->ncmp * c->rk), sizeof(double));
    ALLOC(c->vc, B * (size_t)(c->ncmp * c->rv), sizeof(double));
#undef ALLOC
    if (!ok) return nsa_fail(ctx, NSA_ERR_NOMEM, "cache: out of memory for the CPU buffers");
    return NSA_OK;
}

static void cpu_release(nsa_kv_cache *c) {
    free(c->ks);
    free(c->vs);
    free(c->kw);
    free(c->vw);
    free(c->kr);
    free(c->vr);
    free(c->kc);
    free(c->vc);
}

static nsa_status cpu_reset(nsa_context *ctx, nsa_kv_cache *c, int b) {
    (void)ctx, (void)c, (void)b; /* the host rows, already cleared, are the whole state */
    return NSA_OK;
}

static nsa_status cpu_fill(nsa_context *ctx, nsa_kv_cache *c, const nsa_kv_src *src, int b0,
                           int64_t Bp, int64_t T, int64_t S0) {
    (void)ctx;
    const nsa_config *g = &c->desc.cfg;
    const int64_t c0 = nsa_num_cmp(g, S0);
    for (int64_t i = 0; i < Bp; i++)
        for (int64_t t = 0; t < T; t++)
            nsa_kv_push(c, (int)(b0 + i), src, i, t, nsa_num_cmp(g, S0 + t + 1) - 1 - c0);
    return NSA_OK;
}

static nsa_status cpu_reads(nsa_context *ctx, const nsa_kv_cache *c, int b,
                            nsa_decode_reads *out) {
    (void)ctx;
    *out = c->row[b].reads;
    return NSA_OK;
}

static nsa_status cpu_tail(nsa_context *ctx, const nsa_kv_cache *c, int b, const nsa_tensor *k,
                           const nsa_tensor *v) {
    (void)ctx;
    const nsa_config *g = &c->desc.cfg;
    const int64_t n = g->l - 1, S = c->row[b].len;
    for (int64_t r = 0; r < n; r++) {
        const int64_t slot = (S - n + r) % c->nraw;
        const unsigned char *kr = c->kr + ((int64_t)b * c->nraw + slot) * c->rk * (int64_t)c->e;
        const unsigned char *vr = c->vr + ((int64_t)b * c->nraw + slot) * c->rv * (int64_t)c->e;
        for (int h = 0; h < g->Hkv; h++) {
            for (int e = 0; e < g->Dk; e++)
                memcpy((char *)k->data +
                           (r * k->stride[0] + h * k->stride[1] + e * k->stride[2]) * c->e,
                       kr + ((int64_t)h * g->Dk + e) * c->e, c->e);
            for (int e = 0; e < g->Dv; e++)
                memcpy((char *)v->data +
                           (r * v->stride[0] + h * v->stride[1] + e * v->stride[2]) * c->e,
                       vr + ((int64_t)h * g->Dv + e) * c->e, c->e);
        }
    }
    return NSA_OK;
}

const nsa_kv_ops nsa_ref_kv_ops = {cpu_alloc, cpu_release, cpu_reset, cpu_fill, cpu_reads,
                                   cpu_tail};

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
