// SPDX-License-Identifier: Apache-2.0
/* layers.c — the model's layers, each a forward and a hand-written backward over contiguous
 * fp32 arrays (llm.c style): matmul (OpenBLAS), RMSNorm, RoPE, SwiGLU, gates, cross-entropy,
 * the learnable φ, the gate statistics of docs/design.md §4, and the CPU backend table over them.
 * Not the NSA attention itself: that is the library's (nsa_forward / nsa_backward).
 * Invariant: every backward is checked against central finite differences (tests/test_lm_layers.c).
 */
#include "lm.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* CPU GEMMs in fixed output tiles: each tile of C is one single-threaded sgemm holding the
 * whole reduction, and the tiles are spread over the threads. The tiles depend on the shape
 * only, so every element is the same bits for any thread count. OpenBLAS's own threading
 * does not keep that: it splits by the thread count, and 1 vs 2 threads differed in the last
 * bits of y, dx and dW at (1024 x 128) · (128 x 128) (measured 2026-12-08, OpenBLAS 0.3.21,
 * Debian 12). 64 x 128 tiles: small enough that the model's (N, 128..384) GEMMs give each of
 * 16 threads work, large enough that packing stays a small share of each call. */
#define TILE_R 64
#define TILE_C 128

static int gemm_threads; /* 0: not set yet (lm_blas_threads(0) on the first GEMM) */

void lm_blas_threads(int n) {
    openblas_set_num_threads(1); /* the tiles are the parallelism */
    gemm_threads = n > 0 ? n : omp_get_max_threads();
}

/* C (R, Cn) = op(A) (R, K) · op(B) (K, Cn) + beta·C, tile by tile (row-major, leading dims lda,
 * ldb, ldc as cblas takes them). */
static void gemm(int ta, int tb, int R, int Cn, int K, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    if (!gemm_threads) lm_blas_threads(0);
    const int tr = (R + TILE_R - 1) / TILE_R, tc = (Cn + TILE_C - 1) / TILE_C;
#pragma omp parallel for schedule(static) num_threads(gemm_threads) if (tr * tc > 1)
    for (int t = 0; t < tr * tc; t++) {
        const int r0 = t / tc * TILE_R, c0 = t % tc * TILE_C;
        const int r = R - r0 < TILE_R ? R - r0 : TILE_R, c = Cn - c0 < TILE_C ? Cn - c0 : TILE_C;
        const float *a = ta ? A + r0 : A + (int64_t)r0 * lda;
        const float *b = tb ? B + (int64_t)c0 * ldb : B + c0;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    r, c, K, 1.0f, a, lda, b, ldb, beta, C + (int64_t)r0 * ldc + c0, ldc);
    }
}

void lm_matmul(float *y, const float *x, const float *W, int M, int K, int O, int acc) {
    if (M == 0 || O == 0) return;
    gemm(0, 1, M, O, K, x, K, W, K, acc ? 1.0f : 0.0f, y, O);
}

void lm_matmul_backward(float *dx, float *dW, const float *dy, const float *x, const float *W,
                        int M, int K, int O, int acc_dx) {
    if (M == 0) return;
    if (dx) gemm(0, 0, M, K, O, dy, O, W, K, acc_dx ? 1.0f : 0.0f, dx, K);
    if (dW) gemm(1, 0, O, K, M, dy, O, x, K, 1.0f, dW, K);
}

#define RMS_EPS 1e-5f

void lm_rmsnorm(float *y, float *rstd, const float *x, const float *w, int M, int C) {
    for (int i = 0; i < M; i++) {
        const float *xi = x + (int64_t)i * C;
        float *yi = y + (int64_t)i * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)xi[c] * xi[c];
        float r = 1.0f / sqrtf((float)(ss / C) + RMS_EPS);
        rstd[i] = r;
        for (int c = 0; c < C; c++) yi[c] = xi[c] * r * w[c];
    }
}

