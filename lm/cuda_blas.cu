// SPDX-License-Identifier: Apache-2.0
/* cuda_blas.cu — the model's CUDA backend, part 1 (lm/gpu_cuda.h): the process state, device
 * memory (zeroed allocations with records for the heartbeat's figures and write generations),
 * the bf16 mirrors the GEMMs read weights from, the f32<->bf16 casts, the GEMMs through cuBLAS
 * (bf16 operands with fp32 accumulation, fp32 or bf16 output; or fp32), the sync that reports
 * the first error, and the memory figures of lm/gpu.h.
 * Not the layer kernels (lm/cuda_ops.cu). All work on device 0 and the default stream.
 * Invariant: every cuBLAS or runtime failure is kept (note) and reported by the next sync.
 */
#include "gpu_cuda.h"

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
    S.recs[S.nrecs].gen = 0;
    S.recs[S.nrecs++].bytes = bytes;
    S.alloc_now += bytes;
    if (S.alloc_now > S.alloc_peak) S.alloc_peak = S.alloc_now;
    return p;
}

/* bf16 mirrors of the weight tensors GEMMs read: one per (W, n), in its own 256-byte aligned
 * buffer (a mirror of the whole parameter array would put tensors after an odd-sized bias off
 * the 16-byte alignment cuBLAS's fast kernels need), recast when its allocation's gen moved. */
struct mirror {
    const float *w;
    size_t n;
    const void *base; /* the allocation holding w */
    unsigned gen;     /* the allocation's gen when cast */
    __nv_bfloat16 *lo;
};
static mirror mir[4 * LM_MAX_TENSORS];
static int nmir;

void g_release(void *p) {
    if (!p) return;
    for (int i = 0; i < nmir; i++)
        if (mir[i].base == p) {
            S.alloc_now -= mir[i].n * sizeof(__nv_bfloat16);
            note(cudaFree(mir[i].lo));
            mir[i--] = mir[--nmir];
        }
    for (int i = 0; i < S.nrecs; i++)
        if (S.recs[i].p == p) {
            S.alloc_now -= S.recs[i].bytes;
            S.recs[i] = S.recs[--S.nrecs];
            break;
        }
    note(cudaFree(p));
}

alloc_rec *rec_of(const void *p) {
    static int hint;
    const char *c = (const char *)p;
    if (hint < S.nrecs) {
        const alloc_rec *r = &S.recs[hint];
        if (c >= (const char *)r->p && c < (const char *)r->p + r->bytes) return &S.recs[hint];
    }
    for (int i = 0; i < S.nrecs; i++) {
        const char *b = (const char *)S.recs[i].p;
        if (c >= b && c < b + S.recs[i].bytes) {
            hint = i;
            return &S.recs[i];
        }
    }
    return NULL;
}

void touch(const void *p) {
    alloc_rec *r = rec_of(p);
    if (r) r->gen++;
}

