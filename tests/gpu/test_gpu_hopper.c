// SPDX-License-Identifier: Apache-2.0
/* test_gpu_hopper.c — the Hopper cmp/win kernels (src/cuda/sm90/fa3.cu, backend row cuda.fa3)
 * against the CPU reference with the yardstick of the other tensor-core roles (docs/design.md
 * §5, tests/gpu/gpu_util.c): GQA 1/4/16/64 and the padded G 3/6/12/24/40/48, Dk = Dv and
 * 192/128, T below l and below lp, ragged T, bf16 and f16, with the fused selection reading the
 * scores the Hopper cmp kernel wrote; exact ties; the public entry through the router
 * (NSA_USE_HOPPER=1); a small case for compute-sanitizer.
 * Not a benchmark. Skips (77) without an sm_90 GPU; hopper_route runs anyway (it only asks the
 * router, on a named sm90 device).
 */
#include "gpu_util.h"

#include <stdio.h>
#include <string.h>

static const nsa_role R_FA2[3] = {NSA_ROLE_FA2, NSA_ROLE_REF, NSA_ROLE_FA2};
static const nsa_role R_FAST[3] = {NSA_ROLE_FA2, NSA_ROLE_FUSED_SEL, NSA_ROLE_FA2};

static nsa_config cfg(int Hq, int Hkv, int Dk, int Dv, int l, int d, int lp, int n, int w) {
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = l; c.d = d; c.lp = lp; c.n = n; c.w = w;
    return c;
}

