// SPDX-License-Identifier: Apache-2.0
/* test_route_table.c — the golden routing table: fake device caps (cpu, a CUDA arch without a
 * profile, sm80, sm89, sm90) × dtypes × lengths around each cutoff × flag combinations, checked
 * against the expected backend and a reason fragment per branch.
 * Fake CUDA backends (registered here, never run) stand in for the kernels, so binding is
 * exercised exactly as in a CUDA build (whose real CUDA backends are hidden meanwhile): the fake
 * cuda.fa2 declines f32, Dk > 128 and backward, to test what a declining backend falls to.
 */
#include "harness.h"
#include "route/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fa2_supports(const nsa_backend *self, const nsa_call *c, nsa_branch br,
                        const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)br, (void)dev;
    const nsa_route_problem *p = &c->p;
    if (p->dtype == NSA_DTYPE_F32) return snprintf(why, why_len, "f32 not supported"), 0;
    if (p->cfg.Dk > 128) return snprintf(why, why_len, "Dk=%d > 128", p->cfg.Dk), 0;
    if (p->pass == NSA_PASS_BACKWARD) return snprintf(why, why_len, "no backward"), 0;
    return 1;
}

static int any_supports(const nsa_backend *self, const nsa_call *c, nsa_branch br,
                        const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev, (void)why, (void)why_len;
    return 1;
}

static nsa_status never_runs(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                             nsa_fwd_work *w) {
    (void)self, (void)br, (void)w;
    return nsa_fail(ctx, NSA_ERR_INTERNAL, "fake CUDA backend ran");
}

static nsa_status never_decodes(nsa_context *ctx, const nsa_backend *self, nsa_kv_cache *c,
                                const nsa_decode_args *a) {
    (void)self, (void)c, (void)a;
    return nsa_fail(ctx, NSA_ERR_INTERNAL, "fake CUDA decode ran");
}

#define CMPWIN (NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN))
#define SEL NSA_BRANCH_BIT(NSA_BRANCH_SEL)
static const nsa_backend fakes[] = {
    {"cuda.ref", NSA_ROLE_REF, NSA_BRANCHES_ALL, NSA_DEVICE_CUDA, any_supports, never_runs, NULL,
     NULL, NULL, never_decodes},
    {"cuda.mask", NSA_ROLE_MASKED, CMPWIN, NSA_DEVICE_CUDA, any_supports, never_runs, NULL, NULL,
     NULL, NULL},
    {"cuda.pack", NSA_ROLE_PACKED, SEL, NSA_DEVICE_CUDA, any_supports, never_runs, NULL, NULL,
     NULL, NULL},
    {"cuda.fa2", NSA_ROLE_FA2, CMPWIN, NSA_DEVICE_CUDA, fa2_supports, never_runs, NULL, NULL,
     NULL, NULL},
    {"cuda.tri", NSA_ROLE_FUSED_SEL, SEL, NSA_DEVICE_CUDA, any_supports, never_runs, NULL, NULL,
     NULL, NULL},
    {"cuda.split", NSA_ROLE_FA2, NSA_BRANCHES_ALL, NSA_DEVICE_CUDA, any_supports, NULL, NULL,
     NULL, NULL, never_decodes},
};

/* One golden row: device, dtype, T, Dk, w, pass, flags ("NAME=V NAME=V"), then per branch
 * (cmp, sel, win) the backend and a fragment its reason must contain. */
typedef struct {
    const char *dev;
    nsa_dtype dt;
    int64_t T;
    int Dk, w;
    nsa_pass pass;
    const char *flags;
    const char *be[3];
    const char *why[3];
} golden;

#define BF NSA_DTYPE_BF16
#define F16 NSA_DTYPE_F16
#define F32 NSA_DTYPE_F32
#define FW NSA_PASS_FORWARD
/* Cutoffs of the compiled-in sm80 profile: win 512 keys (T = 511 | 512), cmp 128 keys
 * (num_cmp: T = 2063 → 127 | 2064 → 128), sel 1024 keys (T = 1023 | 1024); sm89: 8192 each. */
