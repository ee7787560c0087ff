// SPDX-License-Identifier: Apache-2.0
/* gpu_cuda.h — what the two CUDA files of the model's backend share: the process state (cuBLAS
 * handle, upload buffers, reduction scratch, allocation records with write generations, the
 * first error), memory, casts and GEMMs (lm/cuda_blas.cu), used by the layer kernels and the
 * backend table (lm/cuda_ops.cu). C++ for nvcc only; not part of lm/gpu.h's API.
 * Invariant: one state per process (device 0, default stream); errors outside a launch are kept
 * in S.err until the next sync; a bf16 weight mirror is never read stale: the allocations GEMMs
 * read weights from (the parameters) are written only by upload, zero, copy and AdamW, and each
 * of them moves the allocation's generation on (touch), which recasts the mirror at its next use.
 */
#ifndef NSA_LM_GPU_CUDA_H
#define NSA_LM_GPU_CUDA_H

#include "gpu.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#define TPB 256
#define CHUNKS 128 /* row chunks of the column sums */

namespace lmcu {

struct alloc_rec {
    void *p;
    size_t bytes;
    unsigned gen; /* writes into it so far (touch): a mirror cast at another gen is stale */
};

struct state {
    int ready;
    cublasHandle_t h;
    uint8_t *tok, *targ;       /* (cap) token bytes uploaded for embed / cross-entropy */
    size_t tok_cap, targ_cap;
    float *part;               /* (CHUNKS, part_cap / CHUNKS) column partials          */
    size_t part_cap;
    double *dred;              /* (CHUNKS · 5 + 8) reduction partials and results      */
    cudaError_t err;           /* first error seen outside a launch                    */
    alloc_rec recs[8192];
    int nrecs;
    size_t alloc_now, alloc_peak;
};
extern state S;

void note(cudaError_t e);
unsigned blocks_for(int64_t n);
/* Uploads n host bytes into a device buffer grown as needed; NULL on failure (noted). */
uint8_t *bytes_buf(uint8_t **buf, size_t *cap, const uint8_t *host, size_t n);
/* The column-partials scratch of at least `floats`; NULL on failure (noted). */
float *part_buf(size_t floats);
/* The record holding device address p, or NULL. */
alloc_rec *rec_of(const void *p);
/* Counts a write into the allocation holding p (its weight mirrors become stale). */
void touch(const void *p);

/* backend entries of lm/cuda_blas.cu */
void *g_alloc(size_t bytes);
void g_release(void *p);
void g_upload(void *dst, const void *src, size_t bytes);
void g_download(void *dst, const void *src, size_t bytes);
void g_zero(float *p, size_t n);
void g_copy(float *dst, const float *src, size_t n);
void g_to_att(void *dst, const float *src, size_t n);
void g_from_att(float *dst, const void *src, size_t n);
/* bf16 mode: x is bf16 (the act_lowp activations), W goes through its bf16 mirror, dy is
 * rounded to bf16 once per call; fp32 accumulation and output. */
void mm_bf16(float *y, const float *x, const float *W, int M, int K, int O, int acc);
void mm_f32(float *y, const float *x, const float *W, int M, int K, int O, int acc);
void mmb_bf16(float *dx, float *dW, const float *dy, const float *x, const float *W, int M, int K,
              int O, int acc);
/* bf16 mode, y written bf16 / dy already bf16 with rows ldy apart (matmul_lo,
 * matmul_backward_lo) */
void mm_lo_bf16(void *y, const float *x, const float *W, int M, int K, int O);
void mmb_lo_bf16(float *dx, float *dW, const void *dy, int ldy, const float *x, const float *W,
                 int M, int K, int O, int acc);
void mmb_f32(float *dx, float *dW, const float *dy, const float *x, const float *W, int M, int K,
             int O, int acc);
int g_sync(char *err, size_t n);

} // namespace lmcu
#endif /* NSA_LM_GPU_CUDA_H */
