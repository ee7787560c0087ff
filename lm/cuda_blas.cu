/* cuda_blas.cu — the model's CUDA backend, part 1 (lm/gpu_cuda.h): the process state, device
 * memory (zeroed allocations with records for the heartbeat's figures), the f32<->bf16 casts, the
 * GEMMs through cuBLAS (bf16 operands with fp32 accumulation and output, or fp32), the sync that
 * reports the first error, and the memory figures of lm/gpu.h.
 * Not the layer kernels (lm/cuda_ops.cu). All work on device 0 and the default stream.
 * Invariant: every cuBLAS or runtime failure is kept (note) and reported by the next sync.
 */
#include "gpu_cuda.h"

#include <cuda_bf16.h>
#include <stdio.h>
#include <string.h>

namespace lmcu {

state S;

void note(cudaError_t e) {
    if (e != cudaSuccess && S.err == cudaSuccess) S.err = e;
}

unsigned blocks_for(int64_t n) { /* one thread per element: no cap (grid.x < 2^31) */
    const int64_t b = (n + TPB - 1) / TPB;
    return (unsigned)(b < 1 ? 1 : b);
}


/* ------------------------------------------------------------------ memory */

void *g_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    if (S.nrecs == (int)(sizeof S.recs / sizeof S.recs[0])) return NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    note(cudaMemset(p, 0, bytes));
    S.recs[S.nrecs].p = p;
    S.recs[S.nrecs++].bytes = bytes;
    S.alloc_now += bytes;
    if (S.alloc_now > S.alloc_peak) S.alloc_peak = S.alloc_now;
    return p;
}

void g_release(void *p) {
    if (!p) return;
    for (int i = 0; i < S.nrecs; i++)
        if (S.recs[i].p == p) {
            S.alloc_now -= S.recs[i].bytes;
            S.recs[i] = S.recs[--S.nrecs];
            break;
        }
    note(cudaFree(p));
}

