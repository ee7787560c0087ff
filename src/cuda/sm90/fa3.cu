// SPDX-License-Identifier: Apache-2.0
/* fa3.cu — Hopper (sm_90a) attention for the cmp and win branches in the FlashAttention-3
 * structure: one producer warp brings K/V tiles by TMA into 128B-swizzled shared memory on an
 * mbarrier ring; two consumer warpgroups each compute S = Q·Kᵀ (wgmma, Q and K from shared
 * memory), an f32 online softmax, and O += P·V (wgmma, P from registers). Rows of a warpgroup are
 * (query, head) pairs of one KV group — QPW = floor(64/G) queries × G heads — so every K/V tile
 * serves all G heads and both warpgroups; a warpgroup skips the math of a tile none of its rows
 * sees (nsa_hp_tile_class) and masks only tiles some row sees in part.
 *   cmp  two passes over the compressed keys: O and lse (online softmax), then the exact
 *        probabilities p = exp(s - lse) summed over the group's heads into P[t, g, i], the
 *        selection scores' input (what fa2.cu writes; K tiles only in the second pass).
 *   win  one pass over [t - w + 1, t].
 * Not the sm80 kernel (fa2.cu stays for A100/RTX 4090) and not a default: the router binds it only
 * with NSA_USE_HOPPER=1 until profiles/sm90.yaml accepts its parity (docs/cuda_hopper.md).
 * Invariant: a row's keys are [lo, hi) of nsa_hp_keys with its document's first token and
 * compressed block (f3_docs; both 0 without packed documents); P is rounded to the input dtype
 * for P·V, like FlashAttention; rows past QPW·G or T are padding: never written.
 */
#include "hopper.cuh"

#include <math.h>

#define F3_WG 2                     /* consumer warpgroups per CTA                           */
#define F3_THREADS (128 * (F3_WG + 1))
#define F3_STAGES 2                 /* K/V tiles in flight                                    */

/* Keys per tile: 128 for win; 64 for cmp, whose f32 score tile (64 × (BN + 4) per warpgroup)
 * must fit beside the stages (Dk 192, BN 128 would need 272 KB). */
template <int BR> struct f3_bn { static constexpr int value = BR == NSA_BRANCH_CMP ? 64 : 128; };

/* Per-token document starts of packed rows (varlen): s0[b·T + t] = first token of t's document,
 * c0[b·T + t] = its first compressed block; NULL = 0 (every batch row one sequence). */
typedef struct {
    const int32_t *s0, *c0;
} f3_docs;

/* Shared memory (bytes, every region 1024-aligned): Q of each consumer warpgroup (64 rows × DK),
 * K and V stages (BN rows × DK / DV), the cmp score tile per warpgroup, then the full/empty
 * mbarriers; plus 1 KB to align the dynamic base. Budgets, that KB included: win 192/128 209 KB,
 * 128/128 161 KB, 64/64 81 KB; cmp 192/128 163 KB, 128/128 131 KB, 64/64 83 KB (of 227 KB). */
template <int DK, int DV, int BR> struct f3_smem {
    static constexpr int BN = f3_bn<BR>::value, PS = BN + 4;
    static constexpr int q_bytes = 64 * DK * 2, k_bytes = BN * DK * 2, v_bytes = BN * DV * 2;
    static constexpr int p_bytes = BR == NSA_BRANCH_CMP ? 64 * PS * 4 : 0;
    static constexpr int q_off = 0, k_off = q_off + F3_WG * q_bytes;
    static constexpr int v_off = k_off + F3_STAGES * k_bytes, p_off = v_off + F3_STAGES * v_bytes;
    static constexpr int bar_off = p_off + F3_WG * p_bytes;
    static constexpr int alloc = bar_off + 2 * F3_STAGES * 8 + 1024;
    static_assert(q_bytes % 1024 == 0 && k_bytes % 1024 == 0 && v_bytes % 1024 == 0 &&
                  p_bytes % 1024 == 0, "swizzled tiles need 1024-byte alignment");
    static_assert(alloc <= 227 * 1024, "shared memory");
};

