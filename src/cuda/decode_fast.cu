/* decode_fast.cu — the split-key decode step (flash-decoding) as ONE cooperative kernel per step:
 * a persistent grid (one block of 8 warps per SM) walks a list of items in order, block x
 * taking items x, x + grid, ...:
 *   phase 1  per (row, KV head): the push (history, raw ring); cmp splits (the one holding the
 *            step's compressed token computes it first); win splits (the one holding the new
 *            token writes it into the ring first)
 *   phase 3  per (row, KV head): sel splits over the selected ranges
 *   phase 4  per (row, KV head, group of hm heads): merge of the cmp, sel and win partials, the
 *            gated sum; for the row's first item the read counters and the new length
 * A split is c1 (c3 for sel) chunks of 64 keys (cp.async pipeline, online softmax; on tensor
 * cores each warp takes 8 keys of every chunk on its own); it writes one partial (m, l, o) per
 * head. The selection (lse of the cmp partials, group-summed
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
#define FNS 3  /* stages of a warp's copy pipeline (tensor-core split) */

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

/* ---- a split on tensor cores (bf16/f16, G = 16): the warps split the keys ---- */

template <typename T>
__device__ __forceinline__ void fd_mma1688(float c[4], uint32_t a0, uint32_t a1, uint32_t b0);
template <>
__device__ __forceinline__ void fd_mma1688<__nv_bfloat16>(float c[4], uint32_t a0, uint32_t a1,
                                                          uint32_t b0) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, "
                 "{%6}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0));
}
template <>
__device__ __forceinline__ void fd_mma1688<__half>(float c[4], uint32_t a0, uint32_t a1,
                                                   uint32_t b0) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, "
                 "{%6}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0));
}

/* Warp w copies the K/V rows of its keys 8w..8w+7 of the chunk [c0, c0 + nk) into one stage
 * (rows ≥ nk zero-filled; 4 lanes per row, one fd_pos each) and commits them with whatever the
 * thread issued before (Q for the first chunk). */
template <typename T>
__device__ __forceinline__ void fd_issue_warp(const nsa_cu_dec &D, int br, T *Ks, T *Vs,
                                              int64_t b, int g, int64_t c0, int nk, int64_t k0,
                                              const int32_t *rng, const T *Kb, const T *Vb) {
    const int lane = threadIdx.x % 32, r = 8 * (threadIdx.x / 32) + lane / 4;
    const int ck = D.Dk / 8, cr = ck + D.Dv / 8, sk = D.Dk + 8, sv = D.Dv + 8;
    const bool ok = r < nk;
    const int64_t pos = ok ? fd_pos(D, br, b, g, c0 + r, k0, rng) : 0;
    for (int x = lane % 4; x < cr; x += 4) {
        if (x < ck) cp_async16(Ks + r * sk + x * 8, Kb + (ok ? pos * D.Dk + x * 8 : 0), ok);
        else cp_async16(Vs + r * sv + (x - ck) * 8, Vb + (ok ? pos * D.Dv + (x - ck) * 8 : 0), ok);
    }
    cp_commit();
}

/* Warp w owns keys 8w..8w+7 of every chunk of 64: it copies their rows itself (FNS stages),
 * computes S = Q·Kᵀ for the 16 heads (mma m16n8k16, heads are the rows), keeps its own online
 * softmax (m, l of heads lane/4 and lane/4 + 8 in registers, the 4 lanes of a head reduce by
 * shuffles) and its own O (16 × Dv: P·V by mma m16n8k8, P straight from the S registers,
 * rounded to the dtype). The chunk loop has no block barrier; at the end the 8 warps' (m, l, O)
 * are merged through shared memory into the split's partial. The previous layout (softmax of
 * the block over S in shared memory, 4 barriers per chunk) issued ~1.5k instructions per warp
 * and chunk and took 289 µs for B=64, S=8k (ncu, H100, 2026-11-26). Shared memory (bytes):
 * Q 16·(Dk+8)·2, K FNS·FCH·(Dk+8)·2, V FNS·FCH·(Dv+8)·2, m/l 2·8·16·4; the merge reuses the
 * K/V stages for 8·16·Dv floats (Dv ≤ Dk + 16). O takes 64 registers a thread: one block of
 * 8 warps per SM (at 2 blocks the 128-register cap spilled 672 bytes a thread). */
