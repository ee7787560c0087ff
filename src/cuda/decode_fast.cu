// SPDX-License-Identifier: Apache-2.0
/* decode_fast.cu — the split-key decode step (flash-decoding) as ONE cooperative kernel per step:
 * a persistent grid (2 blocks per SM) walks a list of items in order, each block taking items
 * blockIdx.x, + grid, ...:
 *   phase 1  per (row, KV head): the push (history, raw ring); cmp splits (the one holding the
 *            step's compressed token computes it first); win splits (the one holding the new
 *            token writes it into the ring first)
 *   phase 3  per (row, KV head): sel splits over the selected ranges
 *   phase 4  per (row, KV head, group of hm heads): merge of the cmp, sel and win partials, the
 *            gated sum; for the row's first item the read counters and the new length
 * A split is c1 (c3 for sel) chunks of 64 keys, double-buffered (cp.async), online softmax; it
 * writes one partial (m, l, o) per head. The selection (lse of the cmp partials, group-summed
 * probabilities, Eq. 9 block scores, top-n with the tie rule, ranges) runs in the block that
 * finishes the last phase-1 item of its (row, KV head), found by a counter; later items wait on
 * per-(row, KV head) flags holding the step's epoch. No host wait, no grid barrier.
 * Arithmetic: f32 (scores from dtype-rounded compressed keys), so the selection may differ from
 * the reference's at near-ties; NSA_FORCE_PARITY=1 runs decode_step.cu's double step instead.
 * Invariant: an item waits only on items listed before it, and every block finishes its earlier
 * items first, so with all blocks resident (cooperative launch) the step cannot deadlock; a
 * block reads only positions ≤ t of its row and writes only its own partials and slots.
 */
#include "decode_fast_sync.cuh"
#include "mma.cuh"

#include <math.h>

#define FT FD_T
#define FCH 64 /* keys per chunk */

/* Row of key k of branch br in its buffer (decode_step.cu's layout; times Dk or Dv: the
 * element offset): cmp slot k, window-ring slot of position k0 + k, sel the k-th position of
 * the ranges. The branch is a runtime value: one copy of the split code for the three keeps
 * the kernel's instructions few (they come from HBM after each step's L2 traffic). */
__device__ __forceinline__ int64_t fd_pos(const nsa_cu_dec &D, int br, int64_t b, int g,
                                          int64_t k, int64_t k0, const int32_t *rng) {
    if (br == NSA_BRANCH_CMP) return (b * D.ncmp + k) * D.Hkv + g;
    if (br == NSA_BRANCH_WIN) return (b * D.nwin + (k0 + k) % D.nwin) * D.Hkv + g;
    int64_t p = 0;
    for (int q = 0; q < D.n; q++) {
        const int64_t len = rng[2 * q + 1] - rng[2 * q];
        if (k < len) { p = rng[2 * q] + k; break; }
        k -= len;
    }
    return (b * D.max_len + p) * D.Hkv + g;
}

/* ---- one chunk on CUDA cores (any dtype and G) ---- */

/* Loads nrows rows of D elements (row r at base + off[r]) into shared floats dst (row stride
 * ds): 16-byte loads, 8 per thread in flight, when rows are 16-byte multiples; else scalar. */
template <typename T>
__device__ void fd_load_rows(const T *base, const int64_t *off, int nrows, int D, float *dst,
                             int ds) {
    constexpr int V = 16 / sizeof(T);
    if (D % V != 0) {
        for (int i = threadIdx.x; i < nrows * D; i += FT)
            dst[(i / D) * ds + i % D] = nsa_cu_f<T>(base[off[i / D] + i % D]);
        return;
    }
    const int per = D / V, total = nrows * per;
    for (int i0 = threadIdx.x; i0 < total; i0 += 8 * FT) {
        uint4 r[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int i = i0 + u * FT;
            if (i < total) r[u] = *(const uint4 *)(base + off[i / per] + (i % per) * V);
        }
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int i = i0 + u * FT;
            if (i >= total) continue;
            const T *x = (const T *)&r[u];
            float *o = dst + (i / per) * ds + (i % per) * V;
#pragma unroll
            for (int v = 0; v < V; v++) o[v] = nsa_cu_f<T>(x[v]);
        }
    }
}

/* One chunk of keys [c0, c0 + nk) of branch br for the group's G heads: scores, chunk max and
 * sum, unnormalised o, written as a partial (m, l, o[Dv]) per head at part (shared memory).
 * Shared memory: row offsets (2·FCH + G int64), then q (G·Dk), K (FCH·(Dk+1)), V (FCH·(Dv+1)),
 * s (G·FCH) floats. */
