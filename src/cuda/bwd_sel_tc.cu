// SPDX-License-Identifier: Apache-2.0
/* bwd_sel_tc.cu — the tensor-core backward of the selection branch (role NSA_ROLE_FUSED_SEL,
 * bwd_tc.cuh): bf16/f16 operands through mma.sync m16n8k16, f32 accumulation, any G, (Dk, Dv)
 * in {(64,64), (128,128), (192,128)}, any lp. dq: sq_kernel (bwd_sel_tc.cuh). dK/dV: one CTA per
 * 64 keys of a selection block and split of the (query, head) pairs of the block's queries (the
 * inverse index, ascending t): keys are the mma rows, pairs the columns, so the S/dP accumulator
 * tiles become the A operands of dV += (gate·P)ᵀ·dO and dK += dSᵀ·Q (FlashAttention-2's trick).
 * Not the forward recompute (bwd_pipeline.cu makes lse, delta, gate, off, list).
 * Invariant: deterministic — split 0 adds into the accumulator rows, splits beyond the first
 * write f32 partial slots that sk_reduce_kernel adds in split order; no floating-point atomics.
 */
#include "bwd_sel_tc.cuh"

#include <string.h>

/* ---- dK/dV ---- */

template <int DK, int DV> struct sk_smem {
    static constexpr int KS = DK + 8, VS = DV + 8;
    static constexpr int kv_bytes = SB_BN * (KS + VS) * 2;
    static constexpr int stage_bytes = SB_PC * (KS + VS) * 2;
    /* then per stage and pair: key mask u64, lse2, gate, delta f32; the split's queries */
    static constexpr int bytes = kv_bytes + 2 * stage_bytes + 2 * SB_PC * (8 + 3 * 4);
};

/* Key tile x = ((b·Hkv + g)·nsel_max + jb)·nsub + sub: keys [k0, k0 + nk) of (b, g). */
typedef struct {
    int64_t b, bgj, k0;
    int g, nk;
} sk_tile_t;

__device__ __forceinline__ sk_tile_t sk_tile(const nsa_cu_params &P, int x, int nsub) {
    sk_tile_t r;
    const int sub = x % nsub;
    r.bgj = x / nsub;
    const int64_t jb = r.bgj % P.nsel_max, bg = r.bgj / P.nsel_max;
    r.g = (int)(bg % P.Hkv);
    r.b = bg / P.Hkv;
    r.k0 = jb * P.lp + (int64_t)sub * SB_BN;
    int64_t end = (jb + 1) * P.lp < P.T ? (jb + 1) * P.lp : P.T;
    if (end > r.k0 + SB_BN) end = r.k0 + SB_BN;
    r.nk = end > r.k0 ? (int)(end - r.k0) : 0;
    return r;
}

/* Grid: one CTA per split (flat: tile x = the last with spre[x] ≤ blockIdx.x, split s =
 * blockIdx.x − spre[x]); 128 threads. The split's pairs [s·pps, (s+1)·pps) of the tile's pair
 * list (pair p: query list[p / G], head p % G) are staged 32 at a time (cp.async, two stages);
 * per 16 pairs warp w (keys 16w..16w+15) computes Sᵀ = K·Qᵀ and dP'ᵀ = V·dOᵀ, then gate·P and
 * dS on the keys the pair's query holds, rounded to T, and dV += (gate·P)ᵀ·dO, dK += dSᵀ·Q.
 * K/V fragments stay in registers for Dk = Dv = 64, else are reread per 16 pairs. */
