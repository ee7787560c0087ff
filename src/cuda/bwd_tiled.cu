/* bwd_tiled.cu — kernels of the tiled CUDA backward roles (masked cmp/win, packed sel): f32
 * arithmetic, K/V tiles of 32 keys and query rows staged in shared memory, any dtype, strides
 * and head dims. Query side: one block per chunk of (t, head) rows of a KV group recomputes the
 * branch's softmax (lse, o), then dgates, delta and dq. Key side: one block per 32-key tile walks
 * the queries that can see it (cmp: i·d + l − 1 ≤ t; win: the band; sel: an inverse index per
 * (KV head, selection block) sorted by t) and sums dK, dV. Not tensor cores.
 * Invariant: no floating-point atomics; each accumulator element has one owner, fixed order.
 */
#include "bwd_tiled.cuh"

#include <math.h>

#define KT 32  /* keys per tile: one per lane                 */
#define NW 4   /* warps per block                             */
#define NTH (NW * 32)
#define NR 16  /* query-side rows per block                   */
#define RC 32  /* key-side (t, head) pairs per chunk          */

template <typename T>
__device__ __forceinline__ float tl_gate(const nsa_cu_bwd &W, int64_t b, int64_t t, int h,
                                         int br) {
    if (W.force_branch >= 0) return W.force_branch == br ? 1.f : 0.f;
    return nsa_cu_ld<T>(W.F.gates, b, t, h, br);
}

/* Whether query t of group g sees key j of branch BR (sel: j lies in one of its ranges). */
template <int BR>
__device__ __forceinline__ bool tl_sees(const nsa_cu_params &P, int64_t b, int g, int64_t t,
                                        int64_t j) {
    if (BR == NSA_BRANCH_CMP) return j * P.d + P.l - 1 <= t;
    if (BR == NSA_BRANCH_WIN) return j <= t && j > t - P.w;
    const int32_t *rg = P.ranges + ((b * P.T + t) * P.Hkv + g) * (int64_t)P.n * 2;
    for (int q = 0; q < P.n; q++)
        if (j >= rg[2 * q] && j < rg[2 * q + 1]) return true;
    return false;
}

