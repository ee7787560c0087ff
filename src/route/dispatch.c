/* dispatch.c — the public entry points nsa_forward / nsa_backward: validate, route, run.
 * Not the routing decision itself (router.c decides); this file checks arguments, asks the
 * router, runs the chosen backends and applies the fallbacks.
 * Invariant: every call validates every argument before touching an output.
 */
#include "../ref/ref.h"

nsa_status nsa_forward(nsa_context *ctx, const nsa_fwd_args *a) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    nsa_shape s;
    NSA_TRY(nsa_args_check_fwd(ctx, a, &s));
    if (s.dev != NSA_DEVICE_CPU)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "q: CUDA tensors need a CUDA build and device");
    ctx->counters.calls++;
    return nsa_ref_forward(ctx, a, &s);
}

nsa_status nsa_backward(nsa_context *ctx, const nsa_fwd_args *fwd, const nsa_bwd_args *g) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    nsa_shape s;
    NSA_TRY(nsa_args_check_fwd(ctx, fwd, &s));
    NSA_TRY(nsa_args_check_bwd(ctx, fwd, g, &s));
    if (s.dev != NSA_DEVICE_CPU)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "q: CUDA tensors need a CUDA build and device");
    ctx->counters.calls++;
    return nsa_ref_backward(ctx, fwd, g, &s);
}
