// SPDX-License-Identifier: Apache-2.0
/* tiled.cu — the masked (cmp, win) and packed (sel) roles: batched variants of the reference
 * role on CUDA cores in f32. A CTA holds 16 rows (query, head) of one KV group and walks its
 * keys in tiles of 32 staged in shared memory as f32 — a contiguous range with a mask for
 * cmp/win, the union of the rows' selected blocks gathered ("packed") for sel — with an online
 * softmax per row. Every dtype (f32 included), any strides, any head dims that fit shared
 * memory. Not tensor-core code and not the oracle (ref_attend.cu is).
 * Invariant: a row sees exactly the keys of its branch (docs/design.md §1): cmp i < num_cmp(t+1),
 * win [t-w+1, t], sel its own blocks clipped at t; no key means output 0 and lse -inf.
 */
#include "common.cuh"

#include <math.h>

#define TL_ROWS 16
#define TL_BN 32
#define TL_THREADS 128

/* Rows of a CTA: G ≤ 16: 16/G queries × G heads; G > 16: 16 heads of one query (head chunk
 * blockIdx.y % chunks). */
struct tl_rows {
    int qpb, chunks, used;
};
__host__ __device__ static inline tl_rows tl_layout(int G) {
    tl_rows r;
    if (G <= TL_ROWS) {
        r.qpb = TL_ROWS / G;
        r.chunks = 1;
        r.used = r.qpb * G;
    } else {
        r.qpb = 1;
        r.chunks = (G + TL_ROWS - 1) / TL_ROWS;
        r.used = TL_ROWS;
    }
    return r;
}

/* Shared memory floats (before the sel lists): Q 16×Dk, K 32×(Dk+1), V 32×Dv, O 16×Dv,
 * S 16×33, row stats 3×16. */
__host__ __device__ static inline size_t tl_floats(int Dk, int Dv) {
    return (size_t)TL_ROWS * Dk + (size_t)TL_BN * (Dk + 1) + (size_t)TL_BN * Dv +
           (size_t)TL_ROWS * Dv + TL_ROWS * (TL_BN + 1) + 3 * TL_ROWS;
}
static size_t tl_bytes(const nsa_cu_params *P, int sel) {
    tl_rows L = tl_layout(P->G);
    size_t lists = sel ? (size_t)(L.qpb * P->n + P->nsel_max + (P->nsel_max + 31) / 32 + 32) : 0;
    return (tl_floats(P->Dk, P->Dv) + lists) * 4;
}