template <typename T, int DK, int DV>
__global__ void __launch_bounds__(SB_TH, DK + DV <= 128 ? 3 : 2) sk_kernel(nsa_cu_bwd W, nsa_cu_tc_rows rw,
                                                      const int *off, const int *list,
                                                      const int *spre, int ntile, int nsub,
                                                      int pps, float *partK, float *partV) {
    typedef sk_smem<DK, DV> SM;
    static_assert(SB_PC * 4 == SB_TH, "four threads per staged pair");
    constexpr bool KREG = DK + DV <= 128;
    extern __shared__ __align__(16) unsigned char smraw[];
    const nsa_cu_params &P = W.F;
    T *Ks = (T *)smraw, *Vs = Ks + SB_BN * SM::KS;
    unsigned char *stg = smraw + SM::kv_bytes;
    uint64_t *mmask = (uint64_t *)(stg + 2 * SM::stage_bytes);
    float *ml2 = (float *)(mmask + 2 * SB_PC), *mgt = ml2 + 2 * SB_PC, *mdl = mgt + 2 * SB_PC;
    int *tls = (int *)(mdl + 2 * SB_PC); /* the split's queries */
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, mi = lane / 8;
    int lo = 0, hi = ntile - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (spre[mid] <= (int)blockIdx.x) lo = mid;
        else hi = mid - 1;
    }
    const int x = lo, s = (int)blockIdx.x - spre[x];
    const sk_tile_t tt = sk_tile(P, x, nsub);
    const int G = P.G, g = tt.g;
    const int64_t b = tt.b, k0 = tt.k0;
    const int64_t npair = (int64_t)(off[tt.bgj + 1] - off[tt.bgj]) * G;
    const int64_t q0 = (int64_t)s * pps, q1 = q0 + pps < npair ? q0 + pps : npair;
    if (tt.nk <= 0 || q0 >= q1) return;
    double *oK = W.acc[NSA_GKS], *oV = W.acc[NSA_GVS];
    const float sl2 = P.scale * SB_LOG2E;

    const T *Kg = (const T *)P.ks.p + b * P.ks.sb + (int64_t)g * P.ks.sh;
    const T *Vg = (const T *)P.vs.p + b * P.vs.sb + (int64_t)g * P.vs.sh;
    for (int c = tid; c < SB_BN * (DK / 8 + DV / 8); c += SB_TH) {
        const bool isk = c < SB_BN * (DK / 8);
        const int cc = isk ? c : c - SB_BN * (DK / 8), NC = isk ? DK / 8 : DV / 8;
        const int kr = cc / NC, ch = cc % NC;
        const bool ok = kr < tt.nk;
        const int64_t row = k0 + (ok ? kr : 0);
        if (isk) cp_async16(Ks + kr * SM::KS + ch * 8, Kg + row * P.ks.st + ch * 8, ok);
        else cp_async16(Vs + kr * SM::VS + ch * 8, Vg + row * P.vs.st + ch * 8, ok);
    }
    cp_commit();
    const int64_t qa = q0 / G; /* tls[i] = query qa + i of the block's list */
    for (int i = tid; i <= (q1 - 1) / G - qa; i += SB_TH) tls[i] = list[off[tt.bgj] + qa + i];
    __syncthreads();

    /* stage c: cp.async of the Q and dO rows of its pairs into buffer buf */
    auto issue_stage = [&](int c, int buf) {
        const int64_t pb = q0 + (int64_t)c * SB_PC;
        T *qs = (T *)(stg + buf * SM::stage_bytes), *ys = qs + SB_PC * SM::KS;
        for (int cx = tid; cx < SB_PC * (DK / 8 + DV / 8); cx += SB_TH) {
            const bool isq = cx < SB_PC * (DK / 8);
            const int cc = isq ? cx : cx - SB_PC * (DK / 8), NC = isq ? DK / 8 : DV / 8;
            const int m = cc / NC, ch = cc % NC;
            const int64_t p = pb + m;
            const bool ok = p < q1;
            const int64_t t = ok ? tls[p / G - qa] : 0;
            const nsa_cu_view &v = isq ? P.q : W.dout;
            const T *src = (const T *)v.p + b * v.sb + t * v.st +
                           (int64_t)(g * G + (ok ? p % G : 0)) * v.sh + ch * 8;
            cp_async16((isq ? qs + m * SM::KS : ys + m * SM::VS) + ch * 8, src, ok);
        }
        cp_commit();
    };
    /* stage c's pair data (key masks, lse2, gate, delta) into buffer buf */
    auto meta_stage = [&](int c, int buf) {
        const int64_t pb = q0 + (int64_t)c * SB_PC;
        /* pair tid / 4: its query's slots tid % 4, + 4, ... per thread, OR-ed over the 4 */
        const int pi = tid >> 2, part = tid & 3;
        const int64_t p = pb + pi;
        float l2 = INFINITY, gt = 0.f, dl = 0.f;
        uint64_t mk = 0;
        if (p < q1) {
            const int64_t t = tls[p / G - qa];
            if (part == 0) sb_rowstat(rw, (b * P.T + t) * P.Hq + g * G + p % G, &l2, &gt, &dl);
            mk = sb_mask(P.ranges + ((b * P.T + t) * P.Hkv + g) * (int64_t)P.n * 2, part, 4, P.n,
                         k0, tt.nk);
        }
        mk |= __shfl_xor_sync(0xffffffffu, mk, 1);
        mk |= __shfl_xor_sync(0xffffffffu, mk, 2);
        if (part == 0) {
            mmask[buf * SB_PC + pi] = mk;
            ml2[buf * SB_PC + pi] = l2;
            mgt[buf * SB_PC + pi] = gt;
            mdl[buf * SB_PC + pi] = dl;
        }
    };

    float dk[DK / 8][4], dv[DV / 8][4];