static const golden rows[] = {
    /* cpu: every role is the reference */
    {"cpu", BF, 4096, 64, 512, FW, "", {"ref", "ref", "ref"},
     {"on the CPU the masked role is the reference", "on the CPU the packed role",
      "no profile for cpu"}},
    {"cpu", F32, 64, 64, 512, FW, "NSA_USE_FA2=1", {"ref", "ref", "ref"},
     {"no fa2 backend for cpu", "packed", "no fa2 backend for cpu"}},
    /* a CUDA arch without a profile: reference side by default; flags still opt in */
    {"sm75", BF, 4096, 64, 512, FW, "", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"no profile for sm75", "no profile for sm75", "no profile for sm75"}},
    {"sm75", BF, 4096, 64, 512, FW, "NSA_USE_FA2=1 NSA_USE_TRITON_SEL=1",
     {"cuda.fa2", "cuda.tri", "cuda.fa2"}, {"cutoff 0 (no profile)", "cutoff 0", "cutoff 0"}},
    /* sm80: reference baseline, FA-2 opt-in, fused selection off until parity */
    {"sm80", BF, 4096, 64, 512, FW, "", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"FA-2 opt-in on sm80: parity not accepted", "off until parity is accepted on sm80",
      "FA-2 opt-in on sm80"}},
    {"sm80", BF, 2063, 64, 512, FW, "NSA_USE_FA2=1", {"cuda.mask", "cuda.pack", "cuda.fa2"},
     {"127 keys/query < cutoff 128 (profile)", "packed", "512 keys/query >= cutoff 512"}},
    {"sm80", BF, 2064, 64, 512, FW, "NSA_USE_FA2=1", {"cuda.fa2", "cuda.pack", "cuda.fa2"},
     {"128 keys/query >= cutoff 128", "packed", "cutoff 512"}},
    {"sm80", F16, 511, 64, 512, FW, "NSA_USE_FA2=1", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"< cutoff 128", "packed", "511 keys/query < cutoff 512"}},
    {"sm80", F32, 4096, 64, 512, FW, "NSA_USE_FA2=1", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"cuda.fa2 declines: f32 not supported", "packed", "cuda.fa2 declines: f32"}},
    {"sm80", BF, 4096, 192, 512, FW, "NSA_USE_FA2=1", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"declines: Dk=192 > 128", "packed", "declines: Dk=192 > 128"}},
    {"sm80", BF, 4096, 64, 512, NSA_PASS_BACKWARD, "NSA_USE_FA2=1",
     {"cuda.mask", "cuda.pack", "cuda.mask"}, {"no backward", "packed", "no backward"}},
    {"sm80", BF, 4096, 64, 512, FW, "NSA_USE_FA2=1 NSA_USE_FA2_WIN=0",
     {"cuda.fa2", "cuda.pack", "cuda.mask"}, {"FA-2 (NSA_USE_FA2)", "packed", "NSA_USE_FA2_WIN=0"}},
    {"sm80", BF, 4096, 64, 512, FW, "NSA_USE_FA2_CMP=1", {"cuda.fa2", "cuda.pack", "cuda.mask"},
     {"FA-2 (NSA_USE_FA2_CMP)", "packed", "FA-2 opt-in"}},
    {"sm80", BF, 4096, 64, 512, FW, "NSA_USE_FA2=1 NSA_FA2_MIN_LEN_WIN=1000",
     {"cuda.fa2", "cuda.pack", "cuda.mask"},
     {"cutoff 128", "packed", "512 keys/query < cutoff 1000 (NSA_FA2_MIN_LEN_WIN)"}},
    {"sm80", BF, 4096, 64, 512, FW, "NSA_USE_FA2=1 NSA_FA2_MIN_LEN_CMP=300",
     {"cuda.mask", "cuda.pack", "cuda.fa2"}, {"255 keys/query < cutoff 300", "", ""}},
    {"sm80", BF, 1023, 64, 512, FW, "NSA_USE_TRITON_SEL=1", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"", "1023 keys/query < cutoff 1024", ""}},
    {"sm80", BF, 1024, 64, 512, FW, "NSA_USE_TRITON_SEL=1", {"cuda.mask", "cuda.tri", "cuda.mask"},
     {"", "1024 keys/query >= cutoff 1024", ""}},
    {"sm80", BF, 4096, 64, 512, FW, "NSA_USE_TRITON_SEL=1 NSA_USE_SEL_PACK=0",
     {"cuda.mask", "cuda.tri", "cuda.mask"}, {"", "ref (NSA_USE_SEL_PACK=0)", ""}},
    {"sm80", BF, 4096, 64, 512, FW, "NSA_USE_TRITON_SEL=0 NSA_USE_SEL_PACK=0",
     {"cuda.mask", "cuda.ref", "cuda.mask"}, {"", "NSA_USE_TRITON_SEL=0", ""}},
    {"sm80", BF, 4096, 64, 512, FW, "NSA_USE_WIN_MASK=0 NSA_USE_CMP_MASK=0",
     {"cuda.ref", "cuda.pack", "cuda.ref"}, {"NSA_USE_CMP_MASK=0", "", "NSA_USE_WIN_MASK=0"}},
    {"sm80", BF, 4096, 64, 0, FW, "NSA_USE_FA2=1", {"cuda.fa2", "cuda.pack", "cuda.mask"},
     {"", "", "window branch off (w=0)"}},
    /* sm89: fused selection disabled unless forced; FA-2 off with high cutoffs */
    {"sm89", BF, 100000, 64, 512, FW, "", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"FA-2 opt-in on sm89", "disabled on sm89 by device policy", "FA-2 opt-in on sm89"}},
    {"sm89", BF, 100000, 64, 512, FW, "NSA_USE_TRITON_SEL=1",
     {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"", "NSA_USE_TRITON_SEL=1 ignored", ""}},
    {"sm89", BF, 64, 64, 512, FW, "NSA_TRITON_SEL_FORCE=1", {"cuda.mask", "cuda.tri", "cuda.mask"},
     {"", "NSA_TRITON_SEL_FORCE=1", ""}},
    {"sm89", BF, 8191, 64, 512, FW, "NSA_USE_FA2=1", {"cuda.mask", "cuda.pack", "cuda.mask"},
     {"< cutoff 8192 (profile)", "", "512 keys/query < cutoff 8192 (profile)"}},
    {"sm89", BF, 8191, 64, 512, FW, "NSA_USE_FA2=1 NSA_FA2_MIN_LEN_WIN=512",
     {"cuda.mask", "cuda.pack", "cuda.fa2"}, {"", "", ">= cutoff 512 (NSA_FA2_MIN_LEN_WIN)"}},
    /* sm90 */
    /* parity accepted on H100 (issue 6, bench/RESULTS.md): fast roles by default, cutoff 0 */
    {"sm90", BF, 4096, 64, 512, FW, "", {"cuda.fa2", "cuda.tri", "cuda.fa2"},
     {"parity accepted on this arch", "parity accepted on this arch",
      "parity accepted on this arch"}},
    {"sm90", F16, 4096, 64, 512, FW, "NSA_FORCE_PARITY=1 NSA_USE_FA2=1 NSA_TRITON_SEL_FORCE=1",
     {"cuda.ref", "cuda.ref", "cuda.ref"},
     {"NSA_FORCE_PARITY=1", "NSA_FORCE_PARITY=1", "NSA_FORCE_PARITY=1"}},
    {"sm90", BF, 4096, 64, 512, FW, "NSA_USE_FA2=1 NSA_USE_TRITON_SEL=1",
     {"cuda.fa2", "cuda.tri", "cuda.fa2"}, {"", "", ""}},
    {"sm90", BF, 4096, 64, 512, FW, "NSA_USE_FA2=0 NSA_USE_FA2_CMP=1",
     {"cuda.fa2", "cuda.tri", "cuda.mask"}, {"", "", "FA-2 off (NSA_USE_FA2=0)"}},
};

