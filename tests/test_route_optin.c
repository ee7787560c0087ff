// SPDX-License-Identifier: Apache-2.0
/* test_route_optin.c — opt-in backend rows (the Hopper kernels' `cuda.fa3`) with fake CPU
 * backends: the router never binds an opt-in row unless NSA_USE_HOPPER=1; with it, the row is
 * tried before the other rows of its role, and when it declines the next row binds with the
 * reason saying why. Runs in every build (no CUDA needed).
 */
#include "harness.h"
#include "route/route.h"

#include <stdio.h>
#include <string.h>

static int yes(const nsa_backend *self, const nsa_call *c, nsa_branch br,
               const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev, (void)why, (void)why_len;
    return 1;
}

static int no(const nsa_backend *self, const nsa_call *c, nsa_branch br,
              const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev;
    snprintf(why, why_len, "wrong card for this test");
    return 0;
}

static nsa_status never_runs(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                             nsa_fwd_work *w) {
    (void)self, (void)br, (void)w;
    return nsa_fail(ctx, NSA_ERR_INTERNAL, "routing test: nothing runs");
}

#define CW (NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN))
static const nsa_backend be_optin = {"fake.optin", NSA_ROLE_FA2, CW | NSA_BACKEND_OPT_IN,
                                     NSA_DEVICE_CPU, yes, never_runs, NULL, NULL, NULL, NULL};
static const nsa_backend be_optin_no = {"fake.optin", NSA_ROLE_FA2, CW | NSA_BACKEND_OPT_IN,
                                        NSA_DEVICE_CPU, no, never_runs, NULL, NULL, NULL, NULL};
static const nsa_backend be_fa2 = {"fake.fa2", NSA_ROLE_FA2, CW, NSA_DEVICE_CPU, yes, never_runs,
                                   NULL, NULL, NULL, NULL};

/* The decision *d for a small problem on the CPU with FA-2 wanted, NSA_USE_HOPPER = hopper. */
static void route(const char *hopper, nsa_route_decision *d) {
    memset(d, 0, sizeof *d);
    for (int b = 0; b < 3; b++) d->backend[b] = ""; /* compared even when a check failed */
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "1"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_HOPPER", hopper));
    nsa_route_problem p = {nsa_config_default(8, 2, 64, 64), 1, 512, NSA_DTYPE_BF16,
                           NSA_PASS_FORWARD, 0, 0};
    nsa_device_caps cpu;
    CHECK(nsa_device_caps_named("cpu", &cpu) == NSA_OK);
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &cpu, d));
    nsa_context_destroy(ctx);
}

/* Registered first (tried first), but bound only when opted in. */
static void optin_only_when_flagged(void) {
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_optin) == NSA_OK && nsa_backend_register(&be_fa2) == NSA_OK);
    nsa_route_decision d;
    route("0", &d);
    CHECK(!strcmp(d.backend[NSA_BRANCH_CMP], "fake.fa2") && !strcmp(d.backend[NSA_BRANCH_WIN], "fake.fa2"),
          "NSA_USE_HOPPER=0: %s / %s (%s)", d.backend[0], d.backend[2], d.reason[0]);
    CHECK(!strstr(d.reason[NSA_BRANCH_CMP], "fake.optin"), "an unflagged opt-in row is never "
          "considered: %s", d.reason[0]);
    route("1", &d);
    CHECK(!strcmp(d.backend[NSA_BRANCH_CMP], "fake.optin") && !strcmp(d.backend[NSA_BRANCH_WIN], "fake.optin"),
          "NSA_USE_HOPPER=1: %s / %s (%s)", d.backend[0], d.backend[2], d.reason[0]);
    nsa_backend_unregister_all();
}

/* An opted-in row that declines: the next row of the role binds, and the reason says why. */
static void optin_declines_to_next_row(void) {
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_optin_no) == NSA_OK && nsa_backend_register(&be_fa2) == NSA_OK);
    nsa_route_decision d;
    route("1", &d);
    CHECK(!strcmp(d.backend[NSA_BRANCH_CMP], "fake.fa2") &&
              strstr(d.reason[NSA_BRANCH_CMP], "fake.optin declines: wrong card"),
          "%s (%s)", d.backend[0], d.reason[0]);
    nsa_backend_unregister_all();
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"optin_only_when_flagged", optin_only_when_flagged},
        {"optin_declines_to_next_row", optin_declines_to_next_row},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
