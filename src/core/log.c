// SPDX-License-Identifier: Apache-2.0
/* log.c — the only place libnsa prints: tagged lines, at most NSA_LOG_LIMIT per tag per context
 * (nsa_log_once: at most one), to stderr or the context's callback.
 * Not thread-safe across threads sharing one context (a context belongs to one thread).
 * Invariant: a tag's count grows only when a line is emitted, never resets; tags beyond
 * NSA_LOG_MAX_TAGS share the last slot's budget, so the total output stays bounded.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

void nsa_context_set_log_callback(nsa_context *ctx, nsa_log_fn fn, void *user) {
    if (!ctx) return;
    ctx->log_fn = fn;
    ctx->log_user = user;
}

static int tag_slot(nsa_context *ctx, const char *tag) {
    for (int i = 0; i < ctx->log_ntags; i++)
        if (strcmp(ctx->log_tags[i], tag) == 0) return i;
    if (ctx->log_ntags == NSA_LOG_MAX_TAGS) return NSA_LOG_MAX_TAGS - 1;
    int slot = ctx->log_ntags++;
    snprintf(ctx->log_tags[slot], sizeof ctx->log_tags[slot], "%s", tag);
    ctx->log_counts[slot] = 0;
    return slot;
}

static void vlog(nsa_context *ctx, int64_t limit, const char *tag, const char *fmt, va_list ap) {
    if (!ctx || !tag || !fmt) return;
    int slot = tag_slot(ctx, tag);
    if (ctx->log_counts[slot] >= limit) return;
    ctx->log_counts[slot]++;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    if (ctx->log_fn)
        ctx->log_fn(ctx->log_user, tag, line);
    else
        fprintf(stderr, "[nsa %s] %s\n", tag, line);
}

void nsa_log(nsa_context *ctx, const char *tag, const char *fmt, ...) {
    if (!ctx) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, ctx->flags.log_limit, tag, fmt, ap);
    va_end(ap);
}

void nsa_log_once(nsa_context *ctx, const char *tag, const char *fmt, ...) {
    if (!ctx) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, ctx->flags.log_limit < 1 ? ctx->flags.log_limit : 1, tag, fmt, ap);
    va_end(ap);
}
