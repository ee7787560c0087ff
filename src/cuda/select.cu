// SPDX-License-Identifier: Apache-2.0
/* select.cu — block selection on the GPU (docs/design.md §1.2 steps 2–6): Eq. 9 mapping of the
 * group-summed cmp probabilities P onto selection blocks, forced blocks, top-n with the tie
 * rule, ascending sort, range merging and clipping. Every fast or reference role of the sel
 * branch reads its output.
 * Invariant: score[j] is summed in double in ascending i and rounded once to f32, then compared
 * exactly, ties to the lower block index — the arithmetic of src/ref/select.c — so the GPU picks
 * the reference's blocks whenever the probabilities agree to f32.
 */
#include "common.cuh"

#define SEL_WARPS 4
#define SEL_MAX_N 256

typedef struct {
    nsa_cu_view blocks; /* caller's sel_blocks (B, T, Hkv, n) i32, p NULL when absent   */
    nsa_cu_view ranges; /* caller's sel_ranges (B, T, Hkv, n, 2): sd is the n stride     */
    int64_t range_pair_stride;
} sel_out;

/* Grid: x = ceil(R·Hkv / warps), one warp per (row r, group g). Shared memory (dynamic), per
 * warp: nsel_max f32 scores, n i32 blocks, a 256-bin histogram: warps · (nsel_max + n + 256)
 * · 4 bytes. Measured (H100, 64k, 2026-11-26): k rounds of a warp arg-max took 3.6 ms. */