/* Grid: x = ceil(T / (2·QPW)) query tiles, heaviest (latest) first; y = Hkv; z = B.
 * Block: 384 threads = warpgroup 0 producer (one thread issues TMA; 24 registers), warpgroups
 * 1-2 consumers (240 registers): consumer c owns queries t0 + c·QPW .. + QPW - 1, row
 * m = 16·warp + lane/4 (+8) = (query m / G, head m % G).
 * Shared memory: f3_smem<DK, DV, BR>::alloc. Registers per consumer thread: O (DV/2), S (BN/2),
 * the P fragments of one k-step. */
template <typename T, int DK, int DV, int BR>
__global__ void __launch_bounds__(F3_THREADS, 1)
    f3_kernel(const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
              const nsa_cu_params P, const f3_docs docs) {
    typedef f3_smem<DK, DV, BR> SM;
    constexpr int BN = SM::BN;
    constexpr bool CMP = BR == NSA_BRANCH_CMP;
    extern __shared__ unsigned char f3_raw[];
    unsigned char *sm = (unsigned char *)(((uintptr_t)f3_raw + 1023) & ~(uintptr_t)1023);
    uint64_t *full = (uint64_t *)(sm + SM::bar_off), *empty = full + F3_STAGES;

    const int G = P.G, QPW = 64 / G, g = blockIdx.y, b = blockIdx.z;
    const int t0 = (gridDim.x - 1 - blockIdx.x) * (F3_WG * QPW);
    const int tlast = min(t0 + F3_WG * QPW, P.T) - 1;
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
    auto keys = [&](int t, int *lo, int *hi) {
        const int64_t r = (int64_t)b * P.T + t;
        nsa_hp_keys(CMP, t, docs.s0 ? docs.s0[r] : 0, docs.c0 ? docs.c0[r] : 0, P.l, P.d, P.w,
                    lo, hi);
    };
    /* the CTA's keys: the union of its rows' ranges */
    int klo, khi, unused;
    keys(t0, &klo, &unused);
    keys(tlast, &unused, &khi);
    const int ntiles = khi > klo ? (khi - klo + BN - 1) / BN : 0;

    if (threadIdx.x == 0) {
        for (int s = 0; s < F3_STAGES; s++) {
            hp_bar_init(&full[s], 1);             /* the producer's expect_tx arrival */
            hp_bar_init(&empty[s], F3_WG * 4);    /* one arrival per consumer warp    */
        }
        hp_bar_init_fence();
    }
    __syncthreads();

    if (wg == 0) { /* ---- producer ---- */
        hp_regs_dec<24>();
        if (tid == 0) {
            int i = 0;
            for (int pass = 0; pass < (CMP ? 2 : 1); pass++) {
                const bool withv = pass == 0; /* the cmp scoring pass reads K only */
                const uint32_t bytes = BN * (DK + (withv ? DV : 0)) * 2;
                for (int it = 0; it < ntiles; it++, i++) {
                    const int s = i % F3_STAGES, base = klo + it * BN;
                    hp_bar_wait(&empty[s], ((i / F3_STAGES) & 1) ^ 1);
                    hp_bar_expect(&full[s], bytes);
                    unsigned char *ks = sm + SM::k_off + s * SM::k_bytes;
#pragma unroll
                    for (int c = 0; c < DK / 64; c++)
                        hp_tma_load4(ks + c * BN * 128, &tk, c * 64, g, base, b, &full[s]);
                    if (withv) {
                        unsigned char *vs = sm + SM::v_off + s * SM::v_bytes;
#pragma unroll
                        for (int c = 0; c < DV / 64; c++)
                            hp_tma_load4(vs + c * BN * 128, &tv, c * 64, g, base, b, &full[s]);
                    }
                }
            }
        }
        return;
    }

    /* ---- consumers ---- */
    hp_regs_inc<240>();
    const int c = wg - 1, warp = tid / 32, lane = tid % 32;
    const int tq0 = t0 + c * QPW;
    const float sl2 = P.scale * 1.4426950408889634f;

    /* this thread's two rows (lane/4 and lane/4 + 8 of its warp's 16) and their keys */
    int trow[2], hrow[2], vlo[2], vhi[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int m = warp * 16 + lane / 4 + 8 * i, t = tq0 + m / G;
        const bool real = m < QPW * G && t < P.T;
        trow[i] = real ? t : P.T;
        hrow[i] = g * G + m % G;
        vlo[i] = vhi[i] = 0;
        if (real) keys(t, &vlo[i], &vhi[i]);
    }
    /* the warpgroup's first and last query bound its rows' union and intersection */
    const int tb = min(tq0 + QPW, P.T) - 1;
    int lo_f = 0, hi_f = 0, lo_l = 0, hi_l = 0;
    if (tb >= tq0) {
        keys(tq0, &lo_f, &hi_f);
        keys(tb, &lo_l, &hi_l);
    }

    /* Q: cp.async into the swizzled tile (padding rows and t >= T zero-filled), then fenced for
     * wgmma's async proxy */
    unsigned char *qs = sm + SM::q_off + c * SM::q_bytes;
    for (int e = tid; e < 64 * (DK / 8); e += 128) {
        const int m = e / (DK / 8), ch = e % (DK / 8), t = tq0 + m / G;
        const bool ok = m < QPW * G && t < P.T;
        const T *src = (const T *)P.q.p + (int64_t)b * P.q.sb + (int64_t)(ok ? t : 0) * P.q.st +
                       (int64_t)(ok ? g * G + m % G : 0) * P.q.sh + ch * 8;
        cp_async16(qs + nsa_hp_tile_off(64, m, ch * 8), src, ok);
    }
    cp_commit();
    cp_wait<0>();
    hp_fence_async();
    hp_bar_named(1 + c, 128);
    const uint32_t qa = smem_u32(qs);

    /* S = Q·Kᵀ of stage s into sc (64 × BN) */
    auto qk = [&](float (&sc)[BN / 2], int s) {
        const uint32_t ka = smem_u32(sm + SM::k_off + s * SM::k_bytes);
#pragma unroll
        for (int j = 0; j < BN / 2; j++) sc[j] = 0.f;
        hp_wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DK / 16; kk++)
            hp_wgmma_ss<T, BN>(sc, nsa_hp_desc_k(qa, 64, kk), nsa_hp_desc_k(ka, BN, kk), 1);
        hp_wgmma_commit();
        hp_wgmma_wait<0>();
        hp_fence_regs(sc);
    };
    /* scales S to log2 units; outside a FULL tile, keys a row does not see become -inf (in a
     * FULL tile every real row sees every key; padding rows' values are never used) */
    auto scale_mask = [&](float (&sc)[BN / 2], int cls, int base) {
#pragma unroll
        for (int j = 0; j < BN / 2; j++) sc[j] *= sl2;
        if (cls == NSA_HP_FULL) return;
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = base + 8 * j + 2 * (lane % 4) + (e & 1);
                const bool vis = (key >= vlo[e / 2]) & (key < vhi[e / 2]);
                sc[4 * j + e] = vis ? sc[4 * j + e] : -INFINITY;
            }
    };
    auto release = [&](int s) {
        __syncwarp();
        if (lane == 0) hp_bar_arrive(&empty[s]);
    };

    /* ---- pass 1: O and the row statistics (online softmax, log2 units) ---- */
    float o[DV / 2];