#pragma unroll
    for (int i = 0; i < DK / 8; i++) dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = 0.f;
#pragma unroll
    for (int i = 0; i < DV / 8; i++) dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0.f;
    uint32_t kf[KREG ? DK / 16 : 1][4], vf[KREG ? DV / 16 : 1][4];
    auto kfrag = [&](uint32_t a[4], const T *base, int S, int kk) { /* rows = the warp's keys */
        ldsm_x4(a, base + (warp * 16 + (mi % 2) * 8 + lane % 8) * S + kk * 16 + (mi / 2) * 8);
    };
    const int nst = (int)((q1 - q0 + SB_PC - 1) / SB_PC);
    issue_stage(0, 0);
    meta_stage(0, 0);
    for (int c = 0; c < nst; c++) {
        const int buf = c & 1;
        if (c + 1 < nst) {
            issue_stage(c + 1, buf ^ 1);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        if (KREG && c == 0) {
#pragma unroll
            for (int kk = 0; kk < (KREG ? DK / 16 : 0); kk++) kfrag(kf[kk], Ks, SM::KS, kk);
#pragma unroll
            for (int kk = 0; kk < (KREG ? DV / 16 : 0); kk++) kfrag(vf[kk], Vs, SM::VS, kk);
        }
        const T *qs = (const T *)(stg + buf * SM::stage_bytes), *ys = qs + SB_PC * SM::KS;
#pragma unroll(KREG ? 2 : 1)
        for (int sb = 0; sb < SB_PC / 16; sb++) {
            float st[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
            float dp[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
            /* Sᵀ and dP'ᵀ interleaved: four independent mma chains instead of two */
#pragma unroll
            for (int kk = 0; kk < (DK > DV ? DK : DV) / 16; kk++) {
                uint32_t a[4], r[4];
                if (kk < DK / 16) {
                    if (KREG) {
#pragma unroll
                        for (int u = 0; u < 4; u++) a[u] = kf[KREG ? kk : 0][u];
                    } else {
                        kfrag(a, Ks, SM::KS, kk);
                    }
                    ldsm_x4(r, qs + (sb * 16 + (mi / 2) * 8 + lane % 8) * SM::KS + kk * 16 + (mi % 2) * 8);
                    mma16816<T>(st[0], a, r[0], r[1]);
                    mma16816<T>(st[1], a, r[2], r[3]);
                }
                if (kk < DV / 16) {
                    if (KREG) {
#pragma unroll
                        for (int u = 0; u < 4; u++) a[u] = vf[KREG ? kk : 0][u];
                    } else {
                        kfrag(a, Vs, SM::VS, kk);
                    }
                    ldsm_x4(r, ys + (sb * 16 + (mi / 2) * 8 + lane % 8) * SM::VS + kk * 16 + (mi % 2) * 8);
                    mma16816<T>(dp[0], a, r[0], r[1]);
                    mma16816<T>(dp[1], a, r[2], r[3]);
                }
            }
            /* rows: keys kl = 16w + lane/4 + 8i; columns: pairs pl = 16sb + 8nt + 2(lane%4) + e */
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int pl = buf * SB_PC + sb * 16 + nt * 8 + (lane % 4) * 2 + e;
                    const uint64_t mk = mmask[pl];
                    const float l2 = ml2[pl], gt = mgt[pl], dl = mdl[pl];
#pragma unroll
                    for (int i = 0; i < 2; i++) {
                        const int kl = warp * 16 + lane / 4 + 8 * i;
                        const float p = (mk >> kl) & 1ull ? exp2f(st[nt][2 * i + e] * sl2 - l2) : 0.f;
                        st[nt][2 * i + e] = gt * p;
                        dp[nt][2 * i + e] = p * (gt * dp[nt][2 * i + e] - dl);
                    }
                }
            const uint32_t ag[4] = {pack2<T>(st[0][0], st[0][1]), pack2<T>(st[0][2], st[0][3]),
                                    pack2<T>(st[1][0], st[1][1]), pack2<T>(st[1][2], st[1][3])};
            const uint32_t ad[4] = {pack2<T>(dp[0][0], dp[0][1]), pack2<T>(dp[0][2], dp[0][3]),
                                    pack2<T>(dp[1][0], dp[1][1]), pack2<T>(dp[1][2], dp[1][3])};
            if (oV) {
#pragma unroll
                for (int np = 0; np < DV / 16; np++) {
                    uint32_t r[4];
                    ldsm_x4_t(r, ys + (sb * 16 + (mi % 2) * 8 + lane % 8) * SM::VS + np * 16 + (mi / 2) * 8);
                    mma16816<T>(dv[2 * np], ag, r[0], r[1]);
                    mma16816<T>(dv[2 * np + 1], ag, r[2], r[3]);
                }
            }
            if (oK) {
#pragma unroll
                for (int np = 0; np < DK / 16; np++) {
                    uint32_t r[4];
                    ldsm_x4_t(r, qs + (sb * 16 + (mi % 2) * 8 + lane % 8) * SM::KS + np * 16 + (mi / 2) * 8);
                    mma16816<T>(dk[2 * np], ad, r[0], r[1]);
                    mma16816<T>(dk[2 * np + 1], ad, r[2], r[3]);
                }
            }
        }
        if (c + 1 < nst) meta_stage(c + 1, buf ^ 1); /* its loads overlap other warps' mma */
        __syncthreads();
    }
    /* split 0 adds into the accumulator rows (dK times scale), split s > 0 writes its slot */
    const int64_t slot = (int64_t)spre[x] - x + s - 1;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int kl = warp * 16 + lane / 4 + 8 * i;
        if (kl >= tt.nk) continue;
        const int64_t row = ((b * P.T + k0 + kl) * P.Hkv + g);
        if (oK) {
#pragma unroll
            for (int nt = 0; nt < DK / 8; nt++) {
                const int e = nt * 8 + (lane % 4) * 2;
                if (s == 0) {
                    oK[row * DK + e] += (double)dk[nt][2 * i] * W.scale;
                    oK[row * DK + e + 1] += (double)dk[nt][2 * i + 1] * W.scale;
                } else {
                    *(float2 *)(partK + (slot * SB_BN + kl) * DK + e) =
                        make_float2(dk[nt][2 * i], dk[nt][2 * i + 1]);
                }
            }
        }
        if (oV) {
#pragma unroll
            for (int nt = 0; nt < DV / 8; nt++) {
                const int e = nt * 8 + (lane % 4) * 2;
                if (s == 0) {
                    oV[row * DV + e] += (double)dv[nt][2 * i];
                    oV[row * DV + e + 1] += (double)dv[nt][2 * i + 1];
                } else {
                    *(float2 *)(partV + (slot * SB_BN + kl) * DV + e) =
                        make_float2(dv[nt][2 * i], dv[nt][2 * i + 1]);
                }
            }
        }
    }
}

