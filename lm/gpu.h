// SPDX-License-Identifier: Apache-2.0
/* gpu.h — the CUDA backend of the language model (lm/cuda_ops.cu): cuBLAS GEMMs and fused
 * CUDA C kernels behind the lm_backend table of lm.h, plus device-memory figures for the
 * heartbeat. Not the NSA kernels: the attention goes through the library (nsa_forward /
 * nsa_backward on device tensors). In a build without CUDA (lm/gpu_none.c) every call fails
 * with a message and nothing else changes.
 * Invariant: one CUDA backend per process, on device 0 and the default stream; params (master
 * weights), grads, moments, the residual stream and the loss stay fp32; in bf16 mode the GEMMs'
 * and attention's inputs are bf16 (act_lowp activations, bf16 mirrors of the weights).
 */
#ifndef NSA_LM_GPU_H
#define NSA_LM_GPU_H

#include "lm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA backend: f32 = 0 for bf16 compute (GEMMs on bf16 tensor cores with fp32
 * accumulation, NSA layer in bf16, act_lowp), 1 for fp32 everywhere. NULL with err when this build or
 * machine has no usable CUDA device. */
const lm_backend *lm_cuda_backend(int f32, char *err, size_t n);

/* Device memory in MiB: allocated through the backend now, its peak, and the device's used
 * memory (cudaMemGetInfo total - free: the library's workspace, stream-ordered pools, cuBLAS
 * and the context included). -1 when there is no CUDA backend. */
int lm_cuda_mem_mib(double *alloc, double *alloc_peak, double *reserved);

/* The device's dense peak FLOP/s for the backend's compute (bf16 tensor cores, or fp32 lanes
 * when f32): SMs × the peak clock the driver reports × FLOPs per SM per clock of its
 * architecture (sm80, sm86/87, sm89, sm90). -1 when there is no CUDA backend or the
 * architecture is not in the table. The denominator of the progress line's MFU. */
int lm_cuda_peak_flops(int f32, double *flops);

#ifdef __cplusplus
}
#endif
#endif /* NSA_LM_GPU_H */
