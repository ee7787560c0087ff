// SPDX-License-Identifier: Apache-2.0
/* context.c — the context's per-call error message, counters, threads and stream.
 * Not its creation (src/route/context_init.c: flags, profiles and devices belong to the router)
 * nor the logger (log.c).
 * Invariant: every public call clears the message first, so the message always belongs to
 * the last call.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
