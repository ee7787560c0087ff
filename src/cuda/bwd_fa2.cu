// SPDX-License-Identifier: Apache-2.0
/* bwd_fa2.cu — the FA-2 role of the CUDA backward for cmp and win: mma.sync m16n8k16 on bf16/f16
 * operands with f32 accumulation, deterministic (FlashAttention-2 backward, split in two
 * kernels so that no accumulator is shared between CTAs):
 *   fb_dkdv  one CTA per (64-key tile, chunk of the query tiles that see it): Sᵀ = K·Qᵀ and
 *            dPᵀ = V·dOᵀ, then dV += (g·P)ᵀ·dO and dK += dSᵀ·Q through shared memory;
 *            tiles seen by more query tiles than one chunk write partial slots that fb_reduce
 *            adds in chunk order.
 *   fb_dq    one CTA per query tile (64 rows = (query, head) pairs of one KV group, as the
 *            forward): S = Q·Kᵀ, dP = dO·Vᵀ per key tile, dq += dS·K.
 * Not the selection (bwd_sel_tc.cu) and not the forward (fa2.cu).
 * Invariant: each double accumulator element is added to by exactly one CTA per kernel, in a
 * fixed order; rows past QPB·G of a tile (G ∤ 64) and keys a row cannot see contribute 0.
 */
#include "bwd_tc.cuh"
#include "mma.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FB_N 64       /* keys per tile and rows per query tile */
#define FB_THREADS 256 /* 8 warps */

/* What both kernels read. */
typedef struct {
    nsa_cu_params P;
    nsa_cu_view K, V, dout;
    const float *lse, *delta, *gate; /* (R, Hq) */
    double *dq, *dk, *dv;            /* (B, T, Hq, Dk); (B, X, Hkv, D*) with X = Tc or T  */
    float *slot;                     /* partial (dK | dV) rows of multi-chunk key tiles    */
    const int *coff;                 /* (ntk + 1): first chunk of key tile x              */
    const int *soff;                 /* (ntk + 1): first slot of key tile x               */
    int ntk, nchunk, nslot, cht, X;
} fb_args;

/* c[NT][4] += A · op(B), A 16 × KD row-major at a (stride lda). BT: op(B) = Bᵀ with B NT·8 rows
 * × KD at b (ldb: K and Q tiles as the right operand of a score); else op(B) = B, KD × NT·8
 * row-major at b (ldb: the right operand of P·dO, dS·Q, dS·K). */
template <typename T, int KD, int NT, bool BT>
__device__ __forceinline__ void fb_mm(float c[NT][4], const T *a, int lda, const T *b, int ldb) {
    const int lane = threadIdx.x % 32, mi = lane / 8;
#pragma unroll
    for (int kk = 0; kk < KD / 16; kk++) {
        uint32_t af[4];
        ldsm_x4(af, a + ((mi % 2) * 8 + lane % 8) * lda + kk * 16 + (mi / 2) * 8);
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t r[4];
            if (BT) ldsm_x4(r, b + (np * 16 + (mi / 2) * 8 + lane % 8) * ldb + kk * 16 + (mi % 2) * 8);
            else ldsm_x4_t(r, b + (kk * 16 + (mi % 2) * 8 + lane % 8) * ldb + np * 16 + (mi / 2) * 8);
            mma16816<T>(c[2 * np], af, r[0], r[1]);
            mma16816<T>(c[2 * np + 1], af, r[2], r[3]);
        }
    }
}

/* The score and dP blocks of a 16 × 32 tile: sc = Xk·Ykᵀ over DK, dp = Xv·Yvᵀ over DV (rows
 * padded to DK + 8 / DV + 8 elements). */
template <typename T, int DK, int DV>
__device__ __forceinline__ void fb_sdp(float sc[4][4], float dp[4][4], const T *xk, const T *yk,
                                       const T *xv, const T *yv) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) sc[i][e] = dp[i][e] = 0.f;
    fb_mm<T, DK, 4, true>(sc, xk, DK + 8, yk, DK + 8);
    fb_mm<T, DV, 4, true>(dp, xv, DV + 8, yv, DV + 8);
}