__global__ void select_kernel(nsa_cu_params P, sel_out U, int warps) {
    extern __shared__ float ssm[];
    const int wid = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t item = (int64_t)blockIdx.x * warps + wid;
    if (item >= P.R * P.Hkv) return;
    float *sc = ssm + (int64_t)wid * (P.nsel_max + P.n + 256);
    int32_t *blk = (int32_t *)(sc + P.nsel_max);
    int *hist = (int *)(blk + P.n);
    const int64_t r = item / P.Hkv;
    const int g = (int)(item % P.Hkv);
    int64_t b, t;
    nsa_cu_row(P, r, &b, &t);
    const int64_t nc = nsa_cu_num_cmp(P, t + 1);
    const int64_t cur = t / P.lp, ncomplete = nsa_ix_ncomplete(P.lp, t);
    const float *Pr = P.P + item * (int64_t)P.Tc;

    /* 32-bit index math (T < 2^31 is checked at the API): 64-bit divisions cost more than
     * the sums here */
    for (int j = lane; j <= (int)cur; j += 32) {
        int i_lo, i_hi;
        nsa_ix_score_span32(P.l, P.d, P.lp, j, (int)nc, &i_lo, &i_hi);
        double sum = 0.0;
        for (int i = i_lo; i <= i_hi; i++)
            sum += (double)Pr[i] * (double)nsa_ix_overlap32(P.l, P.d, P.lp, i, j);
        sc[j] = (float)sum;
    }
    __syncwarp();
    /* forced: initial then local, duplicates once; their scores leave the candidate pool (-1:
     * real scores are ≥ 0). */
    int nf = 0;
    if (lane == 0) {
        nf = nsa_ix_forced(P.n_init, P.n_local, cur, blk);
        for (int f = 0; f < nf; f++) sc[blk[f]] = -1.0f;
    }
    nf = __shfl_sync(0xffffffffu, nf, 0);
    __syncwarp();
    int nforced_complete = 0;
    for (int f = 0; f < nf; f++) nforced_complete += blk[f] < ncomplete;
    __syncwarp(); /* every lane has read the forced list before blk is rewritten below */
    const int64_t ncand = ncomplete - nforced_complete;
    const int k = (int64_t)(P.n - nf) < ncand ? P.n - nf : (int)ncand;

    /* The k-th largest candidate score by radix select on its bits (scores are ≥ 0, so their
     * bit patterns order like the values): 4 passes of 8 bits, a 256-bin histogram each. Then
     * the blocks above it, and of those equal to it the lowest indices — the tie rule. */
    unsigned thr = 0u;
    int take_eq = k; /* how many candidates equal to thr are taken (lowest indices first) */
    if (k > 0 && k < ncand) {
        unsigned prefix = 0u, pmask = 0u;
        int kk = k;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = lane; i < 256; i += 32) hist[i] = 0;
            __syncwarp();
            for (int64_t j = lane; j < ncomplete; j += 32) {
                float sj = sc[j];
                unsigned u = __float_as_uint(sj);
                if (sj >= 0.0f && (u & pmask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1);
            }
            __syncwarp();
            int mine = 0;
            for (int q = 0; q < 8; q++) mine += hist[8 * lane + q];
            int incl = mine; /* Σ over lanes ≥ this one: counts in bins ≥ 8·lane */
            for (int off = 1; off < 32; off <<= 1) {
                int o = __shfl_down_sync(0xffffffffu, incl, off);
                if (lane + off < 32) incl += o;
            }
            int above = incl - mine, bin = -1, newabove = 0;
            if (above < kk && kk <= incl) {
                int cum = above;
                for (int q = 7; q >= 0; q--) {
                    int c = hist[8 * lane + q];
                    if (cum + c >= kk) { bin = 8 * lane + q; newabove = cum; break; }
                    cum += c;
                }
            }
            unsigned who = __ballot_sync(0xffffffffu, bin >= 0);
            int src = __ffs(who) - 1;
            bin = __shfl_sync(0xffffffffu, bin, src);
            newabove = __shfl_sync(0xffffffffu, newabove, src);
            kk -= newabove;
            prefix |= (unsigned)bin << shift;
            pmask |= 255u << shift;
            __syncwarp();
        }
        thr = prefix;
        take_eq = kk;
    }
    /* blocks in ascending order: forced (score -1), above thr, or the first take_eq at thr */
    int nsel = 0, eq_seen = 0;
    for (int64_t j0 = 0; j0 <= cur; j0 += 32) {
        int64_t j = j0 + lane;
        bool in = j <= cur, forced = in && sc[j] < 0.0f;
        bool cand = in && !forced && j < ncomplete;
        unsigned u = cand ? __float_as_uint(sc[j]) : 0u;
        bool above = cand && k > 0 && (k == ncand || u > thr);
        bool eq = cand && k > 0 && k < ncand && u == thr;
        unsigned eqm = __ballot_sync(0xffffffffu, eq);
        int rank = eq_seen + __popc(eqm & ((1u << lane) - 1u));
        bool sel = forced || above || (eq && rank < take_eq);
        unsigned selm = __ballot_sync(0xffffffffu, sel);
        int pos = nsel + __popc(selm & ((1u << lane) - 1u));
        if (sel && pos < P.n) blk[pos] = (int32_t)j; /* < n unless scores are NaN */
        nsel += __popc(selm);
        eq_seen += __popc(eqm);
    }
    __syncwarp();
    if (lane != 0) return;
    if (nsel > P.n) nsel = P.n;
    int32_t *ob = P.blocks + item * (int64_t)P.n;
    int32_t *orr = P.ranges + item * (int64_t)P.n * 2;
    int32_t *ub = U.blocks.p ? (int32_t *)U.blocks.p + b * U.blocks.sb + t * U.blocks.st +
                                   g * U.blocks.sh : NULL;
    int32_t *ur = U.ranges.p ? (int32_t *)U.ranges.p + b * U.ranges.sb + t * U.ranges.st +
                                   g * U.ranges.sh : NULL;
    for (int a = 0; a < P.n; a++) {
        int32_t v = a < nsel ? blk[a] : -1;
        ob[a] = v;
        if (ub) ub[a * U.blocks.sd] = v;
    }
    int nr = 0;
    for (int a = 0; a < nsel; nr++) {
        int64_t lo, hi;
        a = nsa_ix_run(blk, nsel, a, P.lp, t, &lo, &hi);
        orr[2 * nr] = (int32_t)lo;
        orr[2 * nr + 1] = (int32_t)hi;
    }
    for (int q = nr; q < P.n; q++) orr[2 * q] = orr[2 * q + 1] = 0;
    if (ur)
        for (int q = 0; q < P.n; q++) {
            ur[q * U.ranges.sd] = orr[2 * q];
            ur[q * U.ranges.sd + U.range_pair_stride] = orr[2 * q + 1];
        }
}

static nsa_cu_view view5(const nsa_tensor *x) {
    nsa_cu_view v = {x->data, x->stride[0], x->stride[1], x->stride[2], x->stride[3]};
    return v;
}

nsa_status nsa_cu_select(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P,
                         const nsa_fwd_args *a) {
    if (P->R * P->Hkv == 0) return NSA_OK;
    if (P->n > SEL_MAX_N)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg.n: %d exceeds %d for GPU selection", P->n,
                        SEL_MAX_N);
    sel_out U;
    U.blocks = view5(&a->sel_blocks);
    U.ranges = view5(&a->sel_ranges);
    U.range_pair_stride = a->sel_ranges.data ? a->sel_ranges.stride[4] : 0;
    size_t per = (size_t)(P->nsel_max + P->n + 256) * 4;
    int warps = per * SEL_WARPS <= 48 * 1024 ? SEL_WARPS : 1;
    size_t smem = per * (size_t)warps;
    if (smem > nsa_cu_smem_budget(nsa_cu_smem_optin()))
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "q: T = %d too long for GPU selection", P->T);
    if (smem > 48 * 1024)
        cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)smem);
    select_kernel<<<nsa_cu_blocks(P->R * P->Hkv, warps), 32 * warps, smem, st>>>(*P, U, warps);
    NSA_CU_LAUNCHED(ctx, "selection");
    return NSA_OK;
}
