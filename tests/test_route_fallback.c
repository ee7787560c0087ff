// SPDX-License-Identifier: Apache-2.0
/* test_route_fallback.c — the dispatcher's safety nets, proven with fake CPU backends that this
 * test registers: a NaN-producing fast path falls back (output equals the reference, counter
 * incremented, one log line however many calls); an erroring one and a declining one fall back
 * and are counted; one emitting a future-reaching range is caught by NSA_STRICT_ASSERTS; a
 * faithful one runs the CPU pipeline and must equal the reference bitwise. Also the logger.
 */
#include "harness.h"
#include "route/route.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fake backends ---- */

static int yes(const nsa_backend *self, const nsa_call *c, nsa_branch br,
               const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev, (void)why, (void)why_len;
    return 1;
}

static int no(const nsa_backend *self, const nsa_call *c, nsa_branch br,
              const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev;
    snprintf(why, why_len, "test declines every shape");
    return 0;
}

static nsa_status fwd_nan(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)ctx, (void)self;
    const int64_t n = w->s->B * w->s->T * w->s->Hq;
    for (int64_t i = 0; i < n * w->s->Dv; i++) ((double *)w->o[br])[i] = i % 7 ? 0.5 : NAN;
    for (int64_t i = 0; i < n; i++) ((double *)w->lse[br])[i] = 0.0;
    return NSA_OK;
}

static nsa_status fwd_err(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)self, (void)br, (void)w;
    return nsa_fail(ctx, NSA_ERR_CUDA, "fake kernel: launch failed");
}

static nsa_status fwd_ref(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)self;
    return nsa_backend_ref_cpu.fwd(ctx, &nsa_backend_ref_cpu, br, w);
}

/* Selection of the pipeline, then the last range of every query t < T-1 (it ends at t+1: the
 * local block) extended to t+2: one key past t. */
static nsa_status select_leak(nsa_context *ctx, const nsa_backend *self, nsa_fwd_work *w) {
    (void)self;
    NSA_TRY(nsa_cpu_pipeline.select(ctx, w));
    const int64_t T = w->s->T;
    for (int64_t bt = 0; bt < w->s->B * T; bt++)
        for (int g = 0; g < w->s->Hkv; g++) {
            int64_t t = bt % T;
            int32_t *r = w->ranges + ((bt * w->s->Hkv + g) * w->a->cfg.n) * 2;
            int last = 0;
            for (int k = 0; k < w->a->cfg.n; k++)
                if (r[2 * k + 1] > r[2 * k]) last = k;
            if (t + 2 <= T) r[2 * last + 1] = (int32_t)(t + 2);
        }
    return NSA_OK;
}

/* A window kernel that would read one key past t. */
static void span_leak(const nsa_backend *self, nsa_branch br, const nsa_fwd_work *w, int64_t t,
                      int64_t *lo, int64_t *hi) {
    (void)self, (void)br;
    *lo = t - w->a->cfg.w + 1 > 0 ? t - w->a->cfg.w + 1 : 0;
    *hi = t + 2;
}

#define CW (NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN))
#define SL NSA_BRANCH_BIT(NSA_BRANCH_SEL)
static const nsa_backend be_nan = {"fake.nan", NSA_ROLE_FA2, CW, NSA_DEVICE_CPU, yes, fwd_nan,
                                   NULL, NULL, NULL, NULL};
static const nsa_backend be_err = {"fake.err", NSA_ROLE_FA2, CW, NSA_DEVICE_CPU, yes, fwd_err,
                                   NULL, NULL, NULL, NULL};
static const nsa_backend be_no = {"fake.no", NSA_ROLE_FA2, CW, NSA_DEVICE_CPU, no, fwd_ref, NULL,
                                  NULL, NULL, NULL};
static const nsa_backend be_fa2 = {"fake.fa2", NSA_ROLE_FA2, CW, NSA_DEVICE_CPU, yes, fwd_ref,
                                   NULL, NULL, NULL, NULL};
