// SPDX-License-Identifier: Apache-2.0
/* cuda_ops.cu — the model's CUDA backend, part 2 (lm/gpu.h): CUDA C kernels for RMSNorm, RoPE,
 * SwiGLU, the fused q/k/v/gate split and its gather, gates, softmax/cross-entropy, embedding,
 * bias, gate statistics, clipping and AdamW, and the backend tables (cuda-bf16, cuda-f32) with
 * lm_cuda_backend. In bf16 mode (act_lowp) RMSNorm, SwiGLU and the split write bf16, SwiGLU
 * reads its a, b in bf16, and the SwiGLU backward, the gather and the cross-entropy backward
 * write bf16 too (gradients that only feed GEMMs).
 * Not the GEMMs, memory or casts (lm/cuda_blas.cu) nor the attention: the model calls
 * nsa_forward / nsa_backward on device tensors.
 * Invariants: no float atomics anywhere (column sums go through fixed per-chunk partials, then
 * one ordered pass), so a step is bitwise reproducible; every launch is checked at sync().
 */
#include "gpu_cuda.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

using namespace lmcu;

/* ------------------------------------------------------------------ element types */

__device__ __forceinline__ void put(float *p, float v) { *p = v; }
__device__ __forceinline__ void put(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }
__device__ __forceinline__ float get(const float *p) { return *p; }
__device__ __forceinline__ float get(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

/* ------------------------------------------------------------------ block reduction */

__device__ float block_sum(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < nw; i++) t += sh[i];
    return t;
}

/* Column partials: part[chunk][c] = Σ_{rows i of chunk} f(i, c); mode 0: a[i,c];
 * mode 1: a[i,c]·b[i,c]·r[i] (RMSNorm's dw). Then out[c] += Σ_chunk part[chunk][c]. */
__global__ void k_col_part(float *part, const float *a, const float *b, const float *r, int N,
                           int C, int mode) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, ch = blockIdx.y;
    if (c >= C) return;
    const int per = (N + CHUNKS - 1) / CHUNKS, i0 = ch * per, i1 = min(N, i0 + per);
    float s = 0.0f;
    for (int i = i0; i < i1; i++) {
        const int64_t o = (int64_t)i * C + c;
        s += mode == 0 ? a[o] : a[o] * b[o] * r[i];
    }
    part[(int64_t)ch * C + c] = s;
}
__global__ void k_col_reduce(float *out, const float *part, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int ch = 0; ch < CHUNKS; ch++) s += part[(int64_t)ch * C + c];
    out[c] += s;
}
static void col_sum(float *out, const float *a, const float *b, const float *r, int N, int C,
                    int mode) {
    float *part = part_buf((size_t)CHUNKS * C);
    if (!part || N == 0) return;
    dim3 g((C + TPB - 1) / TPB, CHUNKS);
    k_col_part<<<g, TPB>>>(part, a, b, r, N, C, mode);
    k_col_reduce<<<(C + TPB - 1) / TPB, TPB>>>(out, part, C);
}

/* ------------------------------------------------------------------ RMSNorm */

#define RMS_EPS 1e-5f

template <typename Y>
__global__ void k_rmsnorm(Y *y, float *rstd, const float *x, const float *w, int C) {
    __shared__ float sh[32];
    const int64_t o = (int64_t)blockIdx.x * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += x[o + c] * x[o + c];
    s = block_sum(s, sh);
    const float r = rsqrtf(s / C + RMS_EPS);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x) put(&y[o + c], x[o + c] * r * w[c]);
}
static void g_rmsnorm(float *y, float *rstd, const float *x, const float *w, int M, int C) {
    if (M) k_rmsnorm<<<M, TPB>>>(y, rstd, x, w, C);
}
static void g_rmsnorm_lo(float *y, float *rstd, const float *x, const float *w, int M, int C) {
    if (M) k_rmsnorm<<<M, TPB>>>((__nv_bfloat16 *)y, rstd, x, w, C);
}

