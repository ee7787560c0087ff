// SPDX-License-Identifier: Apache-2.0
/* sel_fused.cu — the fused group-centric selection kernel for G <= 16 (paper: G = 16): one CTA
 * holds 16 rows, the G heads of QPB = floor(16/G) neighbouring queries of one KV group (rows
 * past QPB·G are padding: no key visible, never written), and walks the union
 * of their selected blocks once; every 64-key tile is split across the 4 warps (16 keys each),
 * each warp keeps its own online softmax, and the four partials merge at the end.
 * Why split keys and not queries: with G = 16 a 16-row tile is one query, so the K/V bytes a
 * query needs (n·lp·(Dk+Dv)·2, 655 KB at the paper shape) are fetched exactly once and every
 * warp stays busy; packing several queries per CTA only pays when their selections overlap
 * (measured on random inputs at 64k, 2026-11-26 H100: 4 queries per CTA, union walk, 72 ms vs
 * this kernel's time in bench/RESULTS.md).
 * Not the union kernel (fa2.cu, BR = sel), which runs by default where G does not divide 16.
 * Invariant: row r of the CTA sees a key only if its query selected the key's block and the key
 * is ≤ t (clipped current block).
 */
#include "mma.cuh"

#include <math.h>

#define S16_THREADS 128
#define S16_BN 64

template <int DK, int DV, int ST> struct s16_smem {
    static constexpr int KS = DK + 8, VS = DV + 8;
    static constexpr int q_bytes = 16 * KS * 2;
    static constexpr int stage_bytes = S16_BN * (KS + VS) * 2;
    static constexpr int merge_bytes = 4 * 16 * (DV + 4) * 4 + 4 * 16 * 2 * 4 + 16 * 4 * 4;
    static constexpr int kv_bytes = ST * stage_bytes > merge_bytes ? ST * stage_bytes : merge_bytes;
    static constexpr int bytes = q_bytes + kv_bytes; /* + block lists (dynamic) */
};

/* Grid: x = ceil(T / QPB) query tiles, y = Hkv, z = B. Block: 128 threads; warp w takes keys
 * 16w..16w+15 of each 64-key tile for all 16 rows (row m < QPB·G: query m/G, head m%G; padding
 * above, e.g. G = 6: 12 rows of 2 queries and 4 padding rows). Shared memory:
 * Q (16 × (DK+8) × 2 B), ST K/V stages (64 × (DK+DV+16) × 2 B each; the merge buffer of
 * 4 × 16 × (DV+4) f32 reuses them), then the queries' block lists and the union:
 * 192/128, ST = 2: 6.4 KB + 86 KB + lists, two CTAs per SM; ST = 1: 6.4 + 43 KB, three. */
