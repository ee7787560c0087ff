/* decode_fast.cu — the split-key decode step (flash-decoding): the keys of every branch are cut
 * into chunks of 64 and each (row, KV head, chunk) is one block, so a step of B rows runs on
 * B·Hkv·(chunks) blocks instead of B·Hkv. Kernels, all on the context's stream, no host wait:
 *   push     the new token (decode_step.cu's push, also the dtype copy of a compressed token)
 *   cmp      partial softmax of the G heads over a chunk of compressed tokens (dtype copy),
 *            raw scores kept for the selection
 *   select   lse of the cmp partials, group-summed probabilities, Eq. 9 block scores, top-n
 *            with the tie rule, ranges
 *   selwin   partial softmax over a chunk of the selected ranges or of the window
 *   final    per head: merge of the cmp, sel and win partials, the gated sum; then lengths
 *            and counters
 * Arithmetic: f32 dot products and softmax (scores from dtype-rounded compressed keys), so the
 * selection may differ from the reference's at near-ties; NSA_FORCE_PARITY=1 runs the double
 * one-block kernel of decode_step.cu instead.
 * Invariant: a block reads only positions ≤ t of its row and writes only its own partials.
 */
#include "decode_common.cuh"
#include "mma.cuh"

#include <math.h>

#define FT 256
#define FCH 64 /* keys per chunk */

/* Offsets (elements) of key k's row in the branch's buffer (decode_step.cu's layout). */
template <int BR>
__device__ __forceinline__ int64_t fd_row(const nsa_cu_dec &D, int64_t b, int g, int64_t k,
                                          int64_t k0, const int32_t *rng, int Dx) {
    if (BR == NSA_BRANCH_CMP) return ((b * D.ncmp + k) * D.Hkv + g) * Dx;
    if (BR == NSA_BRANCH_WIN) return ((b * D.nwin + (k0 + k) % D.nwin) * D.Hkv + g) * Dx;
    int64_t p = 0;
    for (int q = 0; q < D.n; q++) {
        const int64_t len = rng[2 * q + 1] - rng[2 * q];
        if (k < len) { p = rng[2 * q] + k; break; }
        k -= len;
    }
    return ((b * D.max_len + p) * D.Hkv + g) * Dx;
}

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

template <typename T>
__device__ __forceinline__ float fd_gate(const nsa_cu_dec &D, int64_t b, int h, int br) {
    if (D.force_branch >= 0) return D.force_branch == br ? 1.f : 0.f;
    return nsa_cu_ld<T>(D.gates, b, 0, h, br);
}

/* One chunk of keys [c0, c0 + nk) of branch BR for the group's G heads: scores, chunk max and
 * sum, unnormalised o; written as a partial (m, l, o[Dv]) per head at part. Shared memory:
 * row offsets (2·FCH + G int64), then q (G·Dk), K (FCH·(Dk+1)), V (FCH·(Dv+1)), s (G·FCH)
 * floats. */