template <typename T>
__device__ void fd_split_mma(const nsa_cu_dec &D, int br, unsigned char *sm, int64_t b, int g,
                             int64_t c0, int64_t nkeys, int64_t k0, const int32_t *rng,
                             const T *Kb, const T *Vb, float *part, float *scores) {
    const int tid = threadIdx.x, lane = tid % 32, w = tid / 32, Dk = D.Dk, Dv = D.Dv;
    const int sk = Dk + 8, sv = Dv + 8, ck = Dk / 8, nv = Dv / 8, qr = lane / 4, qc = 2 * (lane % 4);
    T *Qs = (T *)sm, *Ks = Qs + 16 * sk, *Vs = Ks + FNS * FCH * sk;
    float *mw = (float *)(Vs + FNS * FCH * sv), *lw = mw + 8 * 16;
    const int nch = (int)((nkeys + FCH - 1) / FCH);
    for (int i = tid; i < 16 * ck; i += FT)
        cp_async16(Qs + (i / ck) * sk + (i % ck) * 8,
                   (const T *)D.q.p + b * D.q.sb + (int64_t)(g * 16 + i / ck) * D.q.sh + (i % ck) * 8,
                   true);
    for (int c = 0; c < FNS - 1 && c < nch; c++) { /* the prologue: chunks 0 .. FNS-2 */
        const int64_t rem = nkeys - (int64_t)c * FCH;
        fd_issue_warp<T>(D, br, Ks + c * FCH * sk, Vs + c * FCH * sv, b, g, c0 + (int64_t)c * FCH,
                         rem < FCH ? (int)rem : FCH, k0, rng, Kb, Vb);
    }
    float o[16][4]; /* n-tile j: columns 8j..8j+7 (j < nv = Dv/8 ≤ 16) */
#pragma unroll
    for (int j = 0; j < 16; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f; /* heads qr, qr + 8 */
    const float scale = (float)D.scale;
    for (int c = 0; c < nch; c++) {
        const int st = c % FNS;
        const int64_t cc = c0 + (int64_t)c * FCH;
        const int nk = nkeys - (int64_t)c * FCH < FCH ? (int)(nkeys - (int64_t)c * FCH) : FCH;
        if (c + FNS - 1 < nch) { /* into the stage chunk c-1 used */
            const int64_t rem = nkeys - (int64_t)(c + FNS - 1) * FCH;
            const int sn = (c + FNS - 1) % FNS;
            fd_issue_warp<T>(D, br, Ks + sn * FCH * sk, Vs + sn * FCH * sv, b, g,
                             cc + (FNS - 1) * FCH, rem < FCH ? (int)rem : FCH, k0, rng, Kb, Vb);
        }
        /* chunk c's group is done when at most (groups issued after it) remain */
        if (c + 2 < nch) cp_wait<2>();
        else if (c + 1 < nch) cp_wait<1>();
        else cp_wait<0>();
        if (c == 0) __syncthreads(); /* Q, copied by every thread */
        else __syncwarp();
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
        /* a[0], a[1]: head qr, keys 8w + qc, +1; a[2], a[3]: head qr + 8 */
        float x[4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int kk = 8 * w + qc + r % 2;
            x[r] = kk < nk ? a[r] * scale : -INFINITY;
            if (scores && kk < nk) scores[(int64_t)(qr + (r / 2) * 8) * D.st.ncmp4 + cc + kk] = x[r];
        }
        float c0m = fmaxf(x[0], x[1]), c1m = fmaxf(x[2], x[3]);
        c0m = fmaxf(c0m, __shfl_xor_sync(0xffffffffu, c0m, 1));
        c1m = fmaxf(c1m, __shfl_xor_sync(0xffffffffu, c1m, 1));
        c0m = fmaxf(c0m, __shfl_xor_sync(0xffffffffu, c0m, 2));
        c1m = fmaxf(c1m, __shfl_xor_sync(0xffffffffu, c1m, 2));
        const float n0 = fmaxf(m0, c0m), n1 = fmaxf(m1, c1m);
        const float al0 = m0 == -INFINITY ? 0.f : __expf(m0 - n0);
        const float al1 = m1 == -INFINITY ? 0.f : __expf(m1 - n1);
        const float p0 = x[0] == -INFINITY ? 0.f : __expf(x[0] - n0);
        const float p1 = x[1] == -INFINITY ? 0.f : __expf(x[1] - n0);
        const float p2 = x[2] == -INFINITY ? 0.f : __expf(x[2] - n1);
        const float p3 = x[3] == -INFINITY ? 0.f : __expf(x[3] - n1);
        float s0 = p0 + p1, s1 = p2 + p3;
        s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
        s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
        s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
        l0 = l0 * al0 + s0;
        l1 = l1 * al1 + s1;
        m0 = n0;
        m1 = n1;
        const uint32_t pa0 = pack2<T>(p0, p1), pa1 = pack2<T>(p2, p3);
#pragma unroll
        for (int j0 = 0; j0 < 16; j0 += 4) {
            if (j0 >= nv) break;
            uint32_t bv[4];
            ldsm_x4_t(bv, Vc + (8 * w + lane % 8) * sv + 8 * j0 + (lane / 8) * 8);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                o[j0 + j][0] *= al0;
                o[j0 + j][1] *= al0;
                o[j0 + j][2] *= al1;
                o[j0 + j][3] *= al1;
                fd_mma1688<T>(o[j0 + j], pa0, pa1, bv[j]);
            }
        }
        __syncwarp(); /* this stage is copied into again at the next chunk */
    }
    __syncthreads(); /* every warp is done with the stages, which the merge reuses */
    if (lane % 4 == 0) {
        mw[w * 16 + qr] = m0;
        mw[w * 16 + qr + 8] = m1;
        lw[w * 16 + qr] = l0;
        lw[w * 16 + qr + 8] = l1;
    }
    __syncthreads();
    float M0 = -INFINITY, M1 = -INFINITY;
    for (int x = 0; x < 8; x++) {
        M0 = fmaxf(M0, mw[x * 16 + qr]);
        M1 = fmaxf(M1, mw[x * 16 + qr + 8]);
    }
    const float f0 = m0 == -INFINITY ? 0.f : __expf(m0 - M0), f1 = m1 == -INFINITY ? 0.f : __expf(m1 - M1);
    float *red = (float *)Ks; /* (8 warps, 16 heads, Dv) */
#pragma unroll
    for (int j = 0; j < 16; j++) {
        if (j >= nv) break;
#pragma unroll
        for (int r = 0; r < 4; r++)
            red[(w * 16 + qr + (r / 2) * 8) * Dv + 8 * j + qc + r % 2] = o[j][r] * (r < 2 ? f0 : f1);
    }
    __syncthreads();
    for (int i = tid; i < 16 * Dv; i += FT) {
        const int h = i / Dv, e = i % Dv;
        float acc = 0.f;
        for (int x = 0; x < 8; x++) acc += red[(x * 16 + h) * Dv + e];
        part[h * (Dv + 2) + 2 + e] = acc;
    }
    if (tid < 16) {
        float M = -INFINITY, L = 0.f;
        for (int x = 0; x < 8; x++) M = fmaxf(M, mw[x * 16 + tid]);
        for (int x = 0; x < 8; x++)
            if (mw[x * 16 + tid] > -INFINITY) L += lw[x * 16 + tid] * __expf(mw[x * 16 + tid] - M);
        part[tid * (Dv + 2)] = M;
        part[tid * (Dv + 2) + 1] = L;
    }
}