static void set_flags(nsa_context *ctx, const char *flags) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", flags);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        *eq = '\0';
        nsa_status st = nsa_context_set_flag(ctx, tok, eq + 1);
        if (st != NSA_OK)
            nsa_test_fail(__FILE__, __LINE__, "flag %s: %s", tok, nsa_context_message(ctx));
    }
}

/* The fakes stand in for the CUDA backends; in a CUDA build the real ones are hidden, so both
 * builds route the same table. */
static void register_fakes(void) {
    nsa_backend_unregister_all();
    nsa_backend_hide_device(1);
    for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++) nsa_backend_register(&fakes[i]);
}

static void unregister_fakes(void) {
    nsa_backend_unregister_all();
    nsa_backend_hide_device(0);
}

static void check_row(nsa_context *ctx, const golden *g, int i) {
    nsa_route_problem p = {nsa_config_default(4, 1, g->Dk, 64), 2, g->T, g->dt, g->pass, 0, 0};
    p.cfg.w = g->w;
    nsa_device_caps caps;
    CHECK(nsa_device_caps_named(g->dev, &caps) == NSA_OK, "row %d", i);
    caps.compiled = 1; /* as if this build held code for it: binding is what is tested */
    nsa_route_decision d;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    for (int b = 0; b < 3; b++) {
        CHECK(!strcmp(d.backend[b], g->be[b]), "row %d (%s T=%lld %s) %s: backend %s, expected %s;"
              " reason: %s", i, g->dev, (long long)g->T, g->flags, nsa_branch_name((nsa_branch)b),
              d.backend[b], g->be[b], d.reason[b]);
        CHECK(strstr(d.reason[b], g->why[b]) != NULL, "row %d %s: reason \"%s\" lacks \"%s\"", i,
              nsa_branch_name((nsa_branch)b), d.reason[b], g->why[b]);
    }
}