/* A context whose FA-2 role runs the Hopper kernels, or NULL (skipped) without an sm_90 GPU. */
static nsa_context *hopper_context(void) {
    nsa_context *ctx = gp_context();
    if (!ctx) return NULL;
    nsa_device_caps caps;
    const nsa_device dev = {NSA_DEVICE_CUDA, 0};
    if (nsa_device_caps_query(ctx, dev, &caps) != NSA_OK || caps.sm != 90) {
        nsa_context_destroy(ctx);
        nsa_test_skip("no sm_90 GPU (the Hopper kernels are built for sm_90a only)");
        return NULL;
    }
    if (nsa_cuda_tune("hopper", 1) != NSA_OK) {
        nsa_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

static void hopper_done(nsa_context *ctx) {
    CHECK(nsa_cuda_tune("hopper", 0) == NSA_OK);
    nsa_context_destroy(ctx);
}

/* cmp and win: GQA 1/4/16 × the three head-dim pairs × T below l (20), below lp (50), ragged
 * (333, 1000); bf16 and f16; separate and shared K/V — the matrix fa2_cmp_win runs on sm80
 * code. Then G = 64 (one query per warpgroup) and shape A's heads at T = 2048. */
static void hopper_cmp_win(void) {
    nsa_context *ctx = hopper_context();
    if (!ctx) return;
    const int dims[3][2] = {{64, 64}, {128, 128}, {192, 128}};
    const int gs[3][2] = {{2, 2}, {8, 2}, {16, 1}};
    const int Ts[4] = {20, 50, 333, 1000};
    for (int di = 0; di < 3; di++)
        for (int gi = 0; gi < 3; gi++) {
            nsa_config c = (di + gi) % 2 ? nsa_config_default(gs[gi][0], gs[gi][1], dims[di][0], dims[di][1])
                                         : cfg(gs[gi][0], gs[gi][1], dims[di][0], dims[di][1], 16, 8, 32, 6, 100);
            nsa_dtype dt = (di + gi) % 3 == 2 ? NSA_DTYPE_F16 : NSA_DTYPE_BF16;
            for (int ti = 0; ti < 2; ti++) {
                const int T = Ts[(di * 3 + gi + 2 * ti) % 4];
                CHECK(gp_run(ctx, c, 1 + ti, T, dt, gi == 1, R_FA2, 0.002));
            }
        }
    CHECK(gp_run(ctx, nsa_config_default(64, 1, 128, 128), 1, 700, NSA_DTYPE_BF16, 0, R_FA2, 0.002));
    CHECK(gp_run(ctx, nsa_config_default(64, 1, 192, 128), 1, 333, NSA_DTYPE_F16, 1, R_FA2, 0.002));
    CHECK(gp_run(ctx, nsa_config_default(64, 4, 192, 128), 1, 2048, NSA_DTYPE_BF16, 0, R_FA2, 0.002));
    hopper_done(ctx);
}

/* G not dividing 64: each warpgroup's rows past floor(64/G)·G are padding (G = 3: 63 of 64
 * rows, 6: 60, 12: 60, 24: 48, 40: 40, 48: 48); cmp's score sums then go through the shared
 * tile. Near-ties in 1% of the rows, as fast_any_g allows. */
static void hopper_any_g(void) {
    nsa_context *ctx = hopper_context();
    if (!ctx) return;
    CHECK(gp_run(ctx, nsa_config_default(12, 2, 64, 64), 2, 777, NSA_DTYPE_BF16, 0, R_FAST, 0.01));
    CHECK(gp_run(ctx, cfg(6, 2, 192, 128, 16, 8, 32, 6, 100), 1, 333, NSA_DTYPE_F16, 0, R_FAST, 0.01));
    CHECK(gp_run(ctx, cfg(3, 1, 128, 128, 16, 8, 32, 6, 100), 1, 501, NSA_DTYPE_BF16, 1, R_FAST, 0.01));
    CHECK(gp_run(ctx, cfg(24, 1, 64, 64, 16, 8, 32, 6, 100), 1, 300, NSA_DTYPE_BF16, 0, R_FAST, 0.01));
    CHECK(gp_run(ctx, cfg(40, 1, 128, 128, 16, 8, 32, 4, 64), 1, 150, NSA_DTYPE_F16, 1, R_FAST, 0.01));
    CHECK(gp_run(ctx, cfg(48, 2, 192, 128, 32, 16, 64, 16, 512), 1, 613, NSA_DTYPE_BF16, 0, R_FAST, 0.01));
    hopper_done(ctx);
}

/* Every fast role together at the paper config (the selection reads the Hopper cmp kernel's
 * scores): shape A's heads halved at T = 2048, and Dk = Dv = 128 with shared K/V. */
static void hopper_all_fast(void) {
    nsa_context *ctx = hopper_context();
    if (!ctx) return;
    CHECK(gp_run(ctx, nsa_config_default(32, 2, 192, 128), 1, 2048, NSA_DTYPE_BF16, 0, R_FAST, 0.01));
    CHECK(gp_run(ctx, nsa_config_default(16, 4, 128, 128), 1, 1500, NSA_DTYPE_F16, 1, R_FAST, 0.01));
    hopper_done(ctx);
}

/* q = 0: every score of a row ties exactly; the blocks must be exactly the reference's. */
static void hopper_ties_exact(void) {
    nsa_context *ctx = hopper_context();
    if (!ctx) return;
    gp_check_ties_exact(ctx, R_FAST);
    hopper_done(ctx);
}

/* nsa_forward through the router with NSA_USE_HOPPER=1 equals the reference. */
static void hopper_public(void) {
    nsa_context *ctx = hopper_context();
    if (!ctx) return;
    CHECK_OK(ctx, nsa_cuda_tune("hopper", 0)); /* the router alone must pick the row */
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_HOPPER", "1"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "1"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_TRITON_SEL_FORCE", "1"));
    gprob p;
    CHECK(gp_make(ctx, &p, nsa_config_default(16, 2, 128, 128), 1, 600, NSA_DTYPE_BF16, 0));
    p.kc_rounded = 1;
    CHECK_OK(ctx, gp_reference(ctx, &p));
    CHECK(gp_poison(ctx, &p));
    nsa_fwd_args a = gp_args(&p, 1);
    CHECK_OK(ctx, nsa_forward(ctx, &a));
    CHECK_OK(ctx, nsa_cuda_sync(ctx));
    CHECK(gp_fetch(ctx, &p), "guard overwritten");
    gp_report r;
    gp_compare(&p, NULL, 0, &r);
    CHECK(r.unwritten == 0 && r.bad == 0 && r.rows_mismatch == 0, "%s", r.first);
    gp_free(&p);
    hopper_done(ctx);
}