__global__ void k_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w,
                              const float *rstd, int C) {
    __shared__ float sh[32];
    const int64_t o = (int64_t)blockIdx.x * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += dy[o + c] * w[c] * x[o + c];
    s = block_sum(s, sh);
    const float r = rstd[blockIdx.x], k = s / C * r * r * r;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dx[o + c] += r * dy[o + c] * w[c] - k * x[o + c];
}
static void g_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                               const float *w, const float *rstd, int M, int C) {
    if (!M) return;
    k_rmsnorm_bwd<<<M, TPB>>>(dx, dy, x, w, rstd, C);
    col_sum(dw, dy, x, rstd, M, C, 1);
}

/* ------------------------------------------------------------------ RoPE, SwiGLU, gates */

__global__ void k_rope(float *x, const float *cs, const float *sn, int T, int H, int half,
                       int64_t pos0, int inverse, int64_t n) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int i = (int)(idx % half);
    const int64_t rowh = idx / half; /* (b·T + t)·H + h */
    const int64_t t = (rowh / H) % T;
    const int64_t p = (pos0 + t) * half + i;
    const float c = cs[p], s = inverse ? -sn[p] : sn[p];
    float *v = x + rowh * 2 * half + 2 * i;
    const float x0 = v[0], x1 = v[1];
    v[0] = x0 * c - x1 * s;
    v[1] = x0 * s + x1 * c;
}
static void g_rope(float *x, const float *cos_t, const float *sin_t, int B, int T, int H, int D,
                   int64_t pos0, int inverse) {
    const int64_t n = (int64_t)B * T * H * (D / 2);
    if (n) k_rope<<<blocks_for(n), TPB>>>(x, cos_t, sin_t, T, H, D / 2, pos0, inverse, n);
}

__device__ __forceinline__ float sigm(float z) { return 1.0f / (1.0f + expf(-z)); }

template <typename H, typename I>
__global__ void k_swiglu(H *h, const I *a, const I *b, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float ai = get(&a[i]);
    put(&h[i], ai * sigm(ai) * get(&b[i]));
}
template <typename G>
__global__ void k_swiglu_bwd(G *da, G *db, const float *dh, const G *a, const G *b, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float ai = get(&a[i]), bi = get(&b[i]), s = sigm(ai), silu = ai * s;
    put(&db[i], dh[i] * silu);
    put(&da[i], dh[i] * bi * (s * (1.0f + ai * (1.0f - s))));
}
static void g_swiglu(float *h, const float *a, const float *b, int64_t n) {
    if (n) k_swiglu<<<blocks_for(n), TPB>>>(h, a, b, n);
}
static void g_swiglu_lo(float *h, const float *a, const float *b, int64_t n) {
    typedef const __nv_bfloat16 *in;
    if (n) k_swiglu<<<blocks_for(n), TPB>>>((__nv_bfloat16 *)h, (in)a, (in)b, n);
}
static void g_swiglu_backward(float *da, float *db, const float *dh, const float *a,
                              const float *b, int64_t n) {
    if (n) k_swiglu_bwd<<<blocks_for(n), TPB>>>(da, db, dh, a, b, n);
}
static void g_swiglu_backward_lo(float *da, float *db, const float *dh, const float *a,
                                 const float *b, int64_t n) {
    typedef const __nv_bfloat16 *in;
    if (n)
        k_swiglu_bwd<<<blocks_for(n), TPB>>>((__nv_bfloat16 *)da, (__nv_bfloat16 *)db, dh, (in)a,
                                             (in)b, n);
}