template <typename T>
__device__ void fd_chunk(const nsa_cu_dec &D, int br, float *sm, int64_t b, int g, int64_t c0, int nk,
                         int64_t k0, const int32_t *rng, const void *Kb, const void *Vb,
                         float *part, float *scores) {
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32, G = D.G;
    const int Dk = D.Dk, Dv = D.Dv;
    int64_t *ko = (int64_t *)sm, *vo = ko + FCH, *qo = vo + FCH;
    float *q = (float *)(qo + G), *K = q + G * Dk, *V = K + FCH * (Dk + 1), *s = V + FCH * (Dv + 1);
    constexpr int VE = 16 / sizeof(T);
    const bool qvec = D.q.sd == 1 && D.q.sb % VE == 0 && D.q.sh % VE == 0 &&
                      (uintptr_t)D.q.p % 16 == 0;
    for (int kk = tid; kk < nk; kk += FT) {
        const int64_t r = fd_pos(D, br, b, g, c0 + kk, k0, rng);
        ko[kk] = r * Dk;
        vo[kk] = r * Dv;
    }
    if (qvec)
        for (int u = tid; u < G; u += FT) qo[u] = b * D.q.sb + (int64_t)(g * G + u) * D.q.sh;
    __syncthreads();
    if (qvec) fd_load_rows<T>((const T *)D.q.p, qo, G, Dk, q, Dk);
    else
        for (int i = tid; i < G * Dk; i += FT) q[i] = nsa_cu_ld<T>(D.q, b, 0, g * G + i / Dk, i % Dk);
    fd_load_rows<T>((const T *)Kb, ko, nk, Dk, K, Dk + 1);
    fd_load_rows<T>((const T *)Vb, vo, nk, Dv, V, Dv + 1);
    __syncthreads();
    const float scale = (float)D.scale;
    for (int i = tid; i < G * FCH; i += FT) { /* a warp: 32 keys of one head */
        const int u = i / FCH, kk = i % FCH;
        float a = -INFINITY;
        if (kk < nk) {
            a = 0.f;
            for (int e = 0; e < Dk; e++) a += q[u * Dk + e] * K[kk * (Dk + 1) + e];
            a *= scale;
            if (scores) scores[(int64_t)u * D.st.ncmp4 + c0 + kk] = a;
        }
        s[i] = a;
    }
    __syncthreads();
    for (int u = wid; u < G; u += FT / 32) {
        float mx = -INFINITY;
        for (int k = lane; k < nk; k += 32) mx = fmaxf(mx, s[u * FCH + k]);
        mx = fd_wmax(mx);
        float sum = 0.f;
        for (int k = lane; k < FCH; k += 32) {
            const float p = k < nk ? __expf(s[u * FCH + k] - mx) : 0.f;
            s[u * FCH + k] = p;
            sum += p;
        }
        sum = fd_wsum(sum);
        if (lane == 0) {
            part[u * (Dv + 2)] = mx;
            part[u * (Dv + 2) + 1] = sum;
        }
    }
    __syncthreads();
    for (int i = tid; i < G * Dv; i += FT) {
        const int u = i / Dv, e = i % Dv;
        float a = 0.f;
        for (int k = 0; k < nk; k++) a += s[u * FCH + k] * V[k * (Dv + 1) + e];
        part[u * (Dv + 2) + 2 + e] = a;
    }
    __syncthreads();
}

static __host__ __device__ size_t fd_chunk_smem(const nsa_cu_dec *D) {
    const size_t b = (size_t)(D->G * D->Dk + FCH * (D->Dk + 1) + FCH * (D->Dv + 1) + D->G * FCH) * 4 +
                     (size_t)(2 * FCH + D->G) * 8;
    return (b + 15) / 16 * 16;
}

/* A split of nkeys keys from c0 on CUDA cores: fd_chunk per chunk into a shared partial, merged
 * into a shared running one (both after fd_chunk's area, G·(Dv+2) floats each, then 2·G
 * factors), stored at part (global). */