#pragma unroll
    for (int j = 0; j < DV / 2; j++) o[j] = 0.f;
    float mx[2] = {-INFINITY, -INFINITY}, ls[2] = {0.f, 0.f};
    int i = 0; /* tiles consumed: stage i % STAGES, phase parity (i / STAGES) & 1 */
    for (int it = 0; it < ntiles; it++, i++) {
        const int s = i % F3_STAGES, base = klo + it * BN;
        const int cls = nsa_hp_tile_class(base, BN, lo_f, hi_f, lo_l, hi_l);
        hp_bar_wait(&full[s], (i / F3_STAGES) & 1); /* also when dead: keeps the ring in order */
        if (cls != NSA_HP_DEAD) {
            float sc[BN / 2];
            qk(sc, s);
            scale_mask(sc, cls, base);
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float m = mx[r];
#pragma unroll
                for (int j = 0; j < BN / 8; j++) m = fmaxf(m, fmaxf(sc[4 * j + 2 * r], sc[4 * j + 2 * r + 1]));
                m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
                m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
                const float alpha = m == -INFINITY ? 1.f : exp2f(mx[r] - m);
                float sum = 0.f;
#pragma unroll
                for (int j = 0; j < BN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float p = m == -INFINITY ? 0.f : exp2f(sc[4 * j + 2 * r + e] - m);
                        sc[4 * j + 2 * r + e] = p;
                        sum += p;
                    }
                ls[r] = ls[r] * alpha + sum;
                mx[r] = m;
#pragma unroll
                for (int j = 0; j < DV / 8; j++) {
                    o[4 * j + 2 * r] *= alpha;
                    o[4 * j + 2 * r + 1] *= alpha;
                }
            }
            /* O += P·V; every A fragment packed before the fence (packing between the wgmmas
             * would make ptxas insert a fence before each one, C7519) */
            const uint32_t va = smem_u32(sm + SM::v_off + s * SM::v_bytes);
            uint32_t a[BN / 16][4];
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) hp_pack_a<T>(a[kk], sc, kk);
            hp_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++)
                hp_wgmma_rs<T, DV>(o, a[kk], nsa_hp_desc_mn(va, BN, kk), 1);
            hp_wgmma_commit();
            hp_wgmma_wait<0>();
            hp_fence_regs(o);
        }
        release(s);
    }

    /* epilogue: o / l, lse (natural log); lse2 keeps log2 units for the scoring pass */
    float lse2[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = ls[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        lse2[r] = l > 0.f ? mx[r] + log2f(l) : -INFINITY;
        const int t = trow[r];
        if (t >= P.T) { lse2[r] = -INFINITY; continue; }
        const int64_t rh = ((int64_t)b * P.T + t) * P.Hq + hrow[r];
        const float inv = l > 0.f ? 1.f / l : 0.f;
        float *dst = P.o[BR] + rh * P.Dv;
#pragma unroll
        for (int j = 0; j < DV / 8; j++)
            *(float2 *)(dst + 8 * j + 2 * (lane % 4)) = make_float2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
        if (lane % 4 == 0) P.lse[BR][rh] = lse2[r] == -INFINITY ? -INFINITY : lse2[r] * 0.6931471805599453f;
    }
    if constexpr (!CMP) return;

    /* ---- pass 2 (cmp): P[t, g, i - c0] = Σ_h exp(s[(t, h), i] - lse), heads in a fixed order ---- */
    float *pt = (float *)(sm + SM::p_off + c * SM::p_bytes);
    for (int it = 0; it < ntiles; it++, i++) {
        const int s = i % F3_STAGES, base = klo + it * BN;
        const int cls = nsa_hp_tile_class(base, BN, lo_f, hi_f, lo_l, hi_l);
        hp_bar_wait(&full[s], (i / F3_STAGES) & 1);
        if (cls == NSA_HP_DEAD) { release(s); continue; }
        float sc[BN / 2];
        qk(sc, s);
        release(s); /* K is read: the producer may refill the stage while we sum */
        scale_mask(sc, cls, base);
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float l2 = lse2[e / 2]; /* -inf: a row without keys, or padding */
                sc[4 * j + e] = l2 == -INFINITY ? 0.f : exp2f(sc[4 * j + e] - l2);
            }
        if (G == 16) {
            /* the warp's 16 rows are the 16 heads of query tq0 + warp: rows r and r + 8, then
             * across the 8 lane groups, in registers */
            const int t = tq0 + warp;
            float *dst = P.P + (((int64_t)b * P.T + t) * P.Hkv + g) * P.Tc - vlo[0];
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float v = sc[4 * j + e] + sc[4 * j + 2 + e];
                    v += __shfl_xor_sync(0xffffffffu, v, 4);
                    v += __shfl_xor_sync(0xffffffffu, v, 8);
                    v += __shfl_xor_sync(0xffffffffu, v, 16);
                    const int key = base + 8 * j + 2 * (lane % 4) + e;
                    if (t < P.T && lane / 4 == j % 8 && key >= vlo[0] && key < vhi[0]) dst[key] = v;
                }
        } else {
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    pt[(warp * 16 + lane / 4 + 8 * (e / 2)) * SM::PS + 8 * j + 2 * (lane % 4) + (e & 1)] = sc[4 * j + e];
            hp_bar_named(1 + c, 128);
            for (int e = tid; e < QPW * BN; e += 128) {
                const int qi = e / BN, col = e % BN, t = tq0 + qi, key = base + col;
                int lo, hi;
                if (t >= P.T) continue;
                keys(t, &lo, &hi);
                if (key < lo || key >= hi) continue;
                float sum = 0.f;
                for (int h = 0; h < G; h++) sum += pt[(qi * G + h) * SM::PS + col];
                P.P[(((int64_t)b * P.T + t) * P.Hkv + g) * P.Tc + key - lo] = sum;
            }
            hp_bar_named(1 + c, 128);
        }
    }
}

