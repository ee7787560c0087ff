// SPDX-License-Identifier: Apache-2.0
/* bwd_ref.cu — the reference role of the CUDA backward: plain double-precision kernels that
 * follow src/ref/row_bwd.c. Query side: one block per (row, head) recomputes the branch's
 * softmax (lse, o), then dgates, delta = dO·o and dq. Key side: one block per (batch, KV head,
 * key) walks, in ascending t, the queries that see the key (cmp: t ≥ i·d + l − 1; win:
 * [j, j+w); sel: the queries whose ranges hold it, found through a bitmap per selection block)
 * and sums dK and dV. Not fast: the on-device oracle and fallback of every backward role.
 * Invariant: no floating-point atomics; each output element has one owner and a fixed order.
 */
#include "bwd_common.cuh"

#include <math.h>

#define BT 128

/* Keys of branch BR seen by query t of group g: [k0, k0 + nkeys) or the ranges rg (nr). */
template <int BR>
__device__ __forceinline__ int64_t bwd_key_pos(const int32_t *rg, int nr, int64_t k0, int64_t k) {
    if constexpr (BR != NSA_BRANCH_SEL) return k0 + k;
    (void)k0;
    for (int q = 0; q < nr; q++) {
        int64_t len = rg[2 * q + 1] - rg[2 * q];
        if (k < len) return rg[2 * q] + k;
        k -= len;
    }
    return -1;
}

template <typename T>
__device__ __forceinline__ double bwd_gate(const nsa_cu_bwd &W, int64_t b, int64_t t, int h,
                                           int br) {
    if (W.force_branch >= 0) return W.force_branch == br ? 1.0 : 0.0;
    return (double)nsa_cu_ld<T>(W.F.gates, b, t, h, br);
}