template <typename T, int BR>
__device__ void fd_chunk(const nsa_cu_dec &D, float *sm, int64_t b, int g, int64_t c0, int nk,
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
        ko[kk] = fd_row<BR>(D, b, g, c0 + kk, k0, rng, Dk);
        vo[kk] = fd_row<BR>(D, b, g, c0 + kk, k0, rng, Dv);
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
            if (scores) scores[(int64_t)u * D.ncmp + c0 + kk] = a;
        }
        s[i] = a;
    }
    __syncthreads();
    for (int u = wid; u < G; u += FT / 32) {
        float mx = -INFINITY;
        for (int k = lane; k < nk; k += 32) mx = fmaxf(mx, s[u * FCH + k]);
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float sum = 0.f;
        for (int k = lane; k < FCH; k += 32) {
            const float p = k < nk ? __expf(s[u * FCH + k] - mx) : 0.f;
            s[u * FCH + k] = p;
            sum += p;
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
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
}

static size_t fd_chunk_smem(const nsa_cu_dec *D) {
    return (size_t)(D->G * D->Dk + FCH * (D->Dk + 1) + FCH * (D->Dv + 1) + D->G * FCH) * 4 +
           (size_t)(2 * FCH + D->G) * 8 + 8;
}


/* fd_chunk on tensor cores (bf16/f16, G = 16, Dk % 32 = 0, Dv % 16 = 0, q 16-byte aligned):
 * the G heads are the 16 rows of mma m16n8k16. 8 warps: scores S = Q·Kᵀ, warp w owning keys
 * 8w..8w+7; softmax per head in f32, P rounded to the dtype; O = P·V, warp w owning columns
 * 16w + 128j. Tiles come in by cp.async. Shared memory (bytes): offsets (2·FCH + 16)·8, Q
 * 16·(Dk+8)·2, K FCH·(Dk+8)·2, V FCH·(Dv+8)·2, P 16·(FCH+8)·2, S 16·FCH·4. */
template <typename T, int BR>
__device__ void fd_chunk_mma(const nsa_cu_dec &D, unsigned char *sm, int64_t b, int g, int64_t c0,
                             int nk, int64_t k0, const int32_t *rng, const T *Kb, const T *Vb,
                             float *part, float *scores) {
    const int tid = threadIdx.x, lane = tid % 32, w = tid / 32, Dk = D.Dk, Dv = D.Dv;
    const int sk = Dk + 8, sv = Dv + 8, sp = FCH + 8;
    int64_t *ko = (int64_t *)sm, *vo = ko + FCH, *qo = vo + FCH;
    T *Qs = (T *)(qo + 16), *Ks = Qs + 16 * sk, *Vs = Ks + FCH * sk, *Ps = Vs + FCH * sv;
    float *S = (float *)(Ps + 16 * sp);
    for (int kk = tid; kk < FCH; kk += FT) {
        ko[kk] = kk < nk ? fd_row<BR>(D, b, g, c0 + kk, k0, rng, Dk) : 0;
        vo[kk] = kk < nk ? fd_row<BR>(D, b, g, c0 + kk, k0, rng, Dv) : 0;
    }
    if (tid < 16) qo[tid] = b * D.q.sb + (int64_t)(g * 16 + tid) * D.q.sh;
    __syncthreads();
    const int ck = Dk / 8, cv = Dv / 8;
    for (int i = tid; i < 16 * ck; i += FT)
        cp_async16(Qs + (i / ck) * sk + (i % ck) * 8, (const T *)D.q.p + qo[i / ck] + (i % ck) * 8, true);
    for (int i = tid; i < FCH * ck; i += FT)
        cp_async16(Ks + (i / ck) * sk + (i % ck) * 8, Kb + ko[i / ck] + (i % ck) * 8, i / ck < nk);
    for (int i = tid; i < FCH * cv; i += FT)
        cp_async16(Vs + (i / cv) * sv + (i % cv) * 8, Vb + vo[i / cv] + (i % cv) * 8, i / cv < nk);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    float c[4] = {0.f, 0.f, 0.f, 0.f};
    for (int kk = 0; kk < Dk; kk += 32) {
        uint32_t a0[4], a1[4], bb[4];
        ldsm_x4(a0, Qs + (lane % 16) * sk + kk + (lane / 16) * 8);
        ldsm_x4(a1, Qs + (lane % 16) * sk + kk + 16 + (lane / 16) * 8);
        ldsm_x4(bb, Ks + (8 * w + lane % 8) * sk + kk + (lane / 8) * 8);
        mma16816<T>(c, a0, bb[0], bb[1]);
        mma16816<T>(c, a1, bb[2], bb[3]);
    }
    const float scale = (float)D.scale;
    for (int r = 0; r < 4; r++) {
        const int h = lane / 4 + (r / 2) * 8, kk = 8 * w + (lane % 4) * 2 + r % 2;
        const float x = kk < nk ? c[r] * scale : -INFINITY;
        S[h * FCH + kk] = x;
        if (scores && kk < nk) scores[(int64_t)h * D.ncmp + c0 + kk] = x;
    }
    __syncthreads();
    for (int h = w; h < 16; h += FT / 32) {
        const float x0 = S[h * FCH + lane], x1 = S[h * FCH + lane + 32];
        float mx = fmaxf(x0, x1);
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float p0 = lane < nk ? __expf(x0 - mx) : 0.f, p1 = lane + 32 < nk ? __expf(x1 - mx) : 0.f;
        Ps[h * sp + lane] = nsa_cu_to<T>(p0);
        Ps[h * sp + lane + 32] = nsa_cu_to<T>(p1);
        float sum = p0 + p1;
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) {
            part[h * (Dv + 2)] = mx;
            part[h * (Dv + 2) + 1] = sum;
        }
    }
    __syncthreads();
    for (int n0 = 16 * w; n0 < Dv; n0 += 16 * (FT / 32)) {
        float o0[4] = {0.f, 0.f, 0.f, 0.f}, o1[4] = {0.f, 0.f, 0.f, 0.f};
        for (int kk = 0; kk < FCH; kk += 16) {
            uint32_t a[4], bv[4];
            ldsm_x4(a, Ps + (lane % 16) * sp + kk + (lane / 16) * 8);
            ldsm_x4_t(bv, Vs + (kk + lane % 8 + ((lane / 8) % 2) * 8) * sv + n0 + (lane / 16) * 8);
            mma16816<T>(o0, a, bv[0], bv[1]);
            mma16816<T>(o1, a, bv[2], bv[3]);
        }
        for (int r = 0; r < 4; r++) {
            const int h = lane / 4 + (r / 2) * 8, e = n0 + (lane % 4) * 2 + r % 2;
            part[h * (Dv + 2) + 2 + e] = o0[r];
            part[h * (Dv + 2) + 2 + e + 8] = o1[r];
        }
    }
}

