// SPDX-License-Identifier: Apache-2.0
/* dispatch.c — the public entry points nsa_forward / nsa_backward: validate, route, run the
 * pipeline of backend.h, apply the fallbacks, NSA_FORCE_BRANCH and NSA_STRICT_ASSERTS.
 * Not the routing decision itself (router.c decides); this file runs what it decided.
 * Invariant: every call validates every argument before touching an output; a fast step that
 * fails or produces a non-finite output is recomputed by its fallback backend, counted, and
 * logged once per tag, so the caller gets the reference's answer.
 */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "fa2.<what>", "sel.triton.<what>" or "warn.<what>" for a backend's role. */
static void tag_of(const nsa_backend *be, const char *what, char *tag, size_t len) {
    const char *pre = be->role == NSA_ROLE_FA2 ? "fa2" : be->role == NSA_ROLE_FUSED_SEL
                                                             ? "sel.triton" : "warn";
    snprintf(tag, len, "%s.%s", pre, what);
}

/* Prefixes the message of a failed step of document i of a packed call with the document. */
static nsa_status doc_fail(nsa_context *ctx, nsa_status st, const nsa_shape *s, int64_t i) {
    char msg[NSA_MSG_LEN];
    snprintf(msg, sizeof msg, "%s", ctx->msg);
    return nsa_fail(ctx, st, "document %lld (tokens [%lld, %lld)): %s", (long long)i,
                    (long long)s->cu[i], (long long)s->cu[i + 1], msg);
}

/* Routes the call and applies what holds for every path: counters, unsupported notices. */
static nsa_status route(nsa_context *ctx, const nsa_fwd_args *a, const nsa_bwd_args *g,
                        const nsa_shape *s, nsa_pass pass, nsa_call *c, nsa_route_plan_t *plan) {
    *c = nsa_call_of(a, g, s, pass);
    nsa_device_caps caps;
    NSA_TRY(nsa_device_caps_of(ctx, a->q.device, &caps));
    NSA_TRY(nsa_route_plan(ctx, c, &caps, plan));
    for (int b = 0; b < 3; b++)
        if (!plan->be[b])
            return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "%s branch: no backend can run it on %s: %s",
                            nsa_branch_name((nsa_branch)b), caps.name, plan->d.reason[b]);
    /* what runs, once per context and pass: nsa_route_explain says the same (a test checks) */
    nsa_log_once(ctx, pass == NSA_PASS_FORWARD ? "forward.route" : "backward.route",
                 "cmp %s, sel %s, win %s", plan->d.backend[0], plan->d.backend[1],
                 plan->d.backend[2]);
    for (int b = 0; b < 3; b++) {
        if (!plan->declined[b]) continue;
        char tag[48];
        const nsa_backend probe = {.role = plan->d.wanted[b]};
        tag_of(&probe, "unsupported", tag, sizeof tag);
        ctx->counters.fallback_unsupported++;
        nsa_log_once(ctx, tag, "%s: %s", nsa_branch_name((nsa_branch)b), plan->d.reason[b]);
    }
    if (ctx->flags.force_branch >= 0)
        nsa_log_once(ctx, "gate.force", "NSA_FORCE_BRANCH=%s: gates replaced by one-hot "
                     "(benches and ablations only)",
                     nsa_branch_name((nsa_branch)ctx->flags.force_branch));
    ctx->counters.calls++;
    return NSA_OK;
}

/* A contiguous (B, T, Hq, 3) one-hot gates tensor of dtype dt for NSA_FORCE_BRANCH. */
static nsa_status one_hot_gates(nsa_context *ctx, const nsa_shape *s, int br, nsa_tensor *g) {
    const int64_t cnt = s->B * s->T * s->Hq * 3;
    void *data = nsa_malloc(nsa_dtype_size(s->dt) * (size_t)(cnt + 1));
    if (!data) return nsa_fail(ctx, NSA_ERR_NOMEM, "gates: out of memory for one-hot gates");
    *g = nsa_tensor_4d(data, s->dt, s->B, s->T, s->Hq, 3);
    for (int64_t i = 0; i < cnt; i++) nsa_store(g, i, i % 3 == br ? 1.0 : 0.0);
    return NSA_OK;
}

/* Copies contiguous ranges into the caller's (B, T, Hkv, n, 2) tensor of any strides. */
static void store_ranges(const nsa_tensor *R, const int32_t *src, const nsa_shape *s, int n) {
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t t = 0; t < s->T; t++)
            for (int g = 0; g < s->Hkv; g++)
                for (int k = 0; k < n; k++)
                    for (int e = 0; e < 2; e++)
                        ((int32_t *)R->data)[nsa_off4(R, b, t, g, k) + e * R->stride[4]] =
                            src[(((b * s->T + t) * s->Hkv + g) * n + k) * 2 + e];
}