/* Grid: x = B·T·Hq, one block per (row r, head h); 128 threads. Pass 1 is the reference
 * forward of the branch (online softmax in double); pass 2 walks the keys again in chunks of
 * 128 (one per thread: p, ds) and thread e sums ds·k_e over the chunk in key order. Shared
 * memory (dynamic): q, dq (Dk doubles), dout, o (Dv doubles), ds and positions of one chunk:
 * (2·Dk + 2·Dv + 2·128) · 8 bytes. */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(BT) bwd_query_kernel(nsa_cu_bwd W) {
    const nsa_cu_params &P = W.F;
    extern __shared__ double sm[];
    double *qs = sm, *dq = qs + P.Dk, *dy = dq + P.Dk, *acc = dy + P.Dv, *sp = acc + P.Dv;
    int64_t *pos = (int64_t *)(sp + BT);
    const int tid = threadIdx.x;
    const int64_t r = blockIdx.x / P.Hq;
    const int h = (int)(blockIdx.x % P.Hq), g = h / P.G;
    const int64_t b = r / P.T, t = r % P.T;
    const nsa_cu_view kv = BR == NSA_BRANCH_CMP ? P.kc : BR == NSA_BRANCH_SEL ? P.ks : P.kw;
    const nsa_cu_view vv = BR == NSA_BRANCH_CMP ? P.vc : BR == NSA_BRANCH_SEL ? P.vs : P.vw;
    const int32_t *rg = P.ranges + (r * P.Hkv + g) * (int64_t)P.n * 2;
    int64_t k0 = 0, nkeys = 0;
    int nr = 0;
    if (BR == NSA_BRANCH_CMP) {
        nkeys = nsa_cu_num_cmp(P, t + 1);
    } else if (BR == NSA_BRANCH_WIN) {
        if (P.w > 0) {
            k0 = nsa_ix_win_lo(P.w, t);
            nkeys = t + 1 - k0;
        }
    } else {
        /* ranges are packed first (unused slots [0, 0) trail): bwd_ranges_kernel packs them */
        while (nr < P.n && rg[2 * nr + 1] > rg[2 * nr]) {
            nkeys += rg[2 * nr + 1] - rg[2 * nr];
            nr++;
        }
    }
    const double gate = bwd_gate<T>(W, b, t, h, BR);
    for (int e = tid; e < P.Dk; e += BT) {
        qs[e] = (double)nsa_cu_ld<T>(P.q, b, t, h, e);
        dq[e] = 0.0;
    }
    for (int e = tid; e < P.Dv; e += BT) {
        dy[e] = (double)nsa_cu_ld<T>(W.dout, b, t, h, e);
        acc[e] = 0.0;
    }
    __syncthreads();

    double m = -INFINITY, lsum = 0.0;
    for (int64_t c0 = 0; c0 < nkeys; c0 += BT) {
        const int64_t k = c0 + tid;
        double s = -INFINITY;
        int64_t p = -1;
        if (k < nkeys) {
            p = bwd_key_pos<BR>(rg, nr, k0, k);
            double dot = 0.0;
            for (int e = 0; e < P.Dk; e++) dot += qs[e] * (double)nsa_cu_ld<TK>(kv, b, p, g, e);
            s = dot * W.scale;
        }
        sp[tid] = s;
        pos[tid] = p;
        __syncthreads();
        double mc = -INFINITY;
        for (int j = 0; j < BT; j++) mc = sp[j] > mc ? sp[j] : mc;
        const double mn = mc > m ? mc : m;
        const double alpha = m == -INFINITY ? 0.0 : exp(m - mn);
        __syncthreads();
        sp[tid] = k < nkeys ? exp(s - mn) : 0.0;
        __syncthreads();
        double cs = 0.0;
        for (int j = 0; j < BT; j++) cs += sp[j];
        lsum = lsum * alpha + cs;
        m = mn;
        for (int e = tid; e < P.Dv; e += BT) {
            double a = acc[e] * alpha;
            for (int j = 0; j < BT && c0 + j < nkeys; j++)
                a += sp[j] * (double)nsa_cu_ld<TK>(vv, b, pos[j], g, e);
            acc[e] = a;
        }
        __syncthreads();
    }
    const double lse = nkeys ? m + log(lsum) : -INFINITY;
    for (int e = tid; e < P.Dv; e += BT) acc[e] = nkeys ? acc[e] / lsum : 0.0;
    __syncthreads();
    double dg = 0.0;
    for (int e = 0; e < P.Dv; e++) dg += dy[e] * acc[e];
    const double delta = gate * dg;
    const int64_t hr = r * P.Hq + h;
    if (tid == 0) {
        W.lse[(int64_t)BR * P.B * P.T * P.Hq + hr] = lse;
        W.delta[(int64_t)BR * P.B * P.T * P.Hq + hr] = delta;
        if (W.acc[NSA_GG]) W.acc[NSA_GG][hr * 3 + BR] = dg;
    }
    if (!W.acc[NSA_GQ] || nkeys == 0) return;

    for (int64_t c0 = 0; c0 < nkeys; c0 += BT) {
        const int64_t k = c0 + tid;
        double ds = 0.0;
        int64_t p = -1;
        if (k < nkeys) {
            p = bwd_key_pos<BR>(rg, nr, k0, k);
            double dot = 0.0, dp = 0.0;
            for (int e = 0; e < P.Dk; e++) dot += qs[e] * (double)nsa_cu_ld<TK>(kv, b, p, g, e);
            for (int e = 0; e < P.Dv; e++) dp += gate * dy[e] * (double)nsa_cu_ld<TK>(vv, b, p, g, e);
            const double pj = exp(dot * W.scale - lse);
            ds = pj * (dp - delta) * W.scale;
        }
        sp[tid] = ds;
        pos[tid] = p;
        __syncthreads();
        for (int e = tid; e < P.Dk; e += BT) {
            double a = dq[e];
            for (int j = 0; j < BT && c0 + j < nkeys; j++)
                a += sp[j] * (double)nsa_cu_ld<TK>(kv, b, pos[j], g, e);
            dq[e] = a;
        }
        __syncthreads();
    }
    double *out = W.acc[NSA_GQ] + hr * P.Dk;
    for (int e = tid; e < P.Dk; e += BT) out[e] += dq[e]; /* branches run in order cmp, sel, win */
}

/* Whether query t of group g (batch b) sees key j of branch BR. */
template <int BR>
__device__ __forceinline__ bool bwd_sees(const nsa_cu_bwd &W, int64_t b, int g, int64_t j,
                                         int64_t t) {
    const nsa_cu_params &P = W.F;
    if (BR != NSA_BRANCH_SEL) return true; /* cmp and win: the walked t range is exact */
    const int64_t jb = j / P.lp;
    const uint32_t word = W.selbits[((b * P.Hkv + g) * P.nsel_max + jb) * W.tw + t / 32];
    if (!((word >> (t % 32)) & 1u)) return false;
    const int32_t *rg = P.ranges + ((b * P.T + t) * P.Hkv + g) * (int64_t)P.n * 2;
    for (int q = 0; q < P.n; q++)
        if (j >= rg[2 * q] && j < rg[2 * q + 1]) return true;
    return false;
}