/* Grid: x = ceil(T / qpb) query tiles, y = Hkv × head chunks, z = B. Block: 128 threads: dot
 * products (row, key) 4 per thread, the softmax of a row by one thread, P·V (row, e) strided.
 * Shared memory: tl_floats(Dk, Dv) f32 + sel lists (192/128: 64 KB). */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(TL_THREADS) tiled_kernel(nsa_cu_params P) {
    extern __shared__ float tsm[];
    const int Dk = P.Dk, Dv = P.Dv, G = P.G, tid = threadIdx.x;
    float *Qs = tsm, *Ks = Qs + TL_ROWS * Dk, *Vs = Ks + TL_BN * (Dk + 1), *Os = Vs + TL_BN * Dv;
    float *S = Os + TL_ROWS * Dv, *mrow = S + TL_ROWS * (TL_BN + 1), *lrow = mrow + TL_ROWS;
    float *arow = lrow + TL_ROWS;
    int *blk = (int *)(arow + TL_ROWS);
    const tl_rows L = tl_layout(G);
    const int g = blockIdx.y / L.chunks, hc = blockIdx.y % L.chunks, b = blockIdx.z;
    const int t0 = blockIdx.x * L.qpb, tlast = min(t0 + L.qpb, P.T) - 1;
    const int rows_used = G <= TL_ROWS ? L.used : min(TL_ROWS, G - hc * TL_ROWS);
    const nsa_cu_view kv = BR == NSA_BRANCH_CMP ? P.kc : BR == NSA_BRANCH_SEL ? P.ks : P.kw;
    const nsa_cu_view vv = BR == NSA_BRANCH_CMP ? P.vc : BR == NSA_BRANCH_SEL ? P.vs : P.vw;
    auto row_t = [&](int m) { return t0 + (G <= TL_ROWS ? m / G : 0); };
    auto row_h = [&](int m) { return g * G + (G <= TL_ROWS ? m % G : hc * TL_ROWS + m); };
    auto row_ok = [&](int m) { return m < rows_used && row_t(m) < P.T; };

    /* key tiles: [k0, k0 + 32·ntiles) for cmp/win; the union of selected blocks for sel */
    int k0 = 0, ntiles = 0, cpb = 1;
    int *ulist = blk + L.qpb * P.n;
    if (BR == NSA_BRANCH_CMP) {
        ntiles = ((int)nsa_cu_num_cmp(P, tlast + 1) + TL_BN - 1) / TL_BN;
    } else if (BR == NSA_BRANCH_WIN) {
        /* nsa_ix_win_lo32 written as max(): its ternary made ptxas 13.0 spill 8 B in the sm_90a
         * bf16/f16 win kernels */
        k0 = max(0, t0 - P.w + 1);
        ntiles = P.w > 0 ? (tlast + 1 - k0 + TL_BN - 1) / TL_BN : 0;
    } else {
        const unsigned *bits = nsa_cu_block_union<TL_THREADS>(P, b, g, t0, L.qpb, blk, ulist);
        __syncthreads();
        cpb = (P.lp + TL_BN - 1) / TL_BN;
        ntiles = (int)bits[0] * cpb;
    }

    for (int c = tid; c < TL_ROWS * Dk; c += TL_THREADS) {
        int m = c / Dk, e = c % Dk;
        Qs[c] = row_ok(m) ? nsa_cu_ld<T>(P.q, b, row_t(m), row_h(m), e) : 0.f;
    }
    for (int c = tid; c < TL_ROWS * Dv; c += TL_THREADS) Os[c] = 0.f;
    if (tid < TL_ROWS) {
        mrow[tid] = -INFINITY;
        lrow[tid] = 0.f;
    }
    const float sl2 = P.scale * 1.4426950408889634f;

    for (int it = 0; it < ntiles; it++) {
        int base, end, jblk = -1;
        if (BR == NSA_BRANCH_SEL) {
            jblk = ulist[it / cpb];
            base = jblk * P.lp + (it % cpb) * TL_BN;
            end = min(base + TL_BN, min((jblk + 1) * P.lp, tlast + 1));
        } else {
            base = k0 + it * TL_BN;
            end = min(base + TL_BN, BR == NSA_BRANCH_CMP ? P.Tc : tlast + 1);
        }
        __syncthreads(); /* the previous tile's K, V, S are consumed */
        for (int c = tid; c < TL_BN * Dk; c += TL_THREADS) {
            int k = c / Dk, e = c % Dk;
            Ks[k * (Dk + 1) + e] = base + k < end ? nsa_cu_ld<TK>(kv, b, base + k, g, e) : 0.f;
        }
        for (int c = tid; c < TL_BN * Dv; c += TL_THREADS) {
            int k = c / Dv, e = c % Dv;
            Vs[c] = base + k < end ? nsa_cu_ld<TK>(vv, b, base + k, g, e) : 0.f;
        }
        __syncthreads();
        for (int c = tid; c < TL_ROWS * TL_BN; c += TL_THREADS) {
            int m = c / TL_BN, k = c % TL_BN, key = base + k, t = row_t(m);
            bool vis = row_ok(m) && key < end;
            if (BR == NSA_BRANCH_CMP) vis = vis && key < (int)nsa_cu_num_cmp(P, t + 1);
            else if (BR == NSA_BRANCH_WIN) vis = vis && nsa_ix_win_sees32(P.w, t, key);
            else if (vis) vis = nsa_ix_member(blk + (t - t0) * P.n, P.n, jblk) && key <= t;
            float s = -INFINITY;
            if (vis) {
                float dot = 0.f;
                for (int e = 0; e < Dk; e++) dot += Qs[m * Dk + e] * Ks[k * (Dk + 1) + e];
                s = dot * sl2;
            }
            S[m * (TL_BN + 1) + k] = s;
        }
        __syncthreads();
        if (tid < TL_ROWS) { /* online softmax of row tid over this tile (log2 domain) */
            float *sr = S + tid * (TL_BN + 1), mt = mrow[tid];
            for (int k = 0; k < TL_BN; k++) mt = fmaxf(mt, sr[k]);
            float alpha = mt == -INFINITY ? 1.f : exp2f(mrow[tid] - mt), sum = 0.f;
            for (int k = 0; k < TL_BN; k++) {
                float p = mt == -INFINITY ? 0.f : exp2f(sr[k] - mt);
                sr[k] = p;
                sum += p;
            }
            lrow[tid] = lrow[tid] * alpha + sum;
            mrow[tid] = mt;
            arow[tid] = alpha;
        }
        __syncthreads();
        for (int c = tid; c < TL_ROWS * Dv; c += TL_THREADS) {
            int m = c / Dv, e = c % Dv;
            const float *sr = S + m * (TL_BN + 1);
            float acc = Os[c] * arow[m];
            for (int k = 0; k < TL_BN; k++) acc += sr[k] * Vs[k * Dv + e];
            Os[c] = acc;
        }
    }
    __syncthreads();
    for (int c = tid; c < TL_ROWS * Dv; c += TL_THREADS) {
        int m = c / Dv, e = c % Dv;
        if (!row_ok(m)) continue;
        int64_t rh = ((int64_t)b * P.T + row_t(m)) * P.Hq + row_h(m);
        float l = lrow[m];
        P.o[BR][rh * Dv + e] = l > 0.f ? Os[c] / l : 0.f;
        if (e == 0) P.lse[BR][rh] = l > 0.f ? (mrow[m] + log2f(l)) * 0.6931471805599453f : -INFINITY;
    }
}