/* Whether query t sees key j of branch BR. */
template <int BR> __device__ __forceinline__ bool fb_sees(const nsa_cu_params &P, int t, int j) {
    if (BR == NSA_BRANCH_CMP) return nsa_ix_cmp_sees(P.l, P.d, t, j);
    return nsa_ix_win_sees32(P.w, t, j);
}

/* Queries [qa, qz) that see some key of tile x (keys [64x, 64x + 64) ∩ [0, X)). */
template <int BR>
__host__ __device__ __forceinline__ void fb_qrange(int T, int l, int d, int w, int X, int x,
                                                   int *qa, int *qz) {
    const int j0 = x * FB_N, j1 = (j0 + FB_N < X ? j0 + FB_N : X) - 1;
    if (BR == NSA_BRANCH_CMP) {
        const int64_t a = nsa_ix_cmp_first_query(l, d, j0);
        *qa = a < T ? (int)a : T;
        *qz = T;
    } else {
        *qa = j0;
        *qz = nsa_ix_win_qend32(w, j1, T);
    }
}

/* Shared memory of the two kernels (bytes); rows padded by 8 elements for ldmatrix. */
template <int DK, int DV> struct fb_smem {
    static constexpr int KS = DK + 8, VS = DV + 8, PS = FB_N + 8;
    static constexpr int k_bytes = FB_N * KS * 2, v_bytes = FB_N * VS * 2;
    static constexpr int p_bytes = FB_N * PS * 2;
    /* dkdv: K, V, 2 stages of (Q, dO, row stats), Pᵀ and dSᵀ */
    static constexpr int stat_bytes = FB_N * 16;
    static constexpr int dkdv = k_bytes + v_bytes + 2 * (k_bytes + v_bytes + stat_bytes) + 2 * p_bytes;
    /* dq: Q, dO, row stats, st stages of (K, V), dS */
    static constexpr int dq(int st) {
        return k_bytes + v_bytes + stat_bytes + st * (k_bytes + v_bytes) + p_bytes;
    }
};

/* Row stats of a 64-row query tile in shared memory: lse·log2(e), delta, gate, t (-1: none). */
typedef struct {
    float lse2[FB_N], delta[FB_N], gate[FB_N];
    int t[FB_N];
} fb_rows;

/* Loads the Q and dO rows of the query tile starting at query tq (rows m < QPB·G: query
 * tq + m/G, head g·G + m%G; queries < qz) into Qs / Ys and their stats into rs. */
template <typename T, int DK, int DV>
__device__ __forceinline__ void fb_load_rows(const fb_args &A, int b, int g, int tq, int qz,
                                             T *Qs, T *Ys, fb_rows *rs) {
    typedef fb_smem<DK, DV> SM;
    const nsa_cu_params &P = A.P;
    const int G = P.G, nrow = (FB_N / G) * G, tid = threadIdx.x;
    for (int c = tid; c < FB_N * (DK / 8); c += FB_THREADS) {
        const int m = c / (DK / 8), ch = c % (DK / 8), t = tq + m / G;
        const bool ok = m < nrow && t < qz;
        cp_async16(Qs + m * SM::KS + ch * 8,
                   (const T *)P.q.p + (int64_t)b * P.q.sb + (int64_t)(ok ? t : 0) * P.q.st +
                       (int64_t)(g * G + m % G) * P.q.sh + ch * 8, ok);
    }
    for (int c = tid; c < FB_N * (DV / 8); c += FB_THREADS) {
        const int m = c / (DV / 8), ch = c % (DV / 8), t = tq + m / G;
        const bool ok = m < nrow && t < qz;
        cp_async16(Ys + m * SM::VS + ch * 8,
                   (const T *)A.dout.p + (int64_t)b * A.dout.sb + (int64_t)(ok ? t : 0) * A.dout.st +
                       (int64_t)(g * G + m % G) * A.dout.sh + ch * 8, ok);
    }
    if (tid < FB_N) {
        const int m = tid, t = tq + m / G;
        const bool ok = m < nrow && t < qz;
        float l2 = -INFINITY, de = 0.f, ga = 0.f;
        if (ok) {
            const int64_t x = ((int64_t)b * P.T + t) * P.Hq + g * G + m % G;
            const float l = A.lse[x];
            l2 = l == -INFINITY ? -INFINITY : l * 1.4426950408889634f;
            de = A.delta[x];
            ga = A.gate[x];
        }
        rs->lse2[m] = l2;
        rs->delta[m] = de;
        rs->gate[m] = ga;
        rs->t[m] = ok && l2 != -INFINITY ? t : -1;
    }
}

