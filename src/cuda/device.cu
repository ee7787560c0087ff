// SPDX-License-Identifier: Apache-2.0
/* device.cu — the CUDA device hooks of src/route/backend.h (device count and caps, toolchain,
 * pipeline and backend list), the context's device workspace, and small memory helpers.
 * Not the kernels (one .cu per concept beside this) nor routing policy (src/route/).
 * Invariant: without a driver or a GPU every query answers "none" (count 0, driver 0) and
 * leaves no sticky CUDA error behind; nothing here prints.
 */
#include "common.cuh"

#include <stdio.h>
#include <string.h>

#ifndef __CUDA_ARCH_LIST__
#define __CUDA_ARCH_LIST__ 0
#endif
static const int compiled_archs[] = {__CUDA_ARCH_LIST__}; /* 800, 900, ... */

nsa_status nsa_cu_check(nsa_context *ctx, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return NSA_OK;
    return nsa_fail(ctx, NSA_ERR_CUDA, "%s: CUDA error %d (%s)", what, (int)e,
                    cudaGetErrorString(e));
}

extern "C" int nsa_device_cuda_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* no driver / no device (error 35, 100): not sticky, clear it */
        return 0;
    }
    return n;
}

/* 1 when this build holds code that runs on sm: sm_80 code runs on every 8.x, sm_90a on 9.0. */
static int arch_compiled(int sm) {
    for (size_t i = 0; i < sizeof compiled_archs / sizeof compiled_archs[0]; i++) {
        int a = compiled_archs[i] / 10;
        if (a == 0) continue;
        if (a == sm || (a / 10 == 8 && sm / 10 == 8 && sm >= a)) return 1;
    }
    return 0;
}

extern "C" int nsa_device_cuda_caps(int index, nsa_device_caps *caps, char *why,
                                    size_t why_len) {
    memset(caps, 0, sizeof *caps);
    int n = nsa_device_cuda_count();
    if (index < 0 || index >= n) {
        snprintf(why, why_len, "CUDA device %d does not exist (%d found)", index, n);
        return 1;
    }
    cudaDeviceProp pr;
    cudaError_t e = cudaGetDeviceProperties(&pr, index);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(why, why_len, "cudaGetDeviceProperties(%d): %s", index, cudaGetErrorString(e));
        return 1;
    }
    caps->kind = NSA_DEVICE_CUDA;
    caps->index = index;
    caps->sm = pr.major * 10 + pr.minor;
    caps->compiled = arch_compiled(caps->sm);
    caps->multiprocessors = pr.multiProcessorCount;
    caps->smem_per_block = (int64_t)pr.sharedMemPerBlockOptin;
    caps->memory_bytes = (int64_t)pr.totalGlobalMem;
    snprintf(caps->name, sizeof caps->name, "%s", pr.name);
    return 0;
}

extern "C" void nsa_device_toolchain(nsa_toolchain *out) {
    memset(out, 0, sizeof *out);
    out->cuda_built = 1;
    if (cudaRuntimeGetVersion(&out->runtime_version) != cudaSuccess) out->runtime_version = 0;
    if (cudaDriverGetVersion(&out->driver_version) != cudaSuccess) out->driver_version = 0;
    cudaGetLastError();
    for (size_t i = 0; i < sizeof compiled_archs / sizeof compiled_archs[0] && i < 8; i++)
        if (compiled_archs[i]) out->archs[out->narchs++] = compiled_archs[i] / 10;
    if (out->driver_version == 0)
        snprintf(out->note, sizeof out->note, "no CUDA driver");
    else if (out->driver_version < out->runtime_version)
        snprintf(out->note, sizeof out->note, "driver %d.%d older than runtime %d.%d",
                 out->driver_version / 1000, out->driver_version % 1000 / 10,
                 out->runtime_version / 1000, out->runtime_version % 1000 / 10);
}

/* ---- shared memory ---- */

extern "C" size_t nsa_cu_smem_optin(void) {
    static size_t known[16]; /* per device ordinal, 0 until queried */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) {
        cudaGetLastError();
        return 48 * 1024;
    }
    if (dev < 16 && known[dev]) return known[dev];
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        cudaGetLastError();
        return 48 * 1024;
    }
    if (dev < 16) known[dev] = (size_t)v;
    return (size_t)v;
}

/* ---- tile choices ---- */

/* Default measured on H100 (bench/RESULTS.md, 2026-11-26): selection stages by head dim (0,
 * see sel_fused.cu). */
nsa_cu_tuning_t nsa_cu_tuning = {0};

extern "C" nsa_status nsa_cuda_tune(const char *key, int value) {
    if (!key) return NSA_ERR_INVALID_ARG;
    if (!strcmp(key, "sel_stages") && value >= 0 && value <= 2) nsa_cu_tuning.sel_stages = value;
    else if (!strcmp(key, "sel_union") && value >= 0 && value <= 2) nsa_cu_tuning.sel_union = value;
    else if (!strcmp(key, "bwd_dq_stages") && value >= 0 && value <= 2)
        nsa_cu_tuning.bwd_dq_stages = value;
    else if (!strcmp(key, "hopper") && value >= 0 && value <= 1) nsa_cu_tuning.hopper = value;
    else return NSA_ERR_INVALID_ARG;
    return NSA_OK;
}

