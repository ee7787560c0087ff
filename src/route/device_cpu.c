// SPDX-License-Identifier: Apache-2.0
/* device_cpu.c — the device hooks of backend.h for a build without CUDA: no CUDA device,
 * no CUDA pipeline (so no CUDA KV cache), no CUDA backends, toolchain "CPU-only build".
 * src/cuda/device.cu defines the same functions when CUDA is compiled in (CMake then drops
 * this file); this file is the exact list it must define.
 */
#include "backend.h"

#include <stdio.h>
#include <string.h>

int nsa_device_cuda_count(void) { return 0; }

int nsa_device_cuda_caps(int index, nsa_device_caps *caps, char *why, size_t why_len) {
    (void)caps;
    snprintf(why, why_len, "CUDA device %d: this is a CPU-only build", index);
    return 1;
}

void nsa_device_toolchain(nsa_toolchain *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->note, sizeof out->note, "CPU-only build");
}

const nsa_pipeline *nsa_device_cuda_pipeline(void) { return NULL; }

const nsa_backend *const *nsa_device_cuda_backends(int *count) {
    *count = 0;
    return NULL;
}

nsa_status nsa_device_cuda_backward(nsa_context *ctx, const nsa_fwd_args *fwd,
                                    const nsa_bwd_args *g, const nsa_shape *s,
                                    const nsa_role role[3], const nsa_role fwd_role[3],
                                    int force_branch) {
    (void)fwd; (void)g; (void)s; (void)role; (void)fwd_role; (void)force_branch;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "q: a CUDA backward needs a CUDA build");
}

nsa_status nsa_device_cuda_read(nsa_context *ctx, void *dst, const void *src, size_t bytes) {
    (void)dst; (void)src; (void)bytes;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cu_seqlens: a CUDA tensor needs a CUDA build");
}