__device__ void gate3(float *gi, const float *zi, int kind, float temp) {
    if (kind == LM_GATE_SIGMOID) {
        for (int b = 0; b < 3; b++) gi[b] = sigm(zi[b]);
    } else {
        const float mx = fmaxf(fmaxf(zi[0], zi[1]), zi[2]);
        float s = 0.0f, e[3];
        for (int b = 0; b < 3; b++) s += (e[b] = expf((zi[b] - mx) / temp));
        for (int b = 0; b < 3; b++) gi[b] = e[b] / s;
    }
}
__global__ void k_gates(float *g, const float *z, int64_t MH, int kind, float temp) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < MH) gate3(g + 3 * i, z + 3 * i, kind, temp);
}
__global__ void k_gates_bwd(float *dz, const float *dg, const float *g, int64_t MH, int kind,
                            float temp) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= MH) return;
    const float *gi = g + 3 * i, *dgi = dg + 3 * i;
    float *dzi = dz + 3 * i;
    if (kind == LM_GATE_SIGMOID) {
        for (int b = 0; b < 3; b++) dzi[b] = dgi[b] * gi[b] * (1.0f - gi[b]);
    } else {
        const float dot = gi[0] * dgi[0] + gi[1] * dgi[1] + gi[2] * dgi[2];
        for (int b = 0; b < 3; b++) dzi[b] = gi[b] * (dgi[b] - dot) / temp;
    }
}
static void g_gates(float *g, const float *z, int64_t MH, int kind, float temp) {
    if (MH) k_gates<<<blocks_for(MH), TPB>>>(g, z, MH, kind, temp);
}
static void g_gates_backward(float *dz, const float *dg, const float *g, int64_t MH, int kind,
                             float temp) {
    if (MH) k_gates_bwd<<<blocks_for(MH), TPB>>>(dz, dg, g, MH, kind, temp);
}

/* ------------------------------------------------------------------ fused q/k/v/gate split */

/* Row layout of the fused projection y (N, P): q (2·pq), then k, v of cmp, sel, win (2·pk
 * each), then the gate logits (3·Hq). One thread per (row, column pair) of the q/k/v part. */
template <typename Q> struct qkv_ptrs {
    Q *p[7]; /* q, k_cmp, v_cmp, k_sel, v_sel, k_win, v_win */
};

/* (row, pair j) -> segment s (0 = q, 1 + 2b = k[b], 2 + 2b = v[b]) and pair jj inside it. */
__device__ __forceinline__ int seg_of(int j, int pq, int pk, int *jj) {
    if (j < pq) {
        *jj = j;
        return 0;
    }
    *jj = (j - pq) % pk;
    return 1 + (j - pq) / pk;
}

/* Pair idx of the (N rows) × (pq + 6·pk pairs) split: its row, segment s and pair jj (seg_of),
 * and the column of its first element in a projection row. */
__device__ __forceinline__ int64_t qkv_pair(int64_t idx, int pq, int pk, int *s, int *jj,
                                            int *off) {
    const int per = pq + 6 * pk;
    *s = seg_of((int)(idx % per), pq, pk, jj);
    *off = *s == 0 ? 2 * *jj : 2 * pq + 2 * pk * (*s - 1) + 2 * *jj;
    return idx / per;
}

template <typename Q>
__global__ void k_qkv_split(qkv_ptrs<Q> o, const float *y, const float *cs, const float *sn,
                            int T, int P, int pq, int pk, int half, int64_t pos0, int64_t n) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= n) return;
    int s, jj, off;
    const int64_t row = qkv_pair(idx, pq, pk, &s, &jj, &off);
    const float x0 = y[row * P + off], x1 = y[row * P + off + 1];
    Q *d = o.p[s] + row * 2 * (s == 0 ? pq : pk) + 2 * jj;
    if (s % 2 == 0 && s > 0) { /* v: as is */
        put(&d[0], x0);
        put(&d[1], x1);
        return;
    }
    const int64_t p = (pos0 + row % T) * half + jj % half;
    const float c = cs[p], sv = sn[p];
    put(&d[0], x0 * c - x1 * sv);
    put(&d[1], x0 * sv + x1 * c);
}
/* z = y_g + bg and g = gates(z), one thread per (row, head). */
__global__ void k_qkv_gates(float *z, float *g, const float *y, const float *bg, int P, int off,
                            int Hq, int kind, float temp, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int64_t row = i / Hq;
    const int h = (int)(i % Hq);
    float *zi = z + 3 * i;
    for (int b = 0; b < 3; b++) zi[b] = y[row * P + off + 3 * h + b] + bg[3 * h + b];
    gate3(g + 3 * i, zi, kind, temp);
}
template <typename Q>
static void qkv_split(lm_layer_act *A, const float *y, const float *bg, const float *cos_t,
                      const float *sin_t, int B, int T, int Hq, int Hkv, int D, int64_t pos0,
                      int gate, float temp) {
    const int64_t N = (int64_t)B * T;
    const int pq = Hq * D / 2, pk = Hkv * D / 2, P = Hq * D + 6 * Hkv * D + 3 * Hq;
    qkv_ptrs<Q> o = {{(Q *)A->q, (Q *)A->k[0], (Q *)A->v[0], (Q *)A->k[1], (Q *)A->v[1],
                      (Q *)A->k[2], (Q *)A->v[2]}};
    const int64_t n = N * (pq + 6 * pk);
    if (n) k_qkv_split<<<blocks_for(n), TPB>>>(o, y, cos_t, sin_t, T, P, pq, pk, D / 2, pos0, n);
    if (N * Hq > 0)
        k_qkv_gates<<<blocks_for(N * Hq), TPB>>>(A->z, A->g, y, bg, P, 2 * pq + 12 * pk, Hq, gate,
                                                 temp, N * Hq);
}

