// SPDX-License-Identifier: Apache-2.0
/* bwd_tiled.cuh — the tiled (masked for cmp/win, packed for sel) roles of the CUDA backward:
 * f32 accumulation, keys and queries tiled through shared memory, deterministic.
 * Not the reference (bwd_ref.cu) and not tensor cores. Launchers only; kernels in bwd_tiled.cu
 * (attention math) and bwd_tiled_index.cu (selection index, split offsets and sums).
 * Invariant: every accumulator element has one owning block that adds in a fixed order (no
 * floating-point atomics); selection keys walk an inverse index sorted by query.
 */
#ifndef NSA_CUDA_BWD_TILED_CUH
#define NSA_CUDA_BWD_TILED_CUH

#include "bwd_common.cuh"

/* Largest dynamic shared memory (bytes) the tiled kernels need for these head dims. */
size_t nsa_cu_bwd_tiled_smem(int Dk, int Dv);
/* Query side of branch br (as nsa_cu_bwd_query): lse, delta, dgates[.., br], dq += share. */
nsa_status nsa_cu_bwd_tiled_query(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                                  nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br);
/* Inverse selection index, step 1: off[r] = exclusive prefix of the number of queries whose
 * ranges touch selection block r = (b, g, jb) (from W->selbits); off[nrows] = total. */
nsa_status nsa_cu_bwd_sel_count(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                int *off);
/* Step 2: list[off[r] ..] = those queries in ascending t. */
nsa_status nsa_cu_bwd_sel_fill(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                               const int *off, int *list);
/* What the key side of a branch reads besides W: the inverse selection index (sel: off,
 * list), the split offsets exo (nsa_cu_bwd_tiled_splits) and the partial slots (NULL when
 * exo's total is 0; else total · nsa_cu_bwd_tiled_slot_bytes(D) bytes each). */
typedef struct {
    const int *off, *list, *exo;
    float *partK, *partV;
} tl_keyargs;
/* Key tiles of branch br in all (the length of exo is this + 1). */
int64_t nsa_cu_bwd_tiled_ntiles(const nsa_cu_bwd *W, nsa_branch br);
/* Bytes of one partial slot for head dim D. */
size_t nsa_cu_bwd_tiled_slot_bytes(int D);
/* exo[x] = exclusive prefix of the splits beyond the first of key tile x; exo[ntiles] = total.
 * sel needs off (not the list). */
nsa_status nsa_cu_bwd_tiled_splits(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                   nsa_branch br, const int *off, int *exo);
/* Key side of branch br (as nsa_cu_bwd_keys): split 0 writes the gradient rows, the others
 * their partial slots, then the slots are added in split order (nsa_cu_bwd_tiled_reduce). */
nsa_status nsa_cu_bwd_tiled_keys(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                                 nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br,
                                 const tl_keyargs *k);

/* Adds the partial slots of branch br's split walks to its gradient rows, in split order. */
nsa_status nsa_cu_bwd_tiled_reduce(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                   nsa_branch br, const tl_keyargs *k);

#endif /* NSA_CUDA_BWD_TILED_CUH */