/* Loads keys [j0, jend) of (b, g) into Ks / Vs (zero rows past jend). */
template <typename T, int DK, int DV>
__device__ __forceinline__ void fb_load_keys(const fb_args &A, int b, int g, int j0, int jend,
                                             T *Ks, T *Vs) {
    typedef fb_smem<DK, DV> SM;
    const T *Kg = (const T *)A.K.p + (int64_t)b * A.K.sb + (int64_t)g * A.K.sh;
    const T *Vg = (const T *)A.V.p + (int64_t)b * A.V.sb + (int64_t)g * A.V.sh;
    for (int c = threadIdx.x; c < FB_N * (DK / 8); c += FB_THREADS) {
        const int kr = c / (DK / 8), ch = c % (DK / 8);
        const bool ok = j0 + kr < jend;
        cp_async16(Ks + kr * SM::KS + ch * 8, Kg + (int64_t)(ok ? j0 + kr : 0) * A.K.st + ch * 8, ok);
    }
    for (int c = threadIdx.x; c < FB_N * (DV / 8); c += FB_THREADS) {
        const int kr = c / (DV / 8), ch = c % (DV / 8);
        const bool ok = j0 + kr < jend;
        cp_async16(Vs + kr * SM::VS + ch * 8, Vg + (int64_t)(ok ? j0 + kr : 0) * A.V.st + ch * 8, ok);
    }
}

/* Grid: x = chunk (key tile found in A.coff), y = Hkv, z = B. Block: 256 threads. Warp w:
 * the Sᵀ/dPᵀ block of keys 16(w%4).. × rows 32(w/4)..; then dV, dK of keys 16(w%4).. × the
 * column half w/4. Shared memory: fb_smem<DK, DV>::dkdv (192/128: 147 KB). */
template <typename T, int DK, int DV, int BR>
__global__ void __launch_bounds__(FB_THREADS) fb_dkdv_kernel(fb_args A) {
    typedef fb_smem<DK, DV> SM;
    extern __shared__ __align__(16) unsigned char smraw[];
    const nsa_cu_params &P = A.P;
    T *Ks = (T *)smraw, *Vs = (T *)(smraw + SM::k_bytes);
    unsigned char *st0 = smraw + SM::k_bytes + SM::v_bytes;
    const int stage_bytes = SM::k_bytes + SM::v_bytes + SM::stat_bytes;
    T *Ps = (T *)(st0 + 2 * stage_bytes), *Ss = Ps + FB_N * SM::PS;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = blockIdx.y, b = blockIdx.z, cid = blockIdx.x;
    int lo = 0, hi = A.ntk - 1; /* the key tile: last x with coff[x] <= cid */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (A.coff[mid] <= cid) lo = mid;
        else hi = mid - 1;
    }
    const int x = lo, c = cid - A.coff[x], nch = A.coff[x + 1] - A.coff[x];
    const int j0 = x * FB_N, jend = min(j0 + FB_N, A.X);
    int qa, qz;
    fb_qrange<BR>(P.T, P.l, P.d, P.w, A.X, x, &qa, &qz);
    const int QPB = FB_N / P.G;
    const int nqt = (qz - qa + QPB - 1) / QPB, k0 = c * A.cht, k1 = min(nqt, k0 + A.cht);
    const float sl2 = P.scale * 1.4426950408889634f;
    /* stage s: Q rows, dO rows, their stats */
    auto Qst = [&](int s) { return (T *)(st0 + s * stage_bytes); };
    auto Yst = [&](int s) { return (T *)(st0 + s * stage_bytes + SM::k_bytes); };
    auto Rst = [&](int s) { return (fb_rows *)(st0 + s * stage_bytes + SM::k_bytes + SM::v_bytes); };

    fb_load_keys<T, DK, DV>(A, b, g, j0, jend, Ks, Vs);
    if (k0 < k1) fb_load_rows<T, DK, DV>(A, b, g, qa + k0 * QPB, qz, Qst(0), Yst(0), Rst(0));
    cp_commit();

    const int kr0 = 16 * (warp % 4), rc0 = 32 * (warp / 4), half = warp / 4;
    float dk[DK / 16][4], dv[DV / 16][4];