template <typename T, int DK, int DV, int ST, bool PAD>
__global__ void __launch_bounds__(S16_THREADS, ST == 1 ? 3 : 2) sel16_kernel(nsa_cu_params P) {
    typedef s16_smem<DK, DV, ST> SM;
    extern __shared__ __align__(16) unsigned char smraw[];
    T *Qs = (T *)smraw;
    unsigned char *kv = smraw + SM::q_bytes;
    int *blk = (int *)(smraw + SM::bytes);
    /* rows m < MV are real; PAD (G does not divide 16) is a template argument so that G | 16
     * compiles to the kernel without padding checks (measured ~1% faster at G = 16) */
    const int G = P.G, QPB = 16 / G, MV = PAD ? QPB * G : 16;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = blockIdx.y, b = blockIdx.z, t0 = blockIdx.x * QPB;
    const int tlast = min(t0 + QPB, P.T) - 1;
    const float sl2 = P.scale * 1.4426950408889634f;

    /* block lists and their union (ascending): a bitmap over blocks when several queries */
    int *ulist = blk + QPB * P.n;
    const unsigned *bits = nsa_cu_block_union<S16_THREADS>(P, b, g, t0, QPB, blk, ulist);
    /* Q (16 rows) */
    for (int c = tid; c < 16 * (DK / 8); c += S16_THREADS) {
        int m = c / (DK / 8), ch = c % (DK / 8), t = t0 + m / G;
        bool ok = (!PAD || m < MV) && t < P.T;
        const T *src = (const T *)P.q.p + (int64_t)b * P.q.sb + (int64_t)(ok ? t : 0) * P.q.st +
                       (int64_t)(g * G + m % G) * P.q.sh + ch * 8;
        cp_async16(Qs + m * SM::KS + ch * 8, src, ok);
    }
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    const int nunion = (int)bits[0], cpb = (P.lp + S16_BN - 1) / S16_BN, ntiles = nunion * cpb;
    uint32_t qf[DK / 16][4];
#pragma unroll
    for (int kk = 0; kk < DK / 16; kk++) {
        int mi = lane / 8;
        ldsm_x4(qf[kk], Qs + ((mi % 2) * 8 + lane % 8) * SM::KS + kk * 16 + (mi / 2) * 8);
    }

    int trow[2]; /* a padding row gets t = P.T: past the end, sees no key */
    for (int i = 0; i < 2; i++) trow[i] = PAD && lane / 4 + 8 * i >= MV ? P.T : t0 + (lane / 4 + 8 * i) / G;
    const T *Kg = (const T *)P.ks.p + (int64_t)b * P.ks.sb + (int64_t)g * P.ks.sh;
    const T *Vg = (const T *)P.vs.p + (int64_t)b * P.vs.sb + (int64_t)g * P.vs.sh;
    /* tile it = chunk it % cpb of union block it / cpb: keys [base, end) exist */
    auto tile_range = [&](int it, int *base, int *end) {
        int j = ulist[it / cpb];
        *base = j * P.lp + (it % cpb) * S16_BN;
        *end = min(*base + S16_BN, min((j + 1) * P.lp, tlast + 1));
    };
    auto load_tile = [&](int it, int stage) {
        int base, end;
        tile_range(it, &base, &end);
        T *ks = (T *)(kv + stage * SM::stage_bytes), *vs = ks + S16_BN * SM::KS;
        for (int c = tid; c < S16_BN * (DK / 8); c += S16_THREADS) {
            int kr = c / (DK / 8), ch = c % (DK / 8);
            bool ok = base + kr < end;
            cp_async16(ks + kr * SM::KS + ch * 8, Kg + (int64_t)(ok ? base + kr : 0) * P.ks.st + ch * 8, ok);
        }
        for (int c = tid; c < S16_BN * (DV / 8); c += S16_THREADS) {
            int kr = c / (DV / 8), ch = c % (DV / 8);
            bool ok = base + kr < end;
            cp_async16(vs + kr * SM::VS + ch * 8, Vg + (int64_t)(ok ? base + kr : 0) * P.vs.st + ch * 8, ok);
        }
        cp_commit();
    };
    /* Hopper bulk copies (one per row, issued by warp 0, completing on an mbarrier) were
     * measured slower here (88 ms vs 48 ms, shape A 64k, 2026-11-26 H100): 16-byte cp.async
     * from all threads it is. */
    auto wait_tile = [&](int it) {
        if (it + 1 < ntiles) cp_wait<1>();
        else cp_wait<0>();
    };

    float o[DV / 8][4];
#pragma unroll
    for (int i = 0; i < DV / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float mx[2] = {-INFINITY, -INFINITY}, ls[2] = {0.f, 0.f};

    if (ST == 2 && ntiles > 0) load_tile(0, 0);
    for (int it = 0; it < ntiles; it++) {
        if (ST == 2) {
            if (it + 1 < ntiles) load_tile(it + 1, (it + 1) & 1);
            wait_tile(it);
        } else {
            load_tile(it, 0);
            cp_wait<0>();
        }
        __syncthreads();
        const int j = ulist[it / cpb], base = j * P.lp + (it % cpb) * S16_BN + warp * 16;
        int vlo[2], vhi[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int t = trow[i];
            bool member = false;
            if (t < P.T) {
                const int *bl = blk + (t - t0) * P.n;
                for (int q = 0; q < P.n; q++) member |= bl[q] == j;
            }
            vlo[i] = member ? j * P.lp : 0;
            vhi[i] = member ? min((j + 1) * P.lp, t + 1) : 0;
        }
        const T *ks = (const T *)(kv + (ST == 2 ? it & 1 : 0) * SM::stage_bytes), *vs = ks + S16_BN * SM::KS;
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kk = 0; kk < DK / 16; kk++) {
            uint32_t r[4];
            int mi = lane / 8;
            ldsm_x4(r, ks + (warp * 16 + (mi / 2) * 8 + lane % 8) * SM::KS + kk * 16 + (mi % 2) * 8);
            mma16816<T>(s[0], qf[kk], r[0], r[1]);
            mma16816<T>(s[1], qf[kk], r[2], r[3]);
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float m = mx[i];
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int key = base + nt * 8 + (lane % 4) * 2 + e;
                    float v = key >= vlo[i] && key < vhi[i] ? s[nt][2 * i + e] * sl2 : -INFINITY;
                    s[nt][2 * i + e] = v;
                    m = fmaxf(m, v);
                }
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
            float alpha = m == -INFINITY ? 1.f : exp2f(mx[i] - m), sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float p = m == -INFINITY ? 0.f : exp2f(s[nt][2 * i + e] - m);
                    s[nt][2 * i + e] = p;
                    sum += p;
                }
            ls[i] = ls[i] * alpha + sum;
            mx[i] = m;
#pragma unroll
            for (int nt = 0; nt < DV / 8; nt++) {
                o[nt][2 * i] *= alpha;
                o[nt][2 * i + 1] *= alpha;
            }
        }
        uint32_t a[4] = {pack2<T>(s[0][0], s[0][1]), pack2<T>(s[0][2], s[0][3]),
                         pack2<T>(s[1][0], s[1][1]), pack2<T>(s[1][2], s[1][3])};