void g_upload(void *dst, const void *src, size_t bytes) {
    if (bytes) note(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    touch(dst);
}
void g_download(void *dst, const void *src, size_t bytes) {
    if (bytes) note(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void g_zero(float *p, size_t n) {
    note(cudaMemsetAsync(p, 0, n * sizeof(float), 0));
    touch(p);
}
void g_copy(float *dst, const float *src, size_t n) {
    note(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
    touch(dst);
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

/* bf16 mode: weights come from their bf16 mirror (made on first use, recast at the first use
 * after a write: once per optimizer step); x is already bf16 (act_lowp); dy is rounded into
 * cbuf[1] once per matmul_backward (matmul_backward_lo takes it bf16), and a weight outside
 * every record (none in the model) into cbuf[0]. One cuBLAS GEMM each, bf16 inputs, fp32
 * accumulation, fp32 output (bf16 for matmul_lo). */
static __nv_bfloat16 *cbuf[2];
static size_t ccap[2];

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

/* The bf16 view of weights W (n = O·K floats) for a GEMM. */
static const __nv_bfloat16 *weights(const float *W, size_t n) {
    const alloc_rec *r = rec_of(W);
    if (!r) return cast(0, W, n);
    mirror *m = NULL;
    for (int i = 0; i < nmir && !m; i++)
        if (mir[i].w == W && mir[i].n == n) m = &mir[i];
    if (!m) {
        __nv_bfloat16 *lo = NULL;
        if (nmir == (int)(sizeof mir / sizeof mir[0]) ||
            cudaMalloc((void **)&lo, n * sizeof(__nv_bfloat16)) != cudaSuccess) {
            cudaGetLastError();
            return cast(0, W, n);
        }
        m = &mir[nmir++];
        *m = mirror{W, n, r->p, r->gen - 1u, lo}; /* cast below */
        S.alloc_now += n * sizeof(__nv_bfloat16);
        if (S.alloc_now > S.alloc_peak) S.alloc_peak = S.alloc_now;
    }
    if (m->gen != r->gen) {
        k_to_bf16<<<blocks_for((int64_t)n), TPB>>>(m->lo, W, (int64_t)n);
        m->gen = r->gen;
    }
    return m->lo;
}

/* C (m×n, col-major, type tc: fp32 unless given) = op(A) op(B) + beta·C, A and B of type t. */
static void gemm(cudaDataType t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc,
                 cudaDataType tc = CUDA_R_32F) {
    if (!A || !B) return; /* a cast that failed: noted */
    const float alpha = 1.0f;
    const cublasStatus_t st = cublasGemmEx(S.h, ta, tb, m, n, k, &alpha, A, t, lda, B, t, ldb,
                                           &beta, C, tc, ldc, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) note(cudaErrorLaunchFailure);
}

/* y (M, O) = x (M, K) · W (O, K)^T: column-major y^T = W^T^T · x^T */
void mm_bf16(float *y, const float *x, const float *W, int M, int K, int O, int acc) {
    if (M == 0 || O == 0) return;
    gemm(CUDA_R_16BF, CUBLAS_OP_T, CUBLAS_OP_N, O, M, K, weights(W, (size_t)O * K), K, x, K,
         acc ? 1.0f : 0.0f, y, O);
}
void mm_lo_bf16(void *y, const float *x, const float *W, int M, int K, int O) {
    if (M == 0 || O == 0) return;
    gemm(CUDA_R_16BF, CUBLAS_OP_T, CUBLAS_OP_N, O, M, K, weights(W, (size_t)O * K), K, x, K, 0.0f,
         y, O, CUDA_R_16BF);
}
void mm_f32(float *y, const float *x, const float *W, int M, int K, int O, int acc) {
    if (M == 0 || O == 0) return;
    gemm(CUDA_R_32F, CUBLAS_OP_T, CUBLAS_OP_N, O, M, K, W, K, x, K, acc ? 1.0f : 0.0f, y, O);
}
/* dx (M, K) (+)= dy · W;  dW (O, K) += dy^T · x */
void mmb_bf16(float *dx, float *dW, const float *dy, const float *x, const float *W, int M,
              int K, int O, int acc) {
    if (M == 0) return;
    const __nv_bfloat16 *d = cast(1, dy, (size_t)M * O);
    if (dx)
        gemm(CUDA_R_16BF, CUBLAS_OP_N, CUBLAS_OP_N, K, M, O, weights(W, (size_t)O * K), K, d, O,
             acc ? 1.0f : 0.0f, dx, K);
    if (dW) gemm(CUDA_R_16BF, CUBLAS_OP_N, CUBLAS_OP_T, K, O, M, x, K, d, O, 1.0f, dW, K);
}
void mmb_lo_bf16(float *dx, float *dW, const void *dy, int ldy, const float *x, const float *W,
                 int M, int K, int O, int acc) {
    if (M == 0) return;
    if (dx)
        gemm(CUDA_R_16BF, CUBLAS_OP_N, CUBLAS_OP_N, K, M, O, weights(W, (size_t)O * K), K, dy,
             ldy, acc ? 1.0f : 0.0f, dx, K);
    if (dW) gemm(CUDA_R_16BF, CUBLAS_OP_N, CUBLAS_OP_T, K, O, M, x, K, dy, ldy, 1.0f, dW, K);
}
void mmb_f32(float *dx, float *dW, const float *dy, const float *x, const float *W, int M, int K,
             int O, int acc) {
    if (M == 0) return;
    if (dx)
        gemm(CUDA_R_32F, CUBLAS_OP_N, CUBLAS_OP_N, K, M, O, W, K, dy, O, acc ? 1.0f : 0.0f, dx,
             K);
    if (dW) gemm(CUDA_R_32F, CUBLAS_OP_N, CUBLAS_OP_T, K, O, M, x, K, dy, O, 1.0f, dW, K);
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

/* Dense FLOPs per SM per clock by architecture: bf16 tensor cores with fp32 accumulation, and
 * fp32 FMA lanes × 2 (vendor figures: A100 312 TF = 108 SMs × 1.41 GHz × 2048; H100 SXM
 * 989 TF = 132 × 1.83 GHz × 4096; L40S 362 TF = 142 × 2.52 GHz × 1024). */
extern "C" int lm_cuda_peak_flops(int f32, double *flops) {
    static const struct { int sm, bf16, fp32; } rate[] = {
        {80, 2048, 128}, {86, 1024, 256}, {87, 1024, 256}, {89, 1024, 256}, {90, 4096, 256},
    };
    *flops = 0.0;
    if (!S.ready) return -1;
    int dev = 0, major = 0, minor = 0, sms = 0, khz = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    for (size_t i = 0; i < sizeof rate / sizeof rate[0]; i++)
        if (rate[i].sm == 10 * major + minor) {
            *flops = (double)sms * khz * 1e3 * (f32 ? rate[i].fp32 : rate[i].bf16);
            return 0;
        }
    return -1;
}