/* Copies the caller's (B, T, Hkv, n, 2) ranges of any strides into contiguous dst. */
static void load_ranges(const nsa_tensor *R, int32_t *dst, const nsa_shape *s, int n) {
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t t = 0; t < s->T; t++)
            for (int g = 0; g < s->Hkv; g++)
                for (int k = 0; k < n; k++)
                    for (int e = 0; e < 2; e++)
                        dst[(((b * s->T + t) * s->Hkv + g) * n + k) * 2 + e] =
                            ((const int32_t *)R->data)[nsa_off4(R, b, t, g, k) + e * R->stride[4]];
}

/* The reference on every branch of a CPU call: one pass of nsa_ref_forward. */
static nsa_status ref_whole(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s) {
    nsa_fwd_args a2 = *a;
    const int strict = ctx->flags.strict_asserts;
    int32_t *ranges = NULL;
    nsa_status st = NSA_OK;
    if (ctx->flags.force_branch >= 0)
        NSA_TRY(one_hot_gates(ctx, s, ctx->flags.force_branch, &a2.gates));
    if (strict) {
        const int64_t cnt = s->B * s->T * s->Hkv * a->cfg.n * 2;
        ranges = nsa_malloc(sizeof(int32_t) * (size_t)(cnt + 1));
        if (!ranges) st = nsa_fail(ctx, NSA_ERR_NOMEM, "strict asserts: out of memory");
        int64_t shape[5] = {s->B, s->T, s->Hkv, a->cfg.n, 2};
        a2.sel_ranges = nsa_tensor_make(ranges, NSA_DTYPE_I32, 5, shape);
    }
    if (st == NSA_OK) st = nsa_ref_forward(ctx, &a2, s);
    if (st == NSA_OK && strict) {
        nsa_fwd_work w;
        memset(&w, 0, sizeof w);
        w.a = a;
        w.s = s;
        st = nsa_strict_spans(ctx, NULL, NSA_BRANCH_CMP, &w);
        if (st == NSA_OK) st = nsa_strict_spans(ctx, NULL, NSA_BRANCH_WIN, &w);
        if (st == NSA_OK) st = nsa_strict_ranges(ctx, ranges, s->B, s->T, s->Hkv, a->cfg.n, 0);
        if (st == NSA_OK && nsa_present(&a->sel_ranges))
            store_ranges(&a->sel_ranges, ranges, s, a->cfg.n);
    }
    free(ranges);
    if (a2.gates.data != a->gates.data) free(a2.gates.data);
    return st;
}

/* Runs branch br on its routed backend; a fast backend's error or non-finite output is
 * recomputed on the fallback backend (counted, logged once). */
static nsa_status step(nsa_context *ctx, const nsa_pipeline *pl, const nsa_route_plan_t *plan,
                       nsa_branch br, nsa_fwd_work *w, int reselect) {
    const nsa_backend *be = plan->be[br], *fb = plan->fallback[br];
    nsa_status st = be->fwd(ctx, be, br, w);
    if (!fb || fb == be) return st;
    char tag[48];
    if (st != NSA_OK) {
        ctx->counters.fallback_error++;
        tag_of(be, "error", tag, sizeof tag);
        nsa_log_once(ctx, tag, "%s failed on %s (%s: %s); recomputed on %s", be->name,
                     nsa_branch_name(br), nsa_status_name(st), ctx->msg, fb->name);
    } else {
        int finite = 1;
        NSA_TRY(pl->finite(ctx, w, br, &finite));
        if (finite) return NSA_OK;
        ctx->counters.fallback_nonfinite++;
        tag_of(be, "fallback", tag, sizeof tag);
        nsa_log_once(ctx, tag, "%s output of %s not finite (NaN/Inf); recomputed on %s",
                     be->name, nsa_branch_name(br), fb->name);
    }
    nsa_clear(ctx);
    if (reselect) NSA_TRY(pl->select(ctx, w));
    return fb->fwd(ctx, fb, br, w);
}

/* Selection: the sel backend's own step if it has one (errors fall back to the pipeline's). */
static nsa_status select_step(nsa_context *ctx, const nsa_pipeline *pl,
                              const nsa_route_plan_t *plan, nsa_fwd_work *w, int *own) {
    const nsa_backend *be = plan->be[NSA_BRANCH_SEL];
    *own = be->select != NULL;
    if (!*own) return pl->select(ctx, w);
    nsa_status st = be->select(ctx, be, w);
    if (st == NSA_OK) return NSA_OK;
    char tag[48];
    ctx->counters.fallback_error++;
    tag_of(be, "error", tag, sizeof tag);
    nsa_log_once(ctx, tag, "%s selection failed (%s: %s); recomputed by the %s pipeline",
                 be->name, nsa_status_name(st), ctx->msg, pl->name);
    nsa_clear(ctx);
    *own = 0;
    return pl->select(ctx, w);
}