template <typename T>
__device__ void fd_split_core(const nsa_cu_dec &D, int br, unsigned char *sm, int64_t b, int g,
                              int64_t c0, int64_t nkeys, int64_t k0, const int32_t *rng,
                              const void *Kb, const void *Vb, float *part, float *scores) {
    const int G = D.G, P = D.Dv + 2;
    float *ap = (float *)(sm + fd_chunk_smem(&D)), *tp = ap + G * P, *fa = tp + G * P;
    for (int i = threadIdx.x; i < G * P; i += FT) ap[i] = i % P == 0 ? -INFINITY : 0.f;
    for (int64_t c = 0; c < nkeys; c += FCH) {
        const int nk = nkeys - c < FCH ? (int)(nkeys - c) : FCH;
        fd_chunk<T>(D, br, (float *)sm, b, g, c0 + c, nk, k0, rng, Kb, Vb, tp, scores);
        for (int u = threadIdx.x; u < G; u += FT) {
            const float ma = ap[u * P], mt = tp[u * P], M = fmaxf(ma, mt);
            fa[u] = ma == -INFINITY ? 0.f : __expf(ma - M);
            fa[G + u] = mt == -INFINITY ? 0.f : __expf(mt - M);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < G * P; i += FT) {
            const int u = i / P;
            ap[i] = i % P == 0 ? fmaxf(ap[i], tp[i]) : ap[i] * fa[u] + tp[i] * fa[G + u];
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < G * P; i += FT) part[i] = ap[i];
}

static size_t fd_core_smem(const nsa_cu_dec *D) {
    return fd_chunk_smem(D) + (size_t)(2 * D->G * (D->Dv + 2) + 2 * D->G) * 4;
}

/* ---- a split on tensor cores (bf16/f16, G = 16) ---- */

/* Issues the cp.async copies of the K/V rows of keys [c0, c0 + nk) (rows ≥ nk zero-filled) into
 * one stage and commits them (with whatever was issued before: Q for the first chunk). */
template <typename T>
__device__ __forceinline__ void fd_issue(const nsa_cu_dec &D, int br, T *Ks, T *Vs, int64_t b,
                                         int g, int64_t c0, int nk, int64_t k0,
                                         const int32_t *rng, const T *Kb, const T *Vb) {
    /* FT / FCH = 4 threads per key row (one fd_pos each), pieces x0, x0 + 4, ...: ck of K,
       then those of V */
    const int ck = D.Dk / 8, cr = ck + D.Dv / 8, sk = D.Dk + 8, sv = D.Dv + 8;
    const int r = threadIdx.x / (FT / FCH), x0 = threadIdx.x % (FT / FCH);
    const bool ok = r < nk;
    const int64_t pos = ok ? fd_pos(D, br, b, g, c0 + r, k0, rng) : 0;
    for (int x = x0; x < cr; x += FT / FCH) {
        if (x < ck) cp_async16(Ks + r * sk + x * 8, Kb + (ok ? pos * D.Dk + x * 8 : 0), ok);
        else cp_async16(Vs + r * sv + (x - ck) * 8, Vb + (ok ? pos * D.Dv + (x - ck) * 8 : 0), ok);
    }
    cp_commit();
}

/* The G = 16 heads are the 16 rows of mma m16n8k16. 8 warps: S = Q·Kᵀ with warp w owning keys
 * 8w..8w+7; online softmax per head in f32 (m, l, rescale α in shared memory), P rounded to the
 * dtype; O += P·V in registers, warp w owning columns 16w + 128j (Dv ≤ 256). Chunk c+1 is
 * copied while chunk c is computed. Shared memory (bytes): Q 16·(Dk+8)·2, K 2·FCH·(Dk+8)·2,
 * V 2·FCH·(Dv+8)·2, P 16·(FCH+8)·2, S 16·FCH·4, m/l/α 48·4. */
template <typename T>
__device__ void fd_split_mma(const nsa_cu_dec &D, int br, unsigned char *sm, int64_t b, int g,
                             int64_t c0, int64_t nkeys, int64_t k0, const int32_t *rng,
                             const T *Kb, const T *Vb, float *part, float *scores) {
    const int tid = threadIdx.x, lane = tid % 32, w = tid / 32, Dk = D.Dk, Dv = D.Dv;
    const int sk = Dk + 8, sv = Dv + 8, sp = FCH + 8, ck = Dk / 8;
    T *Qs = (T *)sm, *Ks = Qs + 16 * sk, *Vs = Ks + 2 * FCH * sk, *Ps = Vs + 2 * FCH * sv;
    float *S = (float *)(Ps + 16 * sp), *mrow = S + 16 * FCH, *lrow = mrow + 16, *arow = lrow + 16;
    const int nch = (int)((nkeys + FCH - 1) / FCH);
    for (int i = tid; i < 16 * ck; i += FT)
        cp_async16(Qs + (i / ck) * sk + (i % ck) * 8,
                   (const T *)D.q.p + b * D.q.sb + (int64_t)(g * 16 + i / ck) * D.q.sh + (i % ck) * 8,
                   true);
    fd_issue<T>(D, br, Ks, Vs, b, g, c0, nkeys < FCH ? (int)nkeys : FCH, k0, rng, Kb, Vb);
    if (tid < 16) {
        mrow[tid] = -INFINITY;
        lrow[tid] = 0.f;
    }
    float o[2][2][4];
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) o[j][0][r] = o[j][1][r] = 0.f;
    const float scale = (float)D.scale;
    for (int c = 0; c < nch; c++) {
        const int st = c & 1;
        const int64_t cc = c0 + (int64_t)c * FCH;
        const int nk = nkeys - (int64_t)c * FCH < FCH ? (int)(nkeys - (int64_t)c * FCH) : FCH;
        if (c + 1 < nch) {
            const int64_t rem = nkeys - (int64_t)(c + 1) * FCH;
            fd_issue<T>(D, br, Ks + (st ^ 1) * FCH * sk, Vs + (st ^ 1) * FCH * sv, b, g, cc + FCH,
                            rem < FCH ? (int)rem : FCH, k0, rng, Kb, Vb);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        const T *Kc = Ks + st * FCH * sk, *Vc = Vs + st * FCH * sv;
        float a[4] = {0.f, 0.f, 0.f, 0.f};
        for (int kk = 0; kk < Dk; kk += 32) {
            uint32_t a0[4], a1[4], bb[4];
            ldsm_x4(a0, Qs + (lane % 16) * sk + kk + (lane / 16) * 8);
            ldsm_x4(a1, Qs + (lane % 16) * sk + kk + 16 + (lane / 16) * 8);
            ldsm_x4(bb, Kc + (8 * w + lane % 8) * sk + kk + (lane / 8) * 8);
            mma16816<T>(a, a0, bb[0], bb[1]);
            mma16816<T>(a, a1, bb[2], bb[3]);
        }
        for (int r = 0; r < 4; r++) {
            const int h = lane / 4 + (r / 2) * 8, kk = 8 * w + (lane % 4) * 2 + r % 2;
            const float x = kk < nk ? a[r] * scale : -INFINITY;
            S[h * FCH + kk] = x;
            if (scores && kk < nk) scores[(int64_t)h * D.st.ncmp4 + cc + kk] = x;
        }
        __syncthreads();
        for (int h = w; h < 16; h += FT / 32) {
            const float x0 = S[h * FCH + lane], x1 = S[h * FCH + lane + 32];
            const float mo = mrow[h], mn = fmaxf(mo, fd_wmax(fmaxf(x0, x1)));
            const float p0 = lane < nk ? __expf(x0 - mn) : 0.f;
            const float p1 = lane + 32 < nk ? __expf(x1 - mn) : 0.f;
            Ps[h * sp + lane] = nsa_cu_to<T>(p0);
            Ps[h * sp + lane + 32] = nsa_cu_to<T>(p1);
            const float sum = fd_wsum(p0 + p1);
            __syncwarp(); /* every lane has read mrow[h] */
            if (lane == 0) {
                const float al = mo == -INFINITY ? 0.f : __expf(mo - mn);
                arow[h] = al;
                lrow[h] = lrow[h] * al + sum;
                mrow[h] = mn;
            }
        }
        __syncthreads();
        const float al0 = arow[lane / 4], al1 = arow[lane / 4 + 8];
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const int n0 = 16 * w + 128 * j;
            if (n0 >= Dv) break;
#pragma unroll
            for (int r = 0; r < 4; r++) {
                o[j][0][r] *= r < 2 ? al0 : al1;
                o[j][1][r] *= r < 2 ? al0 : al1;
            }
            for (int kk = 0; kk < FCH; kk += 16) {
                uint32_t pa[4], bv[4];
                ldsm_x4(pa, Ps + (lane % 16) * sp + kk + (lane / 16) * 8);
                ldsm_x4_t(bv, Vc + (kk + lane % 8 + ((lane / 8) % 2) * 8) * sv + n0 + (lane / 16) * 8);
                mma16816<T>(o[j][0], pa, bv[0], bv[1]);
                mma16816<T>(o[j][1], pa, bv[2], bv[3]);
            }
        }
        __syncthreads(); /* the stage, P and S are rewritten next */
    }
    if (tid < 16) {
        part[tid * (Dv + 2)] = mrow[tid];
        part[tid * (Dv + 2) + 1] = lrow[tid];
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int n0 = 16 * w + 128 * j;
        if (n0 >= Dv) break;
        for (int r = 0; r < 4; r++) {
            const int h = lane / 4 + (r / 2) * 8, e = n0 + (lane % 4) * 2 + r % 2;
            part[h * (Dv + 2) + 2 + e] = o[j][0][r];
            part[h * (Dv + 2) + 2 + e + 8] = o[j][1][r];
        }
    }
}