static size_t fd_mma_smem(const nsa_cu_dec *D) {
    return (size_t)(2 * FCH + 16) * 8 + (size_t)(16 + FCH) * (D->Dk + 8) * 2 +
           (size_t)FCH * (D->Dv + 8) * 2 + 16 * (FCH + 8) * 2 + 16 * FCH * 4;
}

/* The tensor-core chunk applies (see fd_chunk_mma). */
static int fd_mma_ok(const nsa_cu_dec *D, nsa_dtype dt) {
    const nsa_cu_view &q = D->q;
    return (dt == NSA_DTYPE_BF16 || dt == NSA_DTYPE_F16) && D->G == 16 && D->Dk % 32 == 0 &&
           D->Dv % 16 == 0 && q.sd == 1 && q.sb % 8 == 0 && q.sh % 8 == 0 &&
           (uintptr_t)q.p % 16 == 0 && fd_mma_smem(D) <= 200 * 1024;
}

/* One chunk through the tensor-core or the CUDA-core path. */
template <typename T, int BR, bool MMA>
__device__ __forceinline__ void fd_any(const nsa_cu_dec &D, float *sm, int64_t b, int g,
                                       int64_t c0, int nk, int64_t k0, const int32_t *rng,
                                       const void *Kb, const void *Vb, float *part, float *scores) {
    if constexpr (MMA)
        fd_chunk_mma<T, BR>(D, (unsigned char *)sm, b, g, c0, nk, k0, rng, (const T *)Kb,
                            (const T *)Vb, part, scores);
    else
        fd_chunk<T, BR>(D, sm, b, g, c0, nk, k0, rng, Kb, Vb, part, scores);
}

/* Grid: (B·Hkv, cmp chunks). */
template <typename T, bool MMA>
__global__ void __launch_bounds__(FT) fd_cmp_kernel(nsa_cu_dec D) {
    extern __shared__ float fsm[];
    const int64_t b = blockIdx.x / D.Hkv;
    const int g = (int)(blockIdx.x % D.Hkv);
    if (!D.all_active && !((D.active[b / 32] >> (b % 32)) & 1u)) return;
    const int64_t S = D.st.len[b] + 1, nc = S < D.l ? 0 : (S - D.l) / D.d + 1;
    const int64_t c0 = (int64_t)blockIdx.y * FCH;
    if (c0 >= nc) return;
    const int nk = nc - c0 < FCH ? (int)(nc - c0) : FCH;
    float *part = D.st.part + ((int64_t)blockIdx.x * D.st.nsplit + blockIdx.y) * D.G * (D.Dv + 2);
    fd_any<T, NSA_BRANCH_CMP, MMA>(D, fsm, b, g, c0, nk, 0, NULL, D.st.kcT, D.st.vcT, part,
                                D.st.scf + (b * D.Hq + (int64_t)g * D.G) * D.ncmp);
}