static const nsa_backend be_sel = {"fake.sel", NSA_ROLE_FUSED_SEL, SL, NSA_DEVICE_CPU, yes,
                                   fwd_ref, NULL, NULL, NULL, NULL};
static const nsa_backend be_leak = {"fake.leak", NSA_ROLE_FUSED_SEL, SL, NSA_DEVICE_CPU, yes,
                                    fwd_ref, select_leak, NULL, NULL, NULL};
static const nsa_backend be_span = {"fake.span", NSA_ROLE_FA2, NSA_BRANCH_BIT(NSA_BRANCH_WIN),
                                    NSA_DEVICE_CPU, yes, fwd_ref, NULL, span_leak, NULL, NULL};
static const nsa_backend be_mask_err = {"fake.maskerr", NSA_ROLE_MASKED, CW, NSA_DEVICE_CPU, yes,
                                        fwd_err, NULL, NULL, NULL, NULL};
static const nsa_backend be_nan_sel = {"fake.nansel", NSA_ROLE_FUSED_SEL, SL, NSA_DEVICE_CPU, yes,
                                       fwd_nan, NULL, NULL, NULL, NULL};

/* ---- a small problem and its runs ---- */

typedef struct {
    int64_t lines[8];
    const char *tags[8];
    int ntags;
    char last[512];
} log_sink;

static void sink(void *user, const char *tag, const char *line) {
    log_sink *s = user;
    int i = 0;
    while (i < s->ntags && strcmp(s->tags[i], tag)) i++;
    if (i == s->ntags && s->ntags < 8) s->tags[s->ntags++] = strdup(tag);
    if (i < 8) s->lines[i]++;
    snprintf(s->last, sizeof s->last, "%s", line);
}

static int64_t lines_of(const log_sink *s, const char *tag) {
    for (int i = 0; i < s->ntags; i++)
        if (!strcmp(s->tags[i], tag)) return s->lines[i];
    return 0;
}

static void sink_free(log_sink *s) {
    for (int i = 0; i < s->ntags; i++) free((void *)s->tags[i]);
}

enum { B = 2, T = 37, HQ = 4, HKV = 2, DK = 16, DV = 8 };

typedef struct {
    tbuf q, k, v, g;
    tbuf out, o[3], lse[3], blocks, ranges;
    nsa_fwd_args a;
} problem;

static void problem_make(problem *p, nsa_dtype dt) {
    memset(p, 0, sizeof *p);
    p->a.cfg = nsa_config_default(HQ, HKV, DK, DV);
    p->a.cfg.l = 8, p->a.cfg.d = 4, p->a.cfg.lp = 8, p->a.cfg.n = 3, p->a.cfg.w = 12;
    p->q = tb_new4(dt, B, T, HQ, DK, 1.0);
    p->k = tb_new4(dt, B, T, HKV, DK, 1.0);
    p->v = tb_new4(dt, B, T, HKV, DV, 1.0);
    p->g = tb_new4(dt, B, T, HQ, 3, 0.0);
    tb_uniform(&p->g, 0.1, 1.0);
    p->a.q = p->q.t;
    p->a.k_cmp = p->a.k_sel = p->a.k_win = p->k.t;
    p->a.v_cmp = p->a.v_sel = p->a.v_win = p->v.t;
    p->a.gates = p->g.t;
}

/* Requests the outputs: out always; with all, every optional output too. */
static void outputs_make(problem *p, nsa_dtype dt, int all) {
    p->out = tb_new4(dt, B, T, HQ, DV, 0.0);
    p->a.out = p->out.t;
    if (!all) return;
    nsa_tensor *o[3] = {&p->a.out_cmp, &p->a.out_sel, &p->a.out_win};
    nsa_tensor *l[3] = {&p->a.lse_cmp, &p->a.lse_sel, &p->a.lse_win};
    for (int b = 0; b < 3; b++) {
        p->o[b] = tb_new4(dt, B, T, HQ, DV, 0.0);
        *o[b] = p->o[b].t;
        int64_t ls[3] = {B, T, HQ};
        p->lse[b] = tb_new(NSA_DTYPE_F32, 3, ls, 0.0);
        *l[b] = p->lse[b].t;
    }
    p->blocks = tb_new4(NSA_DTYPE_I32, B, T, HKV, 3, 0.0);
    p->a.sel_blocks = p->blocks.t;
    int64_t rs[5] = {B, T, HKV, 3, 2};
    p->ranges = tb_new(NSA_DTYPE_I32, 5, rs, 0.0);
    p->a.sel_ranges = p->ranges.t;
}

