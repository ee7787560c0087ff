/* ref_backward.c — the reference backward (placeholder until the backward lands). */
#include "ref.h"

nsa_status nsa_ref_backward(nsa_context *ctx, const nsa_fwd_args *a, const nsa_bwd_args *g,
                            const nsa_shape *s) {
    (void)a;
    (void)g;
    (void)s;
    return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "backward: not implemented yet");
}
