// SPDX-License-Identifier: Apache-2.0
/* context.c — the context: per-call error message, flags, counters, threads, stream.
 * Not the router (src/route/) nor the logger (log.c); this file only owns the struct's life.
 * Invariant: every public call clears the message first, so the message always belongs to
 * the last call.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* flags, profiles (src/route/) and the device hooks (device_cpu.c or src/cuda/device.cu) */
#include "../route/route.h"

nsa_status nsa_fail(nsa_context *ctx, nsa_status st, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

void nsa_clear(nsa_context *ctx) {
    if (ctx) ctx->msg[0] = '\0';
}

nsa_status nsa_context_create(nsa_context **out, char *msg, size_t msg_len) {
    if (msg && msg_len) msg[0] = '\0';
    if (!out) {
        if (msg && msg_len) snprintf(msg, msg_len, "out: NULL pointer");
        return NSA_ERR_INVALID_ARG;
    }
    *out = NULL;
    nsa_context *ctx = nsa_calloc(1, sizeof *ctx);
    if (!ctx) {
        if (msg && msg_len) snprintf(msg, msg_len, "context: out of memory");
        return NSA_ERR_NOMEM;
    }
    nsa_flags_default(&ctx->flags);
    nsa_status st = nsa_flags_from_env(ctx, &ctx->flags);
    if (st != NSA_OK) {
        if (msg && msg_len) snprintf(msg, msg_len, "%s", ctx->msg);
        free(ctx);
        return st;
    }
    ctx->cuda_devices = nsa_device_cuda_count();
    nsa_device_toolchain(&ctx->toolchain);
    st = nsa_profiles_init(ctx);
    if (st != NSA_OK) {
        if (msg && msg_len) snprintf(msg, msg_len, "%s", ctx->msg);
        free(ctx->profiles);
        free(ctx);
        return st;
    }
    *out = ctx;
    return NSA_OK;
}

#ifdef NSA_HAVE_CUDA
void nsa_cuda_workspace_free(nsa_context *ctx); /* src/cuda/device.cu */
#endif

void nsa_context_destroy(nsa_context *ctx) {
#ifdef NSA_HAVE_CUDA
    if (ctx) nsa_cuda_workspace_free(ctx);
#endif
    if (ctx) free(ctx->profiles);
    if (ctx) free(ctx->docs);
    free(ctx);
}

const char *nsa_context_message(const nsa_context *ctx) { return ctx ? ctx->msg : ""; }

nsa_status nsa_context_set_stream(nsa_context *ctx, void *stream) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    ctx->stream = stream;
    return NSA_OK;
}

nsa_status nsa_context_set_threads(nsa_context *ctx, int threads) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (threads < 0) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "threads: %d is negative", threads);
    ctx->threads = threads;
    return NSA_OK;
}

nsa_status nsa_context_counters(const nsa_context *ctx, nsa_counters *out) {
    if (!ctx || !out) return NSA_ERR_INVALID_ARG;
    *out = ctx->counters;
    return NSA_OK;
}
