// SPDX-License-Identifier: Apache-2.0
/* backends.c — the backend table, run-time registration (tests), device caps (real and named),
 * the toolchain, and the names of branches and roles.
 * Not the choice among backends (router.c): this file only says which exist.
 * Invariant: the table order is the preference order within a role; run-time registered
 * backends come first so a test can stand in for a fast path.
 */
#include "route.h"

#include <stdio.h>
#include <string.h>

/* The built-in table: one line per backend of a device that needs no device hooks. CUDA
 * backends come from nsa_device_cuda_backends() (src/cuda/device.cu). */
static const nsa_backend *const builtin[] = {
    &nsa_backend_ref_cpu,
};
#define NBUILTIN ((int)(sizeof builtin / sizeof builtin[0]))

#define NSA_REGISTER_MAX 8
static const nsa_backend *registered[NSA_REGISTER_MAX];
static int nregistered, hide_device;
const nsa_backend *nsa_backend_nth(int i) {
    if (i < 0) return NULL;
    if (i < nregistered) return registered[i];
    i -= nregistered;
    if (i < NBUILTIN) return builtin[i];
    i -= NBUILTIN;
    if (hide_device) return NULL;
    int nc = 0;
    const nsa_backend *const *cu = nsa_device_cuda_backends(&nc);
    return i < nc ? cu[i] : NULL;
}

/* For tools only (not thread-safe: one static list). */
static const nsa_backend *all[NSA_REGISTER_MAX + NBUILTIN + 64];

const nsa_backend *const *nsa_backends_all(int *count) {
    int n = 0;
    const nsa_backend *be;
    while (n < (int)(sizeof all / sizeof all[0]) && (be = nsa_backend_nth(n)) != NULL)
        all[n++] = be;
    *count = n;
    return all;
}

nsa_status nsa_backend_register(const nsa_backend *be) {
    if (!be || !be->name || !be->supports || !(be->fwd || be->decode) ||
        !(be->branches & NSA_BRANCHES_ALL) ||
        (unsigned)be->role >= NSA_ROLE_COUNT)
        return NSA_ERR_INVALID_ARG;
    if (nregistered == NSA_REGISTER_MAX) return NSA_ERR_INVALID_ARG;
    registered[nregistered++] = be;
    return NSA_OK;
}

void nsa_backend_unregister_all(void) { nregistered = 0; }

void nsa_backend_hide_device(int on) { hide_device = on != 0; }

const nsa_pipeline *nsa_pipeline_for(nsa_device_kind kind) {
    if (kind == NSA_DEVICE_CPU) return &nsa_cpu_pipeline;
    if (kind == NSA_DEVICE_CUDA) return nsa_device_cuda_pipeline();
    return NULL;
}

const char *nsa_branch_name(nsa_branch b) {
    switch (b) {
    case NSA_BRANCH_CMP: return "cmp";
    case NSA_BRANCH_SEL: return "sel";
    case NSA_BRANCH_WIN: return "win";
    }
    return "?";
}

const char *nsa_role_name(nsa_role r) {
    switch (r) {
    case NSA_ROLE_REF: return "ref";
    case NSA_ROLE_MASKED: return "masked";
    case NSA_ROLE_PACKED: return "packed";
    case NSA_ROLE_FA2: return "fa2";
    case NSA_ROLE_FUSED_SEL: return "triton";
    }
    return "?";
}

/* ---- devices ---- */

/* 1 when code for one of the toolchain's archs runs on sm: the same arch, or an older minor of
 * the same major (sm_80 code runs on sm_86 and sm_89). */
static int arch_compiled(const nsa_toolchain *tc, int sm) {
    for (int i = 0; i < tc->narchs; i++) {
        int a = tc->archs[i];
        if (a == sm || (a / 10 == sm / 10 && a % 10 <= sm % 10)) return 1;
    }
    return 0;
}

/* Opt-in shared memory per block of an architecture (CUDA C Programming Guide, compute
 * capability table); the 48 KB every architecture grants without opt-in where not listed. */
static int64_t smem_optin_of(int sm) {
    switch (sm) {
    case 80: case 87: return 163 * 1024;
    case 86: case 89: return 99 * 1024;
    case 90: return 227 * 1024;
    default: return 48 * 1024;
    }
}

nsa_status nsa_device_caps_named(const char *name, nsa_device_caps *out) {
    if (!name || !out) return NSA_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (!strcmp(name, "cpu")) {
        out->kind = NSA_DEVICE_CPU;
        out->compiled = 1;
        snprintf(out->name, sizeof out->name, "cpu");
        return NSA_OK;
    }
    int sm = 0, len = 0;
    if (sscanf(name, "sm%d%n", &sm, &len) != 1 || name[len] != '\0' || sm < 10 || sm > 999)
        return NSA_ERR_INVALID_ARG;
    nsa_toolchain tc;
    nsa_device_toolchain(&tc);
    out->kind = NSA_DEVICE_CUDA;
    out->sm = sm;
    out->compiled = arch_compiled(&tc, sm);
    out->smem_per_block = smem_optin_of(sm);
    snprintf(out->name, sizeof out->name, "sm%d (named)", sm);
    return NSA_OK;
}

nsa_status nsa_device_caps_of(nsa_context *ctx, nsa_device dev, nsa_device_caps *out) {
    if (dev.kind == NSA_DEVICE_CPU) return nsa_device_caps_named("cpu", out);
    if (dev.kind != NSA_DEVICE_CUDA)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "device: unknown kind %d", (int)dev.kind);
    if (dev.index < 0 || dev.index >= ctx->cuda_devices)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "device: CUDA device %d does not exist (%d found)",
                        dev.index, ctx->cuda_devices);
    const int cached = dev.index < 8;
    if (cached && (ctx->cuda_caps_known >> dev.index & 1u)) {
        *out = ctx->cuda_caps[dev.index];
        return NSA_OK;
    }
    char why[NSA_REASON_LEN];
    memset(out, 0, sizeof *out);
    if (nsa_device_cuda_caps(dev.index, out, why, sizeof why) != 0)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "device: %s", why);
    out->kind = NSA_DEVICE_CUDA;
    out->index = dev.index;
    out->compiled = arch_compiled(&ctx->toolchain, out->sm);
    if (cached) {
        ctx->cuda_caps[dev.index] = *out;
        ctx->cuda_caps_known |= 1u << dev.index;
    }
    return NSA_OK;
}

nsa_status nsa_device_caps_query(nsa_context *ctx, nsa_device dev, nsa_device_caps *out) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!out) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "out: NULL pointer");
    return nsa_device_caps_of(ctx, dev, out);
}

nsa_status nsa_context_toolchain(const nsa_context *ctx, nsa_toolchain *out) {
    if (!ctx || !out) return NSA_ERR_INVALID_ARG;
    *out = ctx->toolchain;
    return NSA_OK;
}
