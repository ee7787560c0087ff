// SPDX-License-Identifier: Apache-2.0
/* bwd_tiled.cu — kernels of the tiled CUDA backward roles (masked cmp/win, packed sel): f32
 * arithmetic, K/V tiles of 32 keys and query rows staged in shared memory, any dtype, strides
 * and head dims. Query side: one block per chunk of (t, head) rows of a KV group recomputes the
 * branch's softmax (lse, o), then dgates, delta and dq. Key side: one block per 32-key tile walks
 * the queries that can see it (cmp: i·d + l − 1 ≤ t; win: the band; sel: an inverse index per
 * (KV head, selection block) sorted by t) and sums dK, dV. Not tensor cores.
 * Invariant: no floating-point atomics; each accumulator element has one owner, fixed order.
 */
#include "bwd_tiled_tile.cuh"

#include <math.h>

template <typename T>
__device__ __forceinline__ float tl_gate(const nsa_cu_bwd &W, int64_t b, int64_t t, int h,
                                         int br) {
    if (W.force_branch >= 0) return W.force_branch == br ? 1.f : 0.f;
    return nsa_cu_ld<T>(W.F.gates, b, t, h, br);
}

/* Whether query t sees key j of branch BR, cmp or win (sel keys come from the ranges). */
template <int BR>
__device__ __forceinline__ bool tl_sees(const nsa_cu_params &P, int64_t t, int64_t j) {
    if (BR == NSA_BRANCH_CMP) return nsa_ix_cmp_sees(P.l, P.d, t, j);
    return nsa_ix_win_sees(P.w, t, j); /* win */
}