/* One block of 1024 threads: spre[x] = exclusive prefix of the splits of key tile x,
 * max(1, ⌈pairs / pps⌉); spre[ntile] = total (each thread a contiguous run of tiles, then a
 * serial scan of the 1024 run sums: a fixed order). */
__global__ void __launch_bounds__(1024) sk_plan_kernel(nsa_cu_params P, const int *off, int *spre,
                                                       int ntile, int nsub, int pps) {
    __shared__ int part[1025];
    const int tid = threadIdx.x, per = (ntile + 1023) / 1024;
    const int a = tid * per, z = a + per < ntile ? a + per : ntile;
    int sum = 0;
    for (int x = a; x < z; x++) {
        const int64_t bgj = x / nsub, np = (int64_t)(off[bgj + 1] - off[bgj]) * P.G;
        const int ns = (int)((np + pps - 1) / pps);
        spre[x] = ns > 1 ? ns : 1;
        sum += spre[x];
    }
    part[tid] = sum;
    nsa_cu_scan1024(part);
    if (tid == 0) spre[ntile] = part[1024];
    int run = part[tid];
    for (int x = a; x < z; x++) {
        const int v = spre[x];
        spre[x] = run;
        run += v;
    }
}

/* Grid: one block per key tile x (256 threads): its accumulator rows += its partial slots in
 * split order, times mul. */
