// SPDX-License-Identifier: Apache-2.0
/* fa2.cu — tensor-core attention (mma.sync m16n8k16, bf16/f16 in, f32 accumulate) for the three
 * branches: FA-2 for cmp and win, and the fused group-centric selection kernel ("triton").
 * One kernel template serves all three; they differ only in which key tiles a CTA walks and
 * which keys a row sees:
 *   cmp  tiles over compressed blocks [0, num_cmp(t_last+1)); row t sees i < num_cmp(t+1).
 *        Two passes: row max/sum first, then exact probabilities p = exp(s - lse), which give
 *        O = Σ p·V and, summed over the group's heads in a fixed order, the selection scores'
 *        input P[t, g, i] — scoring costs no extra QK pass.
 *   win  tiles over [t_first - w + 1, t_last]; row t sees [t - w + 1, t]. One pass.
 *   sel  (G not dividing 16; G | 16 runs sel_fused.cu) tiles over the union of the selected blocks
 *        of the CTA's queries (ascending), each block loaded once and used by every head of
 *        the group and every neighbouring query that selected it; row t sees keys of its own
 *        blocks, ≤ t.
 * Not the reference: P is rounded to the input dtype for the P·V product, like FlashAttention.
 * Invariant: rows of a CTA are (query, head) pairs of one KV group, QPB = floor(BM/G) queries
 * × G heads, so every K/V tile in shared memory serves all G heads (GQA packing); G <= 64. Rows
 * m >= QPB·G (only when G does not divide BM) are padding: Q zero-filled, no key visible, never
 * written; they cost only the idle share of the tile (G = 6: 4 of 64 rows).
 */
#include "common.cuh"

#include <math.h>

#define FA_BN 64      /* keys per tile */

#include "mma.cuh"

/* Shared memory of one CTA (bytes): K and V tiles double-buffered, rows padded by 8 elements
 * (16 B) so ldmatrix rows fall in distinct banks; Q staging, reused as the f32 P tile of the
 * cmp score reduction; the sel union list and the queries' block lists. */
template <int DK, int DV, int BM> struct fa_smem {
    static constexpr int KS = DK + 8, VS = DV + 8, PS = FA_BN + 4;
    static constexpr int k_bytes = 2 * FA_BN * KS * 2, v_bytes = 2 * FA_BN * VS * 2;
    static constexpr int q_bytes = BM * KS * 2 > BM * PS * 4 ? BM * KS * 2 : BM * PS * 4;
    static constexpr int bytes = k_bytes + v_bytes + q_bytes; /* + sel lists (dynamic) */
};

/* Grid: x = ceil(T / QPB) query tiles, heaviest (latest) first; y = Hkv; z = B. Block: 2·BM
 * threads (BM = 64 or 128 rows), warp w owns rows 16w..16w+15, row m = (query m/G, head m%G)
 * for m < QPB·G, padding above.
 * Shared memory: fa_smem<DK, DV, BM>::bytes (cmp 192/128, BM 64: 112 KB) plus, for sel,
 * (BM/G)·n + nsel_max + 32 ints. Registers: Q fragments (DK/4), O (DV/2), S (32) per thread. */