static size_t fd_mma_smem(const nsa_cu_dec *D) {
    return (size_t)(16 + FNS * FCH) * (D->Dk + 8) * 2 + (size_t)FNS * FCH * (D->Dv + 8) * 2 +
           2 * 8 * 16 * 4;
}

/* The tensor-core split applies (see fd_split_mma). */
static int fd_mma_ok(const nsa_cu_dec *D, nsa_dtype dt) {
    const nsa_cu_view &q = D->q;
    return (dt == NSA_DTYPE_BF16 || dt == NSA_DTYPE_F16) && D->G == 16 && D->Dk % 32 == 0 &&
           D->Dv % 32 == 0 && D->Dv <= 128 && D->Dv <= D->Dk + 16 && q.sd == 1 &&
           q.sb % 8 == 0 && q.sh % 8 == 0 && (uintptr_t)q.p % 16 == 0;
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
__device__ __noinline__ void fd_emit(const nsa_cu_dec &D, int64_t b, int g, int64_t t, int64_t i) {
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
        const int64_t lo = t - D.w + 1 > 0 ? t - D.w + 1 : 0, nw = D.w > 0 ? S - lo : 0;
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
__global__ void __launch_bounds__(FT, 1) fd_step_kernel(const __grid_constant__ nsa_cu_dec D) {
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
 * when u ≤ 4·cap (chunks per split ⌈u/cap⌉: latency, small B; a block's warps keep FNS-1
 * chunks in flight), else about four rounds (fewer, longer splits: fewer partials). */
static int fd_chunks_per_split(int64_t u, int cap) {
    const int64_t c = u <= 4 * (int64_t)cap ? (u + cap - 1) / cap : (u + 4 * (int64_t)cap - 1) / (4 * (int64_t)cap);
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
        kv->occ[MMA] = nb < 2 ? nb : 2; /* at most 2 per SM (1 with the launch bound of 1) */
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