__global__ void sk_reduce_kernel(nsa_cu_params P, const int *spre, int nsub, const float *part,
                                 double *o, int D, double mul) {
    const int x = blockIdx.x, ns = spre[x + 1] - spre[x] - 1;
    if (ns <= 0) return;
    const sk_tile_t tt = sk_tile(P, x, nsub);
    const int64_t slot0 = (int64_t)spre[x] - x;
    for (int idx = threadIdx.x; idx < tt.nk * D; idx += blockDim.x) {
        const int kl = idx / D, e = idx % D;
        double *dst = o + ((tt.b * P.T + tt.k0 + kl) * P.Hkv + tt.g) * D + e;
        double a = *dst;
        for (int s = 0; s < ns; s++) a += (double)part[((slot0 + s) * SB_BN + kl) * D + e] * mul;
        *dst = a;
    }
}

/* ---- launchers ---- */

int nsa_cu_bwd_selfused_supported(const nsa_shape *s, const char **why) {
    if (s->dt != NSA_DTYPE_BF16 && s->dt != NSA_DTYPE_F16) { *why = "dtype not bf16/f16"; return 0; }
    if (!nsa_cu_tc_dims_ok(s->Dk, s->Dv)) { *why = NSA_CU_TC_DIMS_WHY; return 0; }
    if (s->T > (1 << 24)) { *why = "T > 2^24 (the dq kernel's key-tile bitmap)"; return 0; }
    if (s->T * s->G / 16 >= INT32_MAX) { *why = "T·G too large for the dq grid"; return 0; }
    return 1;
}