template <typename T, int DK, int DV, int BR, int BM>
__global__ void __launch_bounds__(BM * 2) fa_kernel(nsa_cu_params P, nsa_cu_view Kv,
                                                     nsa_cu_view Vv) {
    typedef fa_smem<DK, DV, BM> SM;
    constexpr int FA_THREADS = BM * 2, FA_BM = BM;
    extern __shared__ __align__(16) unsigned char smraw[];
    T *Ks = (T *)smraw;
    T *Vs = (T *)(smraw + SM::k_bytes);
    T *Qs = (T *)(smraw + SM::k_bytes + SM::v_bytes);
    float *Pr = (float *)Qs;
    int *blk = (int *)(smraw + SM::bytes); /* sel: QPB·n block lists, then the union */

    const int G = P.G, QPB = FA_BM / G, MV = QPB * G; /* rows m < MV are real */
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = blockIdx.y, b = blockIdx.z;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * QPB;
    const int tlast = min(t0 + QPB, P.T) - 1;
    const float sl2 = P.scale * 1.4426950408889634f;

    /* this thread's two rows; a padding row gets t = P.T (past the end: sees nothing, unwritten) */
    int trow[2], hrow[2];
    for (int i = 0; i < 2; i++) {
        int m = warp * 16 + lane / 4 + 8 * i;
        trow[i] = m < MV ? t0 + m / G : P.T;
        hrow[i] = g * G + m % G;
    }

    /* key tiles */
    int ntiles = 0, kbase0 = 0, nunion = 0, cpb = 1;
    int *ulist = blk + QPB * P.n;
    if constexpr (BR == NSA_BRANCH_CMP) {
        ntiles = ((int)nsa_cu_num_cmp(P, tlast + 1) + FA_BN - 1) / FA_BN;
    } else if constexpr (BR == NSA_BRANCH_WIN) {
        kbase0 = nsa_ix_win_lo32(P.w, t0);
        ntiles = (tlast + 1 - kbase0 + FA_BN - 1) / FA_BN;
    } else {
        /* the queries' block lists, then their union */
        const unsigned *bits = nsa_cu_block_union<FA_THREADS>(P, b, g, t0, QPB, blk, ulist);
        __syncthreads();
        nunion = (int)bits[0];
        cpb = (P.lp + FA_BN - 1) / FA_BN;
        ntiles = nunion * cpb;
    }
    auto tile_base = [&](int it) -> int {
        if constexpr (BR == NSA_BRANCH_SEL) return ulist[it / cpb] * P.lp + (it % cpb) * FA_BN;
        else return kbase0 + it * FA_BN;
    };
    /* keys [base, end) of tile it that exist at all (sel: inside its block) */
    auto tile_end = [&](int it, int base) -> int {
        if constexpr (BR == NSA_BRANCH_SEL) return min(base + FA_BN, min((ulist[it / cpb] + 1) * P.lp, tlast + 1));
        else if constexpr (BR == NSA_BRANCH_CMP) return min(base + FA_BN, P.Tc);
        else return min(base + FA_BN, tlast + 1);
    };

    const T *Kg = (const T *)Kv.p + (int64_t)b * Kv.sb + (int64_t)g * Kv.sh;
    const T *Vg = (const T *)Vv.p + (int64_t)b * Vv.sb + (int64_t)g * Vv.sh;
    auto load_tile = [&](int it, int stage, bool withv) {
        int base = tile_base(it), end = tile_end(it, base);
        T *ks = Ks + stage * FA_BN * SM::KS;
        for (int c = tid; c < FA_BN * (DK / 8); c += FA_THREADS) {
            int kr = c / (DK / 8), ch = c % (DK / 8);
            bool ok = base + kr < end;
            cp_async16(ks + kr * SM::KS + ch * 8, Kg + (int64_t)(ok ? base + kr : 0) * Kv.st + ch * 8, ok);
        }
        if (withv) {
            T *vs = Vs + stage * FA_BN * SM::VS;
            for (int c = tid; c < FA_BN * (DV / 8); c += FA_THREADS) {
                int kr = c / (DV / 8), ch = c % (DV / 8);
                bool ok = base + kr < end;
                cp_async16(vs + kr * SM::VS + ch * 8, Vg + (int64_t)(ok ? base + kr : 0) * Vv.st + ch * 8, ok);
            }
        }
        cp_commit();
    };

    /* Q -> shared -> fragments */
    for (int c = tid; c < FA_BM * (DK / 8); c += FA_THREADS) {
        int m = c / (DK / 8), ch = c % (DK / 8), t = t0 + m / G;
        bool ok = m < MV && t < P.T;
        const T *src = (const T *)P.q.p + (int64_t)b * P.q.sb + (int64_t)(ok ? t : 0) * P.q.st +
                       (int64_t)(ok ? g * G + m % G : 0) * P.q.sh + ch * 8;
        cp_async16(Qs + m * SM::KS + ch * 8, src, ok);
    }
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    uint32_t qf[DK / 16][4];
#pragma unroll
    for (int kk = 0; kk < DK / 16; kk++) {
        int mi = lane / 8;
        ldsm_x4(qf[kk], Qs + (warp * 16 + (mi % 2) * 8 + lane % 8) * SM::KS + kk * 16 + (mi / 2) * 8);
    }
    __syncthreads();

    float o[DV / 8][4];
#pragma unroll
    for (int i = 0; i < DV / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float mx[2] = {-INFINITY, -INFINITY}, ls[2] = {0.f, 0.f};

    /* keys row i of this thread sees in tile it: [vlo[i], vhi[i]) (empty when vhi <= vlo) */
    int vlo[2], vhi[2];
    auto bounds = [&](int it) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int t = trow[i];
            vlo[i] = 0;
            vhi[i] = 0;
            if (t >= P.T) continue;
            if constexpr (BR == NSA_BRANCH_CMP) {
                vhi[i] = (int)nsa_cu_num_cmp(P, t + 1);
            } else if constexpr (BR == NSA_BRANCH_WIN) {
                vlo[i] = t - P.w + 1;
                vhi[i] = t + 1;
            } else {
                int j = ulist[it / cpb];
                if (nsa_ix_member(blk + (t - t0) * P.n, P.n, j)) {
                    vlo[i] = j * P.lp;
                    vhi[i] = min((j + 1) * P.lp, t + 1);
                }
            }
        }
    };
    if constexpr (BR != NSA_BRANCH_SEL) bounds(0);

    auto scores = [&](float s[8][4], const T *ks) {
#pragma unroll
        for (int i = 0; i < 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int np = 0; np < 4; np++) {
#pragma unroll
            for (int kk = 0; kk < DK / 16; kk++) {
                uint32_t r[4];
                int mi = lane / 8;
                ldsm_x4(r, ks + (np * 16 + (mi / 2) * 8 + lane % 8) * SM::KS + kk * 16 + (mi % 2) * 8);
                mma16816<T>(s[2 * np], qf[kk], r[0], r[1]);
                mma16816<T>(s[2 * np + 1], qf[kk], r[2], r[3]);
            }
        }
    };
    auto mask = [&](float s[8][4], int base) {
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = base + nt * 8 + (lane % 4) * 2 + (e & 1);
                bool vis = key >= vlo[e / 2] && key < vhi[e / 2];
                s[nt][e] = vis ? s[nt][e] * sl2 : -INFINITY;
            }
    };
    auto pv = [&](float s[8][4], const T *vs) {
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                             pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int np = 0; np < DV / 16; np++) {
                uint32_t r[4];
                int mi = lane / 8;
                ldsm_x4_t(r, vs + (kk * 16 + (mi % 2) * 8 + lane % 8) * SM::VS + np * 16 + (mi / 2) * 8);
                mma16816<T>(o[2 * np], a, r[0], r[1]);
                mma16816<T>(o[2 * np + 1], a, r[2], r[3]);
            }
        }
    };
    /* sel: the rows of this warp that selected tile it's block (others skip its math) */
    auto warp_active = [&](int it) -> bool {
        if constexpr (BR != NSA_BRANCH_SEL) return true;
        else {
            bounds(it);
            return __any_sync(0xffffffffu, vhi[0] > vlo[0] || vhi[1] > vlo[1]);
        }
    };

    const bool two_pass = BR == NSA_BRANCH_CMP;
    if (two_pass && ntiles > 0) {
        /* pass 1: row max and sum only (K tiles) */
        load_tile(0, 0, false);
        for (int it = 0; it < ntiles; it++) {
            if (it + 1 < ntiles) { load_tile(it + 1, (it + 1) & 1, false); cp_wait<1>(); }
            else cp_wait<0>();
            __syncthreads();
            int base = tile_base(it);
            float s[8][4];
            scores(s, Ks + (it & 1) * FA_BN * SM::KS);
            mask(s, base);
#pragma unroll
            for (int i = 0; i < 2; i++) {
                float m = mx[i];
#pragma unroll
                for (int nt = 0; nt < 8; nt++) m = fmaxf(m, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
                m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
                m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
                if (m != -INFINITY) {
                    float sum = 0.f;
#pragma unroll
                    for (int nt = 0; nt < 8; nt++) sum += exp2f(s[nt][2 * i] - m) + exp2f(s[nt][2 * i + 1] - m);
                    ls[i] = ls[i] * exp2f(mx[i] - m) + sum;
                    mx[i] = m;
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            ls[i] += __shfl_xor_sync(0xffffffffu, ls[i], 1);
            ls[i] += __shfl_xor_sync(0xffffffffu, ls[i], 2);
            mx[i] = ls[i] > 0.f ? mx[i] + log2f(ls[i]) : -INFINITY; /* lse in log2 units */
        }
    }

    /* main pass: O (and, for cmp, the group-summed probabilities) */
    if (ntiles > 0) load_tile(0, 0, true);
    for (int it = 0; it < ntiles; it++) {
        if (it + 1 < ntiles) { load_tile(it + 1, (it + 1) & 1, true); cp_wait<1>(); }
        else cp_wait<0>();
        __syncthreads();
        const int base = tile_base(it);
        if (warp_active(it)) {
            float s[8][4];
            scores(s, Ks + (it & 1) * FA_BN * SM::KS);
            mask(s, base);
            if (two_pass) {
#pragma unroll
                for (int nt = 0; nt < 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float l2 = mx[e / 2];
                        s[nt][e] = l2 == -INFINITY ? 0.f : exp2f(s[nt][e] - l2);
                    }
                if (G == 16) {
                    /* the warp's 16 rows are the 16 heads of query t0 + warp: sum columns in
                     * registers (rows r, r+8, then across lane/4), fixed order */
                    const int t = t0 + warp, ncv = t < P.T ? (int)nsa_cu_num_cmp(P, t + 1) : 0;
                    float *dst = P.P + (((int64_t)b * P.T + t) * P.Hkv + g) * P.Tc;
#pragma unroll
                    for (int nt = 0; nt < 8; nt++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float v = s[nt][e] + s[nt][2 + e];
                            v += __shfl_xor_sync(0xffffffffu, v, 4);
                            v += __shfl_xor_sync(0xffffffffu, v, 8);
                            v += __shfl_xor_sync(0xffffffffu, v, 16);
                            int key = base + nt * 8 + (lane % 4) * 2 + e;
                            if (lane / 4 == nt && key < ncv) dst[key] = v;
                        }
                } else {
#pragma unroll
                    for (int nt = 0; nt < 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            Pr[(warp * 16 + lane / 4 + 8 * (e / 2)) * SM::PS + nt * 8 + (lane % 4) * 2 + (e & 1)] = s[nt][e];
                }
            } else {
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    float m = mx[i];
#pragma unroll
                    for (int nt = 0; nt < 8; nt++) m = fmaxf(m, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
                    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
                    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
                    float alpha = m == -INFINITY ? 1.f : exp2f(mx[i] - m);
                    float sum = 0.f;
#pragma unroll
                    for (int nt = 0; nt < 8; nt++)
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
            }
            pv(s, Vs + (it & 1) * FA_BN * SM::VS);
        }
        if (two_pass && G != 16) {
            __syncthreads();
            /* P[t, g, i] = Σ_h p[(t, h), i], heads in ascending order */
            for (int c = tid; c < QPB * FA_BN; c += FA_THREADS) {
                int qi = c / FA_BN, col = c % FA_BN, t = t0 + qi, key = base + col;
                if (t < P.T && key < (int)nsa_cu_num_cmp(P, t + 1)) {
                    float sum = 0.f;
                    for (int hh = 0; hh < G; hh++) sum += Pr[(qi * G + hh) * SM::PS + col];
                    P.P[(((int64_t)b * P.T + t) * P.Hkv + g) * P.Tc + key] = sum;
                }
            }
        }
        __syncthreads();
    }

    /* epilogue */
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float l = ls[i];
        if (!two_pass) {
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
        }
        int t = trow[i];
        if (t >= P.T) continue;
        int64_t rh = ((int64_t)b * P.T + t) * P.Hq + hrow[i];
        float inv = two_pass ? 1.f : (l > 0.f ? 1.f / l : 0.f);
        float *dst = P.o[BR] + rh * P.Dv;
#pragma unroll
        for (int nt = 0; nt < DV / 8; nt++)
            *(float2 *)(dst + nt * 8 + (lane % 4) * 2) = make_float2(o[nt][2 * i] * inv, o[nt][2 * i + 1] * inv);
        if (lane % 4 == 0) {
            float lse2 = two_pass ? mx[i] : (l > 0.f ? mx[i] + log2f(l) : -INFINITY);
            P.lse[BR][rh] = lse2 == -INFINITY ? -INFINITY : lse2 * 0.6931471805599453f;
        }
    }
}

/* ---- launch ---- */

static int tc_common(const nsa_shape *s, const char **why) {
    if (s->dt != NSA_DTYPE_BF16 && s->dt != NSA_DTYPE_F16) { *why = "dtype not bf16/f16"; return 0; }
    if (!nsa_cu_tc_dims_ok(s->Dk, s->Dv)) { *why = NSA_CU_TC_DIMS_WHY; return 0; }
    if (s->G < 1 || s->G > 64) { *why = "G > 64 (a CTA of 64 rows holds all heads of a query)"; return 0; }
    if (s->T > INT32_MAX / 2) { *why = "T too large"; return 0; }
    return 1;
}

int nsa_cu_fa2_supported(const nsa_shape *s, nsa_branch br, const char **why) {
    if (!tc_common(s, why)) return 0;
    (void)br;
    return 1;
}

static size_t sel_list_bytes(const nsa_cu_params *P, int BM) {
    return (size_t)(BM / P->G * P->n + P->nsel_max + (P->nsel_max + 31) / 32 + 32) * 4;
}

int nsa_cu_fused_supported(const nsa_shape *s, const char **why) {
    if (!tc_common(s, why)) return 0;
    return 1;
}


template <typename T, int DK, int DV, int BR, int BM>
static nsa_status launch(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P,
                         const nsa_cu_view *K, const nsa_cu_view *V) {
    size_t smem = fa_smem<DK, DV, BM>::bytes + (BR == NSA_BRANCH_SEL ? sel_list_bytes(P, BM) : 0);
    if (smem > nsa_cu_smem_optin())
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel: T = %d with n = %d exceeds shared memory",
                        P->T, P->n);
    NSA_TRY(nsa_cu_check(ctx, cudaFuncSetAttribute(fa_kernel<T, DK, DV, BR, BM>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)smem), "fa2 smem attribute"));
    dim3 grid((unsigned)((P->T + BM / P->G - 1) / (BM / P->G)), (unsigned)P->Hkv, (unsigned)P->B);
    fa_kernel<T, DK, DV, BR, BM><<<grid, BM * 2, smem, st>>>(*P, *K, *V);
    NSA_CU_LAUNCHED(ctx, "fa2 kernel");
    return NSA_OK;
}

/* The tile chooser: 64 rows (4 warps) per CTA. Measured alternatives (shape A 64k, H100
 * 2026-11-26): 128 rows (8 warps) cmp 48.9 vs 45.3 ms, win 8.4 vs 7.8 ms; one K/V stage with
 * three CTAs per SM needs registers capped at 170 and spills 136-256 B, not built. */
template <typename T, int DK, int DV, int BR>
static nsa_status launch_bm(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P,
                            const nsa_cu_view *K, const nsa_cu_view *V) {
    return launch<T, DK, DV, BR, 64>(ctx, st, P, K, V);
}

template <typename T, int BR>
static nsa_status launch_dims(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P,
                              const nsa_cu_view *K, const nsa_cu_view *V) {
    /* sel: G not dividing 16 (G | 16: sel_fused.cu unless tuned) */
#define FA_DIMS(DK, DV)                                                                            \
    if (P->Dk == DK && P->Dv == DV)                                                                \
        return BR == NSA_BRANCH_SEL ? launch<T, DK, DV, BR, 64>(ctx, st, P, K, V)                 \
                                    : launch_bm<T, DK, DV, BR>(ctx, st, P, K, V);
    NSA_CU_TC_DIMS(FA_DIMS)
#undef FA_DIMS
    return NSA_CU_TC_DIMS_FAIL(ctx, P->Dk, P->Dv);
}

template <int BR>
static nsa_status launch_br(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                            const nsa_cu_params *P, const nsa_cu_view *K, const nsa_cu_view *V) {
    if (dt == NSA_DTYPE_BF16) return launch_dims<__nv_bfloat16, BR>(ctx, st, P, K, V);
    return launch_dims<__half, BR>(ctx, st, P, K, V);
}

nsa_status nsa_cu_tc_views(nsa_context *ctx, const nsa_cu_params *P, const nsa_cu_view *K,
                           const nsa_cu_view *V, const char *name) {
    if (P->rows) return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "%s: row lists run on the reference", name);
    if (!nsa_cu_aligned16(&P->q, P->Dk) || !nsa_cu_aligned16(K, P->Dk) ||
        !nsa_cu_aligned16(V, P->Dv))
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED,
                        "%s: q/k/v rows must be contiguous and 16-byte aligned for tensor cores", name);
    return NSA_OK;
}

