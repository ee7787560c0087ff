/* log.c — the only place libnsa prints: tagged lines, at most NSA_LOG_LIMIT per tag per context,
 * to stderr or the context's callback.
 * Not thread-safe across threads sharing one context (a context belongs to one thread).
 * Invariant: a tag's count grows only when a line is emitted or suppressed, never resets.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

void nsa_context_set_log_callback(nsa_context *ctx, nsa_log_fn fn, void *user) {
    if (!ctx) return;
    ctx->log_fn = fn;
    ctx->log_user = user;
}

void nsa_log(nsa_context *ctx, const char *tag, const char *fmt, ...) {
    if (!ctx || !tag) return;
    int slot = -1;
    for (int i = 0; i < ctx->log_ntags; i++)
        if (strcmp(ctx->log_tags[i], tag) == 0) { slot = i; break; }
    if (slot < 0) {
        if (ctx->log_ntags < NSA_LOG_MAX_TAGS) {
            slot = ctx->log_ntags++;
            snprintf(ctx->log_tags[slot], sizeof ctx->log_tags[slot], "%s", tag);
            ctx->log_counts[slot] = 0;
        } else {
            slot = NSA_LOG_MAX_TAGS - 1; /* overflow tags share the last slot's budget */
        }
    }
    if (ctx->log_counts[slot] >= ctx->flags.log_limit) return;
    ctx->log_counts[slot]++;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (ctx->log_fn)
        ctx->log_fn(ctx->log_user, tag, line);
    else
        fprintf(stderr, "[nsa %s] %s\n", tag, line);
}