void lm_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         const float *rstd, int M, int C) {
    for (int i = 0; i < M; i++) {
        const float *xi = x + (int64_t)i * C, *dyi = dy + (int64_t)i * C;
        float *dxi = dx + (int64_t)i * C;
        const float r = rstd[i];
        /* y = x·r·w, r = (mean x² + eps)^-1/2:  dx = r·(dy·w) - x·r³·mean(dy·w·x) */
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)dyi[c] * w[c] * xi[c];
        const float k = (float)(dot / C) * r * r * r;
        for (int c = 0; c < C; c++) {
            dxi[c] += r * dyi[c] * w[c] - k * xi[c];
            dw[c] += dyi[c] * xi[c] * r;
        }
    }
}

void lm_rope_table(float *cos_t, float *sin_t, int P, int D, float base) {
    const int half = D / 2;
    for (int i = 0; i < half; i++) {
        const double freq = pow((double)base, -2.0 * i / D);
        for (int p = 0; p < P; p++) {
            const double a = p * freq;
            cos_t[(int64_t)p * half + i] = (float)cos(a);
            sin_t[(int64_t)p * half + i] = (float)sin(a);
        }
    }
}

void lm_rope(float *x, const float *cos_t, const float *sin_t, int B, int T, int H, int D,
             int64_t pos0, int inverse) {
    const int half = D / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *cs = cos_t + (pos0 + t) * half, *sn = sin_t + (pos0 + t) * half;
            for (int h = 0; h < H; h++) {
                float *v = x + (((int64_t)b * T + t) * H + h) * D;
                for (int i = 0; i < half; i++) {
                    const float c = cs[i], s = inverse ? -sn[i] : sn[i];
                    const float x0 = v[2 * i], x1 = v[2 * i + 1];
                    v[2 * i] = x0 * c - x1 * s;
                    v[2 * i + 1] = x0 * s + x1 * c;
                }
            }
        }
}

static inline float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

void lm_swiglu(float *h, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = a[i] * sigmoidf(a[i]) * b[i];
}

void lm_swiglu_backward(float *da, float *db, const float *dh, const float *a, const float *b,
                        int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float s = sigmoidf(a[i]);
        const float silu = a[i] * s;
        db[i] = dh[i] * silu;
        da[i] = dh[i] * b[i] * (s * (1.0f + a[i] * (1.0f - s)));
    }
}

void lm_gates(float *g, const float *z, int64_t MH, int kind, float temp) {
    for (int64_t i = 0; i < MH; i++) {
        const float *zi = z + 3 * i;
        float *gi = g + 3 * i;
        if (kind == LM_GATE_SIGMOID) {
            for (int b = 0; b < 3; b++) gi[b] = sigmoidf(zi[b]);
        } else {
            float mx = zi[0] > zi[1] ? zi[0] : zi[1];
            if (zi[2] > mx) mx = zi[2];
            float s = 0.0f;
            for (int b = 0; b < 3; b++) s += (gi[b] = expf((zi[b] - mx) / temp));
            for (int b = 0; b < 3; b++) gi[b] /= s;
        }
    }
}

void lm_gates_backward(float *dz, const float *dg, const float *g, int64_t MH, int kind,
                       float temp) {
    for (int64_t i = 0; i < MH; i++) {
        const float *gi = g + 3 * i, *dgi = dg + 3 * i;
        float *dzi = dz + 3 * i;
        if (kind == LM_GATE_SIGMOID) {
            for (int b = 0; b < 3; b++) dzi[b] = dgi[b] * gi[b] * (1.0f - gi[b]);
        } else {
            const float dot = gi[0] * dgi[0] + gi[1] * dgi[1] + gi[2] * dgi[2];
            for (int b = 0; b < 3; b++) dzi[b] = gi[b] * (dgi[b] - dot) / temp;
        }
    }
}

float lm_cross_entropy(float *probs, const float *logits, const uint8_t *targets,
                       const uint8_t *mask, int M, int V) {
    double total = 0.0;
    int cnt = 0;
    for (int i = 0; i < M; i++) {
        const float *li = logits + (int64_t)i * V;
        float *pi = probs + (int64_t)i * V;
        float mx = li[0];
        for (int v = 1; v < V; v++)
            if (li[v] > mx) mx = li[v];
        double s = 0.0;
        for (int v = 0; v < V; v++) s += (pi[v] = expf(li[v] - mx));
        const float inv = (float)(1.0 / s);
        for (int v = 0; v < V; v++) pi[v] *= inv;
        if (mask && !mask[i]) continue;
        cnt++;
        if (targets) total += -((double)li[targets[i]] - mx - log(s));
    }
    return cnt > 0 ? (float)(total / cnt) : 0.0f;
}

