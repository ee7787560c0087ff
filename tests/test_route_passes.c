// SPDX-License-Identifier: Apache-2.0
/* test_route_passes.c — what nsa_route_explain says is what runs, for every pass: forward,
 * backward and decode calls on the CPU, with fake backends registered (a fast cmp/win and sel
 * backend that record which branches they ran, a decode backend that records its steps), under
 * several flag sets. Each run's log line (forward.route, backward.route, decode.route) and the
 * backends that actually ran must equal the explanation of the same problem.
 * Not the policy table (test_route_table.c); the GPU twin is tests/gpu/test_gpu_route.c.
 */
#include "harness.h"
#include "route/route.h"
#include "test_decode_util.h"

#include <stdio.h>
#include <string.h>

/* ---- fakes that record what ran ---- */

static const char *ran[3]; /* per branch: the fake that ran it, NULL = none */
static int decodes;        /* steps fake.dec ran */

static int fwd_only(const nsa_backend *self, const nsa_call *c, nsa_branch br,
                    const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)br, (void)dev;
    if (c->p.pass == NSA_PASS_BACKWARD) return snprintf(why, why_len, "no backward"), 0;
    return 1;
}

static int any(const nsa_backend *self, const nsa_call *c, nsa_branch br,
               const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev, (void)why, (void)why_len;
    return 1;
}

static nsa_status fwd_rec(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    ran[br] = self->name;
    return nsa_backend_ref_cpu.fwd(ctx, &nsa_backend_ref_cpu, br, w);
}

static nsa_status dec_rec(nsa_context *ctx, const nsa_backend *self, nsa_kv_cache *c,
                          const nsa_decode_args *a) {
    (void)self;
    decodes++;
    return nsa_backend_ref_cpu.decode(ctx, &nsa_backend_ref_cpu, c, a);
}

#define CW (NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN))
static const nsa_backend fakes[] = {
    {"fake.dec", NSA_ROLE_REF, NSA_BRANCHES_ALL, NSA_DEVICE_CPU, any, NULL, NULL, NULL, NULL,
     dec_rec},
    {"fake.fa2", NSA_ROLE_FA2, CW, NSA_DEVICE_CPU, fwd_only, fwd_rec, NULL, NULL, NULL, NULL},
    {"fake.sel", NSA_ROLE_FUSED_SEL, NSA_BRANCH_BIT(NSA_BRANCH_SEL), NSA_DEVICE_CPU, fwd_only,
     fwd_rec, NULL, NULL, NULL, NULL},
};

/* ---- the log: the first line of each tag */

typedef struct {
    char fwd[600], bwd[600], dec[600];
} route_log;

static void sink(void *user, const char *tag, const char *line) {
    route_log *l = user;
    char *dst = !strcmp(tag, "forward.route") ? l->fwd : !strcmp(tag, "backward.route") ? l->bwd
              : !strcmp(tag, "decode.route") ? l->dec : NULL;
    if (dst && !dst[0]) snprintf(dst, 600, "%s", line);
}

static nsa_route_decision explain(nsa_context *ctx, const seq *s, int64_t T, nsa_pass pass) {
    nsa_route_problem p = {s->c, s->B, T, s->dt, pass, 0, 0};
    nsa_device_caps caps;
    nsa_route_decision d;
    memset(&d, 0, sizeof d);
    if (nsa_device_caps_named("cpu", &caps) != NSA_OK ||
        nsa_route_explain(ctx, &p, &caps, &d) != NSA_OK)
        d.backend[0] = d.backend[1] = d.backend[2] = "(explain failed)";
    return d;
}

/* The log line of a forward/backward decision: "cmp X, sel Y, win Z". */
static void names(const nsa_route_decision *d, char *buf, size_t len) {
    snprintf(buf, len, "cmp %s, sel %s, win %s", d->backend[0], d->backend[1], d->backend[2]);
}