static size_t fd_mma_smem(const nsa_cu_dec *D) {
    return (size_t)(16 + 2 * FCH) * (D->Dk + 8) * 2 + (size_t)2 * FCH * (D->Dv + 8) * 2 +
           16 * (FCH + 8) * 2 + 16 * FCH * 4 + 48 * 4;
}

/* The tensor-core split applies (see fd_split_mma). */
static int fd_mma_ok(const nsa_cu_dec *D, nsa_dtype dt) {
    const nsa_cu_view &q = D->q;
    return (dt == NSA_DTYPE_BF16 || dt == NSA_DTYPE_F16) && D->G == 16 && D->Dk % 32 == 0 &&
           D->Dv % 16 == 0 && D->Dv <= 256 && q.sd == 1 && q.sb % 8 == 0 && q.sh % 8 == 0 &&
           (uintptr_t)q.p % 16 == 0;
}

/* One split through the tensor-core or the CUDA-core path; nkeys ≤ 0 stores an empty partial
 * (m = −inf, l = 0: merged with weight 0, its o never read). */
template <typename T, bool MMA>
__device__ void fd_split(const nsa_cu_dec &D, int br, unsigned char *sm, int64_t b, int g, int64_t c0,
                         int64_t nkeys, int64_t k0, const int32_t *rng, const void *Kb,
                         const void *Vb, float *part, float *scores) {
    if (nkeys <= 0) {
        for (int u = threadIdx.x; u < D.G; u += FT) {
            part[u * (D.Dv + 2)] = -INFINITY;
            part[u * (D.Dv + 2) + 1] = 0.f;
        }
        return;
    }
    if constexpr (MMA)
        fd_split_mma<T>(D, br, sm, b, g, c0, nkeys, k0, rng, (const T *)Kb, (const T *)Vb, part,
                            scores);
    else
        fd_split_core<T>(D, br, sm, b, g, c0, nkeys, k0, rng, Kb, Vb, part, scores);
}