#pragma unroll
        for (int np = 0; np < DV / 16; np++) {
            uint32_t r[4];
            int mi = lane / 8;
            ldsm_x4_t(r, vs + (warp * 16 + (mi % 2) * 8 + lane % 8) * SM::VS + np * 16 + (mi / 2) * 8);
            mma16816<T>(o[2 * np], a, r[0], r[1]);
            mma16816<T>(o[2 * np + 1], a, r[2], r[3]);
        }
        __syncthreads();
    }

    /* merge the four warps' partials: O = Σ_w 2^(m_w − M) O_w / Σ_w 2^(m_w − M) l_w */
    float *Om = (float *)kv, *ml = Om + 4 * 16 * (DV + 4);
#pragma unroll
    for (int i = 0; i < 2; i++) {
        ls[i] += __shfl_xor_sync(0xffffffffu, ls[i], 1);
        ls[i] += __shfl_xor_sync(0xffffffffu, ls[i], 2);
        int r = lane / 4 + 8 * i;
#pragma unroll
        for (int nt = 0; nt < DV / 8; nt++) {
            Om[(warp * 16 + r) * (DV + 4) + nt * 8 + (lane % 4) * 2] = o[nt][2 * i];
            Om[(warp * 16 + r) * (DV + 4) + nt * 8 + (lane % 4) * 2 + 1] = o[nt][2 * i + 1];
        }
        if (lane % 4 == 0) {
            ml[(warp * 16 + r) * 2] = mx[i];
            ml[(warp * 16 + r) * 2 + 1] = ls[i];
        }
    }
    __syncthreads();
    float *wts = ml + 4 * 16 * 2; /* (16 rows, 4 warps) merge weights 2^(m_w - M) / L */
    if (tid < 16) {
        const int r = tid, t = t0 + r / G;
        float M = -INFINITY, L = 0.f;
        for (int w = 0; w < 4; w++) M = fmaxf(M, ml[(w * 16 + r) * 2]);
        for (int w = 0; w < 4; w++) {
            float f = M == -INFINITY ? 0.f : exp2f(ml[(w * 16 + r) * 2] - M);
            wts[r * 4 + w] = f;
            L += f * ml[(w * 16 + r) * 2 + 1];
        }
        for (int w = 0; w < 4; w++) wts[r * 4 + w] = L > 0.f ? wts[r * 4 + w] / L : 0.f;
        if ((!PAD || r < MV) && t < P.T)
            P.lse[NSA_BRANCH_SEL][((int64_t)b * P.T + t) * P.Hq + g * G + r % G] =
                L > 0.f ? (M + log2f(L)) * 0.6931471805599453f : -INFINITY;
    }
    __syncthreads();
    for (int c = tid; c < 16 * DV; c += S16_THREADS) {
        int r = c / DV, e = c % DV, t = t0 + r / G;
        if ((PAD && r >= MV) || t >= P.T) continue;
        float acc = 0.f;
        for (int w = 0; w < 4; w++) acc += wts[r * 4 + w] * Om[(w * 16 + r) * (DV + 4) + e];
        P.o[NSA_BRANCH_SEL][(((int64_t)b * P.T + t) * P.Hq + g * G + r % G) * P.Dv + e] = acc;
    }
}