void lm_cross_entropy_backward(float *dlogits, const float *probs, const uint8_t *targets,
                               const uint8_t *mask, int M, int V, int64_t rows) {
    int64_t cnt = rows > 0 ? rows : 0;
    if (rows <= 0)
        for (int i = 0; i < M; i++) cnt += !mask || mask[i];
    const float inv = cnt > 0 ? 1.0f / (float)cnt : 0.0f;
    for (int i = 0; i < M; i++) {
        const float *pi = probs + (int64_t)i * V;
        float *di = dlogits + (int64_t)i * V;
        const float w = !mask || mask[i] ? inv : 0.0f;
        for (int v = 0; v < V; v++) di[v] = pi[v] * w;
        di[targets[i]] -= w;
    }
}

/* Row r of block i of (b, hk) in raw (B, T, Hkv, D). */
static inline int64_t raw_off(int b, int64_t pos, int hk, int T, int Hkv, int D) {
    return (((int64_t)b * T + pos) * Hkv + hk) * D;
}

void lm_phi(float *out, float *u, float *hpre, const float *raw, const float *pe, const float *W1,
            const float *W2, int B, int T, int Hkv, int D, int l, int d) {
    const int Tc = T < l ? 0 : (T - l) / d + 1;
    const int M = B * Tc * Hkv, L = l * D;
    if (M == 0) return;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tc; i++)
            for (int hk = 0; hk < Hkv; hk++) {
                const int64_t row = ((int64_t)b * Tc + i) * Hkv + hk;
                float *ur = u + row * L, *o = out + row * D;
                for (int e = 0; e < D; e++) o[e] = 0.0f;
                for (int r = 0; r < l; r++) {
                    const float *x = raw + raw_off(b, (int64_t)i * d + r, hk, T, Hkv, D);
                    for (int e = 0; e < D; e++) {
                        ur[r * D + e] = x[e] + pe[r * D + e];
                        o[e] += x[e];
                    }
                }
                for (int e = 0; e < D; e++) o[e] /= (float)l;
            }
    lm_matmul(hpre, u, W1, M, L, D, 0);
    float *h = hpre + (int64_t)M * D; /* caller gives 2·M·D floats: pre-activation, then silu */
    for (int64_t k = 0; k < (int64_t)M * D; k++) h[k] = hpre[k] * sigmoidf(hpre[k]);
    lm_matmul(out, h, W2, M, D, D, 1);
}

void lm_phi_backward(float *draw, float *dpe, float *dW1, float *dW2, const float *dout,
                     const float *u, const float *hpre, const float *W1, const float *W2, int B,
                     int T, int Hkv, int D, int l, int d, float *work) {
    const int Tc = T < l ? 0 : (T - l) / d + 1;
    const int M = B * Tc * Hkv, L = l * D;
    if (M == 0) return;
    const float *h = hpre + (int64_t)M * D;
    float *dh = work;                     /* (M, D)   */
    float *du = work + (int64_t)M * D;    /* (M, l·D) */
    lm_matmul_backward(dh, dW2, dout, h, W2, M, D, D, 0);
    for (int64_t k = 0; k < (int64_t)M * D; k++) {
        const float s = sigmoidf(hpre[k]);
        dh[k] *= s * (1.0f + hpre[k] * (1.0f - s));
    }
    lm_matmul_backward(du, dW1, dh, u, W1, M, L, D, 0);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tc; i++)
            for (int hk = 0; hk < Hkv; hk++) {
                const int64_t row = ((int64_t)b * Tc + i) * Hkv + hk;
                const float *dur = du + row * L, *dor = dout + row * D;
                for (int r = 0; r < l; r++) {
                    float *dx = draw + raw_off(b, (int64_t)i * d + r, hk, T, Hkv, D);
                    for (int e = 0; e < D; e++) {
                        dx[e] += dur[r * D + e] + dor[e] / (float)l;
                        dpe[r * D + e] += dur[r * D + e];
                    }
                }
            }
}

