// SPDX-License-Identifier: Apache-2.0
/* test_gpu_bwd.c — the CUDA backward (issue 7) against the CPU reference backward on fresh random
 * inputs, through the public nsa_backward: GQA 1/4/16, Dk = Dv and Dk ≠ Dv, T below l, below lp,
 * ragged; f32/bf16/f16; separate and shared K/V (aliased gradients summed); selection ranges
 * handed over or recomputed; NSA_FORCE_BRANCH; malformed ranges refused before any write;
 * bitwise repeatability. Gradients are poisoned before each run; guards after every one.
 * Tolerance: both sides accumulate in double and round once to the dtype, the GPU's compressed
 * keys are f32: |gpu − ref| ≤ 2·u·|ref| + 1e-5·rms(ref) + 1e-7 (u: 2^-8 bf16, 2^-11 f16, 2^-24).
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
    return gb_run_one(ctx, c, B, T, dt, shared, mode, 1e-5, "");
}

/* The backward on the reference role (the tiled roles have tests/gpu/test_gpu_bwd_fast.c, the
 * tensor-core roles test_gpu_bwd_tc.c). */
static void ref_roles(nsa_context *ctx) {
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "0"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_TRITON_SEL", "0"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_CMP_MASK", "0"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_WIN_MASK", "0"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_SEL_PACK", "0"));
}

static nsa_context *gpu_ctx(void) {
    nsa_context *ctx = gp_context();
    if (ctx) ref_roles(ctx);
    return ctx;
}

/* f32, GQA 4 / 1 / 16, Dk ≠ Dv, T below l, below lp, ragged. */
static void ref_f32(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    const int Ts[] = {5, 13, 203};
    for (int i = 0; i < 3; i++)
        CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 2, Ts[i], NSA_DTYPE_F32, 0,
                      RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(4, 4, 16, 16, 4, 2, 8, 3, 10), 1, 77, NSA_DTYPE_F32, 0, RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(16, 1, 48, 32, 16, 8, 32, 5, 40), 1, 181, NSA_DTYPE_F32, 0,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* Paper-like dims (Dk 192, Dv 128, l 32, d 16, lp 64) in bf16 and f16, G = 16 and 4. */
static void ref_bf16_f16(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), 1, 300, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(8, 2, 64, 32, 32, 16, 64, 3, 100), 2, 222, NSA_DTYPE_F16, 0,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* One K/V for every branch: dK and dV passed once for all branches receive the sum. */
static void shared_kv(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 32, 8, 4, 16, 4, 24), 2, 150, NSA_DTYPE_F32, 1,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(8, 2, 64, 64, 16, 8, 32, 4, 64), 1, 190, NSA_DTYPE_BF16, 1,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* No sel_ranges: the GPU recomputes the selection with a routed CUDA forward (f32). */
static void ranges_recomputed(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 2, 160, NSA_DTYPE_F32, 0, 0));
    nsa_context_destroy(ctx);
}

/* Bitwise the same gradients on a second run (bf16, G = 16; f32). */
static void deterministic(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(16, 1, 64, 64, 16, 8, 32, 4, 48), 1, 240, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN | TWICE));
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 2, 120, NSA_DTYPE_F32, 1,
                  RANGES_GIVEN | TWICE));
    nsa_context_destroy(ctx);
}

/* NSA_FORCE_BRANCH=sel on both sides: one-hot gates, dgates still dout·o_b. */
static void force_branch(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_FORCE_BRANCH", "sel"));
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 1, 100, NSA_DTYPE_F32, 0,
                  RANGES_GIVEN));
    nsa_context_destroy(ctx);
}

/* A device sel_ranges slot past t+1: NSA_ERR_INVALID_ARG and no gradient written. */
static void bad_ranges(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), 1, 40, NSA_DTYPE_F32, 0,
                  RANGES_GIVEN | BAD_RANGES));
    nsa_context_destroy(ctx);
}

/* Small shape for compute-sanitizer (memcheck / racecheck). */
static void sanitize_small(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_one(ctx, gb_cfg(8, 2, 16, 24, 8, 4, 16, 3, 12), 1, 45, NSA_DTYPE_BF16, 0,
                  RANGES_GIVEN));
    CHECK(run_one(ctx, gb_cfg(4, 1, 16, 8, 4, 4, 8, 3, 6), 1, 30, NSA_DTYPE_F32, 1, 0));
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"ref_f32", ref_f32},           {"ref_bf16_f16", ref_bf16_f16},
        {"shared_kv", shared_kv},       {"ranges_recomputed", ranges_recomputed},
        {"deterministic", deterministic}, {"force_branch", force_branch},
        {"bad_ranges", bad_ranges},     {"sanitize_small", sanitize_small},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