/* Merge weights of splits [0, ns) of the partials at part (one split = G·(Dv+2) floats) for
 * every head u: wgt[x·G + u] = exp(m_x − ML)/L (0 when the head saw no key) and lse[u]. The
 * headers are read in parallel into wgt and tmp (ns·G floats each); ml holds M and L (2·G).
 * Block-wide; ends with a barrier. */
__device__ void fd_weights(const float *part, int ns, int G, int Dv, float *wgt, float *tmp,
                           float *ml, float *lse) {
    for (int i = threadIdx.x; i < ns * G; i += FT) {
        wgt[i] = part[(int64_t)i * (Dv + 2)];
        tmp[i] = part[(int64_t)i * (Dv + 2) + 1];
    }
    __syncthreads();
    for (int u = threadIdx.x; u < G; u += FT) {
        float M = -INFINITY, L = 0.f;
        for (int x = 0; x < ns; x++) M = fmaxf(M, wgt[x * G + u]);
        for (int x = 0; x < ns && M > -INFINITY; x++) L += tmp[x * G + u] * __expf(wgt[x * G + u] - M);
        ml[u] = M;
        ml[G + u] = L;
        lse[u] = L > 0.f ? M + __logf(L) : -INFINITY;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < ns * G; i += FT) {
        const int u = i % G;
        wgt[i] = ml[G + u] > 0.f ? __expf(wgt[i] - ml[u]) / ml[G + u] : 0.f;
    }
    __syncthreads();
}

__device__ __forceinline__ int fd_overlap(const nsa_cu_dec &D, int64_t i, int64_t j) {
    int64_t a0 = i * D.d, a1 = a0 + D.l, b0 = j * D.lp, b1 = b0 + D.lp;
    int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? (int)((hi - lo) / D.d) : 0;
}

/* Grid: B·Hkv blocks of FT threads. Shared memory: lse, M/L (3·G), merge weights and headers
 * (2·nsplit·G), block scores (nsel_cap) floats, blocks (n) ints. */