/* ---- the items ---- */

/* Push item of (b, g): the step's token into the sel history and the raw cmp ring (the window
 * ring is written by the win split that reads it, the compressed token by its cmp split). */
template <typename T>
__device__ void fd_push(const nsa_cu_dec &D, int64_t b, int g, int64_t t) {
    for (int kv = 0; kv < 2; kv++) {
        const int Dx = kv ? D.Dv : D.Dk;
        const nsa_cu_view &sel = kv ? D.vsel : D.ksel, &raw = kv ? D.vcmp : D.kcmp;
        T *hs = (T *)(kv ? D.vs : D.ks), *hr = (T *)(kv ? D.vr : D.kr);
        for (int e = threadIdx.x; e < Dx; e += FT) {
            hs[((b * D.max_len + t) * D.Hkv + g) * Dx + e] =
                ((const T *)sel.p)[b * sel.sb + g * sel.sh + e * sel.sd];
            hr[((b * D.nraw + t % D.nraw) * D.Hkv + g) * Dx + e] =
                ((const T *)raw.p)[b * raw.sb + g * raw.sh + e * raw.sd];
        }
    }
}

/* The new token into window-ring slot t % nwin, before the split that reads it loads. */
template <typename T>
__device__ void fd_push_win(const nsa_cu_dec &D, int64_t b, int g, int64_t t) {
    for (int kv = 0; kv < 2; kv++) {
        const int Dx = kv ? D.Dv : D.Dk;
        const nsa_cu_view &win = kv ? D.vwin : D.kwin;
        T *hw = (T *)(kv ? D.vw : D.kw);
        for (int e = threadIdx.x; e < Dx; e += FT)
            hw[((b * D.nwin + t % D.nwin) * D.Hkv + g) * Dx + e] =
                ((const T *)win.p)[b * win.sb + g * win.sh + e * win.sd];
    }
    __syncthreads();
}

/* Compressed token i (its last raw position is t), before the split that reads it loads: the
 * double mean of raw positions i·d .. i·d+l-1 in ascending order (the ring holds all but t,
 * which comes from the step's k_cmp/v_cmp), as nsa_ref_compress_block; or the caller's
 * kc_new/vc_new. Also rounded to the dtype copy the split reads. */