static void problem_free(problem *p) {
    tbuf *all[] = {&p->q, &p->k, &p->v, &p->g, &p->out, &p->o[0], &p->o[1], &p->o[2],
                   &p->lse[0], &p->lse[1], &p->lse[2], &p->blocks, &p->ranges};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->base) tb_free(all[i]);
}

/* The same inputs with fresh outputs. */
static void problem_twin(const problem *src, problem *p, nsa_dtype dt, int all) {
    memset(p, 0, sizeof *p);
    p->a = src->a;
    outputs_make(p, dt, all);
}

static int same_bytes(const tbuf *x, const tbuf *y) {
    return x->bytes == y->bytes && !memcmp(x->t.data, y->t.data, x->bytes) && tb_guard_ok(x) &&
           tb_guard_ok(y);
}

static nsa_context *ctx_with(const char *const *flags, log_sink *s) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    for (int i = 0; flags && flags[i]; i += 2)
        if (nsa_context_set_flag(ctx, flags[i], flags[i + 1]) != NSA_OK) {
            nsa_context_destroy(ctx);
            return NULL;
        }
    if (s) nsa_context_set_log_callback(ctx, sink, s);
    return ctx;
}

/* The reference output of p's inputs into r (fresh outputs). */
static int reference(const problem *p, problem *r, nsa_dtype dt, int all) {
    static const char *const parity[] = {"NSA_FORCE_PARITY", "1", NULL};
    problem_twin(p, r, dt, all);
    nsa_context *ctx = ctx_with(parity, NULL);
    int ok = ctx && nsa_forward(ctx, &r->a) == NSA_OK;
    nsa_context_destroy(ctx);
    return ok;
}

/* Runs `calls` forwards with backend be registered under flags; checks the output equals the
 * reference each time; returns the counters and log in *c, *s. */
static void run_fallback(const nsa_backend *be, const char *const *flags, int calls,
                         nsa_counters *c, log_sink *s) {
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(be) == NSA_OK);
    problem p, r;
    problem_make(&p, NSA_DTYPE_F32);
    CHECK(reference(&p, &r, NSA_DTYPE_F32, 0));
    nsa_context *ctx = ctx_with(flags, s);
    CHECK(ctx != NULL);
    for (int i = 0; i < calls; i++) {
        problem f;
        problem_twin(&p, &f, NSA_DTYPE_F32, 0);
        CHECK_OK(ctx, nsa_forward(ctx, &f.a));
        CHECK(nsa_context_message(ctx)[0] == '\0', "message after success: %s",
              nsa_context_message(ctx));
        CHECK(same_bytes(&f.out, &r.out), "call %d: output differs from the reference", i);
        problem_free(&f);
    }
    CHECK_OK(ctx, nsa_context_counters(ctx, c));
    CHECK(c->calls == calls);
    nsa_context_destroy(ctx);
    problem_free(&r);
    problem_free(&p);
    nsa_backend_unregister_all();
}

static const char *const use_fa2[] = {"NSA_USE_FA2", "1", NULL};

/* NaN out of FA-2 (cmp and win): reference output, 2 per call counted, one line in all. */
static void nonfinite_falls_back(void) {
    nsa_counters c;
    log_sink s = {0};
    run_fallback(&be_nan, use_fa2, 5, &c, &s);
    CHECK(c.fallback_nonfinite == 10, "%lld", (long long)c.fallback_nonfinite);
    CHECK(c.fallback_error == 0 && c.fallback_unsupported == 0);
    CHECK(lines_of(&s, "fa2.fallback") == 1, "%lld lines", (long long)lines_of(&s, "fa2.fallback"));
    static const char *const tri[] = {"NSA_USE_TRITON_SEL", "1", NULL};
    log_sink s2 = {0};
    run_fallback(&be_nan_sel, tri, 3, &c, &s2);
    CHECK(c.fallback_nonfinite == 3, "%lld", (long long)c.fallback_nonfinite);
    CHECK(lines_of(&s2, "sel.triton.fallback") == 1);
    sink_free(&s);
    sink_free(&s2);
}

