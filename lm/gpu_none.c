// SPDX-License-Identifier: Apache-2.0
/* gpu_none.c — lm/gpu.h in a build without CUDA: no backend, a message saying so.
 * Not a fallback: `--device cuda` fails clearly instead of training on the CPU.
 * Invariant: compiled only when the CUDA backend is not (lm/CMakeLists.txt).
 */
#include "gpu.h"

#include <stdio.h>

const lm_backend *lm_cuda_backend(int f32, char *err, size_t n) {
    (void)f32;
    snprintf(err, n, "device: cuda: this build has no CUDA backend (configure with nvcc)");
    return NULL;
}

int lm_cuda_mem_mib(double *alloc, double *alloc_peak, double *reserved) {
    *alloc = *alloc_peak = *reserved = 0.0;
    return -1;
}

int lm_cuda_peak_flops(int f32, double *flops) {
    (void)f32;
    *flops = 0.0;
    return -1;
}