template <typename T>
__device__ void fd_emit(const nsa_cu_dec &D, int64_t b, int g, int64_t t, int64_t i) {
    for (int kv = 0; kv < 2; kv++) {
        const int Dx = kv ? D.Dv : D.Dk;
        const nsa_cu_view &raw = kv ? D.vcmp : D.kcmp;
        const T *hr = (const T *)(kv ? D.vr : D.kr);
        const int64_t o = ((b * D.ncmp + i) * D.Hkv + g) * Dx;
        for (int e = threadIdx.x; e < Dx; e += FT) {
            double v;
            if (D.cmp_external) {
                v = (double)nsa_cu_ld<T>(kv ? D.vcn : D.kcn, b, 0, g, e);
            } else {
                double sum = 0.0;
                for (int r0 = 0; r0 < D.l; r0 += 8) { /* 8 loads in flight, summed in order */
                    T x[8];
#pragma unroll
                    for (int q = 0; q < 8; q++) {
                        const int64_t p = i * D.d + r0 + q;
                        if (r0 + q < D.l)
                            x[q] = p == t ? ((const T *)raw.p)[b * raw.sb + g * raw.sh + e * raw.sd]
                                          : hr[((b * D.nraw + p % D.nraw) * D.Hkv + g) * Dx + e];
                    }
#pragma unroll
                    for (int q = 0; q < 8; q++)
                        if (r0 + q < D.l) sum += (double)nsa_cu_f<T>(x[q]);
                }
                v = sum / (double)D.l;
            }
            (kv ? D.vc : D.kc)[o + e] = v;
            ((T *)(kv ? D.st.vcT : D.st.kcT))[o + e] = nsa_cu_to<T>((float)v);
        }
    }
    __syncthreads();
}

/* One arrival at counter C of (b, g): win and sel splits and the selection; the last publishes
 * flag M (every partial of (b, g) written). */
__device__ __forceinline__ void fd_done_c(const nsa_cu_dec &D, int32_t *sy, int *last) {
    if (fd_arrive(sy + FD_CNT_C, D.pw + D.ps + 1, last)) fd_signal(sy + FD_FLAG_M, D.epoch);
}

/* Phase-1 item k of (b, g): k = 0 the push, 1..pc a cmp split, then the win splits. The last
 * arrival at counter A (push and cmp splits) runs the selection and publishes flag S. */
template <typename T, bool MMA>
__device__ void fd_item1(const nsa_cu_dec &D, unsigned char *sm, int *last, int64_t b, int g,
                         int k) {
    const int64_t bg = b * D.Hkv + g, t = D.st.len[b], S = t + 1, span = (int64_t)D.c1 * FCH;
    const int64_t sz = (int64_t)D.G * (D.Dv + 2);
    int32_t *sy = D.st.sync + bg * 4;
    if (k <= D.pc) {
        if (k == 0) {
            fd_push<T>(D, b, g, t);
        } else {
            const int64_t nc = S < D.l ? 0 : (S - D.l) / D.d + 1, c0 = (k - 1) * span;
            const int64_t nk = nc - c0 < span ? nc - c0 : span;
            if (nk > 0 && c0 + nk == nc && (S - D.l) % D.d == 0) fd_emit<T>(D, b, g, t, nc - 1);
            fd_split<T, MMA>(D, NSA_BRANCH_CMP, sm, b, g, c0, nk, 0, NULL, D.st.kcT, D.st.vcT,
                                             D.st.part + (bg * D.st.nsplit + k - 1) * sz,
                                             D.st.scf + (b * D.Hq + (int64_t)g * D.G) * D.st.ncmp4);
        }
        if (fd_arrive(sy + FD_CNT_A, 1 + D.pc, last)) {
            fd_select(D, (float *)sm, b, g, t);
            fd_signal(sy + FD_FLAG_S, D.epoch);
            fd_done_c(D, sy, last);
        }
    } else {
        const int s = k - 1 - D.pc;
        const int64_t lo = nsa_ix_win_lo(D.w, t), nw = D.w > 0 ? S - lo : 0;
        const int64_t c0 = s * span, nk = nw - c0 < span ? nw - c0 : span;
        if (nk > 0 && c0 + nk == nw) fd_push_win<T>(D, b, g, t);
        fd_split<T, MMA>(D, NSA_BRANCH_WIN, sm, b, g, c0, nk, lo, NULL, D.kw, D.vw,
                                         D.st.part2 + (bg * D.st.nsplit2 + D.st.nsel_split + s) * sz,
                                         NULL);
        fd_done_c(D, sy, last);
    }
}

/* Phase-3 item: sel split s of (b, g), after its selection (flag S). The ranges are copied to
 * shared memory at D.rng_off. */