template <typename T>
__global__ void __launch_bounds__(FT) fd_select_kernel(nsa_cu_dec D) {
    extern __shared__ float fsm[];
    const int64_t b = blockIdx.x / D.Hkv;
    const int g = (int)(blockIdx.x % D.Hkv), tid = threadIdx.x, lane = tid % 32, G = D.G;
    if (!D.all_active && !((D.active[b / 32] >> (b % 32)) & 1u)) return;
    float *lse = fsm, *ml = lse + G, *wgt = ml + 2 * G, *tmp = wgt + D.st.nsplit * G;
    float *sc = tmp + D.st.nsplit * G;
    int32_t *blk = (int32_t *)(sc + D.nsel_cap);
    const int64_t t = D.st.len[b], S = t + 1, nc = S < D.l ? 0 : (S - D.l) / D.d + 1;
    const int ns = (int)((nc + FCH - 1) / FCH);
    const float *part = D.st.part + (int64_t)blockIdx.x * D.st.nsplit * G * (D.Dv + 2);
    fd_weights(part, ns, G, D.Dv, wgt, tmp, ml, lse); /* lse per head (o is merged in final) */
    double *pg = D.st.pg + (int64_t)blockIdx.x * D.ncmp;
    const float *scr = D.st.scf + (b * D.Hq + (int64_t)g * G) * D.ncmp;
    for (int64_t i = tid; i < nc; i += FT) {
        double sum = 0.0;
        for (int u = 0; u < G; u++) sum += (double)__expf(scr[(int64_t)u * D.ncmp + i] - lse[u]);
        pg[i] = sum;
    }
    __syncthreads();
    const int64_t cur = t / D.lp, ncomplete = S / D.lp;
    for (int64_t j = tid; j <= cur; j += FT) { /* every thread: the loads overlap */
        int64_t i_lo = j * D.lp < D.l ? 0 : (j * D.lp - D.l) / D.d + 1;
        int64_t i_hi = ((j + 1) * D.lp - 1) / D.d;
        if (i_hi > nc - 1) i_hi = nc - 1;
        double sum = 0.0;
        for (int64_t i = i_lo; i <= i_hi; i++) sum += pg[i] * (double)fd_overlap(D, i, j);
        sc[j] = (float)sum;
    }
    __syncthreads();
    if (tid >= 32) return;
    __syncwarp();
    int nf = 0;
    if (lane == 0) {
        for (int64_t j = 0; j < D.n_init && j <= cur; j++) blk[nf++] = (int32_t)j;
        for (int64_t k = 0; k < D.n_local && cur - k >= 0; k++) {
            int dup = 0;
            for (int f = 0; f < nf; f++) dup |= blk[f] == cur - k;
            if (!dup) blk[nf++] = (int32_t)(cur - k);
        }
        for (int f = 0; f < nf; f++) sc[blk[f]] = -1.0f;
    }
    nf = __shfl_sync(0xffffffffu, nf, 0);
    __syncwarp();
    int nfc = 0;
    for (int f = 0; f < nf; f++) nfc += blk[f] < ncomplete;
    const int64_t ncand = ncomplete - nfc;
    int k = (int64_t)(D.n - nf) < ncand ? D.n - nf : (int)ncand;
    for (int a = 0; a < k; a++) {
        float bs = -1.0f;
        int bj = -1;
        for (int64_t j = lane; j < ncomplete; j += 32)
            if (sc[j] > bs) { bs = sc[j]; bj = (int)j; }
        for (int o = 16; o > 0; o >>= 1) {
            const float os = __shfl_xor_sync(0xffffffffu, bs, o);
            const int oj = __shfl_xor_sync(0xffffffffu, bj, o);
            if (os > bs || (os == bs && oj >= 0 && (bj < 0 || oj < bj))) { bs = os; bj = oj; }
        }
        if (bj < 0) { k = a; break; }
        if (lane == 0) {
            blk[nf + a] = bj;
            sc[bj] = -1.0f;
        }
        __syncwarp();
    }
    if (lane != 0) return;
    const int nsel = nf + k;
    for (int a = 1; a < nsel; a++) {
        const int32_t v = blk[a];
        int c = a - 1;
        while (c >= 0 && blk[c] > v) { blk[c + 1] = blk[c]; c--; }
        blk[c + 1] = v;
    }
    int32_t *rng = D.st.rng + (int64_t)blockIdx.x * D.n * 2;
    int nr = 0, keys = 0;
    for (int a = 0; a < nsel;) {
        int c = a;
        while (c + 1 < nsel && blk[c + 1] == blk[c] + 1) c++;
        const int64_t e0 = ((int64_t)blk[c] + 1) * D.lp;
        rng[2 * nr] = blk[a] * D.lp;
        rng[2 * nr + 1] = (int32_t)(e0 > S ? S : e0);
        keys += rng[2 * nr + 1] - rng[2 * nr];
        nr++;
        a = c + 1;
    }
    for (int q = nr; q < D.n; q++) rng[2 * q] = rng[2 * q + 1] = 0;
    D.st.selr[blockIdx.x] = keys;
}

/* Grid: (B·Hkv, sel chunks + win chunks): chunk y < nsel_split of the selected keys, else of
 * the window. Partials after the cmp ones of the same (b, g). */
template <typename T, bool MMA>
__global__ void __launch_bounds__(FT) fd_selwin_kernel(nsa_cu_dec D) {
    extern __shared__ float fsm[];
    const int64_t b = blockIdx.x / D.Hkv;
    const int g = (int)(blockIdx.x % D.Hkv);
    if (!D.all_active && !((D.active[b / 32] >> (b % 32)) & 1u)) return;
    const int64_t t = D.st.len[b], S = t + 1;
    float *part = D.st.part2 + ((int64_t)blockIdx.x * D.st.nsplit2 + blockIdx.y) * D.G * (D.Dv + 2);
    if ((int)blockIdx.y < D.st.nsel_split) {
        const int keys = D.st.selr[blockIdx.x];
        const int64_t c0 = (int64_t)blockIdx.y * FCH;
        if (c0 >= keys) return;
        fd_any<T, NSA_BRANCH_SEL, MMA>(D, fsm, b, g, c0, keys - c0 < FCH ? (int)(keys - c0) : FCH, 0,
                                    D.st.rng + (int64_t)blockIdx.x * D.n * 2, D.ks, D.vs, part,
                                    NULL);
    } else {
        const int64_t lo = t - D.w + 1 > 0 ? t - D.w + 1 : 0, nw = D.w > 0 ? S - lo : 0;
        const int64_t c0 = (int64_t)(blockIdx.y - D.st.nsel_split) * FCH;
        if (c0 >= nw) return;
        fd_any<T, NSA_BRANCH_WIN, MMA>(D, fsm, b, g, c0, nw - c0 < FCH ? (int)(nw - c0) : FCH, lo,
                                    NULL, D.kw, D.vw, part, NULL);
    }
}