/* Every golden row, each in a fresh context with its flags. */
static void golden_table(void) {
    register_fakes();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        nsa_context *ctx;
        CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
        set_flags(ctx, rows[i].flags);
        check_row(ctx, &rows[i], (int)i);
        nsa_context_destroy(ctx);
        if (nsa_test_failed) break;
    }
    unregister_fakes();
}

/* A CUDA arch whose code this build lacks gets the reference whatever the flags say. */
static void not_compiled_gets_reference(void) {
    register_fakes();
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    set_flags(ctx, "NSA_USE_FA2=1 NSA_TRITON_SEL_FORCE=1");
    nsa_route_problem p = {nsa_config_default(4, 1, 64, 64), 1, 4096, BF, FW, 0, 0};
    nsa_device_caps caps;
    CHECK(nsa_device_caps_named("sm100", &caps) == NSA_OK);
    caps.compiled = 0;
    nsa_route_decision d;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    for (int b = 0; b < 3; b++) {
        CHECK(!strcmp(d.backend[b], "cuda.ref"), "%s: %s", nsa_branch_name((nsa_branch)b),
              d.backend[b]);
        CHECK(strstr(d.reason[b], "no code for sm100 in this build") != NULL, "%s", d.reason[b]);
    }
    nsa_toolchain tc;
    CHECK_OK(ctx, nsa_context_toolchain(ctx, &tc));
#ifndef NSA_HAVE_CUDA
    CHECK(tc.cuda_built == 0 && tc.narchs == 0 && strstr(tc.note, "CPU-only") != NULL);
    nsa_device_caps named;
    CHECK(nsa_device_caps_named("sm90", &named) == NSA_OK && named.compiled == 0);
#endif
    nsa_context_destroy(ctx);
    unregister_fakes();
}