__device__ __forceinline__ float tl_wmax(float x) {
    for (int o = 16; o; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float tl_wsum(float x) {
    for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* Loads keys [j0, j0 + nk) of group g into Ks (stride Dk + 1) and Vs (stride Dv + 1), zeros
 * past nk. */
template <typename TK>
__device__ __forceinline__ void tl_load_kv(const nsa_cu_view &kv, const nsa_cu_view &vv,
                                           int64_t b, int g, int64_t j0, int nk, int Dk, int Dv,
                                           float *Ks, float *Vs) {
    for (int x = threadIdx.x; x < KT * Dk; x += NTH) {
        const int j = x / Dk, e = x % Dk;
        Ks[j * (Dk + 1) + e] = j < nk ? nsa_cu_ld<TK>(kv, b, j0 + j, g, e) : 0.f;
    }
    for (int x = threadIdx.x; x < KT * Dv; x += NTH) {
        const int j = x / Dv, e = x % Dv;
        Vs[j * (Dv + 1) + e] = j < nk ? nsa_cu_ld<TK>(vv, b, j0 + j, g, e) : 0.f;
    }
}

/* Grid: cmp/win: x = (b·Hkv + g)·nchunk + c, rows = pairs c·NR + i of (t, head in g), t-major;
 * sel: x = ((b·T + t)·Hkv + g)·nchunk + c, rows = heads c·NR + i of g at t (one key set).
 * Pass 1 (online softmax over the key tiles, warp w owns rows w, w + NW, ...): lse, o; then
 * dgates, delta; pass 2: dq += Σ_j ds_j·k_j. Shared memory (dynamic, floats): Ks KT·(Dk+1),
 * Vs KT·(Dv+1), Qs NR·Dk, Ys NR·Dv, As NR·max(Dk, Dv), Ps NW·KT. */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(NTH) tl_query_kernel(nsa_cu_bwd W, int nchunk) {
    const nsa_cu_params &P = W.F;
    const int Dk = P.Dk, Dv = P.Dv, DM = Dk > Dv ? Dk : Dv;
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + KT * (Dk + 1), *Qs = Vs + KT * (Dv + 1), *Ys = Qs + NR * Dk,
          *As = Ys + NR * Dv, *Ps = As + NR * DM;
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
    for (int x = tid; x < NR * Dk; x += NTH) {
        const int i = x / Dk, e = x % Dk;
        Qs[x] = i < nrows ? nsa_cu_ld<T>(P.q, b, rt[i], rh[i], e) : 0.f;
    }
    for (int x = tid; x < NR * Dv; x += NTH) {
        const int i = x / Dv, e = x % Dv;
        Ys[x] = i < nrows ? nsa_cu_ld<T>(W.dout, b, rt[i], rh[i], e) : 0.f;
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
        ka = tmin - P.w + 1 > 0 ? tmin - P.w + 1 : 0;
        kz = P.w > 0 ? tmax + 1 : 0;
    }
    const int32_t *rg = P.ranges + ((b * P.T + tsel) * P.Hkv + g) * (int64_t)P.n * 2;
    const int nint = BR == NSA_BRANCH_SEL ? P.n : 1;
    const float scale = P.scale;
    float m[NR / NW], lsum[NR / NW];
#pragma unroll
    for (int k = 0; k < NR / NW; k++) m[k] = -INFINITY, lsum[k] = 0.f;
    float *pw = Ps + wid * KT;

    for (int pass = 0; pass < 2; pass++) {
        for (int q = 0; q < nint; q++) {
            const int64_t a = BR == NSA_BRANCH_SEL ? rg[2 * q] : ka;
            const int64_t z = BR == NSA_BRANCH_SEL ? rg[2 * q + 1] : kz;
            for (int64_t j0 = a; j0 < z; j0 += KT) {
                const int nk = z - j0 < KT ? (int)(z - j0) : KT;
                __syncthreads();
                tl_load_kv<TK>(kv, vv, b, g, j0, nk, Dk, Dv, Ks, Vs);
                __syncthreads();
#pragma unroll
                for (int k = 0; k < NR / NW; k++) {
                    const int i = wid + NW * k;
                    if (i >= nrows) continue;
                    /* sel: the intervals are the ranges themselves */
                    const bool vis = lane < nk && (BR == NSA_BRANCH_SEL ||
                                                   tl_sees<BR>(P, b, g, rt[i], j0 + lane));
                    float s = -INFINITY;
                    if (vis) {
                        float dot = 0.f;
                        for (int e = 0; e < Dk; e++) dot += Qs[i * Dk + e] * Ks[lane * (Dk + 1) + e];
                        s = dot * scale;
                    }
                    if (pass == 0) {
                        const float mn = fmaxf(m[k], tl_wmax(s));
                        if (mn == -INFINITY) continue;
                        const float alpha = m[k] == -INFINITY ? 0.f : expf(m[k] - mn);
                        const float p = vis ? expf(s - mn) : 0.f;
                        lsum[k] = lsum[k] * alpha + tl_wsum(p);
                        m[k] = mn;
                        pw[lane] = p;
                        __syncwarp();
                        for (int e = lane; e < Dv; e += 32) {
                            float acc = As[i * DM + e] * alpha;
                            for (int j = 0; j < nk; j++) acc += pw[j] * Vs[j * (Dv + 1) + e];
                            As[i * DM + e] = acc;
                        }
                    } else {
                        float ds = 0.f;
                        if (vis) {
                            float dp = 0.f;
                            for (int e = 0; e < Dv; e++) dp += Ys[i * Dv + e] * Vs[lane * (Dv + 1) + e];
                            ds = expf(s - rlse[i]) * (rgate[i] * dp - rdelta[i]) * scale;
                        }
                        pw[lane] = ds;
                        __syncwarp();
                        for (int e = lane; e < Dk; e += 32) {
                            float acc = As[i * DM + e];
                            for (int j = 0; j < nk; j++) acc += pw[j] * Ks[j * (Dk + 1) + e];
                            As[i * DM + e] = acc;
                        }
                    }
                    __syncwarp();
                }
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
            for (int e = lane; e < Dv; e += 32) dg += Ys[i * Dv + e] * As[i * DM + e] * inv;
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

/* Grid: cmp/win: x = (b·Hkv + g)·ntile + kt, keys kt·KT + [0, KT); sel: x = ((b·Hkv + g)·nsel_max
 * + jb)·nsub + s, keys jb·lp + s·KT + [0, KT) within the block. The visible queries (cmp:
 * t ≥ j0·d + l − 1; win: [j0, j0 + nk − 1 + w); sel: the inverse index of (b, g, jb)), ascending,
 * times the G heads of g, in chunks of RC pairs: warp w computes p·gate and ds of its pairs
 * (lane = key), then thread x sums dK[j][e] += Σ_r ds_rj·q_re and dV[j][e] += Σ_r pg_rj·dO_re
 * over the chunk in pair order. Shared memory (dynamic, floats): Ks KT·(Dk+1), Vs KT·(Dv+1),
 * dKs KT·Dk, dVs KT·Dv, Qs RC·Dk, Ys RC·Dv, Ss and Gs RC·KT. */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(NTH) tl_key_kernel(nsa_cu_bwd W, int ntile, const int *off,
                                                     const int *list) {
    const nsa_cu_params &P = W.F;
    const int Dk = P.Dk, Dv = P.Dv;
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + KT * (Dk + 1), *dKs = Vs + KT * (Dv + 1), *dVs = dKs + KT * Dk,
          *Qs = dVs + KT * Dv, *Ys = Qs + RC * Dk, *Ss = Ys + RC * Dv, *Gs = Ss + RC * KT;
    __shared__ int rt[RC], rh[RC];
    __shared__ float rgate[RC], rlse[RC], rdelta[RC];
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;
    const int tile = (int)(blockIdx.x % ntile);
    const int64_t bgx = blockIdx.x / ntile;
    int64_t j0, jend, tlo = 0, nq = 0;
    int g;
    int64_t b;
    const int *tl = NULL;
    if (BR == NSA_BRANCH_SEL) {
        const int64_t jb = bgx % P.nsel_max, bg = bgx / P.nsel_max;
        g = (int)(bg % P.Hkv);
        b = bg / P.Hkv;
        j0 = jb * P.lp + (int64_t)tile * KT;
        const int64_t bend = (jb + 1) * P.lp < P.T ? (jb + 1) * P.lp : P.T;
        jend = j0 + KT < bend ? j0 + KT : bend;
        tl = list + off[bgx];
        nq = off[bgx + 1] - off[bgx];
    } else {
        g = (int)(bgx % P.Hkv);
        b = bgx / P.Hkv;
        const int64_t X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
        j0 = (int64_t)tile * KT;
        jend = j0 + KT < X ? j0 + KT : X;
        if (BR == NSA_BRANCH_CMP) {
            tlo = j0 * P.d + P.l - 1;
            nq = P.T - tlo;
        } else if (P.w > 0) {
            tlo = j0;
            const int64_t thi = jend - 1 + P.w < P.T ? jend - 1 + P.w : P.T;
            nq = thi - tlo;
        }
    }
    if (jend <= j0) return;
    if (nq < 0) nq = 0;
    const int nk = (int)(jend - j0);
    const nsa_cu_view kv = BR == NSA_BRANCH_CMP ? P.kc : BR == NSA_BRANCH_SEL ? P.ks : P.kw;
    const nsa_cu_view vv = BR == NSA_BRANCH_CMP ? P.vc : BR == NSA_BRANCH_SEL ? P.vs : P.vw;
    tl_load_kv<TK>(kv, vv, b, g, j0, nk, Dk, Dv, Ks, Vs);
    for (int x = tid; x < KT * Dk; x += NTH) dKs[x] = 0.f;
    for (int x = tid; x < KT * Dv; x += NTH) dVs[x] = 0.f;
    const int64_t RH = (int64_t)P.B * P.T * P.Hq;
    const double *lse = W.lse + (int64_t)BR * RH, *delta = W.delta + (int64_t)BR * RH;
    const int64_t npair = nq * P.G;
    const float scale = P.scale;

    for (int64_t c0 = 0; c0 < npair; c0 += RC) {
        const int nr = npair - c0 < RC ? (int)(npair - c0) : RC;
        __syncthreads();
        if (tid < RC) {
            int t = 0, h = 0;
            float gt = 0.f, ls = 0.f, dl = 0.f;
            if (tid < nr) {
                const int64_t p = c0 + tid, qi = p / P.G;
                t = (int)(BR == NSA_BRANCH_SEL ? tl[qi] : tlo + qi);
                h = g * P.G + (int)(p % P.G);
                const int64_t hr = (b * P.T + t) * P.Hq + h;
                gt = tl_gate<T>(W, b, t, h, BR);
                ls = (float)lse[hr];
                dl = (float)delta[hr];
            }
            rt[tid] = t;
            rh[tid] = h;
            rgate[tid] = gt;
            rlse[tid] = ls;
            rdelta[tid] = dl;
        }
        __syncthreads();
        for (int x = tid; x < RC * Dk; x += NTH) {
            const int i = x / Dk, e = x % Dk;
            Qs[x] = i < nr ? nsa_cu_ld<T>(P.q, b, rt[i], rh[i], e) : 0.f;
        }
        for (int x = tid; x < RC * Dv; x += NTH) {
            const int i = x / Dv, e = x % Dv;
            Ys[x] = i < nr ? nsa_cu_ld<T>(W.dout, b, rt[i], rh[i], e) : 0.f;
        }
        __syncthreads();
        for (int i = wid; i < RC; i += NW) {
            const bool vis = i < nr && lane < nk && tl_sees<BR>(P, b, g, rt[i], j0 + lane);
            float ds = 0.f, pg = 0.f;
            if (vis) {
                float dot = 0.f, dp = 0.f;
                for (int e = 0; e < Dk; e++) dot += Qs[i * Dk + e] * Ks[lane * (Dk + 1) + e];
                for (int e = 0; e < Dv; e++) dp += Ys[i * Dv + e] * Vs[lane * (Dv + 1) + e];
                const float p = expf(dot * scale - rlse[i]);
                ds = p * (rgate[i] * dp - rdelta[i]) * scale;
                pg = p * rgate[i];
            }
            Ss[i * KT + lane] = ds;
            Gs[i * KT + lane] = pg;
        }
        __syncthreads();
        for (int x = tid; x < nk * Dk; x += NTH) {
            const int j = x / Dk, e = x % Dk;
            float a = dKs[x];
            for (int r = 0; r < nr; r++) a += Ss[r * KT + j] * Qs[r * Dk + e];
            dKs[x] = a;
        }
        for (int x = tid; x < nk * Dv; x += NTH) {
            const int j = x / Dv, e = x % Dv;
            float a = dVs[x];
            for (int r = 0; r < nr; r++) a += Gs[r * KT + j] * Ys[r * Dv + e];
            dVs[x] = a;
        }
    }
    __syncthreads();
    const int64_t X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
    double *oK = BR == NSA_BRANCH_CMP ? W.dkc : W.acc[BR == NSA_BRANCH_SEL ? NSA_GKS : NSA_GKW];
    double *oV = BR == NSA_BRANCH_CMP ? W.dvc : W.acc[BR == NSA_BRANCH_SEL ? NSA_GVS : NSA_GVW];
    if (oK)
        for (int x = tid; x < nk * Dk; x += NTH)
            oK[((b * X + j0 + x / Dk) * P.Hkv + g) * Dk + x % Dk] = (double)dKs[x];
    if (oV)
        for (int x = tid; x < nk * Dv; x += NTH)
            oV[((b * X + j0 + x / Dv) * P.Hkv + g) * Dv + x % Dv] = (double)dVs[x];
}

/* Grid: one thread per selection block r = (b, g, jb); counts the bits of its bitmap row. */
__global__ void tl_sel_count_kernel(nsa_cu_bwd W, int *cnt, int64_t nrows) {
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= nrows) return;
    const uint32_t *row = W.selbits + r * W.tw;
    int s = 0;
    for (int k = 0; k < W.tw; k++) s += __popc(row[k]);
    cnt[r] = s;
}

/* One block of 1024 threads: in-place exclusive prefix over cnt[0, n), cnt[n] = total (each
 * thread a contiguous chunk, then a serial scan of the 1024 chunk sums: fixed order). */
__global__ void __launch_bounds__(1024) tl_scan_kernel(int *cnt, int64_t n) {
    __shared__ int part[1024];
    const int tid = threadIdx.x;
    const int64_t per = (n + 1023) / 1024, a = tid * per, z = a + per < n ? a + per : n;
    int s = 0;
    for (int64_t k = a; k < z; k++) s += cnt[k];
    part[tid] = s;
    __syncthreads();
    if (tid == 0) {
        int run = 0;
        for (int k = 0; k < 1024; k++) {
            const int v = part[k];
            part[k] = run;
            run += v;
        }
        cnt[n] = run;
    }
    __syncthreads();
    int run = part[tid];
    for (int64_t k = a; k < z; k++) {
        const int v = cnt[k];
        cnt[k] = run;
        run += v;
    }
}

/* Grid: one thread per selection block: its queries in ascending t (bit order). */
__global__ void tl_sel_fill_kernel(nsa_cu_bwd W, const int *off, int *list, int64_t nrows) {
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= nrows) return;
    const uint32_t *row = W.selbits + r * W.tw;
    int *o = list + off[r];
    for (int k = 0; k < W.tw; k++) {
        uint32_t word = row[k];
        while (word) {
            const int bit = __ffs(word) - 1;
            *o++ = k * 32 + bit;
            word &= word - 1u;
        }
    }
}

/* ---- launchers ---- */

static size_t smem_query(int Dk, int Dv) {
    const int DM = Dk > Dv ? Dk : Dv;
    return (size_t)(KT * (Dk + 1) + KT * (Dv + 1) + NR * (Dk + Dv + DM) + NW * KT) * 4;
}

static size_t smem_keys(int Dk, int Dv) {
    return (size_t)(KT * (Dk + 1) + KT * (Dv + 1) + KT * (Dk + Dv) + RC * (Dk + Dv) +
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
static void tl_branch(nsa_cu_stream st, const nsa_cu_bwd *W, int keys, const int *off,
                      const int *list) {
    const nsa_cu_params &P = W->F;
    if (!keys) {
        const int nchunk = BR == NSA_BRANCH_SEL ? (P.G + NR - 1) / NR
                                                : (int)(((int64_t)P.T * P.G + NR - 1) / NR);
        const int64_t nb = (BR == NSA_BRANCH_SEL ? (int64_t)P.B * P.T : (int64_t)P.B) * P.Hkv *
                           nchunk;
        const size_t smem = smem_query(P.Dk, P.Dv);
        tl_attr(tl_query_kernel<T, TK, BR>, smem);
        tl_query_kernel<T, TK, BR><<<(unsigned)nb, NTH, smem, st>>>(*W, nchunk);
        return;
    }
    int ntile;
    int64_t nb;
    if (BR == NSA_BRANCH_SEL) {
        ntile = (P.lp + KT - 1) / KT;
        nb = (int64_t)P.B * P.Hkv * P.nsel_max * ntile;
    } else {
        const int X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
        ntile = (X + KT - 1) / KT;
        nb = (int64_t)P.B * P.Hkv * ntile;
    }
    if (nb == 0) return;
    const size_t smem = smem_keys(P.Dk, P.Dv);
    tl_attr(tl_key_kernel<T, TK, BR>, smem);
    tl_key_kernel<T, TK, BR><<<(unsigned)nb, NTH, smem, st>>>(*W, ntile, off, list);
}

template <typename T>
static void tl_launch_t(nsa_cu_stream st, nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br,
                        int keys, const int *off, const int *list) {
    if (br == NSA_BRANCH_CMP) {
        if (kc_dt == NSA_DTYPE_F32) tl_branch<T, float, NSA_BRANCH_CMP>(st, W, keys, off, list);
        else tl_branch<T, T, NSA_BRANCH_CMP>(st, W, keys, off, list);
    } else if (br == NSA_BRANCH_SEL) {
        tl_branch<T, T, NSA_BRANCH_SEL>(st, W, keys, off, list);
    } else {
        tl_branch<T, T, NSA_BRANCH_WIN>(st, W, keys, off, list);
    }
}

static void tl_launch(nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt, const nsa_cu_bwd *W,
                      nsa_branch br, int keys, const int *off, const int *list) {
    switch (dt) {
    case NSA_DTYPE_BF16: tl_launch_t<__nv_bfloat16>(st, kc_dt, W, br, keys, off, list); break;
    case NSA_DTYPE_F16: tl_launch_t<__half>(st, kc_dt, W, br, keys, off, list); break;
    default: tl_launch_t<float>(st, kc_dt, W, br, keys, off, list); break;
    }
}

nsa_status nsa_cu_bwd_tiled_query(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                                  nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br) {
    if ((int64_t)W->F.B * W->F.T * W->F.Hq == 0) return NSA_OK;
    tl_launch(st, dt, kc_dt, W, br, 0, NULL, NULL);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): query side");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_tiled_keys(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                                 nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br,
                                 const int *off, const int *list) {
    tl_launch(st, dt, kc_dt, W, br, 1, off, list);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): key side");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_sel_count(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                int *off) {
    const int64_t n = (int64_t)W->F.B * W->F.Hkv * W->F.nsel_max;
    if (n > 0) {
        tl_sel_count_kernel<<<nsa_cu_blocks(n, 128), 128, 0, st>>>(*W, off, n);
        NSA_CU_LAUNCHED(ctx, "backward (tiled): selection counts");
    }
    tl_scan_kernel<<<1, 1024, 0, st>>>(off, n);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): selection offsets");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_sel_fill(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                               const int *off, int *list) {
    const int64_t n = (int64_t)W->F.B * W->F.Hkv * W->F.nsel_max;
    if (n == 0) return NSA_OK;
    tl_sel_fill_kernel<<<nsa_cu_blocks(n, 128), 128, 0, st>>>(*W, off, list, n);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): selection lists");
    return NSA_OK;
}