/* Grid: x = B·Hkv·nk (nk = Tc for cmp, T otherwise), one block per (b, g, key j); 128 threads.
 * Queries are walked in ascending t in windows of 128 candidates: the visible ones are compacted
 * (warp ballots, order kept), then their (t, head) pairs are processed 128 at a time — thread k
 * computes p and ds of pair k, then thread e sums ds·q_e into dK and p·g·dout_e into dV over the
 * pairs in order. Shared memory (dynamic): k_j, dK (Dk doubles), v_j, dV (Dv doubles),
 * coefficients (2·128 doubles), pair t/head and the window's query list (3·128 ints), warp
 * counts: (2·Dk + 2·Dv + 256) · 8 + 3·128·4 + 64 bytes. */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(BT) bwd_key_kernel(nsa_cu_bwd W, int nk) {
    const nsa_cu_params &P = W.F;
    extern __shared__ double sm[];
    double *kj = sm, *dk = kj + P.Dk, *vj = dk + P.Dk, *dv = vj + P.Dv, *ck = dv + P.Dv,
           *cv = ck + BT;
    int *pt = (int *)(cv + BT), *ph = pt + BT, *ql = ph + BT, *wc = ql + BT;
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;
    const int64_t j = blockIdx.x % nk, bg = blockIdx.x / nk;
    const int g = (int)(bg % P.Hkv);
    const int64_t b = bg / P.Hkv;
    const nsa_cu_view kv = BR == NSA_BRANCH_CMP ? P.kc : BR == NSA_BRANCH_SEL ? P.ks : P.kw;
    const nsa_cu_view vv = BR == NSA_BRANCH_CMP ? P.vc : BR == NSA_BRANCH_SEL ? P.vs : P.vw;
    const int64_t RH = (int64_t)P.B * P.T * P.Hq;
    const double *lse = W.lse + (int64_t)BR * RH, *delta = W.delta + (int64_t)BR * RH;
    for (int e = tid; e < P.Dk; e += BT) {
        kj[e] = (double)nsa_cu_ld<TK>(kv, b, j, g, e);
        dk[e] = 0.0;
    }
    for (int e = tid; e < P.Dv; e += BT) {
        vj[e] = (double)nsa_cu_ld<TK>(vv, b, j, g, e);
        dv[e] = 0.0;
    }
    const int64_t t_lo = BR == NSA_BRANCH_CMP ? nsa_ix_cmp_first_query(P.l, P.d, j) : j;
    int64_t t_hi = P.T;
    if (BR == NSA_BRANCH_WIN) t_hi = P.w == 0 ? j : nsa_ix_win_qend(P.w, j, P.T);
    __syncthreads();

    for (int64_t tb = t_lo; tb < t_hi; tb += BT) {
        const int64_t t = tb + tid;
        const bool vis = t < t_hi && bwd_sees<BR>(W, b, g, j, t);
        const unsigned mask = __ballot_sync(0xffffffffu, vis);
        if (lane == 0) wc[wid] = __popc(mask);
        __syncthreads();
        int base = 0, nq = 0;
        for (int w = 0; w < BT / 32; w++) {
            if (w < wid) base += wc[w];
            nq += wc[w];
        }
        if (vis) ql[base + __popc(mask & ((1u << lane) - 1u))] = (int)t;
        __syncthreads();
        const int npair = nq * P.G;
        for (int k0 = 0; k0 < npair; k0 += BT) {
            const int k = k0 + tid;
            double c_k = 0.0, c_v = 0.0;
            int tq = 0, h = 0;
            if (k < npair) {
                tq = ql[k / P.G];
                h = g * P.G + k % P.G;
                const int64_t hr = (b * P.T + tq) * P.Hq + h;
                const double gate = bwd_gate<T>(W, b, tq, h, BR);
                double dot = 0.0, dp = 0.0;
                for (int e = 0; e < P.Dk; e++) dot += (double)nsa_cu_ld<T>(P.q, b, tq, h, e) * kj[e];
                for (int e = 0; e < P.Dv; e++)
                    dp += gate * (double)nsa_cu_ld<T>(W.dout, b, tq, h, e) * vj[e];
                const double p = exp(dot * W.scale - lse[hr]);
                c_k = p * (dp - delta[hr]) * W.scale;
                c_v = p * gate;
            }
            ck[tid] = c_k;
            cv[tid] = c_v;
            pt[tid] = tq;
            ph[tid] = h;
            __syncthreads();
            const int np = npair - k0 < BT ? npair - k0 : BT;
            for (int e = tid; e < P.Dk; e += BT) {
                double a = dk[e];
                for (int x = 0; x < np; x++) a += ck[x] * (double)nsa_cu_ld<T>(P.q, b, pt[x], ph[x], e);
                dk[e] = a;
            }
            for (int e = tid; e < P.Dv; e += BT) {
                double a = dv[e];
                for (int x = 0; x < np; x++)
                    a += cv[x] * (double)nsa_cu_ld<T>(W.dout, b, pt[x], ph[x], e);
                dv[e] = a;
            }
            __syncthreads();
        }
    }
    const int64_t X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
    double *oK = BR == NSA_BRANCH_CMP ? W.dkc : W.acc[BR == NSA_BRANCH_SEL ? NSA_GKS : NSA_GKW];
    double *oV = BR == NSA_BRANCH_CMP ? W.dvc : W.acc[BR == NSA_BRANCH_SEL ? NSA_GVS : NSA_GVW];
    const int64_t row = (b * X + j) * P.Hkv + g;
    if (oK)
        for (int e = tid; e < P.Dk; e += BT) oK[row * P.Dk + e] = dk[e];
    if (oV)
        for (int e = tid; e < P.Dv; e += BT) oV[row * P.Dv + e] = dv[e];
}