template <typename T, bool MMA>
__device__ void fd_item3(const nsa_cu_dec &D, unsigned char *sm, int *last, int64_t b, int g,
                         int s) {
    const int64_t bg = b * D.Hkv + g, span = (int64_t)D.c3 * FCH;
    int32_t *sy = D.st.sync + bg * 4, *rs = (int32_t *)(sm + D.rng_off);
    fd_wait(sy + FD_FLAG_S, D.epoch);
    for (int i = threadIdx.x; i < 2 * D.n; i += FT) rs[i] = __ldcg(D.st.rng + bg * D.n * 2 + i);
    const int64_t keys = __ldcg(D.st.selr + bg), c0 = s * span;
    __syncthreads();
    fd_split<T, MMA>(D, NSA_BRANCH_SEL, sm, b, g, c0, keys - c0 < span ? keys - c0 : span, 0, rs,
                                     D.ks, D.vs,
                                     D.st.part2 + (bg * D.st.nsplit2 + s) * (int64_t)D.G * (D.Dv + 2),
                                     NULL);
    fd_done_c(D, sy, last);
}

/* Phase-4 item: heads q·hm .. of (b, g) after every partial of the group (flag M); item q = 0
 * of g = 0 waits for all groups of the row, then writes the row's sel reads (mean over KV
 * heads) and its new length — nothing of the step reads the length after that. */
template <typename T>
__device__ void fd_item4(const nsa_cu_dec &D, unsigned char *sm, int64_t b, int g, int q) {
    const bool row = g == 0 && q == 0;
    for (int x = row ? 0 : g; x < (row ? D.Hkv : g + 1); x++)
        fd_wait(D.st.sync + (b * D.Hkv + x) * 4 + FD_FLAG_M, D.epoch);
    const int u0 = q * D.hm;
    fd_merge<T>(D, (float *)sm, b, g, u0, D.G - u0 < D.hm ? D.G - u0 : D.hm);
    if (row && threadIdx.x == 0) {
        int64_t sum = 0;
        for (int x = 0; x < D.Hkv; x++) sum += __ldcg(D.st.selr + b * D.Hkv + x);
        D.st.reads[b * 4 + 1] = sum / D.Hkv;
        D.st.len[b] += 1;
    }
}

/* Grid: a persistent cooperative grid of FT threads per block; block x runs items x, x + grid,
 * ... of the list [phase 1: (1 + pc + pw)·B·Hkv][phase 3: ps·B·Hkv][phase 4: ⌈G/hm⌉·B·Hkv],
 * (row, KV head) fastest. Shared memory: the largest of a split (+ 2n ranges), the selection,
 * a merge. */
template <typename T, bool MMA>
__global__ void __launch_bounds__(FT, 2) fd_step_kernel(nsa_cu_dec D) {
    extern __shared__ __align__(16) unsigned char fsm[];
    __shared__ int last;
    const int64_t BH = (int64_t)D.B * D.Hkv, n1 = BH * (1 + D.pc + D.pw), n3 = n1 + BH * D.ps;
    const int64_t n = n3 + BH * ((D.G + D.hm - 1) / D.hm);
    for (int64_t it = blockIdx.x; it < n; it += gridDim.x) {
        const int64_t j = it < n1 ? it : it < n3 ? it - n1 : it - n3, bg = j % BH, b = bg / D.Hkv;
        const int g = (int)(bg % D.Hkv), k = (int)(j / BH);
        if (!D.all_active && !((D.active[b / 32] >> (b % 32)) & 1u)) continue;
        if (it < n1) fd_item1<T, MMA>(D, fsm, &last, b, g, k);
        else if (it < n3) fd_item3<T, MMA>(D, fsm, &last, b, g, k);
        else fd_item4<T>(D, fsm, b, g, k);
    }
}

/* Splits of the step: a phase with u chunks of work over a grid of cap blocks takes one round
 * when u ≤ 2·cap (chunks per split ⌈u/cap⌉: latency, small B), else about four rounds (fewer,
 * longer splits: fewer partials, more chunks in flight per block). */
static int fd_chunks_per_split(int64_t u, int cap) {
    const int64_t c = u <= 2 * (int64_t)cap ? (u + cap - 1) / cap : (u + 4 * (int64_t)cap - 1) / (4 * (int64_t)cap);
    return c < 1 ? 1 : (int)c;
}