/* A failing kernel: reference output, counted, one fa2.error line naming the status. */
static void error_falls_back(void) {
    nsa_counters c;
    log_sink s = {0};
    run_fallback(&be_err, use_fa2, 4, &c, &s);
    CHECK(c.fallback_error == 8 && c.fallback_nonfinite == 0, "%lld", (long long)c.fallback_error);
    CHECK(lines_of(&s, "fa2.error") == 1);
    CHECK(strstr(s.last, "NSA_ERR_CUDA") && strstr(s.last, "launch failed"), "%s", s.last);
    /* a failing masked variant (the default base role) falls back to the reference itself */
    log_sink s2 = {0};
    run_fallback(&be_mask_err, NULL, 2, &c, &s2);
    CHECK(c.fallback_error == 4, "%lld", (long long)c.fallback_error);
    CHECK(lines_of(&s2, "warn.error") == 1);
    sink_free(&s);
    sink_free(&s2);
}

/* A fast path declining the shape: reference output, counted as unsupported, one line. */
static void unsupported_falls_back(void) {
    nsa_counters c;
    log_sink s = {0};
    run_fallback(&be_no, use_fa2, 3, &c, &s);
    CHECK(c.fallback_unsupported == 6, "%lld", (long long)c.fallback_unsupported);
    CHECK(lines_of(&s, "fa2.unsupported") == 1);
    CHECK(strstr(s.last, "fake.no declines: test declines every shape"), "%s", s.last);
    sink_free(&s);
}

/* A selection reaching one key past t: unnoticed without strict asserts, caught with them
 * (status, message, counter, one warn.causality line), never an abort. */
static void strict_catches_future_range(void) {
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_leak) == NSA_OK);
    problem p, f;
    problem_make(&p, NSA_DTYPE_F32);
    problem_twin(&p, &f, NSA_DTYPE_F32, 0);
    static const char *const lax[] = {"NSA_TRITON_SEL_FORCE", "1", NULL};
    static const char *const strict[] = {"NSA_TRITON_SEL_FORCE", "1", "NSA_STRICT_ASSERTS", "1",
                                         NULL};
    nsa_context *ctx = ctx_with(lax, NULL);
    CHECK_OK(ctx, nsa_forward(ctx, &f.a));
    nsa_context_destroy(ctx);
    log_sink s = {0};
    ctx = ctx_with(strict, &s);
    for (int i = 0; i < 3; i++) {
        nsa_status st = nsa_forward(ctx, &f.a);
        CHECK(st == NSA_ERR_CAUSALITY, "%s", nsa_status_name(st));
        CHECK(strstr(nsa_context_message(ctx), "reaches past t+1"), "%s",
              nsa_context_message(ctx));
    }
    nsa_counters c;
    nsa_context_counters(ctx, &c);
    CHECK(c.causality_violations == 3);
    CHECK(lines_of(&s, "warn.causality") == 3);
    nsa_context_destroy(ctx);
    /* a window kernel declaring a span past t */
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_span) == NSA_OK);
    static const char *const strict_fa2[] = {"NSA_USE_FA2", "1", "NSA_STRICT_ASSERTS", "1", NULL};
    ctx = ctx_with(strict_fa2, NULL);
    CHECK(nsa_forward(ctx, &f.a) == NSA_ERR_CAUSALITY);
    CHECK(strstr(nsa_context_message(ctx), "win span"), "%s", nsa_context_message(ctx));
    nsa_context_destroy(ctx);
    nsa_backend_unregister_all();
    problem_free(&f);
    problem_free(&p);
    sink_free(&s);
}