#pragma unroll
    for (int i = 0; i < DK / 16; i++) dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = 0.f;
#pragma unroll
    for (int i = 0; i < DV / 16; i++) dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0.f;

    for (int k = k0; k < k1; k++) {
        const int s = (k - k0) & 1;
        if (k + 1 < k1) {
            fb_load_rows<T, DK, DV>(A, b, g, qa + (k + 1) * QPB, qz, Qst(s ^ 1), Yst(s ^ 1),
                                    Rst(s ^ 1));
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        T *Qs = Qst(s), *Ys = Yst(s);
        const fb_rows *rs = Rst(s);
        {
            float sc[4][4], dp[4][4];
            fb_sdp<T, DK, DV>(sc, dp, Ks + kr0 * SM::KS, Qs + rc0 * SM::KS, Vs + kr0 * SM::VS,
                              Ys + rc0 * SM::VS);
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    const int kr = kr0 + lane / 4 + 8 * h2, key = j0 + kr;
                    float pv[2], dv2[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int m = rc0 + nt * 8 + (lane % 4) * 2 + e, t = rs->t[m];
                        const bool vis = t >= 0 && key < jend && fb_sees<BR>(P, t, key);
                        const float p = vis ? exp2f(sc[nt][2 * h2 + e] * sl2 - rs->lse2[m]) : 0.f;
                        pv[e] = p * rs->gate[m];
                        dv2[e] = p * (rs->gate[m] * dp[nt][2 * h2 + e] - rs->delta[m]);
                    }
                    const int col = rc0 + nt * 8 + (lane % 4) * 2;
                    *(uint32_t *)(Ps + kr * SM::PS + col) = pack2<T>(pv[0], pv[1]);
                    *(uint32_t *)(Ss + kr * SM::PS + col) = pack2<T>(dv2[0], dv2[1]);
                }
        }
        __syncthreads();
        fb_mm<T, FB_N, DV / 16, false>(dv, Ps + kr0 * SM::PS, SM::PS, Ys + half * (DV / 2), SM::VS);
        fb_mm<T, FB_N, DK / 16, false>(dk, Ss + kr0 * SM::PS, SM::PS, Qs + half * (DK / 2), SM::KS);
        __syncthreads();
    }
    cp_wait<0>();

    /* epilogue: rows kr0 + lane/4 (+8), columns of this half */
    const int64_t bg = (int64_t)b * P.Hkv + g;
    float *sk = NULL;
    if (nch > 1)
        sk = A.slot + ((bg * A.nslot + A.soff[x] + c) * FB_N) * (int64_t)(DK + DV);
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        const int kr = kr0 + lane / 4 + 8 * h2, key = j0 + kr;
        if (key >= jend) continue;
#pragma unroll
        for (int nt = 0; nt < DK / 16; nt++) {
            const int col = half * (DK / 2) + nt * 8 + (lane % 4) * 2;
            const float v0 = dk[nt][2 * h2] * P.scale, v1 = dk[nt][2 * h2 + 1] * P.scale;
            if (sk) {
                sk[kr * (DK + DV) + col] = v0;
                sk[kr * (DK + DV) + col + 1] = v1;
            } else if (A.dk) {
                double *d = A.dk + (((int64_t)b * A.X + key) * P.Hkv + g) * DK + col;
                d[0] += v0;
                d[1] += v1;
            }
        }