/* Grid: one thread per (b, t, g) of B·T·Hkv, 128 per block. Shared memory: none. */
__global__ void bwd_ranges_kernel(nsa_cu_bwd W, nsa_cu_view R, int64_t pair_stride) {
    const nsa_cu_params &P = W.F;
    const int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (it >= (int64_t)P.B * P.T * P.Hkv) return;
    const int g = (int)(it % P.Hkv);
    const int64_t bt = it / P.Hkv, b = bt / P.T, t = bt % P.T;
    const int32_t *src = (const int32_t *)R.p + b * R.sb + t * R.st + g * R.sh;
    int32_t *dst = P.ranges + it * P.n * 2;
    int32_t *blk = P.blocks ? P.blocks + it * P.n : NULL;
    int64_t prev = 0;
    int bad = 0, k = 0, nb = 0, last = -1;
    for (int q = 0; q < P.n; q++) {
        const int32_t r0 = src[q * R.sd], r1 = src[q * R.sd + pair_stride];
        if (r0 == r1) continue;
        bad |= r0 < prev || r1 < r0 || r1 > t + 1;
        prev = r1;
        dst[2 * k] = r0; /* packed: the kernels read ranges until the first empty slot */
        dst[2 * k + 1] = r1;
        k++;
        if (!blk || bad) continue;
        for (int j = r0 / P.lp; j <= (r1 - 1) / P.lp; j++) { /* ascending: distinct blocks */
            if (j == last) continue;
            if (nb < P.n) blk[nb] = j;
            nb++;
            last = j;
        }
    }
    for (; k < P.n; k++) dst[2 * k] = dst[2 * k + 1] = 0;
    if (blk)
        for (int q = nb; q < P.n; q++) blk[q] = -1;
    if (bad) W.flag[0] = 0;
    if (nb > P.n) W.flag[1] = 1;
}

/* Grid: one thread per (b, t, g), 128 per block; integer atomicOr into the bitmap (the result
 * does not depend on their order). Shared memory: none. */
__global__ void bwd_selbits_kernel(nsa_cu_bwd W) {
    const nsa_cu_params &P = W.F;
    const int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (it >= (int64_t)P.B * P.T * P.Hkv) return;
    const int g = (int)(it % P.Hkv);
    const int64_t bt = it / P.Hkv, b = bt / P.T, t = bt % P.T;
    const int32_t *rg = P.ranges + it * P.n * 2;
    for (int q = 0; q < P.n; q++) {
        if (rg[2 * q + 1] <= rg[2 * q]) continue;
        for (int64_t jb = rg[2 * q] / P.lp; jb <= (rg[2 * q + 1] - 1) / P.lp; jb++)
            atomicOr(&W.selbits[((b * P.Hkv + g) * P.nsel_max + jb) * W.tw + t / 32],
                     1u << (t % 32));
    }
}

