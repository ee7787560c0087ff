// SPDX-License-Identifier: Apache-2.0
/* test_varlen_route.c — packed documents and the router: on CUDA every branch goes to the
 * reference with a varlen reason; length cutoffs compare the longest document, not T; strict
 * asserts check each document in its own coordinates (a read before a document's first token
 * is caught and the message names the document), and pass on the reference.
 * Not the numerics (test_varlen.c).
 */
#include "harness.h"
#include "route/route.h"

#include <stdio.h>
#include <string.h>

static nsa_route_problem varlen_problem(int64_t n_docs, int64_t max_seqlen, int64_t T) {
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = nsa_config_default(4, 1, 64, 64);
    p.B = 1;
    p.T = T;
    p.dtype = NSA_DTYPE_BF16;
    p.pass = NSA_PASS_FORWARD;
    p.n_docs = n_docs;
    p.max_seqlen = max_seqlen;
    return p;
}

/* sm90 with FA-2 and fused selection asked for: packed documents still get the reference. */
static void cuda_varlen_is_reference(void) {
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "1"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_TRITON_SEL", "1"));
    nsa_device_caps sm90;
    CHECK_OK(ctx, nsa_device_caps_named("sm90", &sm90));
    static const nsa_pass passes[2] = {NSA_PASS_FORWARD, NSA_PASS_BACKWARD};
    for (int k = 0; k < 2; k++) {
        nsa_route_problem p = varlen_problem(16, 4096, 65536);
        p.pass = passes[k];
        nsa_route_decision d;
        CHECK_OK(ctx, nsa_route_explain(ctx, &p, &sm90, &d));
        for (int b = 0; b < 3; b++) {
            CHECK(d.role[b] == NSA_ROLE_REF && d.wanted[b] == NSA_ROLE_REF, "%s: %s",
                  nsa_branch_name((nsa_branch)b), d.reason[b]);
            CHECK(strstr(d.reason[b], "varlen") && strstr(d.reason[b], "cu_seqlens"), "%s",
                  d.reason[b]);
        }
    }
    nsa_route_problem bad = varlen_problem(4, 100, 400);
    bad.B = 2;
    nsa_route_decision d;
    CHECK(nsa_route_explain(ctx, &bad, &sm90, &d) == NSA_ERR_INVALID_ARG &&
          strstr(nsa_context_message(ctx), "problem.n_docs"), "%s", nsa_context_message(ctx));
    nsa_context_destroy(ctx);
}

/* The cutoffs read the longest document: 64 documents of at most 200 tokens in a row of 12800
 * are 200 window keys per query, not min(w, T) = 512. */
static void cutoffs_use_longest(void) {
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "1"));
    nsa_device_caps cpu;
    CHECK_OK(ctx, nsa_device_caps_named("cpu", &cpu));
    nsa_route_problem p = varlen_problem(64, 200, 12800);
    nsa_route_decision d;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &cpu, &d));
    CHECK(strstr(d.reason[NSA_BRANCH_WIN], "200 keys/query"), "%s", d.reason[NSA_BRANCH_WIN]);
    p.n_docs = 0;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &cpu, &d));
    CHECK(strstr(d.reason[NSA_BRANCH_WIN], "512 keys/query"), "%s", d.reason[NSA_BRANCH_WIN]);
    nsa_context_destroy(ctx);
}

static nsa_status fwd_ref(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)self;
    return nsa_backend_ref_cpu.fwd(ctx, &nsa_backend_ref_cpu, br, w);
}

static int yes(const nsa_backend *self, const nsa_call *c, nsa_branch br,
               const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev, (void)why, (void)why_len;
    return 1;
}

/* A window kernel that reads one key before its window, not clamped at the sequence start:
 * in a packed row that key belongs to the document before. */
static void span_before(const nsa_backend *self, nsa_branch br, const nsa_fwd_work *w, int64_t t,
                        int64_t *lo, int64_t *hi) {
    (void)self, (void)br;
    *lo = t - w->a->cfg.w;
    *hi = t + 1;
}

