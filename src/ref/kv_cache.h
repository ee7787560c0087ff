// SPDX-License-Identifier: Apache-2.0
/* kv_cache.h — the KV cache object of the reference decode (docs/design.md §1.6): its layout, and
 * the
 * two operations every filling path shares (push one token, build one row's branches).
 * Not public: include/nsa.h describes the contract; tests may include this to compare states.
 * Invariant: a row of length S holds positions 0..S-1 in every part, and nothing at or beyond
 * S (stale slots after a reset included) is ever read.
 */
#ifndef NSA_KV_CACHE_H
#define NSA_KV_CACHE_H

#include "ref.h"

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

/* The source of one token's keys/values for nsa_kv_push: element (b, i, h, e) of each tensor
 * (4-d, cache dtype); kc/vc NULL unless cmp_external, where (b, ic) is read on emission. */
typedef struct {
    const nsa_tensor *k_cmp, *v_cmp, *k_sel, *v_sel, *k_win, *v_win, *kc, *vc;
} nsa_kv_src;

/* Whether appending a token at position t emits compressed block (t + 1 - l) / d. */
int nsa_kv_emits(const nsa_config *c, int64_t t);

/* Appends token (sb, si) of src to cache row b: history, rings, and — when it completes a
 * block — the compressed token, computed by φ = avg with nsa_ref_compress_block exactly as the
 * forward does, or read from (sb, sc) of src->kc/vc with cmp_external. Cannot fail: the caller
 * has validated everything. */
void nsa_kv_push(nsa_kv_cache *c, int b, const nsa_kv_src *src, int64_t sb, int64_t si,
                 int64_t sc);

/* Checks that cfg is the cache's config; NSA_ERR_CACHE naming the first differing field. */
nsa_status nsa_kv_check_cfg(nsa_context *ctx, const nsa_kv_cache *c, const nsa_config *cfg);

/* ---- CUDA caches (src/cuda/decode_cache.cu; a CPU build's stubs fail NSA_ERR_UNSUPPORTED).
 * Called by the functions of kv_cache.c, kv_fill.c and decode.c after their validation, for a
 * cache whose desc.device is CUDA. */
/* Allocates c's buffers (same sizes as on the CPU) and its device state on the device. */
nsa_status nsa_device_cuda_kv_alloc(nsa_context *ctx, nsa_kv_cache *c);
/* Frees what nsa_device_cuda_kv_alloc made (NULL pointers: no-op). */
void nsa_device_cuda_kv_free(nsa_kv_cache *c);
/* Empties row b (-1: every row) on the device (lengths and read counters). */
nsa_status nsa_device_cuda_kv_reset(nsa_context *ctx, nsa_kv_cache *c, int b);
/* Appends T tokens of src (batch rows 0..Bp-1, on the device) to rows b0..b0+Bp-1, which all
 * hold S0 tokens; compressed tokens emitted on schedule (src->kc/vc with cmp_external, their
 * index i − num_cmp(S0)). Updates the host mirror row[].len. */
nsa_status nsa_device_cuda_kv_fill(nsa_context *ctx, nsa_kv_cache *c, const nsa_kv_src *src,
                                   int b0, int64_t Bp, int64_t T, int64_t S0);
/* One decode step of the active rows (validated by nsa_decode_step), no host synchronisation:
 * fast = 1 the split-key step (f32), 0 the reference step (double); the router decides
 * (nsa_route_decode_fast). */
nsa_status nsa_device_cuda_decode(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a,
                                  int fast);
/* Row b's measured reads of its last step (waits for the stream). */
nsa_status nsa_device_cuda_kv_reads(nsa_context *ctx, const nsa_kv_cache *c, int b,
                                    nsa_decode_reads *out);
/* nsa_kv_cache_raw_cmp_tail of a CUDA cache: k, v on the device (checked by the caller). */
nsa_status nsa_device_cuda_kv_tail(nsa_context *ctx, const nsa_kv_cache *c, int b,
                                   const nsa_tensor *k, const nsa_tensor *v);

/* A key/value element of the cache's dtype at p as double (exact). */
static inline double nsa_kv_get(const nsa_kv_cache *c, const unsigned char *p) {
    switch (c->desc.dtype) {
    case NSA_DTYPE_F32: { float x; memcpy(&x, p, 4); return x; }
    case NSA_DTYPE_BF16: { uint16_t x; memcpy(&x, p, 2); return nsa_bf16_to_f32(x); }
    case NSA_DTYPE_F16: { uint16_t x; memcpy(&x, p, 2); return nsa_f16_to_f32(x); }
    default: return 0.0;
    }
}

#endif /* NSA_KV_CACHE_H */