int nsa_cu_tiled_supported(const nsa_shape *s, nsa_branch br, size_t smem_optin,
                           const char **why) {
    nsa_cu_params P;
    P.G = s->G;
    P.Dk = s->Dk;
    P.Dv = s->Dv;
    P.n = 0;
    P.nsel_max = s->nsel_max;
    (void)br;
    if (tl_bytes(&P, 0) + (size_t)(TL_ROWS * 256 + s->nsel_max + s->nsel_max / 32 + 32) * 4 >
        nsa_cu_smem_budget(smem_optin)) {
        *why = "head dims or T too large for the tiled kernel's shared memory";
        return 0;
    }
    return 1;
}

template <typename T, typename TK, int BR>
static nsa_status launch(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P) {
    size_t smem = tl_bytes(P, BR == NSA_BRANCH_SEL);
    if (smem > nsa_cu_smem_optin())
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg.Dk: %d, Dv %d, n %d exceed the tiled "
                        "kernel's shared memory", P->Dk, P->Dv, P->n);
    NSA_TRY(nsa_cu_check(ctx, cudaFuncSetAttribute(tiled_kernel<T, TK, BR>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)smem), "tiled smem attribute"));
    tl_rows L = tl_layout(P->G);
    dim3 grid((unsigned)((P->T + L.qpb - 1) / L.qpb), (unsigned)(P->Hkv * L.chunks), (unsigned)P->B);
    tiled_kernel<T, TK, BR><<<grid, TL_THREADS, smem, st>>>(*P);
    NSA_CU_LAUNCHED(ctx, "tiled kernel");
    return NSA_OK;
}

template <typename T>
static nsa_status launch_t(nsa_context *ctx, nsa_cu_stream st, nsa_dtype kc_dt,
                           const nsa_cu_params *P, nsa_branch br) {
    if (br == NSA_BRANCH_CMP)
        return kc_dt == NSA_DTYPE_F32 ? launch<T, float, NSA_BRANCH_CMP>(ctx, st, P)
                                      : launch<T, T, NSA_BRANCH_CMP>(ctx, st, P);
    if (br == NSA_BRANCH_SEL) return launch<T, T, NSA_BRANCH_SEL>(ctx, st, P);
    return launch<T, T, NSA_BRANCH_WIN>(ctx, st, P);
}

nsa_status nsa_cu_tiled_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                               const nsa_cu_params *P, nsa_branch br) {
    if (P->R == 0) return NSA_OK;
    if (P->rows) return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "tiled: row lists run on the reference");
    switch (dt) {
    case NSA_DTYPE_BF16: return launch_t<__nv_bfloat16>(ctx, st, kc_dt, P, br);
    case NSA_DTYPE_F16: return launch_t<__half>(ctx, st, kc_dt, P, br);
    default: return launch_t<float>(ctx, st, kc_dt, P, br);
    }
}
