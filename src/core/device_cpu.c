// SPDX-License-Identifier: Apache-2.0
/* device_cpu.c — the device hooks of route/backend.h for a build without CUDA: no CUDA device,
 * no CUDA pipeline, no CUDA backends, toolchain "CPU-only build".
 * src/cuda/device.cu defines the same functions when CUDA is compiled in (CMake then drops
 * this file); this file is the exact list it must define.
 */
#include "../route/backend.h"
#include "../ref/kv_cache.h"

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
                                    const nsa_role role[3], int force_branch) {
    (void)fwd; (void)g; (void)s; (void)role; (void)force_branch;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "q: a CUDA backward needs a CUDA build");
}

nsa_status nsa_device_cuda_read(nsa_context *ctx, void *dst, const void *src, size_t bytes) {
    (void)dst; (void)src; (void)bytes;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cu_seqlens: a CUDA tensor needs a CUDA build");
}

/* CUDA KV caches (src/ref/kv_cache.h): a CPU build has none. */
nsa_status nsa_device_cuda_kv_alloc(nsa_context *ctx, nsa_kv_cache *c) {
    (void)c;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "desc.device: a CUDA KV cache needs a CUDA build");
}
void nsa_device_cuda_kv_free(nsa_kv_cache *c) { (void)c; }
nsa_status nsa_device_cuda_kv_reset(nsa_context *ctx, nsa_kv_cache *c, int b) {
    (void)c; (void)b;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cache: CUDA cache in a CPU build");
}
nsa_status nsa_device_cuda_kv_fill(nsa_context *ctx, nsa_kv_cache *c, const nsa_kv_src *src,
                                   int b0, int64_t Bp, int64_t T, int64_t S0) {
    (void)c; (void)src; (void)b0; (void)Bp; (void)T; (void)S0;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cache: CUDA cache in a CPU build");
}
nsa_status nsa_device_cuda_decode(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a,
                                  int fast) {
    (void)c; (void)a; (void)fast;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cache: CUDA cache in a CPU build");
}
nsa_status nsa_device_cuda_kv_reads(nsa_context *ctx, const nsa_kv_cache *c, int b,
                                    nsa_decode_reads *out) {
    (void)c; (void)b; (void)out;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cache: CUDA cache in a CPU build");
}
nsa_status nsa_device_cuda_kv_tail(nsa_context *ctx, const nsa_kv_cache *c, int b,
                                   const nsa_tensor *k, const nsa_tensor *v) {
    (void)c; (void)b; (void)k; (void)v;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cache: CUDA cache in a CPU build");
}
