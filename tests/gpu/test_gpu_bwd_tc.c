// SPDX-License-Identifier: Apache-2.0
/* test_gpu_bwd_tc.c — the tensor-core CUDA backward roles (FA-2 cmp/win, fused group-centric
 * selection) against the CPU reference backward through the public nsa_backward with default
 * routing on an sm_80+ card (checked per case: the roles bound are printed; tc_route asserts
 * them): GQA 1/4/6/16/64, Dk ≠ Dv, T below l and below lp, ragged; bf16/f16; shared K/V; ranges
 * given or recomputed; bitwise repeatability; NSA_FORCE_BRANCH; a small case for
 * compute-sanitizer. Gradients poisoned, guards after each.
 * Tolerance (docs/design.md §5, docs/cuda_backward.md): P and dS are rounded to the dtype once per
 * product, as in FlashAttention, so errors scale with the terms of each sum, not with the
 * result; the yardstick is the same backward computed as an eager framework does in the dtype
 * (tests/gpu/gpu_bwd_lowp.c): per gradient, the max and the rms of |gpu − ref| must each stay
 * within twice those of |low-precision − ref| (the max plus one ulp of the largest element).
 * Skips (77) without a GPU.
 */
#include "gpu_bwd_util.h"

#include <stdio.h>
#include <string.h>

/* The roles nsa_backward binds for c at T; 1 when cmp/win run FA-2 and sel the fused kernel
 * (want_sel: also require the fused selection). */
static int routes_tc(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt, int want_sel) {
    nsa_route_decision d;
    if (!gb_route_backward(ctx, c, B, T, dt, &d)) return 0;
    const int ok = d.role[0] == NSA_ROLE_FA2 && d.role[2] == NSA_ROLE_FA2 &&
                   (!want_sel || d.role[1] == NSA_ROLE_FUSED_SEL);
    printf("  routed: cmp %s, sel %s (%s), win %s\n", d.backend[0], d.backend[1], d.reason[1],
           d.backend[2]);
    return ok;
}

static int run_one(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt, int shared,
                   int mode) {
    if (!routes_tc(ctx, c, B, T, dt, 0)) return 0;
    return gb_run_one(ctx, c, B, T, dt, shared, mode, -1.0, "tc ");
}


/* The default backward route on this card: FA-2 for cmp/win and the fused selection for bf16
 * and f16 at the paper's head dims and at the training configs' (G = 16 and G = 6); f32 stays
 * on the tiled roles. */
static void tc_route(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK(routes_tc(ctx, gb_cfg(64, 4, 192, 128, 32, 16, 64, 16, 512), 1, 65536, NSA_DTYPE_BF16, 1));
    CHECK(routes_tc(ctx, gb_cfg(16, 1, 64, 64, 32, 16, 64, 16, 512), 1, 32768, NSA_DTYPE_BF16, 1));
    CHECK(routes_tc(ctx, gb_cfg(12, 2, 64, 64, 32, 16, 64, 16, 512), 8, 2048, NSA_DTYPE_F16, 1));
    CHECK(!routes_tc(ctx, gb_cfg(16, 1, 64, 64, 32, 16, 64, 16, 512), 1, 2048, NSA_DTYPE_F32, 0));
    nsa_context_destroy(ctx);
}

/* Paper-like dims (Dk 192, Dv 128, l 32, d 16, lp 64) at G = 16 and 4; the training configs'
 * head dims at G = 6 and 16; G = 1 and 64; T below l, below lp, ragged. */