static void fd_plan(nsa_cu_dec *D, int cap, int64_t S_max, size_t smem) {
    const int64_t nc = S_max < D->l ? 0 : (S_max - D->l) / D->d + 1;
    const int64_t nw = D->w <= 0 ? 0 : D->w < S_max ? D->w : S_max;
    const int64_t chc = (nc + FCH - 1) / FCH, chw = (nw + FCH - 1) / FCH, chs = D->st.nsel_split;
    const int64_t BH = (int64_t)D->B * D->Hkv;
    D->c1 = fd_chunks_per_split(BH * (chc + chw), cap);
    D->c3 = fd_chunks_per_split(BH * chs, cap);
    D->pc = (int)((chc + D->c1 - 1) / D->c1);
    D->pw = (int)((chw + D->c1 - 1) / D->c1);
    D->ps = (int)((chs + D->c3 - 1) / D->c3);
    /* merge items: enough per (row, KV head) to fill the grid once, at most one per head */
    const int64_t per = (cap + BH - 1) / BH;
    D->hm = per >= D->G ? 1 : (int)((D->G + per - 1) / per);
    while (D->hm > 1 && fd_merge_smem(D, D->hm) > smem) D->hm--;
}

template <typename T, bool MMA>
static nsa_status fd_launch_t(nsa_context *ctx, cudaStream_t st, nsa_cu_dec *D, nsa_cu_kv *kv,
                              int64_t S_max, size_t smem) {
    const void *fn = (const void *)fd_step_kernel<T, MMA>;
    static size_t attr; /* the opt-in set so far (a per-step call costs host time) */
    if (smem > attr) {
        NSA_TRY(nsa_cu_check(ctx, cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                        (int)smem), "decode step: shared memory"));
        attr = smem;
    }
    if (kv->occ_smem[MMA] != smem) { /* once per cache: blocks per SM */
        int nb = 0, dev = 0;
        NSA_TRY(nsa_cu_check(ctx, cudaGetDevice(&dev), "decode step: device"));
        NSA_TRY(nsa_cu_check(ctx, cudaDeviceGetAttribute(&kv->nsm, cudaDevAttrMultiProcessorCount, dev),
                             "decode step: SM count"));
        NSA_TRY(nsa_cu_check(ctx, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fn, FT, smem),
                             "decode step: occupancy"));
        if (nb < 1)
            return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg: the split-key decode step does not fit "
                            "one block per SM (%zu bytes of shared memory)", smem);
        kv->occ[MMA] = nb < 2 ? nb : 2; /* 2 per SM: each keeps two chunks in flight */
        kv->occ_smem[MMA] = smem;
    }
    const int cap = kv->occ[MMA] * kv->nsm;
    fd_plan(D, cap, S_max, smem);
    if (fd_merge_smem(D, 1) > smem)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg: too many splits for the split-key decode's "
                        "merge (%d, %d, %d)", D->pc, D->ps, D->pw);
    const int64_t BH = (int64_t)D->B * D->Hkv;
    const int64_t items = BH * (1 + D->pc + D->pw + D->ps + (D->G + D->hm - 1) / D->hm);
    const unsigned grid = (unsigned)(items < cap ? items : cap);
    void *args[] = {D};
    return nsa_cu_check(ctx, cudaLaunchCooperativeKernel(fn, grid, FT, args, smem, st),
                        "decode step (split-key)");
}

nsa_status nsa_cu_decode_fast(nsa_context *ctx, cudaStream_t st, nsa_dtype dt,
                              const nsa_cu_dec *D0, nsa_cu_kv *kv, int64_t S_max) {
    nsa_cu_dec D = *D0;
    const bool mma = fd_mma_ok(&D, dt);
    const size_t split = mma ? fd_mma_smem(&D) : fd_core_smem(&D);
    D.rng_off = (int)((split + 15) / 16 * 16);
    size_t smem = (size_t)D.rng_off + (size_t)D.n * 8;
    D.pg_smem = 1; /* the selection's pg in shared memory when that costs no occupancy */
    if (fd_select_smem(&D) > smem) D.pg_smem = 0;
    if (fd_select_smem(&D) > smem) smem = fd_select_smem(&D);
    if (smem > 220 * 1024)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg: too large for the split-key decode's "
                        "shared memory (%zu bytes)", smem);
    if (++kv->epoch == 0) kv->epoch = 1; /* flags start at 0 */
    D.epoch = kv->epoch;
    switch (dt) {
    case NSA_DTYPE_BF16:
        return mma ? fd_launch_t<__nv_bfloat16, true>(ctx, st, &D, kv, S_max, smem)
                   : fd_launch_t<__nv_bfloat16, false>(ctx, st, &D, kv, S_max, smem);
    case NSA_DTYPE_F16:
        return mma ? fd_launch_t<__half, true>(ctx, st, &D, kv, S_max, smem)
                   : fd_launch_t<__half, false>(ctx, st, &D, kv, S_max, smem);
    default: return fd_launch_t<float, false>(ctx, st, &D, kv, S_max, smem);
    }
}