/* The backward's gather: dy (N, P) from dq, dk[b] (rotated back), dv[b] (NULL: zero), dz. */
template <typename Q> struct qkv_cptrs {
    const Q *p[7];
};
template <typename Q>
__global__ void k_qkv_gather(Q *dy, int ldy, qkv_cptrs<Q> g, const float *cs, const float *sn,
                             int T, int pq, int pk, int half, int64_t n) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= n) return;
    int s, jj, off;
    const int64_t row = qkv_pair(idx, pq, pk, &s, &jj, &off);
    Q *d = dy + row * ldy + off;
    const Q *src = g.p[s];
    if (!src) {
        put(&d[0], 0.0f);
        put(&d[1], 0.0f);
        return;
    }
    src += row * 2 * (s == 0 ? pq : pk) + 2 * jj;
    const float x0 = get(&src[0]), x1 = get(&src[1]);
    if (s % 2 == 0 && s > 0) { /* dv: a copy (exact in either dtype) */
        d[0] = src[0];
        d[1] = src[1];
        return;
    }
    const int64_t p = row % T * half + jj % half; /* training: positions from 0 */
    const float c = cs[p], sv = -sn[p];
    put(&d[0], x0 * c - x1 * sv);
    put(&d[1], x0 * sv + x1 * c);
}
template <typename Q>
__global__ void k_qkv_dz(Q *dy, const float *dz, int ldy, int off, int W, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) put(&dy[i / W * ldy + off + i % W], dz[i]);
}
template <typename Q>
static void qkv_gather(float *dy, int ldy, const void *dq, const void *const dk[3],
                       const void *const dv[3], const float *dz, const float *cos_t,
                       const float *sin_t, int B, int T, int Hq, int Hkv, int D) {
    const int64_t N = (int64_t)B * T;
    const int pq = Hq * D / 2, pk = Hkv * D / 2;
    qkv_cptrs<Q> g = {{(const Q *)dq, (const Q *)dk[0], (const Q *)dv[0], (const Q *)dk[1],
                       (const Q *)dv[1], (const Q *)dk[2], (const Q *)dv[2]}};
    const int64_t n = N * (pq + 6 * pk);
    if (n)
        k_qkv_gather<<<blocks_for(n), TPB>>>((Q *)dy, ldy, g, cos_t, sin_t, T, pq, pk, D / 2, n);
    if (N * Hq > 0)
        k_qkv_dz<<<blocks_for(N * Hq * 3), TPB>>>((Q *)dy, dz, ldy, 2 * pq + 12 * pk, 3 * Hq,
                                                  N * Hq * 3);
}

/* ------------------------------------------------------------------ cross-entropy */