template <typename T, int DK, int DV, int ST, bool PAD>
static nsa_status launch16(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P) {
    const int QPB = 16 / P->G;
    size_t smem = s16_smem<DK, DV, ST>::bytes +
                  (size_t)(QPB * P->n + P->nsel_max + (P->nsel_max + 31) / 32 + 32) * 4;
    if (smem > nsa_cu_smem_optin())
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel: T = %d with n = %d exceeds shared memory",
                        P->T, P->n);
    NSA_TRY(nsa_cu_check(ctx, cudaFuncSetAttribute(sel16_kernel<T, DK, DV, ST, PAD>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)smem), "sel16 smem attribute"));
    dim3 grid((unsigned)((P->T + QPB - 1) / QPB), (unsigned)P->Hkv, (unsigned)P->B);
    sel16_kernel<T, DK, DV, ST, PAD><<<grid, S16_THREADS, smem, st>>>(*P);
    NSA_CU_LAUNCHED(ctx, "fused selection kernel");
    return NSA_OK;
}

/* Padding rows only where G does not divide 16. */
template <typename T, int DK, int DV, int ST>
static nsa_status launch16_pad(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P) {
    if (16 % P->G) return launch16<T, DK, DV, ST, true>(ctx, st, P);
    return launch16<T, DK, DV, ST, false>(ctx, st, P);
}

/* The tile chooser: one K/V stage and three CTAs per SM, or two stages and two CTAs
 * (nsa_cu_tuning.sel_stages; 0 = by head dim, measured 2026-11-26 H100 at 64k: Dk=Dv=128
 * one stage 31.1 ms vs two 35.7; Dk=192 two stages 40.3 ms vs one 43.4). */
template <typename T, int ST>
static nsa_status launch16_st(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P) {
#define S16_DIMS(DK, DV) \
    if (P->Dk == DK && P->Dv == DV) return launch16_pad<T, DK, DV, ST>(ctx, st, P);
    NSA_CU_TC_DIMS(S16_DIMS)
#undef S16_DIMS
    return NSA_CU_TC_DIMS_FAIL(ctx, P->Dk, P->Dv);
}

template <typename T>
static nsa_status launch16_t(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P) {
    int stages = nsa_cu_tuning.sel_stages ? nsa_cu_tuning.sel_stages : P->Dk > 128 ? 2 : 1;
    if (stages == 1) return launch16_st<T, 1>(ctx, st, P);
    return launch16_st<T, 2>(ctx, st, P);
}

/* Called by nsa_cu_fused_sel (fa2.cu) for G <= 16 after the support and view checks. */
nsa_status nsa_cu_sel16(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, const nsa_cu_params *P) {
    if (dt == NSA_DTYPE_BF16) return launch16_t<__nv_bfloat16>(ctx, st, P);
    return launch16_t<__half>(ctx, st, P);
}