void g_upload(void *dst, const void *src, size_t bytes) {
    if (bytes) note(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void g_download(void *dst, const void *src, size_t bytes) {
    if (bytes) note(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void g_zero(float *p, size_t n) { note(cudaMemsetAsync(p, 0, n * sizeof(float), 0)); }
void g_copy(float *dst, const float *src, size_t n) {
    note(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
}

/* Grows a device byte buffer (synchronous; only when a larger batch comes). */
uint8_t *bytes_buf(uint8_t **buf, size_t *cap, const uint8_t *host, size_t n) {
    if (n > *cap) {
        note(cudaFree(*buf));
        *buf = NULL;
        *cap = 0;
        if (cudaMalloc((void **)buf, n) != cudaSuccess) {
            note(cudaErrorMemoryAllocation);
            return NULL;
        }
        *cap = n;
    }
    note(cudaMemcpyAsync(*buf, host, n, cudaMemcpyHostToDevice, 0));
    return *buf;
}

float *part_buf(size_t floats) {
    if (floats > S.part_cap) {
        note(cudaFree(S.part));
        S.part = NULL;
        S.part_cap = 0;
        if (cudaMalloc((void **)&S.part, floats * sizeof(float)) != cudaSuccess) {
            note(cudaErrorMemoryAllocation);
            return NULL;
        }
        S.part_cap = floats;
    }
    return S.part;
}

/* ------------------------------------------------------------------ casts */

__global__ void k_to_bf16(__nv_bfloat16 *d, const float *s, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        d[i] = __float2bfloat16(s[i]);
}
__global__ void k_from_bf16(float *d, const __nv_bfloat16 *s, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        d[i] = __bfloat162float(s[i]);
}
void g_to_att(void *dst, const float *src, size_t n) {
    k_to_bf16<<<blocks_for((int64_t)n), TPB>>>((__nv_bfloat16 *)dst, src, (int64_t)n);
}
void g_from_att(float *dst, const void *src, size_t n) {
    k_from_bf16<<<blocks_for((int64_t)n), TPB>>>(dst, (const __nv_bfloat16 *)src, (int64_t)n);
}

/* ------------------------------------------------------------------ GEMMs (row-major views) */

/* bf16 mode: operands are rounded to bf16 into these buffers (grown on first use), then one
 * cuBLAS GEMM with bf16 inputs, fp32 accumulation and fp32 output. lm_cuda_gemm_fast16bf(1)
 * keeps the operands fp32 and lets cuBLAS down-convert (CUBLAS_COMPUTE_32F_FAST_16BF) instead:
 * the alternative bench_train measures. */
static __nv_bfloat16 *cbuf[3];
static size_t ccap[3];
static int fast16bf;

extern "C" void lm_cuda_gemm_fast16bf(int on) { fast16bf = on != 0; }

static const __nv_bfloat16 *cast(int slot, const float *x, size_t n) {
    if (n > ccap[slot]) {
        note(cudaFree(cbuf[slot]));
        cbuf[slot] = NULL;
        ccap[slot] = 0;
        if (cudaMalloc((void **)&cbuf[slot], n * sizeof(__nv_bfloat16)) != cudaSuccess) {
            cudaGetLastError();
            note(cudaErrorMemoryAllocation);
            return NULL;
        }
        ccap[slot] = n;
    }
    k_to_bf16<<<blocks_for((int64_t)n), TPB>>>(cbuf[slot], x, (int64_t)n);
    return cbuf[slot];
}

/* C (m×n, col-major) = op(A) op(B) + beta·C; na, nb: element counts of A and B. */
static void gemm(int f32, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const float *A, size_t na, int lda, const float *B, size_t nb, int ldb,
                 float beta, float *C, int ldc, int slot_a, int slot_b) {
    const float alpha = 1.0f;
    cublasStatus_t st;
    if (f32 || fast16bf) {
        st = cublasGemmEx(S.h, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                          &beta, C, CUDA_R_32F, ldc,
                          f32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_16BF,
                          CUBLAS_GEMM_DEFAULT);
    } else {
        const __nv_bfloat16 *a = slot_a >= 0 ? cast(slot_a, A, na) : NULL;
        const __nv_bfloat16 *b = slot_b >= 0 ? cast(slot_b, B, nb) : NULL;
        if (slot_a < 0) a = cbuf[-slot_a - 1]; /* already cast for the previous GEMM */
        if (slot_b < 0) b = cbuf[-slot_b - 1];
        if (!a || !b) return;
        st = cublasGemmEx(S.h, ta, tb, m, n, k, &alpha, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb,
                          &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
    if (st != CUBLAS_STATUS_SUCCESS) note(cudaErrorLaunchFailure);
}

/* y (M, O) = x (M, K) · W (O, K)^T: column-major y^T = W^T^T · x^T */
static void matmul_p(int f32, float *y, const float *x, const float *W, int M, int K, int O,
                     int acc) {
    if (M == 0 || O == 0) return;
    gemm(f32, CUBLAS_OP_T, CUBLAS_OP_N, O, M, K, W, (size_t)O * K, K, x, (size_t)M * K, K,
         acc ? 1.0f : 0.0f, y, O, 0, 1);
}
/* dx (M, K) (+)= dy · W;  dW (O, K) += dy^T · x  (dy is cast once, into slot 2) */
static void matmul_backward_p(int f32, float *dx, float *dW, const float *dy, const float *x,
                              const float *W, int M, int K, int O, int acc_dx) {
    if (M == 0) return;
    const size_t ny = (size_t)M * O;
    if (dx)
        gemm(f32, CUBLAS_OP_N, CUBLAS_OP_N, K, M, O, W, (size_t)O * K, K, dy, ny, O,
             acc_dx ? 1.0f : 0.0f, dx, K, 0, 2);
    if (dW)
        gemm(f32, CUBLAS_OP_N, CUBLAS_OP_T, K, O, M, x, (size_t)M * K, K, dy, ny, O, 1.0f, dW, K,
             1, dx ? -3 : 2);
}
void mm_bf16(float *y, const float *x, const float *W, int M, int K, int O, int acc) {
    matmul_p(0, y, x, W, M, K, O, acc);
}
void mm_f32(float *y, const float *x, const float *W, int M, int K, int O, int acc) {
    matmul_p(1, y, x, W, M, K, O, acc);
}
void mmb_bf16(float *dx, float *dW, const float *dy, const float *x, const float *W, int M,
                     int K, int O, int acc) {
    matmul_backward_p(0, dx, dW, dy, x, W, M, K, O, acc);
}
void mmb_f32(float *dx, float *dW, const float *dy, const float *x, const float *W, int M,
                    int K, int O, int acc) {
    matmul_backward_p(1, dx, dW, dy, x, W, M, K, O, acc);
}
int g_sync(char *err, size_t n) {
    cudaError_t e = cudaStreamSynchronize(0);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e == cudaSuccess) e = S.err;
    if (e == cudaSuccess) return 0;
    S.err = cudaSuccess;
    snprintf(err, n, "cuda: %s", cudaGetErrorString(e));
    return -1;
}

} // namespace lmcu

using namespace lmcu;

extern "C" int lm_cuda_mem_mib(double *alloc, double *alloc_peak, double *reserved) {
    *alloc = *alloc_peak = *reserved = 0.0;
    if (!S.ready) return -1;
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    const double mib = 1024.0 * 1024.0;
    *alloc = (double)S.alloc_now / mib;
    *alloc_peak = (double)S.alloc_peak / mib;
    *reserved = (double)(tot - fr) / mib;
    return 0;
}
