// SPDX-License-Identifier: Apache-2.0
/* backends.cu — the CUDA backends of the routing table (src/route/backend.h): the reference
 * role for every branch (and the reference decode step), FA-2 for cmp and win (and its Hopper
 * kernels, opt-in: NSA_USE_HOPPER=1), the fused group-centric selection ("triton"), the
 * split-key decode step ("cuda.decode").
 * Not kernels: each fwd() hands the pipeline state to its kernel file's launcher.
 * Invariant: supports() and the launchers ask nsa_cuda_role_supported, the one place that knows
 * what each role can run, and supports() checks the call's operands by the launchers' rule
 * (nsa_call_tc_operands), so the router never picks a backend that would refuse the call.
 */
#include "common.cuh"

extern "C" {
#include "bwd_api.h"
}

#include <stdio.h>

extern "C" int nsa_cuda_role_supported(const nsa_route_problem *p, nsa_branch br, nsa_role role,
                                       size_t smem_optin, const char **why) {
    const nsa_shape s = nsa_cu_shape_of(p);
    if (p->pass == NSA_PASS_BACKWARD)
        return nsa_cuda_bwd_role_supported(p, br, role, smem_optin, why);
    if (p->pass == NSA_PASS_DECODE) { /* the reference step or the split-key step (fa2 role) */
        if (role == NSA_ROLE_REF || role == NSA_ROLE_FA2) return 1;
        *why = "no decode step of this role";
        return 0;
    }
    if (p->cfg.n > 256) { *why = "n > 256 (GPU top-n)"; return 0; }
    switch (role) {
    case NSA_ROLE_REF: return 1;
    case NSA_ROLE_FA2:
        if (br == NSA_BRANCH_SEL) { *why = "FA-2 serves cmp and win"; return 0; }
        return nsa_cu_fa2_supported(&s, br, why);
    case NSA_ROLE_MASKED:
        if (br == NSA_BRANCH_SEL) { *why = "the masked role serves cmp and win"; return 0; }
        return nsa_cu_tiled_supported(&s, br, smem_optin, why);
    case NSA_ROLE_PACKED:
        if (br != NSA_BRANCH_SEL) { *why = "the packed role serves sel"; return 0; }
        return nsa_cu_tiled_supported(&s, br, smem_optin, why);
    case NSA_ROLE_FUSED_SEL:
        if (br != NSA_BRANCH_SEL) { *why = "the fused kernel serves sel"; return 0; }
        return nsa_cu_fused_supported(&s, why);
    default: *why = "role not built for CUDA"; return 0;
    }
}

/* The device's opt-in shared memory per block; 0 (caps filled by hand): the 48 KB every
 * architecture grants, so an unknown device gets no kernel that might not fit. */
static size_t smem_of(const nsa_device_caps *dev) {
    return dev->smem_per_block > 0 ? (size_t)dev->smem_per_block : 48 * 1024;
}

static int cu_supports(const nsa_backend *self, const nsa_call *c, nsa_branch br,
                       const nsa_device_caps *dev, char *why, size_t why_len) {
    const int hopper = (self->branches & NSA_BACKEND_OPT_IN) != 0; /* cuda.fa3 */
    const char *w = "";
    const int tc = self->role == NSA_ROLE_FA2 || self->role == NSA_ROLE_FUSED_SEL;
    if (dev->kind != NSA_DEVICE_CUDA) w = "not a CUDA device";
    else if (!dev->compiled) w = "no code compiled for this architecture";
    else if (tc && dev->sm < 80) w = "tensor-core kernels need sm_80+";
    else if (!(self->branches & NSA_BRANCH_BIT(br))) w = "branch not served";
    else if (hopper && dev->sm != 90) w = "the Hopper kernels need sm_90 (wgmma, TMA)";
    else if (hopper && c->p.pass != NSA_PASS_FORWARD) w = "the Hopper kernels run the forward";
    else if (hopper) {
        const nsa_shape s = nsa_cu_shape_of(&c->p);
        if (nsa_cu_fa3_supported(&s, br, &w) && nsa_call_tc_operands(c, br, &w)) return 1;
    } else if (nsa_cuda_role_supported(&c->p, br, self->role, smem_of(dev), &w) &&
               (!tc || nsa_call_tc_operands(c, br, &w)))
        return 1;
    snprintf(why, why_len, "%s", w);
    return 0;
}

static nsa_status ref_fwd(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)self;
    nsa_cu_fwd *st = nsa_cu_state(w);
    if (br == NSA_BRANCH_CMP) st->P_valid = 0;
    return nsa_cu_ref_attend(ctx, (cudaStream_t)w->stream, st->dt, st->kc_dt, &st->P, br);
}

/* The tensor-core cmp/win step on kernel `attend` (fa2.cu, or sm90/fa3.cu for the Hopper row):
 * cmp reads the compressed K/V in the call dtype and also writes the scores' input P. */