void lm_gate_stats(const float *g, int64_t MH, double *entropy_sum, double *collapse_sum,
                   double share_sum[3]) {
    for (int64_t i = 0; i < MH; i++) {
        const float *gi = g + 3 * i;
        const double tot = (double)gi[0] + gi[1] + gi[2];
        double ent = 0.0, mx = 0.0;
        for (int b = 0; b < 3; b++) {
            const double s = tot > 0 ? gi[b] / tot : 1.0 / 3.0;
            if (s > 0) ent -= s * log(s);
            if (s > mx) mx = s;
            share_sum[b] += s;
        }
        *entropy_sum += ent;
        *collapse_sum += (ent < 0.1 && mx > 0.95) ? 1.0 : 0.0;
    }
}

/* ------------------------------------------------------------------ the CPU backend */

static void *cpu_alloc(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_release(void *p) { free(p); }
static void cpu_move(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}
static void cpu_zero(float *p, size_t n) { memset(p, 0, sizeof(float) * n); }
static void cpu_copy(float *dst, const float *src, size_t n) {
    memcpy(dst, src, sizeof(float) * n);
}

static void cpu_embed(float *x, const float *emb, const uint8_t *tokens, int N, int C) {
    for (int i = 0; i < N; i++)
        memcpy(x + (int64_t)i * C, emb + (int64_t)tokens[i] * C, sizeof(float) * (size_t)C);
}

static void cpu_embed_backward(float *demb, const float *dx, const uint8_t *tokens, int N,
                               int C) {
    for (int i = 0; i < N; i++) {
        float *de = demb + (int64_t)tokens[i] * C;
        const float *dr = dx + (int64_t)i * C;
        for (int k = 0; k < C; k++) de[k] += dr[k];
    }
}

static void cpu_bias_add(float *z, const float *b, int N, int O) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < O; j++) z[(int64_t)i * O + j] += b[j];
}

static void cpu_bias_backward(float *db, const float *dz, int N, int O) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < O; j++) db[j] += dz[(int64_t)i * O + j];
}

static void cpu_gate_stats(float *const *g, int layers, int64_t MH, double *entropy_sum,
                           double *collapse_sum, double share_sum[3]) {
    for (int l = 0; l < layers; l++) lm_gate_stats(g[l], MH, entropy_sum, collapse_sum, share_sum);
}

static void cpu_adamw(float *p, const float *g, float *mo, float *ve, const uint8_t *decay,
                      size_t n, int t, float lr, float b1, float b2, float eps, float wd) {
    const float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
    for (size_t i = 0; i < n; i++) {
        const float w = decay[i] ? wd : 0.0f;
        mo[i] = b1 * mo[i] + (1.0f - b1) * g[i];
        ve[i] = b2 * ve[i] + (1.0f - b2) * g[i] * g[i];
        const float mh = mo[i] / bc1, vh = ve[i] / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + w * p[i]);
    }
}

static int cpu_sync(char *err, size_t n) {
    (void)err;
    (void)n;
    return 0;
}

const lm_backend lm_cpu_backend = {
    .name = "cpu",
    .device = NSA_DEVICE_CPU,
    .att_dtype = NSA_DTYPE_F32,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_move,
    .download = cpu_move,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .to_att = NULL,
    .from_att = NULL,
    .matmul = lm_matmul,
    .matmul_backward = lm_matmul_backward,
    .rmsnorm = lm_rmsnorm,
    .rmsnorm_backward = lm_rmsnorm_backward,
    .rope = lm_rope,
    .swiglu = lm_swiglu,
    .swiglu_backward = lm_swiglu_backward,
    .gates = lm_gates,
    .gates_backward = lm_gates_backward,
    .cross_entropy = lm_cross_entropy,
    .cross_entropy_backward = lm_cross_entropy_backward,
    .embed = cpu_embed,
    .embed_backward = cpu_embed_backward,
    .bias_add = cpu_bias_add,
    .bias_backward = cpu_bias_backward,
    .gate_stats = cpu_gate_stats,
    .clip_grads = lm_clip_grads,
    .adamw = cpu_adamw,
    .sync = cpu_sync,
};