/* One block per row, one thread per vocabulary entry (V = 256): probs and the row's loss. */
__global__ void k_ce(float *probs, double *rowloss, const float *logits, const uint8_t *targ,
                     int V) {
    __shared__ float sh[32];
    const int64_t o = (int64_t)blockIdx.x * V;
    const int v = threadIdx.x;
    const float l = v < V ? logits[o + v] : -INFINITY;
    float mx = l;
    for (int d = 16; d > 0; d >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, d));
    __shared__ float shm[32];
    if ((v & 31) == 0) shm[v >> 5] = mx;
    __syncthreads();
    mx = shm[0];
    for (int i = 1; i < (int)(blockDim.x >> 5); i++) mx = fmaxf(mx, shm[i]);
    const float e = v < V ? expf(l - mx) : 0.0f;
    const float s = block_sum(e, sh);
    if (v < V) probs[o + v] = e * (1.0f / s);
    if (targ && v == targ[blockIdx.x])
        rowloss[blockIdx.x] = -((double)l - mx - log((double)s));
}
/* Ordered sum of n doubles by one block: out[0] = Σ / n. */
__global__ void k_mean(double *out, const double *x, int64_t n) {
    __shared__ double sh[TPB];
    double s = 0.0;
    const int64_t per = (n + blockDim.x - 1) / blockDim.x, i0 = threadIdx.x * per;
    for (int64_t i = i0; i < i0 + per && i < n; i++) s += x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int i = 0; i < (int)blockDim.x; i++) t += sh[i];
        out[0] = n > 0 ? t / n : 0.0;
    }
}
/* mask: packed documents are not trained on the GPU yet (lm_config_check refuses them), so a
 * mask never reaches this backend; NaN if one does. */
static float g_cross_entropy(float *probs, const float *logits, const uint8_t *targets,
                             const uint8_t *mask, int M, int V) {
    if (mask) return NAN;
    if (M == 0 || V != 256) return 0.0f;
    const uint8_t *t = targets ? bytes_buf(&S.targ, &S.targ_cap, targets, (size_t)M) : NULL;
    double *rl = NULL;
    if (targets && cudaMallocAsync((void **)&rl, sizeof(double) * (size_t)M, 0) != cudaSuccess) {
        note(cudaErrorMemoryAllocation);
        return NAN;
    }
    k_ce<<<M, V>>>(probs, rl, logits, t, V);
    if (!targets) return 0.0f;
    k_mean<<<1, TPB>>>(S.dred, rl, M);
    note(cudaFreeAsync(rl, 0));
    double loss = 0.0;
    note(cudaMemcpy(&loss, S.dred, sizeof loss, cudaMemcpyDeviceToHost));
    return (float)loss;
}

template <typename G>
__global__ void k_ce_bwd(G *dl, const float *p, const uint8_t *targ, int V, float inv,
                         int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int64_t row = i / V;
    const int v = (int)(i % V);
    float d = p[i] * inv;
    if (v == targ[row]) d -= inv;
    put(&dl[i], d);
}
template <typename G>
static void ce_backward(float *dlogits, const float *probs, const uint8_t *targets,
                        const uint8_t *mask, int M, int V, int64_t rows) {
    if (!M || mask) return;
    const uint8_t *t = bytes_buf(&S.targ, &S.targ_cap, targets, (size_t)M);
    if (!t) return;
    const int64_t n = (int64_t)M * V;
    const float inv = 1.0f / (float)(rows > 0 ? rows : M); /* rows: lm.h's micro-batch share */
    k_ce_bwd<<<blocks_for(n), TPB>>>((G *)dlogits, probs, t, V, inv, n);
}

/* ------------------------------------------------------------------ embedding, bias */

__global__ void k_embed(float *x, const float *emb, const uint8_t *tok, int C, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = emb[(int64_t)tok[i / C] * C + i % C];
}
static void g_embed(float *x, const float *emb, const uint8_t *tokens, int N, int C) {
    const uint8_t *t = bytes_buf(&S.tok, &S.tok_cap, tokens, (size_t)N);
    const int64_t n = (int64_t)N * C;
    if (t && n) k_embed<<<blocks_for(n), TPB>>>(x, emb, t, C, n);
}
/* Block (vocab v, column tile): rows walked in order, so sums are deterministic. */
__global__ void k_embed_bwd(float *demb, const float *dx, const uint8_t *tok, int N, int C) {
    const int v = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int i = 0; i < N; i++)
        if (tok[i] == v) s += dx[(int64_t)i * C + c];
    demb[(int64_t)v * C + c] += s;
}
static void g_embed_backward(float *demb, const float *dx, const uint8_t *tokens, int N, int C) {
    const uint8_t *t = bytes_buf(&S.tok, &S.tok_cap, tokens, (size_t)N);
    if (!t || !N) return;
    dim3 g(LM_VOCAB, (C + 127) / 128);
    k_embed_bwd<<<g, 128>>>(demb, dx, t, N, C);
}