template <typename T, int DK, int DV>
static nsa_status launch_dq(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                            const nsa_cu_tc_rows *rw) {
    const nsa_cu_params &P = W->F;
    const int nq = (15 + P.G - 1) / P.G + 1, nqmax = nq < 16 ? nq : 16;
    const int words = (int)((((int64_t)P.T + SB_BN - 1) / SB_BN + 31) / 32);
    const size_t smem = sq_smem<DK, DV>::bytes + (size_t)nqmax * P.n * 2 * 4 + (size_t)words * 4;
    if (smem > nsa_cu_smem_optin())
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel backward: T = %d with n = %d exceeds "
                        "shared memory", P.T, P.n);
    NSA_TRY(nsa_cu_check(ctx, cudaFuncSetAttribute(sq_kernel<T, DK, DV>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)smem), "sel backward dq smem attribute"));
    dim3 grid((unsigned)(((int64_t)P.T * P.G + 15) / 16), (unsigned)P.Hkv, (unsigned)P.B);
    sq_kernel<T, DK, DV><<<grid, SB_TH, smem, st>>>(*W, *rw, nqmax, words);
    NSA_CU_LAUNCHED(ctx, "sel backward (tensor cores): dq");
    return NSA_OK;
}

/* Pairs per split of a key tile: T·G / 16 in whole stages, within [1024, 16384] and at most
 * 4096·G (the split's queries stay in shared memory): enough CTAs for the init block's walk of
 * every query; each further split costs a partial slot of 64·(Dk + Dv) floats. */
static int sb_pps(const nsa_cu_params &P) {
    int64_t p = ((int64_t)P.T * P.G / 16 + SB_PC - 1) / SB_PC * SB_PC;
    p = p < 1024 ? 1024 : p > 16384 ? 16384 : p;
    return p > 4096 * (int64_t)P.G ? 4096 * P.G : (int)p;
}

/* Stream-ordered buffers of one dK/dV launch, freed on every path. */
typedef struct {
    void *p[3];
    int n;
} sb_mem;

static nsa_status sb_alloc(nsa_context *ctx, nsa_cu_stream st, sb_mem *m, size_t bytes, void **out) {
    cudaError_t e = cudaMallocAsync(out, bytes ? bytes : 1, st);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *out = NULL;
        return nsa_fail(ctx, NSA_ERR_NOMEM, "sel backward: %zu bytes: %s", bytes,
                        cudaGetErrorString(e));
    }
    m->p[m->n++] = *out;
    return NSA_OK;
}

template <typename T, int DK, int DV>
static nsa_status run_dkv(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                          const nsa_cu_tc_rows *rw, const int *off, const int *list, sb_mem *m) {
    const nsa_cu_params &P = W->F;
    const int nsub = (P.lp + SB_BN - 1) / SB_BN, pps = sb_pps(P);
    const int64_t nt = (int64_t)P.B * P.Hkv * P.nsel_max * nsub;
    if (nt > INT32_MAX / 4)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel backward: %lld key tiles", (long long)nt);
    const int ntile = (int)nt;
    int *spre, total = 0;
    NSA_TRY(sb_alloc(ctx, st, m, (size_t)(ntile + 1) * 4, (void **)&spre));
    sk_plan_kernel<<<1, 1024, 0, st>>>(P, off, spre, ntile, nsub, pps);
    NSA_CU_LAUNCHED(ctx, "sel backward (tensor cores): split plan");
    NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(&total, spre + ntile, sizeof total,
                                              cudaMemcpyDeviceToHost, st), "split total"));
    NSA_TRY(nsa_cu_check(ctx, cudaStreamSynchronize(st), "sel backward: split total"));
    const int64_t slots = (int64_t)total - ntile;
    float *partK = NULL, *partV = NULL;
    if (slots > 0 && W->acc[NSA_GKS])
        NSA_TRY(sb_alloc(ctx, st, m, (size_t)slots * SB_BN * DK * 4, (void **)&partK));
    if (slots > 0 && W->acc[NSA_GVS])
        NSA_TRY(sb_alloc(ctx, st, m, (size_t)slots * SB_BN * DV * 4, (void **)&partV));
    const size_t smem = sk_smem<DK, DV>::bytes + (size_t)(pps / P.G + 2) * 4;
    NSA_TRY(nsa_cu_check(ctx, cudaFuncSetAttribute(sk_kernel<T, DK, DV>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)smem), "sel backward dK/dV smem attribute"));
    sk_kernel<T, DK, DV><<<(unsigned)total, SB_TH, smem, st>>>(*W, *rw, off, list, spre, ntile,
                                                                nsub, pps, partK, partV);
    NSA_CU_LAUNCHED(ctx, "sel backward (tensor cores): dK/dV");
    if (slots <= 0) return NSA_OK;
    if (partK) {
        sk_reduce_kernel<<<(unsigned)ntile, 256, 0, st>>>(P, spre, nsub, partK, W->acc[NSA_GKS],
                                                          DK, W->scale);
        NSA_CU_LAUNCHED(ctx, "sel backward (tensor cores): dK split sums");
    }
    if (partV) {
        sk_reduce_kernel<<<(unsigned)ntile, 256, 0, st>>>(P, spre, nsub, partV, W->acc[NSA_GVS],
                                                          DV, 1.0);
        NSA_CU_LAUNCHED(ctx, "sel backward (tensor cores): dV split sums");
    }
    return NSA_OK;
}