/* ---- launch ---- */

template <typename T, int DK, int DV, int BR>
static nsa_status f3_launch(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                            const nsa_cu_params *P, const nsa_cu_view *K, const nsa_cu_view *V,
                            int64_t Tk) {
    typedef f3_smem<DK, DV, BR> SM;
    CUtensorMap tk, tv;
    NSA_TRY(nsa_hp_tmap(ctx, &tk, dt, K, Tk, P->Hkv, DK, P->B, SM::BN, "fa3 keys"));
    NSA_TRY(nsa_hp_tmap(ctx, &tv, dt, V, Tk, P->Hkv, DV, P->B, SM::BN, "fa3 values"));
    NSA_TRY(nsa_cu_check(ctx, cudaFuncSetAttribute(f3_kernel<T, DK, DV, BR>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   SM::alloc), "fa3 smem attribute"));
    const int qpb = F3_WG * (64 / P->G);
    const dim3 grid((unsigned)((P->T + qpb - 1) / qpb), (unsigned)P->Hkv, (unsigned)P->B);
    const f3_docs docs = {NULL, NULL};
    f3_kernel<T, DK, DV, BR><<<grid, F3_THREADS, SM::alloc, st>>>(tk, tv, *P, docs);
    NSA_CU_LAUNCHED(ctx, "fa3 kernel");
    return NSA_OK;
}