#pragma unroll
        for (int nt = 0; nt < DV / 16; nt++) {
            const int col = half * (DV / 2) + nt * 8 + (lane % 4) * 2;
            const float v0 = dv[nt][2 * h2], v1 = dv[nt][2 * h2 + 1];
            if (sk) {
                sk[kr * (DK + DV) + DK + col] = v0;
                sk[kr * (DK + DV) + DK + col + 1] = v1;
            } else if (A.dv) {
                double *d = A.dv + (((int64_t)b * A.X + key) * P.Hkv + g) * DV + col;
                d[0] += v0;
                d[1] += v1;
            }
        }
    }
}

/* Grid: one thread per (b, g, key row of a multi-chunk tile, column of dK | dV). Adds the
 * tile's partial slots in chunk order (double) to the accumulators. */
__global__ void fb_reduce_kernel(fb_args A, const int *mtile, int nmt, int DK, int DV) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int W = DK + DV;
    const int64_t per = (int64_t)nmt * FB_N * W;
    if (i >= per * A.P.B * A.P.Hkv) return;
    const int64_t bg = i / per;
    const int64_t rem = i % per;
    const int col = (int)(rem % W), kr = (int)(rem / W % FB_N), x = mtile[rem / W / FB_N];
    const int key = x * FB_N + kr;
    if (key >= A.X) return;
    double s = 0.0;
    for (int c = 0; c < A.coff[x + 1] - A.coff[x]; c++)
        s += A.slot[((bg * A.nslot + A.soff[x] + c) * FB_N + kr) * (int64_t)W + col];
    const int64_t b = bg / A.P.Hkv, g = bg % A.P.Hkv;
    if (col < DK) {
        if (A.dk) A.dk[((b * A.X + key) * A.P.Hkv + g) * DK + col] += s;
    } else if (A.dv) {
        A.dv[((b * A.X + key) * A.P.Hkv + g) * DV + col - DK] += s;
    }
}

/* Grid: x = query tile (heaviest first for cmp), y = Hkv, z = B. Block: 256 threads. Warp w:
 * S/dP of rows 16(w%4).. × keys 32(w/4)..; then dq of rows 16(w%4).. × column half w/4.
 * Shared memory: fb_smem<DK, DV>::dq(ST) (192/128: 96 KB with ST = 1, two CTAs per SM, the
 * default; 138 KB with ST = 2 K/V stages, the next tile loading during this one). */