/* Grid: one thread per raw element (b, p, hk, e), 256 per block: the sum over the compressed
 * blocks i holding p, ascending, then / l (src/ref/ref_backward.c). Shared memory: none. */
__global__ void bwd_phi_kernel(nsa_cu_bwd W, const double *dc, double *raw, int D) {
    const nsa_cu_params &P = W.F;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)P.B * P.T * P.Hkv * D) return;
    const int e = (int)(idx % D);
    int64_t rest = idx / D;
    const int hk = (int)(rest % P.Hkv);
    rest /= P.Hkv;
    const int64_t p = rest % P.T, b = rest / P.T;
    int64_t i_lo = p < P.l ? 0 : (p - P.l) / P.d + 1, i_hi = p / P.d;
    if (i_hi > P.Tc - 1) i_hi = P.Tc - 1;
    double s = 0.0;
    for (int64_t i = i_lo; i <= i_hi; i++) s += dc[((b * P.Tc + i) * P.Hkv + hk) * D + e];
    raw[idx] = s / (double)P.l;
}

typedef struct {
    const double *a[NSA_NGRAD];
    int n;
} bwd_accs;

/* Grid: one thread per element of the gradient's logical shape, 256 per block. CONTIG: the
 * gradient is row-major contiguous, so element idx is at idx (no 64-bit index arithmetic). */
template <typename T, bool CONTIG>
__global__ void bwd_store_kernel(nsa_cu_view o, int64_t n1, int64_t n2, int64_t n3, int64_t total,
                                 bwd_accs A) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    double v = A.a[0][idx];
    for (int m = 1; m < A.n; m++) v += A.a[m][idx];
    if (CONTIG) {
        ((T *)o.p)[idx] = nsa_cu_to<T>((float)v);
        return;
    }
    const int64_t a3 = idx % n3, a2 = idx / n3 % n2, a1 = idx / (n3 * n2) % n1,
                  a0 = idx / (n3 * n2 * n1);
    ((T *)o.p)[a0 * o.sb + a1 * o.st + a2 * o.sh + a3 * o.sd] = nsa_cu_to<T>((float)v);
}

template <typename T>
static void store_launch(cudaStream_t st, unsigned gr, const nsa_tensor *t, nsa_cu_view o,
                         int64_t total, const bwd_accs &A) {
    const int contig = t->stride[3] == 1 && t->stride[2] == t->shape[3] &&
                       t->stride[1] == t->shape[2] * t->shape[3] &&
                       t->stride[0] == t->shape[1] * t->shape[2] * t->shape[3];
    if (contig)
        bwd_store_kernel<T, true><<<gr, 256, 0, st>>>(o, t->shape[1], t->shape[2], t->shape[3], total, A);
    else
        bwd_store_kernel<T, false><<<gr, 256, 0, st>>>(o, t->shape[1], t->shape[2], t->shape[3], total, A);
}

/* ---- launchers ---- */