__global__ void k_bias(float *z, const float *b, int O, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) z[i] += b[i % O];
}
static void g_bias_add(float *z, const float *b, int N, int O) {
    const int64_t n = (int64_t)N * O;
    if (n) k_bias<<<blocks_for(n), TPB>>>(z, b, O, n);
}
static void g_bias_backward(float *db, const float *dz, int N, int O) {
    col_sum(db, dz, NULL, NULL, N, O, 0);
}

/* ------------------------------------------------------------------ gate statistics */

/* part[blk][0..4] = Σ entropy, collapse, shares over the rows this block strides over. */
__global__ void k_gstats(double *part, const float *g, int64_t MH) {
    __shared__ double sh[5][TPB];
    double a[5] = {0, 0, 0, 0, 0};
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < MH;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float *gi = g + 3 * i;
        const double tot = (double)gi[0] + gi[1] + gi[2];
        double ent = 0.0, mx = 0.0;
        for (int b = 0; b < 3; b++) {
            const double s = tot > 0 ? gi[b] / tot : 1.0 / 3.0;
            if (s > 0) ent -= s * log(s);
            if (s > mx) mx = s;
            a[2 + b] += s;
        }
        a[0] += ent;
        a[1] += (ent < 0.1 && mx > 0.95) ? 1.0 : 0.0;
    }
    for (int k = 0; k < 5; k++) sh[k][threadIdx.x] = a[k];
    __syncthreads();
    if (threadIdx.x < 5) {
        double t = 0.0;
        for (int i = 0; i < (int)blockDim.x; i++) t += sh[threadIdx.x][i];
        part[blockIdx.x * 5 + threadIdx.x] = t;
    }
}
__global__ void k_gstats_acc(double *acc, const double *part, int nblk) {
    if (threadIdx.x < 5) {
        double t = 0.0;
        for (int b = 0; b < nblk; b++) t += part[b * 5 + threadIdx.x];
        acc[threadIdx.x] += t;
    }
}
static void g_gate_stats(float *const *g, int layers, int64_t MH, double *entropy_sum,
                         double *collapse_sum, double share_sum[3]) {
    double *acc = S.dred + CHUNKS * 5, h[5];
    note(cudaMemsetAsync(acc, 0, 5 * sizeof(double), 0));
    for (int l = 0; l < layers && MH > 0; l++) {
        k_gstats<<<CHUNKS, TPB>>>(S.dred, g[l], MH);
        k_gstats_acc<<<1, 32>>>(acc, S.dred, CHUNKS);
    }
    note(cudaMemcpy(h, acc, sizeof h, cudaMemcpyDeviceToHost));
    *entropy_sum += h[0];
    *collapse_sum += h[1];
    for (int b = 0; b < 3; b++) share_sum[b] += h[2 + b];
}

/* ------------------------------------------------------------------ clipping, AdamW */

__global__ void k_sumsq(double *part, const float *x, int64_t n) {
    __shared__ double sh[TPB];
    double s = 0.0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int i = 0; i < (int)blockDim.x; i++) t += sh[i];
        part[blockIdx.x] = t;
    }
}
__global__ void k_scale(float *x, float s, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}
static float g_clip_grads(float *g, size_t n, float clip) {
    k_sumsq<<<CHUNKS, TPB>>>(S.dred, g, (int64_t)n);
    double part[CHUNKS], ss = 0.0;
    note(cudaMemcpy(part, S.dred, sizeof part, cudaMemcpyDeviceToHost));
    for (int i = 0; i < CHUNKS; i++) ss += part[i];
    const float norm = (float)sqrt(ss);
    if (clip > 0 && norm > clip) k_scale<<<blocks_for((int64_t)n), TPB>>>(g, clip / norm, (int64_t)n);
    return norm;
}