template <typename T, int DK, int DV, int BR, int ST>
__global__ void __launch_bounds__(FB_THREADS) fb_dq_kernel(fb_args A) {
    typedef fb_smem<DK, DV> SM;
    extern __shared__ __align__(16) unsigned char smraw[];
    const nsa_cu_params &P = A.P;
    T *Qs = (T *)smraw, *Ys = (T *)(smraw + SM::k_bytes);
    fb_rows *rs = (fb_rows *)(smraw + SM::k_bytes + SM::v_bytes);
    unsigned char *kv0 = smraw + SM::k_bytes + SM::v_bytes + SM::stat_bytes;
    T *Ss = (T *)(kv0 + ST * (SM::k_bytes + SM::v_bytes));
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = blockIdx.y, b = blockIdx.z, QPB = FB_N / P.G;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * QPB, tlast = min(t0 + QPB, P.T) - 1;
    const float sl2 = P.scale * 1.4426950408889634f;
    int kb0 = 0, kend = 0;
    if (BR == NSA_BRANCH_CMP) {
        kend = (int)nsa_cu_num_cmp(P, tlast + 1);
    } else {
        kb0 = nsa_ix_win_lo32(P.w, t0);
        kend = tlast + 1;
    }
    const int ntiles = kend > kb0 ? (kend - kb0 + FB_N - 1) / FB_N : 0;
    /* stage s: K rows, V rows */
    auto Kst = [&](int s) { return (T *)(kv0 + s * (SM::k_bytes + SM::v_bytes)); };
    auto Vst = [&](int s) { return (T *)(kv0 + s * (SM::k_bytes + SM::v_bytes) + SM::k_bytes); };
    fb_load_rows<T, DK, DV>(A, b, g, t0, P.T, Qs, Ys, rs);
    if (ntiles > 0) fb_load_keys<T, DK, DV>(A, b, g, kb0, min(kb0 + FB_N, kend), Kst(0), Vst(0));
    cp_commit();

    const int r0 = 16 * (warp % 4), kc0 = 32 * (warp / 4), half = warp / 4;
    float dq[DK / 16][4];
#pragma unroll
    for (int i = 0; i < DK / 16; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;

    for (int it = 0; it < ntiles; it++) {
        const int s = ST == 2 ? it & 1 : 0, base = kb0 + it * FB_N;
        if (ST == 1 && it > 0) { /* the previous tile's readers passed the loop's last barrier */
            fb_load_keys<T, DK, DV>(A, b, g, base, min(base + FB_N, kend), Kst(0), Vst(0));
            cp_commit();
        }
        if (ST == 2 && it + 1 < ntiles) {
            fb_load_keys<T, DK, DV>(A, b, g, base + FB_N, min(base + 2 * FB_N, kend), Kst(s ^ 1),
                                    Vst(s ^ 1));
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        T *Ks = Kst(s), *Vs = Vst(s);
        {
            float sc[4][4], dp[4][4];
            fb_sdp<T, DK, DV>(sc, dp, Qs + r0 * SM::KS, Ks + kc0 * SM::KS, Ys + r0 * SM::VS,
                              Vs + kc0 * SM::VS);
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    const int m = r0 + lane / 4 + 8 * h2, t = rs->t[m];
                    float d2[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int key = base + kc0 + nt * 8 + (lane % 4) * 2 + e;
                        const bool vis = t >= 0 && key < kend && fb_sees<BR>(P, t, key);
                        const float p = vis ? exp2f(sc[nt][2 * h2 + e] * sl2 - rs->lse2[m]) : 0.f;
                        d2[e] = p * (rs->gate[m] * dp[nt][2 * h2 + e] - rs->delta[m]);
                    }
                    *(uint32_t *)(Ss + m * SM::PS + kc0 + nt * 8 + (lane % 4) * 2) =
                        pack2<T>(d2[0], d2[1]);
                }
        }
        __syncthreads();
        fb_mm<T, FB_N, DK / 16, false>(dq, Ss + r0 * SM::PS, SM::PS, Ks + half * (DK / 2), SM::KS);
        __syncthreads();
    }
    cp_wait<0>();
    if (!A.dq || ntiles == 0) return; /* no key: dq unchanged (and rs unsynchronised) */
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        const int m = r0 + lane / 4 + 8 * h2, t = rs->t[m];
        if (t < 0) continue;
        double *d = A.dq + (((int64_t)b * P.T + t) * P.Hq + g * P.G + m % P.G) * DK;
#pragma unroll
        for (int nt = 0; nt < DK / 16; nt++) {
            const int col = half * (DK / 2) + nt * 8 + (lane % 4) * 2;
            d[col] += dq[nt][2 * h2] * P.scale;
            d[col + 1] += dq[nt][2 * h2 + 1] * P.scale;
        }
    }
}

/* ---- launch ---- */

int nsa_cu_bwd_fa2_supported(const nsa_shape *s, nsa_branch br, const char **why) {
    if (br == NSA_BRANCH_SEL) { *why = "FA-2 serves cmp and win"; return 0; }
    if (s->dt != NSA_DTYPE_BF16 && s->dt != NSA_DTYPE_F16) { *why = "dtype not bf16/f16"; return 0; }
    if (!nsa_cu_tc_dims_ok(s->Dk, s->Dv)) { *why = NSA_CU_TC_DIMS_WHY; return 0; }
    if (s->G < 1 || s->G > FB_N) { *why = "G > 64"; return 0; }
    if (s->T > INT32_MAX / 2) { *why = "T too large"; return 0; }
    return 1;
}

