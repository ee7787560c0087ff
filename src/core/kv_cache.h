// SPDX-License-Identifier: Apache-2.0
/* kv_cache.h (core) — the KV cache object of docs/design.md §1.6: its layout, the operations a device
 * offers on it (nsa_kv_ops), and the checks of every KV-cache and decode argument.
 * Not the reference's token push (src/ref/kv_cache.h) nor the public entry points
 * (src/route/kv_api.c, the dispatch layer). Core: includes nothing of ref, route or cuda.
 * Invariant: a row of length S holds positions 0..S-1 in every part, and nothing at or beyond
 * S (stale slots after a reset included) is ever read.
 */
#ifndef NSA_CORE_KV_CACHE_H
#define NSA_CORE_KV_CACHE_H

#include "internal.h"

#include <string.h>

/* Per-row state, padded to 64 bytes (the header's memory formula counts B·64). */
typedef struct {
    int64_t len;            /* tokens held                           */
    nsa_decode_reads reads; /* last step's measured reads            */
    int64_t pad_;
} nsa_kv_row;

struct nsa_kv_cache {
    nsa_kv_cache_desc desc;
    size_t e;              /* bytes of one element of desc.dtype                 */
    int64_t rk, rv;        /* elements of one token: Hkv·Dk, Hkv·Dv              */
    int64_t nwin;          /* window ring slots: min(w, max_len)                 */
    int64_t nraw;          /* raw cmp ring slots: min(l, max_len)                */
    int64_t ncmp;          /* compressed slots per row: max(num_cmp(max_len), 1) */
    unsigned char *ks, *vs; /* (B, max_len, Hkv, Dk|Dv) sel history, dtype        */
    unsigned char *kw, *vw; /* (B, nwin, Hkv, Dk|Dv) window ring: slot p % nwin   */
    unsigned char *kr, *vr; /* (B, nraw, Hkv, Dk|Dv) raw cmp ring: slot p % nraw  */
    double *kc, *vc;        /* (B, ncmp, Hkv, Dk|Dv) compressed, as computed      */
    nsa_kv_row *row;        /* (B)                                                */
    double *blk;            /* (l, Hkv, max(Dk, Dv)) φ = avg scratch              */
    void *dev;              /* CUDA cache: device-side state (src/cuda/decode_*.cu); the
                               buffers above then live on the device, row[] stays the host
                               mirror of the lengths                                    */
};

/* The source of one token's keys/values for a fill: element (b, i, h, e) of each tensor (4-d,
 * cache dtype); kc/vc NULL unless cmp_external, where (b, ic) is read on emission. */
typedef struct {
    const nsa_tensor *k_cmp, *v_cmp, *k_sel, *v_sel, *k_win, *v_win, *kc, *vc;
} nsa_kv_src;

/* What a device does with a cache whose desc.device is of its kind, after the dispatch layer
 * validated the call (src/ref/kv_cache.c for the CPU, src/cuda/decode_cache.cu for CUDA). */
typedef struct {
    /* c's buffers ks..vc (sizes in c already set) and its device state */
    nsa_status (*alloc)(nsa_context *ctx, nsa_kv_cache *c);
    /* frees what alloc made; NULL pointers: no-op */
    void (*release)(nsa_kv_cache *c);
    /* empties row b (-1: every row) where the device keeps state (host row[] already cleared) */
    nsa_status (*reset)(nsa_context *ctx, nsa_kv_cache *c, int b);
    /* appends T tokens of src (batch rows 0..Bp-1) to rows b0..b0+Bp-1, which all hold S0
     * tokens; compressed tokens on schedule (src->kc/vc with cmp_external, their index
     * i − num_cmp(S0)); row[].len advanced */
    nsa_status (*fill)(nsa_context *ctx, nsa_kv_cache *c, const nsa_kv_src *src, int b0,
                       int64_t Bp, int64_t T, int64_t S0);
    /* row b's measured reads of its last step */
    nsa_status (*reads)(nsa_context *ctx, const nsa_kv_cache *c, int b, nsa_decode_reads *out);
    /* the raw cmp tail of row b (l-1 tokens) into k, v (checked) */
    nsa_status (*tail)(nsa_context *ctx, const nsa_kv_cache *c, int b, const nsa_tensor *k,
                       const nsa_tensor *v);
} nsa_kv_ops;

/* Whether appending a token at position t emits compressed block (t + 1 - l) / d. */
int nsa_kv_emits(const nsa_config *c, int64_t t);

/* ---- checks (src/core/kv_check.c) ---- */

/* Every desc field except device support; on NSA_OK *c gets desc, e, rk, rv, nwin, nraw, ncmp,
 * *blk the φ scratch elements and *bytes nsa_kv_cache_bytes. The message names the field. */
nsa_status nsa_kv_check_desc(nsa_context *ctx, const nsa_kv_cache_desc *d, nsa_kv_cache *c,
                             int64_t *blk, int64_t *bytes);
/* Checks that cfg is the cache's config; NSA_ERR_CACHE naming the first differing field. */
nsa_status nsa_kv_check_cfg(nsa_context *ctx, const nsa_kv_cache *c, const nsa_config *cfg);
/* Row b of c exists. */
nsa_status nsa_kv_check_row(nsa_context *ctx, const nsa_kv_cache *c, int b);
/* Every argument of nsa_decode_step; *t_max = the largest position an active row writes, -1
 * when no row is active. */
nsa_status nsa_decode_check(nsa_context *ctx, const nsa_kv_cache *c, const nsa_decode_args *a,
                            int64_t *t_max);

/* A key/value element of the cache's dtype at p as double (exact). */
static inline double nsa_kv_get(const nsa_kv_cache *c, const unsigned char *p) {
    switch (c->desc.dtype) {
    case NSA_DTYPE_F32: { float x; memcpy(&x, p, 4); return x; }
    case NSA_DTYPE_BF16: { uint16_t x; memcpy(&x, p, 2); return nsa_bf16_to_f32(x); }
    case NSA_DTYPE_F16: { uint16_t x; memcpy(&x, p, 2); return nsa_f16_to_f32(x); }
    default: return 0.0;
    }
}

#endif /* NSA_CORE_KV_CACHE_H */