template <typename T, int DK, int DV>
static nsa_status run_all(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                          const nsa_cu_tc_rows *rw, const int *off, const int *list) {
    if (W->acc[NSA_GQ]) NSA_TRY((launch_dq<T, DK, DV>(ctx, st, W, rw)));
    if (!W->acc[NSA_GKS] && !W->acc[NSA_GVS]) return NSA_OK;
    sb_mem m;
    m.n = 0;
    const nsa_status s = run_dkv<T, DK, DV>(ctx, st, W, rw, off, list, &m);
    for (int i = 0; i < m.n; i++) cudaFreeAsync(m.p[i], st);
    return s;
}

template <typename T>
static nsa_status run_t(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                        const nsa_cu_tc_rows *rw, const int *off, const int *list) {
#define SB_DIMS(DK, DV) \
    if (W->F.Dk == DK && W->F.Dv == DV) return run_all<T, DK, DV>(ctx, st, W, rw, off, list);
    NSA_CU_TC_DIMS(SB_DIMS)
#undef SB_DIMS
    return NSA_CU_TC_DIMS_FAIL(ctx, W->F.Dk, W->F.Dv);
}

nsa_status nsa_cu_bwd_selfused(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                               const nsa_cu_bwd *W, const nsa_cu_tc_rows *rw, const int *off,
                               const int *list) {
    const nsa_cu_params &P = W->F;
    if ((int64_t)P.B * P.T == 0) return NSA_OK;
    nsa_shape s;
    memset(&s, 0, sizeof s);
    s.T = P.T;
    s.G = P.G;
    s.Dk = P.Dk;
    s.Dv = P.Dv;
    s.dt = dt;
    const char *why = "";
    if (!nsa_cu_bwd_selfused_supported(&s, &why))
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel backward (tensor cores): %s", why);
    if (P.rows) return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel backward: row lists unsupported");
    if (!nsa_cu_aligned16(&P.q, P.Dk) || !nsa_cu_aligned16(&P.ks, P.Dk) ||
        !nsa_cu_aligned16(&P.vs, P.Dv) || !nsa_cu_aligned16(&W->dout, P.Dv))
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "sel backward: q/k_sel/v_sel/dout rows must be "
                        "contiguous and 16-byte aligned for tensor cores");
    if (dt == NSA_DTYPE_BF16) return run_t<__nv_bfloat16>(ctx, st, W, rw, off, list);
    return run_t<__half>(ctx, st, W, rw, off, list);
}