static void tc_bf16(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), 1, 300, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(8, 2, 192, 128, 32, 16, 64, 3, 100), 2, 222, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(12, 2, 64, 64, 32, 16, 64, 16, 512), 1, 700, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(16, 1, 64, 64, 32, 16, 64, 6, 160), 1, 611, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(4, 4, 64, 64, 16, 8, 32, 3, 40), 1, 150, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(64, 1, 64, 64, 16, 8, 32, 3, 24), 1, 90, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    const int Ts[] = {13, 45, 129};
    for (int i = 0; i < 3; i++)
        CHECK(run_one(ctx, gb_cfg(8, 2, 128, 128, 32, 16, 64, 3, 48), 2, Ts[i], NSA_DTYPE_BF16,
                      0, RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

static void tc_f16(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), 1, 333, NSA_DTYPE_F16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(8, 2, 128, 128, 32, 16, 64, 3, 100), 2, 222, NSA_DTYPE_F16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(6, 1, 64, 64, 16, 8, 32, 4, 64), 2, 257, NSA_DTYPE_F16, 0,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* The forward's per-branch outputs and lse kept by the caller: no forward recompute. */
static void tc_saved_forward(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), 1, 300, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN | SAVED));
    CHECK(run_one(ctx, gb_cfg(12, 2, 64, 64, 32, 16, 64, 8, 256), 2, 400, NSA_DTYPE_F16, 1,
                  RANGES_GIVEN | SAVED));
    nsa_context_destroy(ctx);
}

/* The FA-2 dq kernel with two K/V stages (nsa_cuda_tune "bwd_dq_stages"; the default is one). */
static void tc_dq_two_stages(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK_OK(ctx, nsa_cuda_tune("bwd_dq_stages", 2));
    const int ok = run_one(ctx, gb_cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), 1, 300, NSA_DTYPE_BF16,
                           0, RANGES_GIVEN) &&
                   run_one(ctx, gb_cfg(12, 2, 64, 64, 32, 16, 64, 8, 256), 2, 400, NSA_DTYPE_F16,
                           1, RANGES_GIVEN);
    CHECK_OK(ctx, nsa_cuda_tune("bwd_dq_stages", 0));
    CHECK(ok);
    nsa_context_destroy(ctx);
}

/* One K/V for every branch (aliased dK/dV summed); ranges recomputed on the GPU. */
static void tc_shared_recomputed(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(8, 2, 64, 64, 16, 8, 32, 4, 64), 1, 190, NSA_DTYPE_BF16, 1,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), 1, 260, NSA_DTYPE_BF16, 0, 0));
    CHECK(run_one(ctx, gb_cfg(12, 2, 64, 64, 32, 16, 64, 8, 256), 2, 400, NSA_DTYPE_F16, 1, 0));
    nsa_context_destroy(ctx);
}

/* Bitwise the same gradients on a second run (multi-chunk key tiles and their reduction). */
static void tc_deterministic(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(16, 1, 64, 64, 16, 8, 32, 4, 200), 1, 1100, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN | TWICE));
    CHECK(run_one(ctx, gb_cfg(8, 2, 192, 128, 32, 16, 64, 4, 64), 1, 500, NSA_DTYPE_F16, 1,
                  RANGES_GIVEN | TWICE));
    nsa_context_destroy(ctx);
}

/* NSA_FORCE_BRANCH=cmp: one-hot gates, dgates still dout·o_b. */
static void tc_force_branch(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_FORCE_BRANCH", "cmp"));
    gb_lowp_force = NSA_BRANCH_CMP;
    CHECK(run_one(ctx, gb_cfg(8, 2, 64, 64, 16, 8, 32, 4, 48), 1, 200, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    gb_lowp_force = -1;
    nsa_context_destroy(ctx);
}

/* Small shapes for compute-sanitizer (memcheck / racecheck). */
static void tc_sanitize_small(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(8, 2, 64, 64, 16, 8, 32, 3, 24), 1, 70, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(6, 1, 192, 128, 16, 8, 32, 3, 40), 1, 90, NSA_DTYPE_F16, 1, 0));
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"tc_route", tc_route},
        {"tc_bf16", tc_bf16},
        {"tc_f16", tc_f16},
        {"tc_saved_forward", tc_saved_forward},
        {"tc_dq_two_stages", tc_dq_two_stages},
        {"tc_shared_recomputed", tc_shared_recomputed},
        {"tc_deterministic", tc_deterministic},
        {"tc_force_branch", tc_force_branch},
        {"tc_sanitize_small", tc_sanitize_small},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
