// SPDX-License-Identifier: Apache-2.0
/* bwd_sel_tc.cuh — the kernels of the tensor-core selection backward (bwd_sel_tc.cu holds the
 * launchers): shared-memory layouts, the key masks of a query's ranges, the dq kernel and the
 * dK/dV kernel. Internal to bwd_sel_tc.cu; not an API.
 * Fragment layouts are the PTX ISA's m16n8k16 ones (as in sel_fused.cu): a C tile's lane holds
 * rows lane/4 and lane/4 + 8, columns 2·(lane%4) + {0, 1}; two n8 C tiles make one k16 A tile.
 * Invariant: a (query, head) row sees key j only when j lies in one of its query's ranges; rows
 * with lse = -inf or past T see nothing (their exp2 argument is -inf).
 */
#ifndef NSA_CUDA_BWD_SEL_TC_CUH
#define NSA_CUDA_BWD_SEL_TC_CUH

#include "bwd_tc.cuh"
#include "mma.cuh"

#include <math.h>

#define SB_TH 128 /* threads per CTA: 4 warps, 16 keys each                       */
#define SB_BN 64  /* keys per tile                                                 */
#define SB_PC 32  /* dK/dV: (query, head) pairs per shared-memory stage             */
#define SB_LOG2E 1.4426950408889634f

/* Bits of keys [k0, k0 + nk) (nk ≤ 64) held by the slots q0, q0 + qs, ... (< n) of one query's
 * ranges; bit i is key k0 + i. The ranges are packed and ascending, the first empty slot ending
 * them (select.cu, bwd_ranges_kernel), so the walk stops at a slot empty or past the keys. */
__device__ __forceinline__ uint64_t sb_mask(const int32_t *rg, int q0, int qs, int n, int64_t k0,
                                            int nk) {
    uint64_t m = 0;
    for (int q = q0; q < n; q += qs) {
        const int64_t a = rg[2 * q], z = rg[2 * q + 1];
        if (a == z || a >= k0 + nk) break;
        if (z > k0) {
            const int64_t lo = a > k0 ? a : k0, hi = z < k0 + nk ? z : k0 + nk;
            const int w = (int)(hi - lo);
            m |= (w >= 64 ? ~0ull : (1ull << w) - 1ull) << (lo - k0);
        }
    }
    return m;
}

/* First set bit ≥ from of a bitmap of `words` words, or -1. */
__device__ __forceinline__ int sb_next(const unsigned *bits, int words, int from) {
    int w = from >> 5;
    if (w >= words) return -1;
    unsigned x = bits[w] & (~0u << (from & 31));
    while (!x) {
        if (++w >= words) return -1;
        x = bits[w];
    }
    return w * 32 + __ffs(x) - 1;
}

/* (lse·log2e, gate, delta) of row hr; lse2 = +inf (the row sees nothing) when lse = -inf. */
__device__ __forceinline__ void sb_rowstat(const nsa_cu_tc_rows &rw, int64_t hr, float *l2,
                                           float *gt, float *dl) {
    const float ls = rw.lse[hr];
    *l2 = INFINITY;
    *gt = *dl = 0.f;
    if (ls > -INFINITY) {
        *l2 = ls * SB_LOG2E;
        *gt = rw.gate[hr];
        *dl = rw.delta[hr];
    }
}

/* ---- dq: rows = 16 (query, head) pairs p = 16·x + m of group g (query p / G, head p % G) ---- */

template <int DK, int DV> struct sq_smem {
    static constexpr int KS = DK + 8, VS = DV + 8;
    static constexpr int q_bytes = 16 * KS * 2, y_bytes = 16 * VS * 2;
    static constexpr int stage_bytes = SB_BN * (KS + VS) * 2;
    static constexpr int merge_bytes = 4 * 16 * (DK + 4) * 4;
    static constexpr int kv_bytes = 2 * stage_bytes > merge_bytes ? 2 * stage_bytes : merge_bytes;
    /* then: masks 2 × 16 u64, row stats 3 × 16 f32, cursors 16 i32, ranges nqmax·n·2 i32,
     * the tile bitmap */
    static constexpr int bytes = q_bytes + y_bytes + kv_bytes + 2 * 16 * 8 + 4 * 16 * 4;
};

/* Grid: x = ⌈T·G / 16⌉ row tiles, y = Hkv, z = B; 128 threads. The rows' queries (≤ nqmax) mark
 * the 64-key tiles their ranges touch in a bitmap; the tiles are walked ascending, double-buffered
 * by cp.async. Per tile warp w takes keys 16w..16w+15: S = Q·Kᵀ and dP' = dO·Vᵀ by mma, then
 * dS = P·(gate·dP' − delta) with P = exp2(S·scale·log2e − lse2) on the keys the row's query
 * holds, rounded to T, and dq_w += dS·K (K by transposed ldmatrix). The four warps' dq are
 * summed in warp order through shared memory and added, times scale, into acc[NSA_GQ]. */