/* Strict asserts on the reference pass, and the ranges it returns equal a lax run's. */
static void strict_reference_passes(void) {
    static const char *const strict[] = {"NSA_STRICT_ASSERTS", "1", NULL};
    problem p, r, f;
    problem_make(&p, NSA_DTYPE_F32);
    CHECK(reference(&p, &r, NSA_DTYPE_F32, 1));
    problem_twin(&p, &f, NSA_DTYPE_F32, 1);
    nsa_context *ctx = ctx_with(strict, NULL);
    CHECK_OK(ctx, nsa_forward(ctx, &f.a));
    CHECK(same_bytes(&f.ranges, &r.ranges) && same_bytes(&f.out, &r.out));
    nsa_counters c;
    nsa_context_counters(ctx, &c);
    CHECK(c.causality_violations == 0);
    nsa_context_destroy(ctx);
    problem_free(&f);
    problem_free(&r);
    problem_free(&p);
}

/* Ranges handed to the backward for reuse are checked too: one widened past t is caught. */
static void strict_checks_backward_ranges(void) {
    static const char *const strict[] = {"NSA_STRICT_ASSERTS", "1", NULL};
    problem p, f;
    problem_make(&p, NSA_DTYPE_F32);
    problem_twin(&p, &f, NSA_DTYPE_F32, 1);
    nsa_context *ctx = ctx_with(strict, NULL);
    CHECK_OK(ctx, nsa_forward(ctx, &f.a));
    tbuf dout = tb_new4(NSA_DTYPE_F32, B, T, HQ, DV, 1.0);
    tbuf dq = tb_new4(NSA_DTYPE_F32, B, T, HQ, DK, 0.0);
    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    g.dout = dout.t;
    g.dq = dq.t;
    CHECK_OK(ctx, nsa_backward(ctx, &f.a, &g));
    /* query t = 5 of batch row 1, kv head 0: its last range reaches t+1 -> make it t+2 */
    const int64_t t = 5;
    int32_t *r = (int32_t *)f.ranges.t.data + ((1 * T + t) * HKV + 0) * 3 * 2;
    int last = 0;
    for (int k = 0; k < 3; k++)
        if (r[2 * k + 1] > r[2 * k]) last = k;
    CHECK(r[2 * last + 1] == t + 1);
    r[2 * last + 1] = (int32_t)(t + 2);
    nsa_status st = nsa_backward(ctx, &f.a, &g);
    CHECK(st == NSA_ERR_CAUSALITY, "%s", nsa_status_name(st));
    CHECK(strstr(nsa_context_message(ctx), "t=5"), "%s", nsa_context_message(ctx));
    nsa_context_destroy(ctx);
    tb_free(&dout);
    tb_free(&dq);
    problem_free(&f);
    problem_free(&p);
}

/* Fast paths that compute what the reference computes: the CPU pipeline's every output equals
 * nsa_ref_forward's bitwise, in f32 and bf16, strict asserts on. */
static void pipeline_matches_reference(void) {
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_fa2) == NSA_OK && nsa_backend_register(&be_sel) == NSA_OK);
    static const char *const fast[] = {"NSA_USE_FA2", "1", "NSA_USE_TRITON_SEL", "1",
                                       "NSA_STRICT_ASSERTS", "1", NULL};
    const nsa_dtype dts[2] = {NSA_DTYPE_F32, NSA_DTYPE_BF16};
    for (int di = 0; di < 2; di++) {
        problem p, r, f;
        problem_make(&p, dts[di]);
        CHECK(reference(&p, &r, dts[di], 1));
        problem_twin(&p, &f, dts[di], 1);
        nsa_context *ctx = ctx_with(fast, NULL);
        nsa_route_problem rp = {p.a.cfg, B, T, dts[di], NSA_PASS_FORWARD, 0, 0};
        nsa_device_caps cpu;
        nsa_device_caps_named("cpu", &cpu);
        nsa_route_decision d;
        CHECK_OK(ctx, nsa_route_explain(ctx, &rp, &cpu, &d));
        CHECK(!strcmp(d.backend[0], "fake.fa2") && !strcmp(d.backend[1], "fake.sel") &&
              !strcmp(d.backend[2], "fake.fa2"), "%s %s %s", d.backend[0], d.backend[1],
              d.backend[2]);
        CHECK_OK(ctx, nsa_forward(ctx, &f.a));
        CHECK(same_bytes(&f.out, &r.out), "out");
        for (int b = 0; b < 3; b++)
            CHECK(same_bytes(&f.o[b], &r.o[b]) && same_bytes(&f.lse[b], &r.lse[b]), "branch %d", b);
        CHECK(same_bytes(&f.blocks, &r.blocks) && same_bytes(&f.ranges, &r.ranges));
        nsa_counters c;
        nsa_context_counters(ctx, &c);
        CHECK(c.fallback_nonfinite + c.fallback_error + c.fallback_unsupported == 0);
        nsa_context_destroy(ctx);
        problem_free(&f);
        problem_free(&r);
        problem_free(&p);
    }
    nsa_backend_unregister_all();
}