template <typename K> static nsa_status fb_attr(nsa_context *ctx, K kernel, int smem) {
    return nsa_cu_check(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  smem), "fa2 backward smem attribute");
}

/* Chunks per key tile: the query tiles of all key tiles split into chunks of cht, cht chosen
 * so the grid has about 16 CTAs per SM of equal work (small tiles stay one chunk). */
template <int BR>
static void fb_plan(const nsa_cu_params *P, int X, int nsm, int *cht, int *coff, int *soff) {
    const int ntk = (X + FB_N - 1) / FB_N, QPB = FB_N / P->G;
    int64_t tot = 0;
    for (int x = 0; x < ntk; x++) {
        int qa, qz;
        fb_qrange<BR>(P->T, P->l, P->d, P->w, X, x, &qa, &qz);
        tot += (qz - qa + QPB - 1) / QPB;
    }
    const int64_t want = (int64_t)16 * nsm / ((int64_t)P->B * P->Hkv) + 1;
    int64_t c = (tot + want - 1) / want;
    *cht = (int)(c < 16 ? 16 : c);
    coff[0] = soff[0] = 0;
    for (int x = 0; x < ntk; x++) {
        int qa, qz;
        fb_qrange<BR>(P->T, P->l, P->d, P->w, X, x, &qa, &qz);
        const int nqt = (qz - qa + QPB - 1) / QPB, nch = nqt > 0 ? (nqt + *cht - 1) / *cht : 1;
        coff[x + 1] = coff[x] + nch;
        soff[x + 1] = soff[x] + (nch > 1 ? nch : 0);
    }
}