/* One flag set: a forward, a backward and decode steps on a fresh context. */
static void passes_under(const char *flag, const char *value) {
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    if (flag) CHECK_OK(ctx, nsa_context_set_flag(ctx, flag, value));
    route_log log;
    memset(&log, 0, sizeof log);
    nsa_context_set_log_callback(ctx, sink, &log);
    seq s;
    CHECK(seq_new(ctx, &s, dec_cfg(), NSA_DTYPE_F32, 2, 40));
    char want[600];

    /* forward: the log, and the fakes that ran, equal the explanation */
    nsa_route_decision d = explain(ctx, &s, s.T, NSA_PASS_FORWARD);
    tbuf out = tb_new4(NSA_DTYPE_F32, s.B, s.T, s.c.Hq, s.c.Dv, 0.0);
    nsa_fwd_args a = seq_fwd(&s, s.T, &out.t);
    memset(ran, 0, sizeof ran);
    CHECK_OK(ctx, nsa_forward(ctx, &a));
    names(&d, want, sizeof want);
    CHECK(!strcmp(log.fwd, want), "%s=%s: forward logs \"%s\", explain says \"%s\"",
          flag ? flag : "-", flag ? value : "-", log.fwd, want);
    for (int b = 0; b < 3; b++)
        CHECK(!strcmp(ran[b] ? ran[b] : "ref", d.backend[b]), "%s: %s ran, explain says %s",
              nsa_branch_name((nsa_branch)b), ran[b] ? ran[b] : "ref", d.backend[b]);

    /* backward */
    d = explain(ctx, &s, s.T, NSA_PASS_BACKWARD);
    tbuf dout = tb_new4(NSA_DTYPE_F32, s.B, s.T, s.c.Hq, s.c.Dv, 1.0);
    tbuf dq = tb_new4(NSA_DTYPE_F32, s.B, s.T, s.c.Hq, s.c.Dk, 0.0);
    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    g.dout = dout.t, g.dq = dq.t;
    memset(ran, 0, sizeof ran);
    CHECK_OK(ctx, nsa_backward(ctx, &a, &g));
    names(&d, want, sizeof want);
    CHECK(!strcmp(log.bwd, want), "backward logs \"%s\", explain says \"%s\"", log.bwd, want);
    CHECK(!ran[0] && !ran[1] && !ran[2], "a forward-only fake ran in the backward");

    /* decode: every step on the backend explained for that step */
    nsa_kv_cache *c = dec_cache(ctx, &s, s.B, s.T, 0);
    CHECK(c);
    step_in st;
    step_new(&st, &s);
    for (int64_t t = 0; t < 5; t++) {
        const int64_t pos[2] = {t, t};
        step_fill(&st, &s, pos);
        d = explain(ctx, &s, t + 1, NSA_PASS_DECODE);
        const int before = decodes;
        CHECK_OK(ctx, nsa_decode_step(ctx, c, &st.a));
        const char *who = decodes > before ? "fake.dec" : "ref";
        for (int b = 0; b < 3; b++)
            CHECK(!strcmp(who, d.backend[b]), "step %lld: %s ran, explain says %s (%s)",
                  (long long)t, who, d.backend[b], d.reason[b]);
        if (t == 0) {
            snprintf(want, sizeof want, "%s: %s", d.backend[0], d.reason[0]);
            CHECK(!strcmp(log.dec, want), "decode logs \"%s\", explain says \"%s\"", log.dec,
                  want);
        }
    }
    step_free(&st);
    nsa_kv_cache_destroy(c);
    tb_free(&dq);
    tb_free(&dout);
    tb_free(&out);
    seq_free(&s);
    nsa_context_destroy(ctx);
}

static void explain_is_what_runs(void) {
    nsa_backend_unregister_all();
    for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++)
        CHECK(nsa_backend_register(&fakes[i]) == NSA_OK);
    static const char *const flags[][2] = {
        {NULL, NULL},           {"NSA_USE_FA2", "1"},         {"NSA_USE_TRITON_SEL", "1"},
        {"NSA_TRITON_SEL_FORCE", "1"}, {"NSA_FORCE_PARITY", "1"}, {"NSA_USE_FA2_WIN", "1"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) passes_under(flags[i][0], flags[i][1]);
    nsa_backend_unregister_all();
}

/* Without fakes a CPU decode step runs the reference: its decode.route line says so, and the
 * step counts one routed call. */
static void decode_route_names_the_reference(void) {
    nsa_backend_unregister_all();
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    route_log log;
    memset(&log, 0, sizeof log);
    nsa_context_set_log_callback(ctx, sink, &log);
    seq s;
    CHECK(seq_new(ctx, &s, dec_cfg(), NSA_DTYPE_F32, 1, 8));
    nsa_kv_cache *c = dec_cache(ctx, &s, 1, 8, 0);
    CHECK(c);
    step_in st;
    step_new(&st, &s);
    const int64_t pos[1] = {0};
    step_fill(&st, &s, pos);
    nsa_counters k0, k;
    CHECK_OK(ctx, nsa_context_counters(ctx, &k0));
    CHECK_OK(ctx, nsa_decode_step(ctx, c, &st.a));
    CHECK(!strncmp(log.dec, "ref: reference step", 19), "%s", log.dec);
    CHECK_OK(ctx, nsa_context_counters(ctx, &k));
    CHECK(k.calls == k0.calls + 1, "%lld calls", (long long)(k.calls - k0.calls));
    step_free(&st);
    nsa_kv_cache_destroy(c);
    seq_free(&s);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"explain_is_what_runs", explain_is_what_runs},
        {"decode_route_names_the_reference", decode_route_names_the_reference},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
