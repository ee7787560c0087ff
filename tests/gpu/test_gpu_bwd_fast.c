// SPDX-License-Identifier: Apache-2.0
/* test_gpu_bwd_fast.c — the tiled CUDA backward roles (masked cmp/win, packed sel; f32
 * accumulation) against the CPU reference backward through the public nsa_backward with default
 * routing (checked: the backward routes to cuda.masked / cuda.packed): GQA 1/4/16, Dk ≠ Dv, T
 * below l, below lp, ragged; f32/bf16/f16; shared K/V; ranges given or recomputed; bitwise
 * repeatability; a small case for compute-sanitizer. Gradients poisoned, guards after each.
 * Tolerance (docs/design.md §5): the reference rounds once from double; the tiled roles accumulate
 * in f32 (sums of up to a few thousand terms: a floor of 5e-5·rms; 1e-5·rms was measured too
 * tight at f32, 1.06× over it): |gpu − ref| ≤ 2·u·|ref| + 5e-5·rms(ref) + 1e-7 (u: 2^-8 bf16,
 * 2^-11 f16, 2^-24 f32).
 * Skips (77) without a GPU.
 */
#include "gpu_bwd_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One problem at this file's tolerance floor. */
static int run_one(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt, int shared,
                   int mode) {
    return gb_run_one(ctx, c, B, T, dt, shared, mode, 5e-5, "fast ");
}

/* The backward of c at T routes to the tiled roles (cuda.masked, cuda.packed, cuda.masked). */
static int routes_tiled(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt) {
    nsa_route_decision d;
    if (!gb_route_backward(ctx, c, B, T, dt, &d)) return 0;
    const int ok = d.role[0] == NSA_ROLE_MASKED && d.role[1] == NSA_ROLE_PACKED &&
                   d.role[2] == NSA_ROLE_MASKED;
    if (!ok)
        printf("  routed: cmp %s (%s), sel %s (%s), win %s (%s)\n", d.backend[0], d.reason[0],
               d.backend[1], d.reason[1], d.backend[2], d.reason[2]);
    return ok;
}


/* The tiled roles: the tensor-core roles (test_gpu_bwd_tc.c) would take bf16/f16 on sm_80+. */
static void tiled_only(nsa_context *ctx) {
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "0"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_TRITON_SEL", "0"));
}

/* f32, GQA 4 / 1 / 16, Dk ≠ Dv, T below l, below lp, ragged; the route is the tiled one. */
static void fast_f32(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    tiled_only(ctx);
    CHECK(routes_tiled(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 2, 203, NSA_DTYPE_F32));
    const int Ts[] = {5, 13, 203};
    for (int i = 0; i < 3; i++)
        CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 2, Ts[i], NSA_DTYPE_F32, 0,
                      RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(4, 4, 16, 16, 4, 2, 8, 3, 10), 1, 77, NSA_DTYPE_F32, 0, RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(16, 1, 48, 32, 16, 8, 32, 5, 40), 1, 181, NSA_DTYPE_F32, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(4, 1, 40, 72, 16, 8, 48, 3, 70), 2, 333, NSA_DTYPE_F32, 0,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* Paper-like dims (Dk 192, Dv 128, l 32, d 16, lp 64) in bf16 and f16, G = 16 and 4; the
 * issue-8 head dims (64/64, G = 6, w = 512) at T = 700. */
static void fast_bf16_f16(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    tiled_only(ctx);
    CHECK(run_one(ctx, gb_cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), 1, 300, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(8, 2, 64, 32, 32, 16, 64, 3, 100), 2, 222, NSA_DTYPE_F16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(12, 2, 64, 64, 32, 16, 64, 16, 512), 1, 700, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* One K/V for every branch (aliased dK/dV summed); ranges recomputed on the GPU. */
static void fast_shared_recomputed(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    tiled_only(ctx);
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 32, 8, 4, 16, 4, 24), 2, 150, NSA_DTYPE_F32, 1,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(8, 2, 64, 64, 16, 8, 32, 4, 64), 1, 190, NSA_DTYPE_BF16, 1,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 2, 160, NSA_DTYPE_F32, 0, 0));
    nsa_context_destroy(ctx);
}

/* Bitwise the same gradients on a second run (bf16, G = 16; f32 shared; f32 with splits). */
static void fast_deterministic(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    tiled_only(ctx);
    CHECK(run_one(ctx, gb_cfg(16, 1, 64, 64, 16, 8, 32, 4, 48), 1, 240, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN | TWICE));
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 2, 120, NSA_DTYPE_F32, 1,
                  RANGES_GIVEN | TWICE));
    /* long walks split over several blocks (partial slots summed in order) */
    CHECK(run_one(ctx, gb_cfg(16, 1, 32, 32, 16, 8, 32, 4, 200), 1, 1100, NSA_DTYPE_F32, 0,
                  RANGES_GIVEN | TWICE));
    nsa_context_destroy(ctx);
}

/* NSA_FORCE_BRANCH=win: one-hot gates, dgates still dout·o_b. */
static void fast_force_branch(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    tiled_only(ctx);
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_FORCE_BRANCH", "win"));
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 1, 100, NSA_DTYPE_F32, 0,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* Small shape for compute-sanitizer (memcheck / racecheck). */
static void fast_sanitize_small(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return;
    tiled_only(ctx);
    CHECK(run_one(ctx, gb_cfg(8, 2, 16, 24, 8, 4, 16, 3, 12), 1, 45, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(4, 1, 16, 8, 4, 4, 8, 3, 6), 1, 30, NSA_DTYPE_F32, 1, 0));
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"fast_f32", fast_f32},
        {"fast_bf16_f16", fast_bf16_f16},
        {"fast_shared_recomputed", fast_shared_recomputed},
        {"fast_deterministic", fast_deterministic},
        {"fast_force_branch", fast_force_branch},
        {"fast_sanitize_small", fast_sanitize_small},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