static nsa_status strict_step(nsa_context *ctx, const nsa_pipeline *pl,
                              const nsa_route_plan_t *plan, const nsa_fwd_work *w) {
    NSA_TRY(nsa_strict_spans(ctx, plan->be[NSA_BRANCH_CMP], NSA_BRANCH_CMP, w));
    NSA_TRY(nsa_strict_spans(ctx, plan->be[NSA_BRANCH_WIN], NSA_BRANCH_WIN, w));
    const size_t cnt = (size_t)(w->s->B * w->s->T * w->s->Hkv * w->a->cfg.n * 2);
    int32_t *host = nsa_malloc(sizeof(int32_t) * (cnt + 1));
    if (!host) return nsa_fail(ctx, NSA_ERR_NOMEM, "strict asserts: out of memory");
    nsa_status st = pl->to_host(ctx, w, w->ranges, host, sizeof(int32_t) * cnt);
    if (st == NSA_OK)
        st = nsa_strict_ranges(ctx, host, w->s->B, w->s->T, w->s->Hkv, w->a->cfg.n, 0);
    free(host);
    return st;
}

static nsa_status run_pipeline(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                               const nsa_route_problem *p, const nsa_route_plan_t *plan) {
    const nsa_pipeline *pl = nsa_pipeline_for(s->dev);
    if (!pl) return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "q: no pipeline for this device");
    if (s->B == 0 || s->T == 0) return NSA_OK;
    nsa_fwd_work w;
    memset(&w, 0, sizeof w);
    w.a = a;
    w.s = s;
    w.p = p;
    w.stream = ctx->stream;
    w.force_branch = ctx->flags.force_branch;
    int own = 0;
    nsa_status st = pl->begin(ctx, &w);
    if (st == NSA_OK) st = step(ctx, pl, plan, NSA_BRANCH_CMP, &w, 0);
    if (st == NSA_OK) st = select_step(ctx, pl, plan, &w, &own);
    if (st == NSA_OK && ctx->flags.strict_asserts) st = strict_step(ctx, pl, plan, &w);
    if (st == NSA_OK) st = step(ctx, pl, plan, NSA_BRANCH_SEL, &w, own);
    if (st == NSA_OK) st = step(ctx, pl, plan, NSA_BRANCH_WIN, &w, 0);
    if (st == NSA_OK) st = pl->finish(ctx, &w);
    pl->end(&w);
    return st;
}

static int all_ref_cpu(const nsa_route_plan_t *plan) {
    for (int b = 0; b < 3; b++)
        if (plan->be[b] != &nsa_backend_ref_cpu) return 0;
    return 1;
}

/* One plain (not packed) forward on the plan. */
static nsa_status forward_one(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                              const nsa_route_problem *p, const nsa_route_plan_t *plan) {
    if (all_ref_cpu(plan)) return ref_whole(ctx, a, s);
    return run_pipeline(ctx, a, s, p, plan);
}

nsa_status nsa_forward(nsa_context *ctx, const nsa_fwd_args *a) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    nsa_shape s;
    NSA_TRY(nsa_args_check_fwd(ctx, a, &s));
    nsa_call c;
    nsa_route_plan_t plan;
    NSA_TRY(route(ctx, a, NULL, &s, NSA_PASS_FORWARD, &c, &plan));
    if (s.n_docs == 0) return forward_one(ctx, a, &s, &c.p, &plan);
    /* Packed documents: each one a plain call over its own tokens, on the packed call's plan
     * (the router saw the documents; docs/varlen.md). */
    for (int64_t i = 0; i < s.n_docs; i++) {
        nsa_fwd_args ai;
        nsa_shape si;
        nsa_varlen_doc(a, &s, i, &ai, &si);
        const nsa_route_problem pi = nsa_route_problem_of(&ai, &si, NSA_PASS_FORWARD);
        nsa_status st = forward_one(ctx, &ai, &si, &pi, &plan);
        if (st != NSA_OK) return doc_fail(ctx, st, &s, i);
    }
    return NSA_OK;
}