template <typename T, int DK, int DV>
__global__ void __launch_bounds__(SB_TH, 2) sq_kernel(nsa_cu_bwd W, nsa_cu_tc_rows rw, int nqmax,
                                                      int words) {
    typedef sq_smem<DK, DV> SM;
    extern __shared__ __align__(16) unsigned char smraw[];
    const nsa_cu_params &P = W.F;
    T *Qs = (T *)smraw, *Ys = (T *)(smraw + SM::q_bytes);
    unsigned char *kv = smraw + SM::q_bytes + SM::y_bytes;
    uint64_t *qm = (uint64_t *)(kv + SM::kv_bytes); /* [stage][query] key masks */
    float *rl = (float *)(qm + 32), *rgt = rl + 16, *rdl = rgt + 16;
    int *qcur = (int *)(rdl + 16); /* per query: its first range ending after the last tile */
    int32_t *rng = qcur + 16;
    unsigned *bits = (unsigned *)(rng + nqmax * P.n * 2);
    const int G = P.G, tid = threadIdx.x, warp = tid / 32, lane = tid % 32, mi = lane / 8;
    const int g = blockIdx.y;
    const int64_t b = blockIdx.z, p0 = (int64_t)blockIdx.x * 16, tf = p0 / G;
    const int64_t tlst = (p0 + 15) / G < P.T - 1 ? (p0 + 15) / G : P.T - 1;
    const int nq = (int)(tlst - tf + 1), n2 = 2 * P.n;
    const float sl2 = P.scale * SB_LOG2E;

    for (int i = tid; i < words; i += SB_TH) bits[i] = 0u;
    for (int i = tid; i < nq * n2; i += SB_TH)
        rng[i] = P.ranges[((b * P.T + tf + i / n2) * P.Hkv + g) * (int64_t)n2 + i % n2];
    if (tid < 16) {
        const int64_t p = p0 + tid, t = p / G;
        float l2 = INFINITY, gt = 0.f, dl = 0.f;
        if (t < P.T) sb_rowstat(rw, (b * P.T + t) * P.Hq + g * G + p % G, &l2, &gt, &dl);
        rl[tid] = l2;
        rgt[tid] = gt;
        rdl[tid] = dl;
        qcur[tid] = 0;
    }
    for (int c = tid; c < 16 * (DK / 8 + DV / 8); c += SB_TH) {
        const bool isq = c < 16 * (DK / 8);
        const int cc = isq ? c : c - 16 * (DK / 8), NC = isq ? DK / 8 : DV / 8;
        const int m = cc / NC, ch = cc % NC;
        const int64_t p = p0 + m, t = p / G;
        const bool ok = t < P.T;
        const nsa_cu_view &v = isq ? P.q : W.dout;
        const T *src = (const T *)v.p + b * v.sb + (ok ? t : 0) * v.st +
                       (int64_t)(g * G + (ok ? p % G : 0)) * v.sh + ch * 8;
        cp_async16((isq ? Qs + m * SM::KS : Ys + m * SM::VS) + ch * 8, src, ok);
    }
    cp_commit();
    __syncthreads();
    for (int i = tid; i < nq * P.n; i += SB_TH) {
        const int s = rng[2 * i], e = rng[2 * i + 1];
        if (e > s)
            for (int k = s / SB_BN; k <= (e - 1) / SB_BN; k++) atomicOr(&bits[k >> 5], 1u << (k & 31));
    }
    __syncthreads();

    const T *Kg = (const T *)P.ks.p + b * P.ks.sb + (int64_t)g * P.ks.sh;
    const T *Vg = (const T *)P.vs.p + b * P.vs.sb + (int64_t)g * P.vs.sh;
    auto load_tile = [&](int k, int stage) {
        const int64_t base = (int64_t)k * SB_BN;
        const int nk = P.T - base < SB_BN ? (int)(P.T - base) : SB_BN;
        T *ks = (T *)(kv + stage * SM::stage_bytes), *vs = ks + SB_BN * SM::KS;
        for (int c = tid; c < SB_BN * (DK / 8 + DV / 8); c += SB_TH) {
            const bool isk = c < SB_BN * (DK / 8);
            const int cc = isk ? c : c - SB_BN * (DK / 8), NC = isk ? DK / 8 : DV / 8;
            const int kr = cc / NC, ch = cc % NC;
            const bool ok = kr < nk;
            const int64_t row = base + (ok ? kr : 0);
            if (isk) cp_async16(ks + kr * SM::KS + ch * 8, Kg + row * P.ks.st + ch * 8, ok);
            else cp_async16(vs + kr * SM::VS + ch * 8, Vg + row * P.vs.st + ch * 8, ok);
        }
        cp_commit();
        if (tid < nq) { /* tiles come ascending: the query's cursor only moves forward */
            const int32_t *rg = rng + tid * n2;
            int r = qcur[tid];
            while (r < P.n && rg[2 * r] != rg[2 * r + 1] && rg[2 * r + 1] <= base) r++;
            qcur[tid] = r;
            qm[stage * 16 + tid] = sb_mask(rg, r, 1, P.n, base, nk);
        }
    };

    float dq[DK / 8][4];
#pragma unroll
    for (int i = 0; i < DK / 8; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
    /* the query (index into qm) and stats of this lane's two rows */
    int rq[2];
    float r_l2[2], r_gt[2], r_dl[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int m = lane / 4 + 8 * i;
        const int q = (int)((p0 + m) / G - tf);
        rq[i] = q < nq ? q : nq - 1; /* rows past T: l2 = +inf, the mask is irrelevant */
        r_l2[i] = rl[m];
        r_gt[i] = rgt[m];
        r_dl[i] = rdl[m];
    }

    int cur = sb_next(bits, words, 0);
    if (cur >= 0) load_tile(cur, 0);
    for (int it = 0; cur >= 0; it++) {
        const int nxt = sb_next(bits, words, cur + 1), st = it & 1;
        if (nxt >= 0) {
            load_tile(nxt, st ^ 1);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        const T *ks = (const T *)(kv + st * SM::stage_bytes), *vs = ks + SB_BN * SM::KS;
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        float dp[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        /* S and dP' interleaved: four independent mma chains instead of two */
#pragma unroll
        for (int kk = 0; kk < (DK > DV ? DK : DV) / 16; kk++) {
            uint32_t a[4], r[4];
            if (kk < DK / 16) {
                ldsm_x4(a, Qs + ((mi % 2) * 8 + lane % 8) * SM::KS + kk * 16 + (mi / 2) * 8);
                ldsm_x4(r, ks + (warp * 16 + (mi / 2) * 8 + lane % 8) * SM::KS + kk * 16 + (mi % 2) * 8);
                mma16816<T>(s[0], a, r[0], r[1]);
                mma16816<T>(s[1], a, r[2], r[3]);
            }
            if (kk < DV / 16) {
                ldsm_x4(a, Ys + ((mi % 2) * 8 + lane % 8) * SM::VS + kk * 16 + (mi / 2) * 8);
                ldsm_x4(r, vs + (warp * 16 + (mi / 2) * 8 + lane % 8) * SM::VS + kk * 16 + (mi % 2) * 8);
                mma16816<T>(dp[0], a, r[0], r[1]);
                mma16816<T>(dp[1], a, r[2], r[3]);
            }
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const uint64_t mk = qm[st * 16 + rq[i]];
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int kl = warp * 16 + nt * 8 + (lane % 4) * 2 + e;
                    const float p = (mk >> kl) & 1ull ? exp2f(s[nt][2 * i + e] * sl2 - r_l2[i]) : 0.f;
                    s[nt][2 * i + e] = p * (r_gt[i] * dp[nt][2 * i + e] - r_dl[i]);
                }
        }
        const uint32_t a[4] = {pack2<T>(s[0][0], s[0][1]), pack2<T>(s[0][2], s[0][3]),
                               pack2<T>(s[1][0], s[1][1]), pack2<T>(s[1][2], s[1][3])};
#pragma unroll
        for (int np = 0; np < DK / 16; np++) {
            uint32_t r[4];
            ldsm_x4_t(r, ks + (warp * 16 + (mi % 2) * 8 + lane % 8) * SM::KS + np * 16 + (mi / 2) * 8);
            mma16816<T>(dq[2 * np], a, r[0], r[1]);
            mma16816<T>(dq[2 * np + 1], a, r[2], r[3]);
        }
        __syncthreads();
        cur = nxt;
    }
    cp_wait<0>();
    __syncthreads();
    float *Om = (float *)kv; /* (4 warps × 16 rows) × (DK + 4) */
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = warp * 16 + lane / 4 + 8 * i;
#pragma unroll
        for (int nt = 0; nt < DK / 8; nt++)
            *(float2 *)(Om + r * (DK + 4) + nt * 8 + (lane % 4) * 2) =
                make_float2(dq[nt][2 * i], dq[nt][2 * i + 1]);
    }
    __syncthreads();
    double *acc = W.acc[NSA_GQ];
    for (int c = tid; c < 16 * DK; c += SB_TH) {
        const int m = c / DK, e = c % DK;
        const int64_t p = p0 + m, t = p / G;
        if (t >= P.T) continue;
        const float v = ((Om[m * (DK + 4) + e] + Om[(16 + m) * (DK + 4) + e]) +
                         Om[(32 + m) * (DK + 4) + e]) + Om[(48 + m) * (DK + 4) + e];
        acc[((b * P.T + t) * P.Hq + g * G + p % G) * DK + e] += (double)v * W.scale;
    }
}

#endif /* NSA_CUDA_BWD_SEL_TC_CUH */