/* Merge weights w[x] of splits [0, ns) of the partials at part for head u (exp(m_x − M)/L; 0
 * when the head saw no key): headers read in parallel into w and tmp; ml (2) holds M, L.
 * Block-wide; ends with a barrier. */
__device__ void fd_head_weights(const float *part, int ns, int G, int Dv, int u, float *w,
                                float *tmp, float *ml) {
    for (int x = threadIdx.x; x < ns; x += FT) {
        w[x] = part[((int64_t)x * G + u) * (Dv + 2)];
        tmp[x] = part[((int64_t)x * G + u) * (Dv + 2) + 1];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = -INFINITY, L = 0.f;
        for (int x = 0; x < ns; x++) M = fmaxf(M, w[x]);
        for (int x = 0; x < ns && M > -INFINITY; x++) L += tmp[x] * __expf(w[x] - M);
        ml[0] = M;
        ml[1] = L;
    }
    __syncthreads();
    for (int x = threadIdx.x; x < ns; x += FT) w[x] = ml[1] > 0.f ? __expf(w[x] - ml[0]) / ml[1] : 0.f;
    __syncthreads();
}

/* Grid: (B·Hkv, G): one block per head: merges its cmp, sel and win partials and stores the
 * gated output; counters from the first head of the row. Shared memory: weights and headers
 * 2·(nsplit + nsplit2) + 2 floats. */
template <typename T>
__global__ void __launch_bounds__(FT) fd_final_kernel(nsa_cu_dec D) {
    extern __shared__ float fsm[];
    const int64_t b = blockIdx.x / D.Hkv;
    const int g = (int)(blockIdx.x % D.Hkv), G = D.G, u = blockIdx.y, h = g * G + u;
    if (!D.all_active && !((D.active[b / 32] >> (b % 32)) & 1u)) return;
    const int64_t t = D.st.len[b], S = t + 1, nc = S < D.l ? 0 : (S - D.l) / D.d + 1;
    const int keys = D.st.selr[blockIdx.x];
    const int64_t lo = t - D.w + 1 > 0 ? t - D.w + 1 : 0, nw = D.w > 0 ? S - lo : 0;
    const int nsc = (int)((nc + FCH - 1) / FCH), nss = (keys + FCH - 1) / FCH,
              nws = (int)((nw + FCH - 1) / FCH);
    const int64_t sz = (int64_t)G * (D.Dv + 2);
    const float *pc = D.st.part + (int64_t)blockIdx.x * D.st.nsplit * sz;
    const float *ps = D.st.part2 + (int64_t)blockIdx.x * D.st.nsplit2 * sz;
    const float *pw = ps + (int64_t)D.st.nsel_split * sz;
    float *wc = fsm, *wsl = wc + D.st.nsplit, *wwn = wsl + D.st.nsel_split;
    float *tmp = wc + D.st.nsplit + D.st.nsplit2, *ml = tmp + D.st.nsplit + D.st.nsplit2;
    fd_head_weights(pc, nsc, G, D.Dv, u, wc, tmp, ml);
    fd_head_weights(ps, nss, G, D.Dv, u, wsl, tmp, ml);
    fd_head_weights(pw, nws, G, D.Dv, u, wwn, tmp, ml);
    const float gc = fd_gate<T>(D, b, h, NSA_BRANCH_CMP), gs = fd_gate<T>(D, b, h, NSA_BRANCH_SEL),
                gw = fd_gate<T>(D, b, h, NSA_BRANCH_WIN);
    for (int e = threadIdx.x; e < D.Dv; e += FT) {
        float oc = 0.f, os = 0.f, ow = 0.f;
#pragma unroll 8
        for (int x = 0; x < nsc; x++) oc += pc[x * sz + u * (D.Dv + 2) + 2 + e] * wc[x];
#pragma unroll 8
        for (int x = 0; x < nss; x++) os += ps[x * sz + u * (D.Dv + 2) + 2 + e] * wsl[x];
#pragma unroll 8
        for (int x = 0; x < nws; x++) ow += pw[x * sz + u * (D.Dv + 2) + 2 + e] * wwn[x];
        ((T *)D.out.p)[b * D.out.sb + h * D.out.sh + e * D.out.sd] =
            nsa_cu_to<T>(gc * oc + gs * os + gw * ow);
    }
    if (threadIdx.x == 0 && g == 0 && u == 0) {
        D.st.reads[b * 4 + 0] = nc;
        D.st.reads[b * 4 + 2] = nw;
        D.st.reads[b * 4 + 3] = S;
    }
}

