// SPDX-License-Identifier: Apache-2.0
/* context_init.c — nsa_context_create / nsa_context_destroy: flags from the environment, the
 * device profiles, the CUDA device count and toolchain, and the CUDA workspace at the end.
 * Not the context's accessors (src/core/context.c). Here, not in core, because creation needs
 * the router's state: core includes no route header.
 * Invariant: a failed creation frees everything it made and reports why in msg.
 */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>

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