/* NSA_FORCE_BRANCH=win: out equals the window branch's output, on the reference path and on
 * the pipeline; logged once under gate.force. */
static void force_branch_one_hot(void) {
    static const char *const ref_only[] = {"NSA_FORCE_BRANCH", "win", NULL};
    static const char *const piped[] = {"NSA_FORCE_BRANCH", "win", "NSA_USE_FA2", "1", NULL};
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_fa2) == NSA_OK);
    const char *const *sets[2] = {ref_only, piped};
    for (int k = 0; k < 2; k++) {
        problem p, f;
        problem_make(&p, NSA_DTYPE_F32);
        problem_twin(&p, &f, NSA_DTYPE_F32, 1);
        log_sink s = {0};
        nsa_context *ctx = ctx_with(sets[k], &s);
        CHECK_OK(ctx, nsa_forward(ctx, &f.a));
        CHECK_OK(ctx, nsa_forward(ctx, &f.a));
        CHECK(same_bytes(&f.out, &f.o[NSA_BRANCH_WIN]), "path %d", k);
        CHECK(lines_of(&s, "gate.force") == 1);
        nsa_context_destroy(ctx);
        problem_free(&f);
        problem_free(&p);
        sink_free(&s);
    }
    nsa_backend_unregister_all();
}

/* NSA_LOG_LIMIT caps lines per tag, independently per tag; nsa_log_once gives one; 0 mutes. */
static void log_rate_limit_per_tag(void) {
    static const char *const three[] = {"NSA_LOG_LIMIT", "3", NULL};
    static const char *const zero[] = {"NSA_LOG_LIMIT", "0", NULL};
    log_sink s = {0};
    nsa_context *ctx = ctx_with(three, &s);
    for (int i = 0; i < 10; i++) {
        nsa_log(ctx, "decode.reads", "step %d", i);
        nsa_log(ctx, "sel.triton.test", "line %d", i);
        nsa_log_once(ctx, "fa2.once", "once %d", i);
    }
    CHECK(lines_of(&s, "decode.reads") == 3 && lines_of(&s, "sel.triton.test") == 3);
    CHECK(lines_of(&s, "fa2.once") == 1);
    nsa_context_destroy(ctx);
    log_sink z = {0};
    ctx = ctx_with(zero, &z);
    for (int i = 0; i < 5; i++) {
        nsa_log(ctx, "warn.x", "muted");
        nsa_log_once(ctx, "warn.y", "muted");
    }
    CHECK(z.ntags == 0);
    nsa_context_destroy(ctx);
    sink_free(&s);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"nonfinite_falls_back", nonfinite_falls_back},
        {"error_falls_back", error_falls_back},
        {"unsupported_falls_back", unsupported_falls_back},
        {"strict_catches_future_range", strict_catches_future_range},
        {"strict_reference_passes", strict_reference_passes},
        {"strict_checks_backward_ranges", strict_checks_backward_ranges},
        {"pipeline_matches_reference", pipeline_matches_reference},
        {"force_branch_one_hot", force_branch_one_hot},
        {"log_rate_limit_per_tag", log_rate_limit_per_tag},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