nsa_status nsa_cu_bwd_load_ranges(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                  const nsa_tensor *R) {
    const int64_t n = (int64_t)W->F.B * W->F.T * W->F.Hkv;
    nsa_cu_view v = {R->data, R->stride[0], R->stride[1], R->stride[2], R->stride[3]};
    bwd_ranges_kernel<<<nsa_cu_blocks(n, BT), BT, 0, st>>>(*W, v, R->stride[4]);
    NSA_CU_LAUNCHED(ctx, "backward: sel_ranges");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_selbits(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W) {
    const size_t bytes = (size_t)W->F.B * W->F.Hkv * W->F.nsel_max * W->tw * 4;
    NSA_TRY(nsa_cu_check(ctx, cudaMemsetAsync(W->selbits, 0, bytes, st), "backward: bitmap"));
    const int64_t n = (int64_t)W->F.B * W->F.T * W->F.Hkv;
    bwd_selbits_kernel<<<nsa_cu_blocks(n, BT), BT, 0, st>>>(*W);
    NSA_CU_LAUNCHED(ctx, "backward: bitmap");
    return NSA_OK;
}

template <typename K> static void smem_attr(K kernel, size_t smem) {
    if (smem > 48 * 1024)
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

template <typename T, typename TK, int BR>
static void launch_branch(nsa_cu_stream st, const nsa_cu_bwd *W, int keys) {
    const nsa_cu_params &P = W->F;
    if (!keys) {
        const size_t smem = (size_t)(2 * P.Dk + 2 * P.Dv + 2 * BT) * 8;
        smem_attr(bwd_query_kernel<T, TK, BR>, smem);
        bwd_query_kernel<T, TK, BR><<<(unsigned)((int64_t)P.B * P.T * P.Hq), BT, smem, st>>>(*W);
        return;
    }
    const int nk = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
    const size_t smem = (size_t)(2 * P.Dk + 2 * P.Dv + 2 * BT) * 8 + 3 * BT * 4 + 64;
    smem_attr(bwd_key_kernel<T, TK, BR>, smem);
    bwd_key_kernel<T, TK, BR><<<(unsigned)((int64_t)P.B * P.Hkv * nk), BT, smem, st>>>(*W, nk);
}

template <typename T>
static void launch_t(nsa_cu_stream st, nsa_dtype kc_dt, const nsa_cu_bwd *W, nsa_branch br,
                     int keys) {
    if (br == NSA_BRANCH_CMP) {
        if (kc_dt == NSA_DTYPE_F32) launch_branch<T, float, NSA_BRANCH_CMP>(st, W, keys);
        else launch_branch<T, T, NSA_BRANCH_CMP>(st, W, keys);
    } else if (br == NSA_BRANCH_SEL) {
        launch_branch<T, T, NSA_BRANCH_SEL>(st, W, keys);
    } else {
        launch_branch<T, T, NSA_BRANCH_WIN>(st, W, keys);
    }
}

static void launch(nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt, const nsa_cu_bwd *W,
                   nsa_branch br, int keys) {
    switch (dt) {
    case NSA_DTYPE_BF16: launch_t<__nv_bfloat16>(st, kc_dt, W, br, keys); break;
    case NSA_DTYPE_F16: launch_t<__half>(st, kc_dt, W, br, keys); break;
    default: launch_t<float>(st, kc_dt, W, br, keys); break;
    }
}

nsa_status nsa_cu_bwd_query(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                            const nsa_cu_bwd *W, nsa_branch br) {
    if ((int64_t)W->F.B * W->F.T * W->F.Hq == 0) return NSA_OK;
    launch(st, dt, kc_dt, W, br, 0);
    NSA_CU_LAUNCHED(ctx, "backward: query side");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_keys(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                           const nsa_cu_bwd *W, nsa_branch br) {
    const int nk = br == NSA_BRANCH_CMP ? W->F.Tc : W->F.T;
    if ((int64_t)W->F.B * W->F.Hkv * nk == 0) return NSA_OK;
    launch(st, dt, kc_dt, W, br, 1);
    NSA_CU_LAUNCHED(ctx, "backward: key side");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_phi(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                          const double *dc, double *raw, int D) {
    const int64_t n = (int64_t)W->F.B * W->F.T * W->F.Hkv * D;
    if (n == 0) return NSA_OK;
    bwd_phi_kernel<<<nsa_cu_blocks(n, 256), 256, 0, st>>>(*W, dc, raw, D);
    NSA_CU_LAUNCHED(ctx, "backward: phi");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_store(nsa_context *ctx, nsa_cu_stream st, const nsa_tensor *t,
                            double *const *accs, int nacc) {
    const int64_t total = nsa_tensor_numel(t);
    if (total == 0) return NSA_OK;
    bwd_accs A;
    A.n = nacc;
    for (int m = 0; m < nacc; m++) A.a[m] = accs[m];
    nsa_cu_view o = {t->data, t->stride[0], t->stride[1], t->stride[2], t->stride[3]};
    const unsigned gr = nsa_cu_blocks(total, 256);
    switch (t->dtype) {
    case NSA_DTYPE_BF16: store_launch<__nv_bfloat16>(st, gr, t, o, total, A); break;
    case NSA_DTYPE_F16: store_launch<__half>(st, gr, t, o, total, A); break;
    default: store_launch<float>(st, gr, t, o, total, A); break;
    }
    NSA_CU_LAUNCHED(ctx, "backward: store");
    return NSA_OK;
}