/* NSA_FORCE_BRANCH is reported; the named profile is reported; bad problems are refused. */
static void decision_fields_and_errors(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    set_flags(ctx, "NSA_FORCE_BRANCH=sel");
    nsa_route_problem p = {nsa_config_default(4, 1, 64, 64), 1, 128, BF, FW, 0, 0};
    nsa_device_caps caps;
    CHECK(nsa_device_caps_named("sm90", &caps) == NSA_OK);
    nsa_route_decision d;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    CHECK(d.force_branch == NSA_BRANCH_SEL);
    CHECK(strstr(d.profile, "sm90 H100 (compiled-in") != NULL, "%s", d.profile);
    CHECK(nsa_device_caps_named("cpu", &caps) == NSA_OK);
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    CHECK(strstr(d.profile, "none for cpu") != NULL, "%s", d.profile);
    CHECK(nsa_device_caps_named("gpu0", &caps) == NSA_ERR_INVALID_ARG);
    CHECK(nsa_device_caps_named("sm", &caps) == NSA_ERR_INVALID_ARG);
    p.dtype = NSA_DTYPE_I32;
    CHECK(nsa_route_explain(ctx, &p, &caps, &d) == NSA_ERR_DTYPE);
    CHECK(strstr(nsa_context_message(ctx), "problem.dtype") != NULL);
    p.dtype = BF;
    p.cfg.d = 3;
    CHECK(nsa_route_explain(ctx, &p, &caps, &d) == NSA_ERR_CONFIG);
    p.cfg.d = 16;
    p.T = -1;
    CHECK(nsa_route_explain(ctx, &p, &caps, &d) == NSA_ERR_INVALID_ARG);
    CHECK(strstr(nsa_context_message(ctx), "problem.T") != NULL);
    CHECK(nsa_route_explain(ctx, NULL, &caps, &d) == NSA_ERR_INVALID_ARG);
    nsa_context_destroy(ctx);
}

/* CUDA decode, routed like every pass: the split-key step (cuda.split, a decode-only row) only
 * where the profile accepted it (sm90), never under NSA_FORCE_PARITY, never on an arch without
 * code or without a profile; the CPU decodes on the reference. */
static void decode_step_policy(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    register_fakes();
    static const struct {
        const char *dev;
        int compiled;
        const char *flags;
        const char *be;
        const char *why;
    } cases[] = {
        {"sm90", 1, "", "cuda.split", "split-key step: parity accepted on sm90"},
        {"sm80", 1, "", "cuda.ref", "split-key parity not accepted on sm80"},
        {"sm89", 1, "", "cuda.ref", "split-key parity not accepted on sm89"},
        {"sm100", 1, "", "cuda.ref", "no profile for sm100"},
        {"sm90", 0, "", "cuda.ref", "no code for sm90 in this build"},
        {"sm90", 1, "NSA_FORCE_PARITY=1", "cuda.ref", "NSA_FORCE_PARITY=1"},
        {"cpu", 1, "", "ref", "the CPU decodes on the reference"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "0");
        set_flags(ctx, cases[i].flags);
        nsa_device_caps caps;
        CHECK(nsa_device_caps_named(cases[i].dev, &caps) == NSA_OK);
        caps.compiled = cases[i].compiled;
        nsa_route_problem p = {nsa_config_default(4, 1, 64, 64), 2, 300, BF, NSA_PASS_DECODE, 0, 0};
        nsa_route_decision d;
        CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
        for (int b = 0; b < 3; b++) {
            CHECK(!strcmp(d.backend[b], cases[i].be), "row %zu (%s) %s: %s", i, cases[i].dev,
                  nsa_branch_name((nsa_branch)b), d.backend[b]);
            CHECK(strstr(d.reason[b], cases[i].why) != NULL, "row %zu: \"%s\" lacks \"%s\"", i,
                  d.reason[b], cases[i].why);
        }
    }
    unregister_fakes();
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"golden_table", golden_table},
        {"not_compiled_gets_reference", not_compiled_gets_reference},
        {"decision_fields_and_errors", decision_fields_and_errors},
        {"decode_step_policy", decode_step_policy},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
