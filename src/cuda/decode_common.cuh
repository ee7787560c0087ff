// SPDX-License-Identifier: Apache-2.0
/* decode_common.cuh — the device side of a CUDA KV cache (docs/design.md §1.6) shared by
 * decode_cache.cu (allocation, fill, counters), decode_step.cu (the reference step) and
 * decode_fast.cu (the split-key step).
 * Layout: exactly the CPU cache's (src/ref/kv_cache.h) — sel history (B, max_len, Hkv, D),
 * window ring (B, nwin, ...), raw cmp ring (B, nraw, ...) in the cache dtype, compressed tokens
 * (B, ncmp, Hkv, D) in double — plus per-row lengths, read counters and step scratch on the device.
 * Invariant: the device lengths are the truth a step reads; the host mirror row[].len follows
 * them by construction (every enqueued push also advances the mirror), so no step waits.
 */
#ifndef NSA_CUDA_DECODE_COMMON_CUH
#define NSA_CUDA_DECODE_COMMON_CUH

#include "common.cuh"

extern "C" {
#include "../ref/kv_cache.h"
}

/* c->dev of a CUDA cache. */
typedef struct {
    int64_t *len;    /* (B) tokens held                                                   */
    int64_t *reads;  /* (B, 4) last step's measured reads: cmp, sel (per KV head), win, S   */
    int32_t *selr;   /* (B, Hkv) keys read by selection per KV head in the last step        */
    double *sc;      /* (B, Hq, ncmp) scratch: raw cmp scores (reference step)              */
    double *pg;      /* (B, Hkv, ncmp4) scratch: group-summed cmp probabilities             */
    void *kcT, *vcT; /* (B, ncmp, Hkv, D) compressed tokens rounded to the cache dtype      */
    float *scf;      /* (B, Hq, ncmp4) scratch: raw cmp scores (split-key step)             */
    float *part;     /* (B, Hkv, nsplit, G, Dv+2) cmp partials: m, l, o (one per split)     */
    float *part2;    /* (B, Hkv, nsplit2, G, Dv+2) sel then win partials                    */
    int32_t *rng;    /* (B, Hkv, n, 2) selected ranges of the last step                     */
    int32_t *sync;   /* (B, Hkv, 4) split-key step: counters A, C, flags S, M (epochs)      */
    int64_t ncmp4;   /* ncmp rounded up to a multiple of 4 (16-byte score rows)             */
    int nsplit;      /* cmp slots: ceil(ncmp / 64)                                          */
    int nsel_split;  /* sel slots: ceil(n·lp / 64)                                          */
    int nsplit2;     /* nsel_split + ceil(nwin / 64)                                        */
    /* host only */
    unsigned epoch;   /* split-key steps enqueued (the flags' value for the newest)          */
    int nsm, occ[2];  /* SMs; blocks per SM of the step kernel (CUDA cores, tensor cores)    */
    size_t occ_smem[2]; /* the dynamic shared memory occ[] was computed for                 */
} nsa_cu_kv;

/* Everything the step kernel reads (by value; well under 4 KB). */
typedef struct {
    int B, Hq, Hkv, G, Dk, Dv, l, d, lp, n, n_init, n_local, w;
    int64_t max_len, nwin, nraw, ncmp;
    int nsel_cap;          /* selection blocks a row may have: max_len / lp + 1           */
    double scale;
    int force_branch, cmp_external;
    void *ks, *vs, *kw, *vw, *kr, *vr; /* cache buffers, cache dtype                       */
    double *kc, *vc;
    nsa_cu_kv st;
    nsa_cu_view q, kcmp, vcmp, ksel, vsel, kwin, vwin, kcn, vcn, gates, out;
    int pc, pw, ps;        /* split-key step: splits per (row, KV head) of cmp, win, sel   */
    int c1, c3;            /* chunks of 64 keys per split: cmp and win, sel                */
    int hm;                /* heads per merge item                                          */
    int rng_off;           /* bytes: the ranges' copy in a block's shared memory           */
    int pg_smem;           /* 1: the selection keeps pg in shared memory                    */
    unsigned epoch;        /* this step's number (decode_fast_sync.cuh)                    */
    int all_active;        /* 1: every row steps (no mask)                                 */
    uint32_t active[32];   /* else bit b: row b steps (B ≤ 1024 when a mask is given)     */
} nsa_cu_dec;

/* decode_step.cu: the reference step (one block per row and KV head, double) on stream st. */
nsa_status nsa_cu_decode_launch(nsa_context *ctx, cudaStream_t st, nsa_dtype dt,
                                const nsa_cu_dec *D);
/* decode_fast.cu: the split-key step, one cooperative kernel; kv: the cache's state (its host
 * fields are updated), S_max: the largest t+1 of the active rows (from the host mirror). */
nsa_status nsa_cu_decode_fast(nsa_context *ctx, cudaStream_t st, nsa_dtype dt,
                              const nsa_cu_dec *D, nsa_cu_kv *kv, int64_t S_max);

#endif /* NSA_CUDA_DECODE_COMMON_CUH */