/* The router on a named sm90 device: cuda.fa3 for cmp and win only with NSA_USE_HOPPER=1,
 * cuda.fa2 otherwise (not a default until its parity is accepted); on sm80 the row declines,
 * saying why, and cuda.fa2 runs. No GPU needed. */
static void hopper_route(void) {
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_device_caps sm90, sm80;
    CHECK_OK(ctx, nsa_device_caps_named("sm90", &sm90));
    CHECK_OK(ctx, nsa_device_caps_named("sm80", &sm80));
    if (!sm90.compiled || !sm80.compiled) {
        nsa_context_destroy(ctx);
        nsa_test_skip("no sm80/sm90 code in this build");
        return;
    }
    nsa_route_problem p = {nsa_config_default(64, 4, 192, 128), 1, 4096, NSA_DTYPE_BF16, NSA_PASS_FORWARD, 0, 0};
    nsa_route_decision d;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &sm90, &d));
    CHECK(!strcmp(d.backend[NSA_BRANCH_CMP], "cuda.fa2") && !strcmp(d.backend[NSA_BRANCH_WIN], "cuda.fa2"),
          "default: %s / %s (%s)", d.backend[0], d.backend[2], d.reason[0]);
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_HOPPER", "1"));
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &sm90, &d));
    CHECK(!strcmp(d.backend[NSA_BRANCH_CMP], "cuda.fa3") && !strcmp(d.backend[NSA_BRANCH_WIN], "cuda.fa3") &&
              !strcmp(d.backend[NSA_BRANCH_SEL], "cuda.triton"),
          "NSA_USE_HOPPER=1: %s / %s / %s (%s)", d.backend[0], d.backend[1], d.backend[2], d.reason[0]);
    p.pass = NSA_PASS_BACKWARD;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &sm90, &d));
    CHECK(!strcmp(d.backend[NSA_BRANCH_CMP], "cuda.fa2") && strstr(d.reason[NSA_BRANCH_CMP], "run the forward"),
          "backward: %s (%s)", d.backend[0], d.reason[0]);
    p.pass = NSA_PASS_FORWARD;
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "1"));
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &sm80, &d));
    CHECK(!strcmp(d.backend[NSA_BRANCH_CMP], "cuda.fa2") && strstr(d.reason[NSA_BRANCH_CMP], "sm_90"),
          "sm80: %s (%s)", d.backend[0], d.reason[0]);
    nsa_context_destroy(ctx);
}

/* Small shapes for compute-sanitizer (memcheck, racecheck, synccheck): both branches, a
 * shared-tile G (6) and the register path (16), several tiles per CTA and stage reuse. */
static void hopper_sanitize(void) {
    nsa_context *ctx = hopper_context();
    if (!ctx) return;
    CHECK(gp_run(ctx, cfg(12, 2, 64, 64, 16, 8, 32, 4, 200), 1, 300, NSA_DTYPE_BF16, 0, R_FAST, 0.01));
    CHECK(gp_run(ctx, cfg(16, 1, 192, 128, 8, 4, 32, 4, 300), 1, 400, NSA_DTYPE_F16, 0, R_FA2, 0.01));
    hopper_done(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"hopper_cmp_win", hopper_cmp_win},     {"hopper_any_g", hopper_any_g},
        {"hopper_all_fast", hopper_all_fast},   {"hopper_ties_exact", hopper_ties_exact},
        {"hopper_public", hopper_public},       {"hopper_route", hopper_route},
        {"hopper_sanitize", hopper_sanitize},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