static const nsa_backend be_before = {"fake.before", NSA_ROLE_FA2, NSA_BRANCH_BIT(NSA_BRANCH_WIN),
                                      NSA_DEVICE_CPU, yes, fwd_ref, NULL, span_before, NULL, NULL};

/* Packed problem: tokens of 3 documents (6, 5, 9) with w = 4, every tensor its own buffer. */
typedef struct {
    tbuf q, k, v, g, out, cu;
    nsa_fwd_args a;
} small;

static void small_init(small *s) {
    nsa_config c = nsa_config_default(2, 1, 4, 4);
    c.l = 4, c.d = 2, c.lp = 4, c.n = 3, c.w = 4;
    s->q = tb_new4(NSA_DTYPE_F32, 1, 20, 2, 4, 1.0);
    s->k = tb_new4(NSA_DTYPE_F32, 1, 20, 1, 4, 1.0);
    s->v = tb_new4(NSA_DTYPE_F32, 1, 20, 1, 4, 1.0);
    s->g = tb_new4(NSA_DTYPE_F32, 1, 20, 2, 3, 1.0);
    s->out = tb_new4(NSA_DTYPE_F32, 1, 20, 2, 4, 0.0);
    int64_t n[1] = {4};
    s->cu = tb_new(NSA_DTYPE_I32, 1, n, 0.0);
    static const int32_t cu[4] = {0, 6, 11, 20};
    memcpy(s->cu.base, cu, sizeof cu);
    memset(&s->a, 0, sizeof s->a);
    s->a.cfg = c;
    s->a.q = s->q.t;
    s->a.k_cmp = s->a.k_sel = s->a.k_win = s->k.t;
    s->a.v_cmp = s->a.v_sel = s->a.v_win = s->v.t;
    s->a.gates = s->g.t;
    s->a.out = s->out.t;
    s->a.cu_seqlens = s->cu.t;
    s->a.max_seqlen = 9;
}

static void small_free(small *s) {
    tbuf *all[6] = {&s->q, &s->k, &s->v, &s->g, &s->out, &s->cu};
    for (int i = 0; i < 6; i++) tb_free(all[i]);
}

static void strict_per_document(void) {
    small s;
    small_init(&s);
    nsa_context *ctx = NULL;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_STRICT_ASSERTS", "1"));
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", "0"));
    CHECK_OK(ctx, nsa_forward(ctx, &s.a)); /* the reference reads nothing across */
    tbuf dq = tb_new4(NSA_DTYPE_F32, 1, 20, 2, 4, 0.0);
    tbuf dout = tb_new4(NSA_DTYPE_F32, 1, 20, 2, 4, 1.0);
    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    g.dout = dout.t;
    g.dq = dq.t;
    CHECK_OK(ctx, nsa_backward(ctx, &s.a, &g));
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_before) == NSA_OK);
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_USE_FA2", "1"));
    nsa_status st = nsa_forward(ctx, &s.a);
    CHECK(st == NSA_ERR_CAUSALITY && strstr(nsa_context_message(ctx), "document 0") &&
          strstr(nsa_context_message(ctx), "win span"), "%s: %s", nsa_status_name(st),
          nsa_context_message(ctx));
    nsa_backend_unregister_all();
    nsa_counters c;
    nsa_context_counters(ctx, &c);
    CHECK(c.causality_violations == 1, "%lld", (long long)c.causality_violations);
    tb_free(&dq);
    tb_free(&dout);
    small_free(&s);
    nsa_context_destroy(ctx);
}

static const nsa_case cases[] = {
    {"cuda_varlen_is_reference", cuda_varlen_is_reference},
    {"cutoffs_use_longest", cutoffs_use_longest},
    {"strict_per_document", strict_per_document},
};

int main(int argc, char **argv) {
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