/* ---- workspace ---- */

/* Device workspace of at least bytes, grown (never shrunk) on ctx; *p on success. Growing
 * frees the old buffer (cudaFree waits for work in flight that may still use it). */
nsa_status nsa_cu_workspace(nsa_context *ctx, size_t bytes, void **p) {
    if (ctx->dev_ws_bytes < bytes) {
        if (ctx->dev_ws) cudaFree(ctx->dev_ws);
        ctx->dev_ws = NULL;
        ctx->dev_ws_bytes = 0;
        cudaError_t e = cudaMalloc(&ctx->dev_ws, bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            ctx->dev_ws = NULL;
            return nsa_fail(ctx, NSA_ERR_NOMEM, "CUDA workspace: %zu bytes: %s", bytes,
                            cudaGetErrorString(e));
        }
        ctx->dev_ws_bytes = bytes;
    }
    *p = ctx->dev_ws;
    return NSA_OK;
}

extern "C" void nsa_cuda_workspace_free(nsa_context *ctx) {
    if (ctx->dev_ws) cudaFree(ctx->dev_ws);
    ctx->dev_ws = NULL;
    ctx->dev_ws_bytes = 0;
}

/* ---- helpers for tools and tests ---- */

extern "C" nsa_status nsa_cuda_malloc(nsa_context *ctx, void **p, size_t bytes) {
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e != cudaSuccess) cudaGetLastError();
    return nsa_cu_check(ctx, e, "cudaMalloc");
}
extern "C" void nsa_cuda_free(void *p) {
    if (p) cudaFree(p);
}
extern "C" nsa_status nsa_cuda_memcpy_h2d(nsa_context *ctx, void *dst, const void *src,
                                          size_t bytes) {
    return nsa_cu_check(ctx, cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "memcpy h2d");
}
extern "C" nsa_status nsa_cuda_memcpy_d2h(nsa_context *ctx, void *dst, const void *src,
                                          size_t bytes) {
    return nsa_cu_check(ctx, cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "memcpy d2h");
}
/* Reads the caller's tensor after the work queued on ctx's stream (the caller may have just
 * written it there). */
extern "C" nsa_status nsa_device_cuda_read(nsa_context *ctx, void *dst, const void *src,
                                           size_t bytes) {
    cudaStream_t cs = (cudaStream_t)ctx->stream;
    NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cs),
                         "cu_seqlens: copy to the host"));
    return nsa_cu_check(ctx, cudaStreamSynchronize(cs), "cu_seqlens: copy to the host");
}
extern "C" nsa_status nsa_cuda_memset(nsa_context *ctx, void *p, int byte, size_t bytes) {
    return nsa_cu_check(ctx, cudaMemset(p, byte, bytes), "memset");
}
extern "C" nsa_status nsa_cuda_sync(nsa_context *ctx) {
    return nsa_cu_check(ctx, cudaStreamSynchronize((cudaStream_t)ctx->stream), "synchronize");
}

/* Grid: one thread per element, 256 per block. A counter-based hash (splitmix64 of seed + i)
 * drives Box–Muller: N(0, 1)·scale, rounded to dt. Shared memory: none. */
template <typename T>
__global__ void fill_normal_kernel(T *p, int64_t n, uint64_t seed, float scale) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint64_t z = seed + (uint64_t)i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float u1 = ((float)(z >> 40) + 1.0f) * (1.0f / 16777217.0f);
    float u2 = (float)((z >> 16) & 0xffffff) * (1.0f / 16777216.0f);
    p[i] = nsa_cu_to<T>(sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2) * scale);
}

extern "C" nsa_status nsa_cuda_fill_normal(nsa_context *ctx, void *p, nsa_dtype dt, int64_t n,
                                           uint64_t seed, float scale) {
    if (n <= 0) return NSA_OK;
    cudaStream_t st = (cudaStream_t)ctx->stream;
    unsigned g = nsa_cu_blocks(n, 256);
    switch (dt) {
    case NSA_DTYPE_BF16: fill_normal_kernel<<<g, 256, 0, st>>>((__nv_bfloat16 *)p, n, seed, scale); break;
    case NSA_DTYPE_F16: fill_normal_kernel<<<g, 256, 0, st>>>((__half *)p, n, seed, scale); break;
    case NSA_DTYPE_F32: fill_normal_kernel<<<g, 256, 0, st>>>((float *)p, n, seed, scale); break;
    default: return nsa_fail(ctx, NSA_ERR_DTYPE, "fill: dtype %s", nsa_dtype_name(dt));
    }
    NSA_CU_LAUNCHED(ctx, "fill");
    return NSA_OK;
}