nsa_status nsa_cu_fa2_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                             const nsa_cu_params *P, nsa_branch br) {
    if (P->R == 0) return NSA_OK;
    if (br == NSA_BRANCH_CMP) {
        NSA_TRY(nsa_cu_tc_views(ctx, P, &P->kc, &P->vc, "k_cmp"));
        return launch_br<NSA_BRANCH_CMP>(ctx, st, dt, P, &P->kc, &P->vc);
    }
    if (P->w == 0) /* branch off: the reference writes zeros and lse -inf without reading */
        return nsa_cu_ref_attend(ctx, st, dt, dt, P, br);
    NSA_TRY(nsa_cu_tc_views(ctx, P, &P->kw, &P->vw, "k_win"));
    return launch_br<NSA_BRANCH_WIN>(ctx, st, dt, P, &P->kw, &P->vw);
}

nsa_status nsa_cu_fused_sel(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                            const nsa_cu_params *P) {
    if (P->R == 0) return NSA_OK;
    NSA_TRY(nsa_cu_tc_views(ctx, P, &P->ks, &P->vs, "k_sel"));
    /* the split-key kernel (sel_fused.cu) where G | 16; the union walk where the split-key tile
     * would pad: measured 2026-11-26 H100, issue 8's short config (G = 6, T 2048, B 8): sel
     * 0.57 ms on the union walk vs 1.18 on the split-key kernel (bench/RESULTS.md) */
    const int tune = nsa_cu_tuning.sel_union;
    if (P->G <= 16 && (tune == 2 || (tune == 0 && 16 % P->G == 0))) return nsa_cu_sel16(ctx, st, dt, P);
    return launch_br<NSA_BRANCH_SEL>(ctx, st, dt, P, &P->ks, &P->vs);
}