/* NSA_STRICT_ASSERTS before a backward: the spans it reads, and the ranges handed back. */
static nsa_status strict_backward(nsa_context *ctx, const nsa_fwd_args *fwd, const nsa_shape *s) {
    nsa_fwd_work w;
    memset(&w, 0, sizeof w);
    w.a = fwd;
    w.s = s;
    NSA_TRY(nsa_strict_spans(ctx, NULL, NSA_BRANCH_CMP, &w));
    NSA_TRY(nsa_strict_spans(ctx, NULL, NSA_BRANCH_WIN, &w));
    if (s->dev == NSA_DEVICE_CUDA || !nsa_present(&fwd->sel_ranges) || s->B * s->T == 0)
        return NSA_OK; /* the CUDA backward validates device sel_ranges itself */
    /* ranges handed back for reuse are read by the backward: check them too */
    const int n = fwd->cfg.n;
    int32_t *r = nsa_malloc(sizeof(int32_t) * (size_t)(s->B * s->T * s->Hkv * n * 2));
    if (!r) return nsa_fail(ctx, NSA_ERR_NOMEM, "strict asserts: out of memory");
    load_ranges(&fwd->sel_ranges, r, s, n);
    nsa_status st = nsa_strict_ranges(ctx, r, s->B, s->T, s->Hkv, n, 0);
    free(r);
    return st;
}

/* One plain (not packed) backward on the plan; fwd_roles: the forward the CUDA backward
 * recomputes where it needs the selection (what nsa_forward of this call runs). */
static nsa_status backward_one(nsa_context *ctx, const nsa_fwd_args *fwd, const nsa_bwd_args *g,
                               const nsa_shape *s, const nsa_route_plan_t *plan,
                               const nsa_role fwd_roles[3]) {
    if (ctx->flags.strict_asserts) NSA_TRY(strict_backward(ctx, fwd, s));
    if (s->dev == NSA_DEVICE_CUDA) {
        /* the CUDA backward (backend.h's hook) */
        nsa_role roles[3];
        for (int b = 0; b < 3; b++) roles[b] = plan->be[b]->role;
        return nsa_device_cuda_backward(ctx, fwd, g, s, roles, fwd_roles,
                                        ctx->flags.force_branch);
    }
    nsa_fwd_args a2 = *fwd;
    if (ctx->flags.force_branch >= 0)
        NSA_TRY(one_hot_gates(ctx, s, ctx->flags.force_branch, &a2.gates));
    nsa_status st = nsa_ref_backward(ctx, &a2, g, s);
    if (a2.gates.data != fwd->gates.data) free(a2.gates.data);
    return st;
}

nsa_status nsa_backward(nsa_context *ctx, const nsa_fwd_args *fwd, const nsa_bwd_args *g) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    nsa_shape s;
    NSA_TRY(nsa_args_check_fwd(ctx, fwd, &s));
    NSA_TRY(nsa_args_check_bwd(ctx, fwd, g, &s));
    nsa_call c;
    nsa_route_plan_t plan;
    NSA_TRY(route(ctx, fwd, g, &s, NSA_PASS_BACKWARD, &c, &plan));
    if (s.dev != NSA_DEVICE_CUDA && !all_ref_cpu(&plan))
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "backward: only the CPU reference runs it "
                        "(routed: cmp %s, sel %s, win %s)", plan.d.backend[0],
                        plan.d.backend[1], plan.d.backend[2]);
    /* the forward decision too: the CUDA backward recomputes what nsa_forward runs */
    nsa_role fwd_roles[3] = {NSA_ROLE_REF, NSA_ROLE_REF, NSA_ROLE_REF};
    if (s.dev == NSA_DEVICE_CUDA) {
        nsa_device_caps caps;
        nsa_route_plan_t fplan;
        const nsa_call fc = nsa_call_of(fwd, NULL, &s, NSA_PASS_FORWARD);
        NSA_TRY(nsa_device_caps_of(ctx, fwd->q.device, &caps));
        NSA_TRY(nsa_route_plan(ctx, &fc, &caps, &fplan));
        for (int b = 0; b < 3; b++)
            if (fplan.be[b]) fwd_roles[b] = fplan.be[b]->role;
    }
    if (s.n_docs == 0) return backward_one(ctx, fwd, g, &s, &plan, fwd_roles);
    for (int64_t i = 0; i < s.n_docs; i++) {
        nsa_fwd_args ai;
        nsa_shape si;
        nsa_bwd_args gi;
        nsa_varlen_doc(fwd, &s, i, &ai, &si);
        nsa_varlen_doc_grads(fwd, g, &s, i, &gi);
        nsa_status st = backward_one(ctx, &ai, &gi, &si, &plan, fwd_roles);
        if (st != NSA_OK) return doc_fail(ctx, st, &s, i);
    }
    return NSA_OK;
}