template <typename T, int BR>
static nsa_status f3_dims(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, const nsa_cu_params *P,
                          const nsa_cu_view *K, const nsa_cu_view *V, int64_t Tk) {
    if (P->Dk == 64) return f3_launch<T, 64, 64, BR>(ctx, st, dt, P, K, V, Tk);
    if (P->Dk == 128) return f3_launch<T, 128, 128, BR>(ctx, st, dt, P, K, V, Tk);
    return f3_launch<T, 192, 128, BR>(ctx, st, dt, P, K, V, Tk);
}

template <int BR>
static nsa_status f3_types(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, const nsa_cu_params *P,
                           const nsa_cu_view *K, const nsa_cu_view *V, int64_t Tk) {
    if (dt == NSA_DTYPE_BF16) return f3_dims<__nv_bfloat16, BR>(ctx, st, dt, P, K, V, Tk);
    return f3_dims<__half, BR>(ctx, st, dt, P, K, V, Tk);
}

int nsa_cu_fa3_supported(const nsa_shape *s, nsa_branch br, const char **why) {
    if (br == NSA_BRANCH_SEL) { *why = "the Hopper kernel serves cmp and win"; return 0; }
    return nsa_cu_fa2_supported(s, br, why); /* the same dtypes, head dims and G <= 64 */
}

nsa_status nsa_cu_fa3_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                             const nsa_cu_params *P, nsa_branch br) {
    if (P->R == 0) return NSA_OK;
    if (br == NSA_BRANCH_CMP) {
        NSA_TRY(nsa_cu_tc_views(ctx, P, &P->kc, &P->vc, "k_cmp"));
        return f3_types<NSA_BRANCH_CMP>(ctx, st, dt, P, &P->kc, &P->vc, P->Tc);
    }
    if (P->w == 0) /* branch off: the reference writes zeros and lse -inf without reading */
        return nsa_cu_ref_attend(ctx, st, dt, dt, P, br);
    NSA_TRY(nsa_cu_tc_views(ctx, P, &P->kw, &P->vw, "k_win"));
    return f3_types<NSA_BRANCH_WIN>(ctx, st, dt, P, &P->kw, &P->vw, P->T);
}