__device__ __forceinline__ float tl_wmax(float x) {
    for (int o = 16; o; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float tl_wsum(float x) {
    for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* Loads keys [j0, j0 + nk) of group g into Ks (wk columns, row stride sk) and Vs (wv, sv);
 * zeros past nk and in the columns past Dk / Dv. */
template <typename TK>
__device__ __forceinline__ void tl_load_kv(const nsa_cu_view &kv, const nsa_cu_view &vv,
                                           int64_t b, int g, int64_t j0, int nk, int Dk, int Dv,
                                           int wk, int wv, int sk, int sv, float *Ks, float *Vs) {
    for (int x = threadIdx.x; x < KT * wk; x += NTH) {
        const int j = x / wk, e = x % wk;
        Ks[j * sk + e] = j < nk && e < Dk ? nsa_cu_ld<TK>(kv, b, j0 + j, g, e) : 0.f;
    }
    for (int x = threadIdx.x; x < KT * wv; x += NTH) {
        const int j = x / wv, e = x % wv;
        Vs[j * sv + e] = j < nk && e < Dv ? nsa_cu_ld<TK>(vv, b, j0 + j, g, e) : 0.f;
    }
}

__device__ __forceinline__ float tl_dot4(float4 a, float4 b) {
    return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

/* Grid: cmp/win: x = (b·Hkv + g)·nchunk + c, rows = pairs c·NR + i of (t, head in g), t-major;
 * sel: x = ((b·T + t)·Hkv + g)·nchunk + c, rows = heads c·NR + i of g at t (one key set).
 * Pass 1 (online softmax over the key tiles, warp w owns rows w, w + NW, ...): lse, o; then
 * dgates, delta; pass 2: dq += Σ_j ds_j·k_j. Operands as float4 (columns zero-padded to
 * D4 = 4·⌈D/4⌉); a warp's rows share each K/V load. Shared memory (dynamic, floats):
 * Ks KT·(Dk4+4), Vs KT·(Dv4+4), Qs NR·Dk4, Ys NR·Dv4, As NR·max(Dk, Dv), Ps NR·KT. */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(NTH) tl_query_kernel(nsa_cu_bwd W, int nchunk) {
    const nsa_cu_params &P = W.F;
    const int Dk = P.Dk, Dv = P.Dv, DM = Dk > Dv ? Dk : Dv, K4 = (Dk + 3) / 4, V4 = (Dv + 3) / 4;
    extern __shared__ float4 sm4[];
    float *Ks = (float *)sm4, *Vs = Ks + KT * (4 * K4 + 4), *Qs = Vs + KT * (4 * V4 + 4),
          *Ys = Qs + NR * 4 * K4, *As = Ys + NR * 4 * V4, *Ps = As + NR * DM;
    __shared__ int rt[NR], rh[NR];
    __shared__ float rgate[NR], rlse[NR], rdelta[NR];
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;
    const int c = (int)(blockIdx.x % nchunk);
    int64_t rest = blockIdx.x / nchunk;
    const int g = (int)(rest % P.Hkv);
    rest /= P.Hkv;
    int64_t b, tsel = 0;
    int nrows;
    if (BR == NSA_BRANCH_SEL) {
        tsel = rest % P.T;
        b = rest / P.T;
        nrows = P.G - c * NR < NR ? P.G - c * NR : NR;
    } else {
        b = rest;
        const int64_t np = (int64_t)P.T * P.G - (int64_t)c * NR;
        nrows = np < NR ? (int)np : NR;
    }
    if (tid < NR) {
        int t = 0, h = 0;
        if (tid < nrows) {
            if (BR == NSA_BRANCH_SEL) {
                t = (int)tsel;
                h = g * P.G + c * NR + tid;
            } else {
                const int64_t p = (int64_t)c * NR + tid;
                t = (int)(p / P.G);
                h = g * P.G + (int)(p % P.G);
            }
        }
        rt[tid] = t;
        rh[tid] = h;
        rgate[tid] = tid < nrows ? tl_gate<T>(W, b, t, h, BR) : 0.f;
    }
    __syncthreads();
    for (int x = tid; x < NR * 4 * K4; x += NTH) {
        const int i = x / (4 * K4), e = x % (4 * K4);
        Qs[x] = i < nrows && e < Dk ? nsa_cu_ld<T>(P.q, b, rt[i], rh[i], e) : 0.f;
    }
    for (int x = tid; x < NR * 4 * V4; x += NTH) {
        const int i = x / (4 * V4), e = x % (4 * V4);
        Ys[x] = i < nrows && e < Dv ? nsa_cu_ld<T>(W.dout, b, rt[i], rh[i], e) : 0.f;
    }
    for (int x = tid; x < NR * DM; x += NTH) As[x] = 0.f;
    __syncthreads(); /* a branch without keys reaches the pass-1 epilogue without a tile */
    const nsa_cu_view kv = BR == NSA_BRANCH_CMP ? P.kc : BR == NSA_BRANCH_SEL ? P.ks : P.kw;
    const nsa_cu_view vv = BR == NSA_BRANCH_CMP ? P.vc : BR == NSA_BRANCH_SEL ? P.vs : P.vw;
    /* key intervals: cmp/win one (the union over the rows), sel the ranges of (b, tsel, g) */
    const int64_t tmin = rt[0], tmax = rt[nrows - 1];
    int64_t ka = 0, kz = 0;
    if (BR == NSA_BRANCH_CMP) {
        kz = nsa_cu_num_cmp(P, tmax + 1);
    } else if (BR == NSA_BRANCH_WIN) {
        ka = nsa_ix_win_lo(P.w, tmin);
        kz = P.w > 0 ? tmax + 1 : 0;
    }
    const int32_t *rg = P.ranges + ((b * P.T + tsel) * P.Hkv + g) * (int64_t)P.n * 2;
    const int nint = BR == NSA_BRANCH_SEL ? P.n : 1;
    const float scale = P.scale;
    float m[NR / NW], lsum[NR / NW];
#pragma unroll
    for (int k = 0; k < NR / NW; k++) m[k] = -INFINITY, lsum[k] = 0.f;
    float *pw = Ps + wid * (NR / NW) * KT; /* (NR / NW) × KT: p or ds of the warp's rows */
    const float4 *q4 = (const float4 *)Qs + wid * K4, *y4 = (const float4 *)Ys + wid * V4;

    for (int pass = 0; pass < 2; pass++) {
        for (int q = 0; q < nint; q++) {
            const int64_t a = BR == NSA_BRANCH_SEL ? rg[2 * q] : ka;
            const int64_t z = BR == NSA_BRANCH_SEL ? rg[2 * q + 1] : kz;
            for (int64_t j0 = a; j0 < z; j0 += KT) {
                const int nk = z - j0 < KT ? (int)(z - j0) : KT;
                __syncthreads();
                tl_load_kv<TK>(kv, vv, b, g, j0, nk, Dk, Dv, 4 * K4, 4 * V4, 4 * K4 + 4,
                               4 * V4 + 4, Ks, Vs);
                __syncthreads();
                /* lane = key; the warp's rows wid + NW·k together (each K/V float4 feeds all) */
                float sc[NR / NW], dp[NR / NW];
#pragma unroll
                for (int k = 0; k < NR / NW; k++) sc[k] = dp[k] = 0.f;
                const float4 *k4 = (const float4 *)(Ks + lane * (4 * K4 + 4));
                for (int e = 0; e < K4; e++) {
                    const float4 kk = k4[e];
#pragma unroll
                    for (int k = 0; k < NR / NW; k++) sc[k] += tl_dot4(q4[k * NW * K4 + e], kk);
                }
                if (pass == 1) {
                    const float4 *v4 = (const float4 *)(Vs + lane * (4 * V4 + 4));
                    for (int e = 0; e < V4; e++) {
                        const float4 vv4 = v4[e];
#pragma unroll
                        for (int k = 0; k < NR / NW; k++)
                            dp[k] += tl_dot4(y4[k * NW * V4 + e], vv4);
                    }
                }
                float al[NR / NW];
#pragma unroll
                for (int k = 0; k < NR / NW; k++) {
                    const int i = wid + NW * k;
                    /* sel: the intervals are the ranges themselves */
                    const bool vis = i < nrows && lane < nk &&
                                     (BR == NSA_BRANCH_SEL || tl_sees<BR>(P, rt[i], j0 + lane));
                    const float s = vis ? sc[k] * scale : -INFINITY;
                    float v = 0.f;
                    al[k] = 1.f;
                    if (pass == 0) {
                        const float mn = fmaxf(m[k], tl_wmax(s));
                        if (mn != -INFINITY) {
                            al[k] = m[k] == -INFINITY ? 0.f : expf(m[k] - mn);
                            v = vis ? expf(s - mn) : 0.f;
                            lsum[k] = lsum[k] * al[k] + tl_wsum(v);
                            m[k] = mn;
                        }
                    } else if (vis) {
                        v = expf(s - rlse[i]) * (rgate[i] * dp[k] - rdelta[i]) * scale;
                    }
                    pw[k * KT + lane] = v;
                }
                __syncwarp();
                /* lane = column e: pass 0 o += Σ_j p_j·v_j, pass 1 dq += Σ_j ds_j·k_j */
                const int D = pass == 0 ? Dv : Dk, S = pass == 0 ? 4 * V4 + 4 : 4 * K4 + 4;
                const float *src = pass == 0 ? Vs : Ks;
                for (int e = lane; e < D; e += 32) {
                    float acc[NR / NW];
#pragma unroll
                    for (int k = 0; k < NR / NW; k++)
                        acc[k] = As[(wid + NW * k) * DM + e] * al[k];
                    for (int j = 0; j < nk; j++) {
                        const float x = src[j * S + e];
#pragma unroll
                        for (int k = 0; k < NR / NW; k++) acc[k] += pw[k * KT + j] * x;
                    }
#pragma unroll
                    for (int k = 0; k < NR / NW; k++) As[(wid + NW * k) * DM + e] = acc[k];
                }
                __syncwarp();
            }
        }
        if (pass == 1) break;
        /* between the passes: o = As / lsum, dgates, delta; As cleared for dq */
#pragma unroll
        for (int k = 0; k < NR / NW; k++) {
            const int i = wid + NW * k;
            if (i >= nrows) continue;
            const float inv = lsum[k] > 0.f ? 1.f / lsum[k] : 0.f;
            float dg = 0.f;
            for (int e = lane; e < Dv; e += 32) dg += Ys[i * 4 * V4 + e] * As[i * DM + e] * inv;
            dg = tl_wsum(dg);
            const float lse = lsum[k] > 0.f ? m[k] + logf(lsum[k]) : -INFINITY;
            const int64_t hr = (b * P.T + rt[i]) * P.Hq + rh[i];
            const int64_t RH = (int64_t)P.B * P.T * P.Hq;
            if (lane == 0) {
                rlse[i] = lse;
                rdelta[i] = rgate[i] * dg;
                W.lse[(int64_t)BR * RH + hr] = lse;
                W.delta[(int64_t)BR * RH + hr] = rgate[i] * dg;
                if (W.acc[NSA_GG]) W.acc[NSA_GG][hr * 3 + BR] = dg;
            }
            __syncwarp();
            for (int e = lane; e < DM; e += 32) As[i * DM + e] = 0.f;
        }
        if (!W.acc[NSA_GQ]) return;
    }
#pragma unroll
    for (int k = 0; k < NR / NW; k++) {
        const int i = wid + NW * k;
        if (i >= nrows) continue;
        double *out = W.acc[NSA_GQ] + ((b * P.T + rt[i]) * P.Hq + rh[i]) * (int64_t)Dk;
        for (int e = lane; e < Dk; e += 32) out[e] += (double)As[i * DM + e];
    }
}

/* Grid: x = key tile (tl_tile), y = split s: the tile's (t, head) pairs [s·PPS, (s+1)·PPS), in
 * chunks of RC pairs: warp w computes p·gate and ds of its pairs (lane = key), then thread x sums
 * dK[j][e] += Σ_r ds_rj·q_re and dV[j][e] += Σ_r pg_rj·dO_re over the chunk in pair order. Split
 * 0 writes the gradient rows, split s > 0 its partial slot exo[x] + s − 1 (tl_reduce_kernel adds
 * them in order). Operands as float4 (columns zero-padded to D4 = 4·⌈D/4⌉): each K/V vector
 * feeds the warp's 8 pairs, each thread's dK/dV block is 4 keys × 4 columns. Shared memory
 * (dynamic, floats): Ks KT·(Dk4+4), Vs KT·(Dv4+4), dKs KT·Dk4, dVs KT·Dv4, Qs RC·Dk4,
 * Ys RC·Dv4, Ss and Gs RC·KT. */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(NTH) tl_key_kernel(nsa_cu_bwd W, int ntile, const int *off,
                                                     const int *list, const int *exo,
                                                     float *partK, float *partV, int pps) {
    const nsa_cu_params &P = W.F;
    const int Dk = P.Dk, Dv = P.Dv, K4 = (Dk + 3) / 4, V4 = (Dv + 3) / 4;
    extern __shared__ float4 sm4[];
    float *Ks = (float *)sm4, *Vs = Ks + KT * (4 * K4 + 4), *dKs = Vs + KT * (4 * V4 + 4),
          *dVs = dKs + KT * 4 * K4, *Qs = dVs + KT * 4 * V4, *Ys = Qs + RC * 4 * K4,
          *Ss = Ys + RC * 4 * V4, *Gs = Ss + RC * KT;
    __shared__ int rt[RC], rh[RC];
    __shared__ unsigned rmask[RC]; /* sel: which of the tile's keys row r's ranges hold */
    __shared__ float rgate[RC], rlse[RC], rdelta[RC];
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;
    const tl_tile_t tt = tl_tile<BR>(P, blockIdx.x, ntile, off, list);
    const int64_t b = tt.b, j0 = tt.j0;
    const int g = tt.g;
    const int64_t p0 = (int64_t)blockIdx.y * pps;
    const int64_t p1 = p0 + pps < tt.nq * P.G ? p0 + pps : tt.nq * P.G;
    if (tt.jend <= j0 || (blockIdx.y > 0 && p0 >= p1)) return;
    const int nk = (int)(tt.jend - j0);
    const nsa_cu_view kv = BR == NSA_BRANCH_CMP ? P.kc : BR == NSA_BRANCH_SEL ? P.ks : P.kw;
    const nsa_cu_view vv = BR == NSA_BRANCH_CMP ? P.vc : BR == NSA_BRANCH_SEL ? P.vs : P.vw;
    tl_load_kv<TK>(kv, vv, b, g, j0, nk, Dk, Dv, 4 * K4, 4 * V4, 4 * K4 + 4, 4 * V4 + 4, Ks, Vs);
    for (int x = tid; x < KT * 4 * K4; x += NTH) dKs[x] = 0.f;
    for (int x = tid; x < KT * 4 * V4; x += NTH) dVs[x] = 0.f;
    const int64_t RH = (int64_t)P.B * P.T * P.Hq;
    const double *lse = W.lse + (int64_t)BR * RH, *delta = W.delta + (int64_t)BR * RH;
    const float scale = P.scale;

    for (int64_t c0 = p0; c0 < p1; c0 += RC) {
        const int nr = p1 - c0 < RC ? (int)(p1 - c0) : RC;
        __syncthreads();
        if (tid < RC) {
            int t = 0, h = 0;
            float gt = 0.f, ls = 0.f, dl = 0.f;
            if (tid < nr) {
                const int64_t p = c0 + tid, qi = p / P.G;
                t = (int)(BR == NSA_BRANCH_SEL ? tt.tl[qi] : tt.tlo + qi);
                h = g * P.G + (int)(p % P.G);
                const int64_t hr = (b * P.T + t) * P.Hq + h;
                gt = tl_gate<T>(W, b, t, h, BR);
                ls = (float)lse[hr];
                dl = (float)delta[hr];
                if (BR == NSA_BRANCH_SEL) {
                    const int32_t *rg = P.ranges + ((b * P.T + t) * P.Hkv + g) * (int64_t)P.n * 2;
                    unsigned mk = 0;
                    for (int q = 0; q < P.n; q++) {
                        const int64_t lo = rg[2 * q] > j0 ? rg[2 * q] : j0;
                        const int64_t hi = rg[2 * q + 1] < j0 + KT ? rg[2 * q + 1] : j0 + KT;
                        for (int64_t j = lo; j < hi; j++) mk |= 1u << (j - j0);
                    }
                    rmask[tid] = mk;
                }
            }
            rt[tid] = t;
            rh[tid] = h;
            rgate[tid] = gt;
            rlse[tid] = ls;
            rdelta[tid] = dl;
        }
        __syncthreads();
        for (int x = tid; x < RC * 4 * K4; x += NTH) {
            const int i = x / (4 * K4), e = x % (4 * K4);
            Qs[x] = i < nr && e < Dk ? nsa_cu_ld<T>(P.q, b, rt[i], rh[i], e) : 0.f;
        }
        for (int x = tid; x < RC * 4 * V4; x += NTH) {
            const int i = x / (4 * V4), e = x % (4 * V4);
            Ys[x] = i < nr && e < Dv ? nsa_cu_ld<T>(W.dout, b, rt[i], rh[i], e) : 0.f;
        }
        __syncthreads();
        {   /* warp wid: pairs wid + NW·r, lane = key; each K/V float4 feeds RC/NW pairs */
            float dot[RC / NW], dp[RC / NW];
#pragma unroll
            for (int r = 0; r < RC / NW; r++) dot[r] = dp[r] = 0.f;
            const float4 *k4 = (const float4 *)(Ks + lane * (4 * K4 + 4));
            const float4 *v4 = (const float4 *)(Vs + lane * (4 * V4 + 4));
            const float4 *q4 = (const float4 *)Qs + wid * K4, *y4 = (const float4 *)Ys + wid * V4;
            for (int e = 0; e < K4; e++) {
                const float4 kk = k4[e];
#pragma unroll
                for (int r = 0; r < RC / NW; r++) dot[r] += tl_dot4(q4[r * NW * K4 + e], kk);
            }
            for (int e = 0; e < V4; e++) {
                const float4 vv4 = v4[e];
#pragma unroll
                for (int r = 0; r < RC / NW; r++) dp[r] += tl_dot4(y4[r * NW * V4 + e], vv4);
            }
#pragma unroll
            for (int r = 0; r < RC / NW; r++) {
                const int i = wid + NW * r;
                const bool vis = i < nr && lane < nk &&
                                 (BR == NSA_BRANCH_SEL ? (rmask[i] >> lane) & 1u
                                                       : tl_sees<BR>(P, rt[i], j0 + lane));
                float ds = 0.f, pg = 0.f;
                if (vis) {
                    const float p = expf(dot[r] * scale - rlse[i]);
                    ds = p * (rgate[i] * dp[r] - rdelta[i]) * scale;
                    pg = p * rgate[i];
                }
                Ss[i * KT + lane] = ds;
                Gs[i * KT + lane] = pg;
            }
        }
        __syncthreads();
        /* thread: 4 keys × 4 columns of dK (then dV), the chunk's pairs in order */
        for (int x = tid; x < (KT / 4) * (K4 + V4); x += NTH) {
            const bool isk = x < (KT / 4) * K4;
            const int xx = isk ? x : x - (KT / 4) * K4, W4 = isk ? K4 : V4;
            const int j = (xx / W4) * 4, e = xx % W4;
            float4 *acc = (float4 *)(isk ? dKs : dVs) + j * W4 + e;
            const float4 *src = (const float4 *)(isk ? Qs : Ys) + e;
            const float *cf = (isk ? Ss : Gs) + j;
            float4 a0 = acc[0], a1 = acc[W4], a2 = acc[2 * W4], a3 = acc[3 * W4];
            for (int r = 0; r < nr; r++) {
                const float4 q = src[r * W4], c = *(const float4 *)(cf + r * KT);
                a0.x += c.x * q.x; a0.y += c.x * q.y; a0.z += c.x * q.z; a0.w += c.x * q.w;
                a1.x += c.y * q.x; a1.y += c.y * q.y; a1.z += c.y * q.z; a1.w += c.y * q.w;
                a2.x += c.z * q.x; a2.y += c.z * q.y; a2.z += c.z * q.z; a2.w += c.z * q.w;
                a3.x += c.w * q.x; a3.y += c.w * q.y; a3.z += c.w * q.z; a3.w += c.w * q.w;
            }
            acc[0] = a0;
            acc[W4] = a1;
            acc[2 * W4] = a2;
            acc[3 * W4] = a3;
        }
    }
    __syncthreads();
    const int64_t X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
    double *oK = BR == NSA_BRANCH_CMP ? W.dkc : W.acc[BR == NSA_BRANCH_SEL ? NSA_GKS : NSA_GKW];
    double *oV = BR == NSA_BRANCH_CMP ? W.dvc : W.acc[BR == NSA_BRANCH_SEL ? NSA_GVS : NSA_GVW];
    if (blockIdx.y > 0) { /* a partial slot (rows of Dk / Dv) */
        const int64_t slot = (int64_t)exo[blockIdx.x] + blockIdx.y - 1;
        if (oK)
            for (int x = tid; x < nk * Dk; x += NTH)
                partK[slot * KT * Dk + x] = dKs[(x / Dk) * 4 * K4 + x % Dk];
        if (oV)
            for (int x = tid; x < nk * Dv; x += NTH)
                partV[slot * KT * Dv + x] = dVs[(x / Dv) * 4 * V4 + x % Dv];
        return;
    }
    if (oK)
        for (int x = tid; x < nk * Dk; x += NTH)
            oK[((b * X + j0 + x / Dk) * P.Hkv + g) * Dk + x % Dk] =
                (double)dKs[(x / Dk) * 4 * K4 + x % Dk];
    if (oV)
        for (int x = tid; x < nk * Dv; x += NTH)
            oV[((b * X + j0 + x / Dv) * P.Hkv + g) * Dv + x % Dv] =
                (double)dVs[(x / Dv) * 4 * V4 + x % Dv];
}

/* ---- launchers ---- */

static size_t smem_query(int Dk, int Dv) {
    const int DM = Dk > Dv ? Dk : Dv, k4 = (Dk + 3) / 4 * 4, v4 = (Dv + 3) / 4 * 4;
    return (size_t)(KT * (k4 + 4) + KT * (v4 + 4) + NR * (k4 + v4 + DM) + NR * KT) * 4;
}

static size_t smem_keys(int Dk, int Dv) {
    const int k4 = (Dk + 3) / 4 * 4, v4 = (Dv + 3) / 4 * 4;
    return (size_t)(KT * (k4 + 4) + KT * (v4 + 4) + KT * (k4 + v4) + RC * (k4 + v4) +
                    2 * RC * KT) * 4;
}

size_t nsa_cu_bwd_tiled_smem(int Dk, int Dv) {
    const size_t a = smem_query(Dk, Dv), b = smem_keys(Dk, Dv);
    return a > b ? a : b;
}

template <typename K> static void tl_attr(K kernel, size_t smem) {
    if (smem > 48 * 1024)
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

template <typename T, typename TK, int BR>
static void tl_branch(nsa_cu_stream st, const nsa_cu_bwd *W, const tl_keyargs *k) {
    const nsa_cu_params &P = W->F;
    if (!k) {
        const int nchunk = BR == NSA_BRANCH_SEL ? (P.G + NR - 1) / NR
                                                : (int)(((int64_t)P.T * P.G + NR - 1) / NR);
        const int64_t nb = (BR == NSA_BRANCH_SEL ? (int64_t)P.B * P.T : (int64_t)P.B) * P.Hkv *
                           nchunk;
        const size_t smem = smem_query(P.Dk, P.Dv);
        tl_attr(tl_query_kernel<T, TK, BR>, smem);
        tl_query_kernel<T, TK, BR><<<(unsigned)nb, NTH, smem, st>>>(*W, nchunk);
        return;
    }
    int64_t nb;
    const int ntile = tl_ntile(P, (nsa_branch)BR, &nb);
    if (nb == 0) return;
    const size_t smem = smem_keys(P.Dk, P.Dv);
    tl_attr(tl_key_kernel<T, TK, BR>, smem);
    const dim3 grid((unsigned)nb, (unsigned)tl_maxsplit(P, (nsa_branch)BR));
    tl_key_kernel<T, TK, BR><<<grid, NTH, smem, st>>>(*W, ntile, k->off, k->list, k->exo,
                                                       k->partK, k->partV, tl_pps(P));
}

template <typename T>
static void tl_launch_t(nsa_cu_stream st, nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br,
                        const tl_keyargs *k) {
    if (br == NSA_BRANCH_CMP) {
        if (kc_dt == NSA_DTYPE_F32) tl_branch<T, float, NSA_BRANCH_CMP>(st, W, k);
        else tl_branch<T, T, NSA_BRANCH_CMP>(st, W, k);
    } else if (br == NSA_BRANCH_SEL) {
        tl_branch<T, T, NSA_BRANCH_SEL>(st, W, k);
    } else {
        tl_branch<T, T, NSA_BRANCH_WIN>(st, W, k);
    }
}

static void tl_launch(nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt, const nsa_cu_bwd *W,
                      nsa_branch br, const tl_keyargs *k) {
    switch (dt) {
    case NSA_DTYPE_BF16: tl_launch_t<__nv_bfloat16>(st, kc_dt, W, br, k); break;
    case NSA_DTYPE_F16: tl_launch_t<__half>(st, kc_dt, W, br, k); break;
    default: tl_launch_t<float>(st, kc_dt, W, br, k); break;
    }
}

nsa_status nsa_cu_bwd_tiled_query(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                                  nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br) {
    if ((int64_t)W->F.B * W->F.T * W->F.Hq == 0) return NSA_OK;
    tl_launch(st, dt, kc_dt, W, br, NULL);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): query side");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_tiled_keys(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                                 nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br,
                                 const tl_keyargs *k) {
    tl_launch(st, dt, kc_dt, W, br, k);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): key side");
    return nsa_cu_bwd_tiled_reduce(ctx, st, W, br, k);
}