template <typename T, int DK, int DV, int BR>
static nsa_status fb_launch(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                            const nsa_cu_tc_rows *rw) {
    const nsa_cu_params &P = W->F;
    typedef fb_smem<DK, DV> SM;
    fb_args A;
    memset(&A, 0, sizeof A);
    A.P = P;
    A.K = BR == NSA_BRANCH_CMP ? P.kc : P.kw;
    A.V = BR == NSA_BRANCH_CMP ? P.vc : P.vw;
    A.dout = W->dout;
    A.lse = rw->lse;
    A.delta = rw->delta;
    A.gate = rw->gate;
    A.dq = W->acc[NSA_GQ];
    A.dk = BR == NSA_BRANCH_CMP ? W->dkc : W->acc[NSA_GKW];
    A.dv = BR == NSA_BRANCH_CMP ? W->dvc : W->acc[NSA_GVW];
    A.X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
    const int QPB = FB_N / P.G;
    if (A.dq) {
        dim3 grid((unsigned)((P.T + QPB - 1) / QPB), (unsigned)P.Hkv, (unsigned)P.B);
        /* one stage by default: two CTAs per SM beat the prefetch (shape A 64k, H100:
         * cmp 122.2 vs 135.2 ms, win 36.8 vs 41.7 ms; bench/RESULTS.md) */
        if (nsa_cu_tuning.bwd_dq_stages == 2) {
            NSA_TRY(fb_attr(ctx, fb_dq_kernel<T, DK, DV, BR, 2>, SM::dq(2)));
            fb_dq_kernel<T, DK, DV, BR, 2><<<grid, FB_THREADS, SM::dq(2), st>>>(A);
        } else {
            NSA_TRY(fb_attr(ctx, fb_dq_kernel<T, DK, DV, BR, 1>, SM::dq(1)));
            fb_dq_kernel<T, DK, DV, BR, 1><<<grid, FB_THREADS, SM::dq(1), st>>>(A);
        }
        NSA_CU_LAUNCHED(ctx, "fa2 backward dq");
    }
    if ((!A.dk && !A.dv) || A.X == 0) return NSA_OK;

    int dev = 0, nsm = 132;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev);
    const int ntk = (A.X + FB_N - 1) / FB_N;
    int *h = (int *)nsa_malloc(sizeof(int) * (size_t)(2 * (ntk + 1) + ntk));
    if (!h) return nsa_fail(ctx, NSA_ERR_NOMEM, "fa2 backward: out of host memory");
    int *coff = h, *soff = h + ntk + 1, *mt = h + 2 * (ntk + 1), nmt = 0;
    fb_plan<BR>(&P, A.X, nsm, &A.cht, coff, soff);
    for (int x = 0; x < ntk; x++)
        if (coff[x + 1] - coff[x] > 1) mt[nmt++] = x;
    A.ntk = ntk;
    A.nchunk = coff[ntk];
    A.nslot = soff[ntk];
    int *dtab = NULL;
    nsa_status s = nsa_cu_check(ctx, cudaMallocAsync((void **)&dtab, sizeof(int) * (size_t)(2 * (ntk + 1) + ntk), st),
                                "fa2 backward: tables");
    if (s == NSA_OK)
        s = nsa_cu_check(ctx, cudaMemcpyAsync(dtab, h, sizeof(int) * (size_t)(2 * (ntk + 1) + ntk),
                                              cudaMemcpyHostToDevice, st), "fa2 backward: tables");
    free(h);
    if (s != NSA_OK) {
        if (dtab) cudaFreeAsync(dtab, st);
        return s;
    }
    A.coff = dtab;
    A.soff = dtab + ntk + 1;
    if (A.nslot > 0)
        s = nsa_cu_check(ctx, cudaMallocAsync((void **)&A.slot, (size_t)P.B * P.Hkv * A.nslot * FB_N *
                                                                    (DK + DV) * sizeof(float), st),
                         "fa2 backward: partial slots");
    if (s == NSA_OK) s = fb_attr(ctx, fb_dkdv_kernel<T, DK, DV, BR>, SM::dkdv);
    if (s == NSA_OK) {
        dim3 grid((unsigned)A.nchunk, (unsigned)P.Hkv, (unsigned)P.B);
        fb_dkdv_kernel<T, DK, DV, BR><<<grid, FB_THREADS, SM::dkdv, st>>>(A);
        s = nsa_cu_check(ctx, cudaGetLastError(), "fa2 backward dk/dv");
    }
    if (s == NSA_OK && nmt > 0) {
        const int64_t n = (int64_t)P.B * P.Hkv * nmt * FB_N * (DK + DV);
        fb_reduce_kernel<<<nsa_cu_blocks(n, 256), 256, 0, st>>>(A, dtab + 2 * (ntk + 1), nmt, DK, DV);
        s = nsa_cu_check(ctx, cudaGetLastError(), "fa2 backward reduce");
    }
    if (A.slot) cudaFreeAsync(A.slot, st);
    cudaFreeAsync(dtab, st);
    return s;
}

template <typename T, int BR>
static nsa_status fb_dims(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                          const nsa_cu_tc_rows *rw) {
#define FB_DIMS(DK, DV) \
    if (W->F.Dk == DK && W->F.Dv == DV) return fb_launch<T, DK, DV, BR>(ctx, st, W, rw);
    NSA_CU_TC_DIMS(FB_DIMS)
#undef FB_DIMS
    return NSA_CU_TC_DIMS_FAIL(ctx, W->F.Dk, W->F.Dv);
}

nsa_status nsa_cu_bwd_fa2(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, const nsa_cu_bwd *W,
                          nsa_branch br, const nsa_cu_tc_rows *rw) {
    if (W->F.R == 0) return NSA_OK;
    if (br == NSA_BRANCH_WIN && W->F.w == 0) return NSA_OK; /* the branch sees no key */
    const int bf = dt == NSA_DTYPE_BF16;
    if (br == NSA_BRANCH_CMP)
        return bf ? fb_dims<__nv_bfloat16, NSA_BRANCH_CMP>(ctx, st, W, rw)
                  : fb_dims<__half, NSA_BRANCH_CMP>(ctx, st, W, rw);
    return bf ? fb_dims<__nv_bfloat16, NSA_BRANCH_WIN>(ctx, st, W, rw)
              : fb_dims<__half, NSA_BRANCH_WIN>(ctx, st, W, rw);
}