typedef nsa_status (*tc_attend_fn)(nsa_context *, nsa_cu_stream, nsa_dtype, const nsa_cu_params *,
                                   nsa_branch);
static nsa_status tc_fwd(nsa_context *ctx, tc_attend_fn attend, nsa_branch br, nsa_fwd_work *w) {
    nsa_cu_fwd *st = nsa_cu_state(w);
    nsa_cu_params P = st->P;
    if (br == NSA_BRANCH_CMP) {
        P.kc = st->kcT;
        P.vc = st->vcT;
        st->P_valid = 0;
    }
    NSA_TRY(attend(ctx, (cudaStream_t)w->stream, st->dt, &P, br));
    if (br == NSA_BRANCH_CMP) st->P_valid = 1;
    return NSA_OK;
}
static nsa_status fa2_fwd(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)self;
    return tc_fwd(ctx, nsa_cu_fa2_attend, br, w);
}
static nsa_status fa3_fwd(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)self;
    return tc_fwd(ctx, nsa_cu_fa3_attend, br, w);
}

static nsa_status fused_fwd(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                            nsa_fwd_work *w) {
    (void)self;
    (void)br;
    nsa_cu_fwd *st = nsa_cu_state(w);
    return nsa_cu_fused_sel(ctx, (cudaStream_t)w->stream, st->dt, &st->P);
}

/* The decode steps: the reference step (double) and the split-key step (f32). */
static nsa_status ref_decode(nsa_context *ctx, const nsa_backend *self, nsa_kv_cache *c,
                             const nsa_decode_args *a) {
    (void)self;
    return nsa_cu_decode_step(ctx, c, a, 0);
}

static nsa_status split_decode(nsa_context *ctx, const nsa_backend *self, nsa_kv_cache *c,
                               const nsa_decode_args *a) {
    (void)self;
    return nsa_cu_decode_step(ctx, c, a, 1);
}

extern "C" const nsa_backend nsa_cuda_backend_ref = {
    "cuda.ref", NSA_ROLE_REF, NSA_BRANCHES_ALL, NSA_DEVICE_CUDA, cu_supports, ref_fwd, NULL,
    NULL, NULL, ref_decode};
extern "C" const nsa_backend nsa_cuda_backend_fa3 = {
    "cuda.fa3", NSA_ROLE_FA2,
    NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN) | NSA_BACKEND_OPT_IN,
    NSA_DEVICE_CUDA, cu_supports, fa3_fwd, NULL, NULL, NULL, NULL};
extern "C" const nsa_backend nsa_cuda_backend_fa2 = {
    "cuda.fa2", NSA_ROLE_FA2, NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN),
    NSA_DEVICE_CUDA, cu_supports, fa2_fwd, NULL, NULL, NULL, NULL};
extern "C" const nsa_backend nsa_cuda_backend_triton = {
    "cuda.triton", NSA_ROLE_FUSED_SEL, NSA_BRANCH_BIT(NSA_BRANCH_SEL), NSA_DEVICE_CUDA,
    cu_supports, fused_fwd, NULL, NULL, NULL, NULL};
/* decode only (no forward entry): the router considers it for NSA_PASS_DECODE alone */
extern "C" const nsa_backend nsa_cuda_backend_decode = {
    "cuda.decode", NSA_ROLE_FA2, NSA_BRANCHES_ALL, NSA_DEVICE_CUDA, cu_supports, NULL, NULL,
    NULL, NULL, split_decode};

static nsa_status tiled_fwd(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                            nsa_fwd_work *w) {
    (void)self;
    nsa_cu_fwd *st = nsa_cu_state(w);
    if (br == NSA_BRANCH_CMP) st->P_valid = 0;
    return nsa_cu_tiled_attend(ctx, (cudaStream_t)w->stream, st->dt, st->kc_dt, &st->P, br);
}

extern "C" const nsa_backend nsa_cuda_backend_masked = {
    "cuda.masked", NSA_ROLE_MASKED, NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN),
    NSA_DEVICE_CUDA, cu_supports, tiled_fwd, NULL, NULL, NULL, NULL};
extern "C" const nsa_backend nsa_cuda_backend_packed = {
    "cuda.packed", NSA_ROLE_PACKED, NSA_BRANCH_BIT(NSA_BRANCH_SEL), NSA_DEVICE_CUDA, cu_supports,
    tiled_fwd, NULL, NULL, NULL, NULL};

/* cuda.fa3 before cuda.fa2: an opt-in row is tried first when opted in */
static const nsa_backend *const cuda_backends[] = {
    &nsa_cuda_backend_ref,    &nsa_cuda_backend_fa3,    &nsa_cuda_backend_fa2,
    &nsa_cuda_backend_triton, &nsa_cuda_backend_masked, &nsa_cuda_backend_packed,
    &nsa_cuda_backend_decode};

extern "C" const nsa_backend *const *nsa_device_cuda_backends(int *count) {
    *count = (int)(sizeof cuda_backends / sizeof cuda_backends[0]);
    return cuda_backends;
}