__global__ void k_adamw(float *p, const float *g, float *mo, float *ve, const uint8_t *decay,
                        int64_t n, float lr, float b1, float b2, float bc1, float bc2, float eps,
                        float wd) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float w = decay[i] ? wd : 0.0f, gi = g[i];
    const float m = b1 * mo[i] + (1.0f - b1) * gi, v = b2 * ve[i] + (1.0f - b2) * gi * gi;
    mo[i] = m;
    ve[i] = v;
    const float mh = m / bc1, vh = v / bc2;
    p[i] -= lr * (mh / (sqrtf(vh) + eps) + w * p[i]);
}
static void g_adamw(float *p, const float *g, float *mo, float *ve, const uint8_t *decay,
                    size_t n, int t, float lr, float b1, float b2, float eps, float wd) {
    const float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
    if (n)
        k_adamw<<<blocks_for((int64_t)n), TPB>>>(p, g, mo, ve, decay, (int64_t)n, lr, b1, b2, bc1,
                                                 bc2, eps, wd);
    touch(p); /* the weights' bf16 mirrors are recast at their next use */
}

/* ------------------------------------------------------------------ tables */

static lm_backend tables[2]; /* [0] bf16 compute, [1] f32 */

static void fill(lm_backend *b, int f32) {
    memset(b, 0, sizeof *b);
    b->name = f32 ? "cuda-f32" : "cuda-bf16";
    b->device = NSA_DEVICE_CUDA;
    b->att_dtype = f32 ? NSA_DTYPE_F32 : NSA_DTYPE_BF16;
    b->act_lowp = !f32;
    b->alloc = g_alloc;
    b->release = g_release;
    b->upload = g_upload;
    b->download = g_download;
    b->zero = g_zero;
    b->copy = g_copy;
    b->to_att = g_to_att;
    b->from_att = g_from_att;
    b->matmul = f32 ? mm_f32 : mm_bf16;
    b->matmul_backward = f32 ? mmb_f32 : mmb_bf16;
    b->matmul_lo = f32 ? NULL : mm_lo_bf16;
    b->matmul_backward_lo = f32 ? NULL : mmb_lo_bf16;
    b->qkv_split = f32 ? qkv_split<float> : qkv_split<__nv_bfloat16>;
    b->qkv_gather = f32 ? qkv_gather<float> : qkv_gather<__nv_bfloat16>;
    b->rmsnorm = f32 ? g_rmsnorm : g_rmsnorm_lo;
    b->rmsnorm_backward = g_rmsnorm_backward;
    b->rope = g_rope;
    b->swiglu = f32 ? g_swiglu : g_swiglu_lo;
    b->swiglu_backward = f32 ? g_swiglu_backward : g_swiglu_backward_lo;
    b->gates = g_gates;
    b->gates_backward = g_gates_backward;
    b->cross_entropy = g_cross_entropy;
    b->cross_entropy_backward = f32 ? ce_backward<float> : ce_backward<__nv_bfloat16>;
    b->embed = g_embed;
    b->embed_backward = g_embed_backward;
    b->bias_add = g_bias_add;
    b->bias_backward = g_bias_backward;
    b->gate_stats = g_gate_stats;
    b->clip_grads = g_clip_grads;
    b->adamw = g_adamw;
    b->sync = g_sync;
}

extern "C" const lm_backend *lm_cuda_backend(int f32, char *err, size_t n) {
    if (!S.ready) {
        int count = 0;
        cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess || count < 1) {
            cudaGetLastError();
            snprintf(err, n, "device: cuda: no CUDA device (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "count 0");
            return NULL;
        }
        if (cublasCreate(&S.h) != CUBLAS_STATUS_SUCCESS) {
            snprintf(err, n, "device: cuda: cublasCreate failed");
            return NULL;
        }
        if (cudaMalloc((void **)&S.dred, sizeof(double) * (CHUNKS * 5 + 8)) != cudaSuccess) {
            cudaGetLastError();
            cublasDestroy(S.h);
            snprintf(err, n, "device: cuda: out of device memory");
            return NULL;
        }
        fill(&tables[0], 0);
        fill(&tables[1], 1);
        S.ready = 1;
    }
    return &tables[f32 ? 1 : 0];
}