static size_t fd_final_smem(const nsa_cu_dec *D) {
    return (size_t)(2 * (D->st.nsplit + D->st.nsplit2) + 2) * 4;
}

static size_t fd_select_smem(const nsa_cu_dec *D) {
    return (size_t)(3 * D->G + 2 * D->st.nsplit * D->G + D->nsel_cap + D->n) * 4;
}

/* Opts kernel k into 220 KB of dynamic shared memory once (a per-step call costs host time). */
static void fd_attr(const void *k, int *done) {
    if (*done) return;
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 220 * 1024);
    *done = 1;
}

template <typename T, bool MMA>
static void fd_launch_t(cudaStream_t st, const nsa_cu_dec *D) {
    static int done[4];
    const unsigned bg = (unsigned)((int64_t)D->B * D->Hkv);
    const size_t cs = MMA ? fd_mma_smem(D) : fd_chunk_smem(D);
    fd_attr((const void *)fd_cmp_kernel<T, MMA>, &done[0]);
    fd_attr((const void *)fd_selwin_kernel<T, MMA>, &done[1]);
    fd_attr((const void *)fd_select_kernel<T>, &done[2]);
    fd_cmp_kernel<T, MMA><<<dim3(bg, (unsigned)D->st.nsplit), FT, cs, st>>>(*D);
    fd_select_kernel<T><<<bg, FT, fd_select_smem(D), st>>>(*D);
    if (D->st.nsplit2 > 0) /* n = 0 and w = 0: no sel or win key at all */
        fd_selwin_kernel<T, MMA><<<dim3(bg, (unsigned)D->st.nsplit2), FT, cs, st>>>(*D);
    fd_attr((const void *)fd_final_kernel<T>, &done[3]);
    fd_final_kernel<T><<<dim3(bg, (unsigned)D->G), FT, fd_final_smem(D), st>>>(*D);
}

nsa_status nsa_cu_decode_fast(nsa_context *ctx, cudaStream_t st, nsa_dtype dt,
                              const nsa_cu_dec *D) {
    if (fd_chunk_smem(D) > 220 * 1024 || fd_select_smem(D) > 220 * 1024 ||
        fd_final_smem(D) > 220 * 1024)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg: too large for the split-key decode's "
                        "shared memory");
    NSA_TRY(nsa_cu_decode_push(ctx, st, dt, D));
    const bool mma = fd_mma_ok(D, dt);
    switch (dt) {
    case NSA_DTYPE_BF16:
        if (mma) fd_launch_t<__nv_bfloat16, true>(st, D);
        else fd_launch_t<__nv_bfloat16, false>(st, D);
        break;
    case NSA_DTYPE_F16:
        if (mma) fd_launch_t<__half, true>(st, D);
        else fd_launch_t<__half, false>(st, D);
        break;
    default: fd_launch_t<float, false>(st, D); break;
    }
    NSA_CU_LAUNCHED(ctx, "decode step (split-key)");
    return nsa_cu_decode_finish(ctx, st, D);
}
