// SPDX-License-Identifier: Apache-2.0
/* test_route_onepath.c — one path from the API to every kernel, on fake CPU backends: a fast
 * backend whose launcher refuses what its kernels cannot load (as the CUDA tensor-core launchers
 * do) is never handed such a call, because supports() sees the real call (nsa_call: empty
 * tensors, strides, alignment) — so a valid call never counts a fallback_error.
 * Not the golden policy table (test_route_table.c) nor the fallback nets (test_route_fallback.c).
 */
#include "harness.h"
#include "route/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, HQ = 4, HKV = 2, DK = 16, DV = 8 };

/* ---- a fake tensor-core backend: the router's rule in supports(), the launcher's in fwd() ---- */

static int tc_supports(const nsa_backend *self, const nsa_call *c, nsa_branch br,
                       const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)dev;
    const char *w = "";
    if (nsa_call_tc_operands(c, br, &w)) return 1;
    snprintf(why, why_len, "%s", w);
    return 0;
}

static int loadable(const nsa_tensor *t) {
    return nsa_rows16(t->data, t->stride[0], t->stride[1], t->stride[2], t->stride[3],
                      t->shape[3]);
}

/* Refuses, as fa2.cu's check_views does, any operand its 16-byte loads cannot read; else runs
 * the reference step. Counts its launches. */
static int tc_launches;
static nsa_status tc_fwd(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                         nsa_fwd_work *w) {
    const nsa_fwd_args *a = w->a;
    int ok = loadable(&a->q);
    if (br == NSA_BRANCH_CMP && a->cmp_compressed)
        ok = ok && loadable(&a->k_cmp) && loadable(&a->v_cmp);
    if (br == NSA_BRANCH_WIN && a->cfg.w > 0)
        ok = ok && loadable(&a->k_win) && loadable(&a->v_win);
    if (!ok)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "%s: rows must be contiguous and 16-byte "
                        "aligned for tensor cores", nsa_branch_name(br));
    tc_launches++;
    (void)self;
    return nsa_backend_ref_cpu.fwd(ctx, &nsa_backend_ref_cpu, br, w);
}

static const nsa_backend be_tc = {
    "fake.tc", NSA_ROLE_FA2, NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_WIN),
    NSA_DEVICE_CPU, tc_supports, tc_fwd, NULL, NULL, NULL, NULL};

/* ---- a call: T tokens; cmp keys raw or caller-compressed; window keys as a padded view ---- */

typedef struct {
    tbuf q, k, v, kc, vc, kw, vw, g, out;
    nsa_fwd_args a;
} call;

/* pad > 0: k_win/v_win are views with rows of D + pad elements (valid, not 16-byte loadable). */
static void call_make(call *c, int64_t T, int compressed, int pad) {
    memset(c, 0, sizeof *c);
    nsa_fwd_args *a = &c->a;
    a->cfg = nsa_config_default(HQ, HKV, DK, DV);
    a->cfg.l = 8, a->cfg.d = 4, a->cfg.lp = 8, a->cfg.n = 3, a->cfg.w = 12;
    c->q = tb_new4(NSA_DTYPE_F32, B, T, HQ, DK, 1.0);
    c->k = tb_new4(NSA_DTYPE_F32, B, T, HKV, DK, 1.0);
    c->v = tb_new4(NSA_DTYPE_F32, B, T, HKV, DV, 1.0);
    c->g = tb_new4(NSA_DTYPE_F32, B, T, HQ, 3, 0.0);
    tb_uniform(&c->g, 0.1, 1.0);
    c->out = tb_new4(NSA_DTYPE_F32, B, T, HQ, DV, 0.0);
    a->q = c->q.t, a->gates = c->g.t, a->out = c->out.t;
    a->k_sel = a->k_win = a->k_cmp = c->k.t;
    a->v_sel = a->v_win = a->v_cmp = c->v.t;
    if (compressed) { /* T < l: no compressed token, and the tensors may be absent */
        const int64_t Tc = nsa_num_cmp(&a->cfg, T);
        a->cmp_compressed = 1;
        memset(&a->k_cmp, 0, sizeof a->k_cmp);
        memset(&a->v_cmp, 0, sizeof a->v_cmp);
        if (Tc > 0) {
            c->kc = tb_new4(NSA_DTYPE_F32, B, Tc, HKV, DK, 1.0);
            c->vc = tb_new4(NSA_DTYPE_F32, B, Tc, HKV, DV, 1.0);
            a->k_cmp = c->kc.t, a->v_cmp = c->vc.t;
        }
    }
    if (pad) {
        c->kw = tb_new4(NSA_DTYPE_F32, B, T, HKV, DK + pad, 1.0);
        c->vw = tb_new4(NSA_DTYPE_F32, B, T, HKV, DV + pad, 1.0);
        a->k_win = c->kw.t, a->v_win = c->vw.t;
        a->k_win.shape[3] = DK, a->v_win.shape[3] = DV;
    }
}

static void call_free(call *c) {
    tbuf *all[] = {&c->q, &c->k, &c->v, &c->kc, &c->vc, &c->kw, &c->vw, &c->g, &c->out};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->base) tb_free(all[i]);
}

static nsa_context *ctx_with(const char *name, const char *value) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    if (name && nsa_context_set_flag(ctx, name, value) != NSA_OK) {
        nsa_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* Runs c with the fake tensor-core backend opted in; out must equal the reference bitwise, and
 * nothing may count as an error. *c_out gets the counters, tc_launches the fast launches. */
static void run_tc(call *c, nsa_counters *cnt) {
    nsa_backend_unregister_all();
    CHECK(nsa_backend_register(&be_tc) == NSA_OK);
    nsa_context *ref = ctx_with("NSA_FORCE_PARITY", "1"), *ctx = ctx_with("NSA_USE_FA2", "1");
    CHECK(ref && ctx);
    const int64_t T = c->a.q.shape[1];
    tbuf want = tb_new4(NSA_DTYPE_F32, B, T, HQ, DV, 0.0);
    nsa_fwd_args r = c->a;
    r.out = want.t;
    CHECK_OK(ref, nsa_forward(ref, &r));
    tc_launches = 0;
    CHECK_OK(ctx, nsa_forward(ctx, &c->a));
    CHECK_OK(ctx, nsa_context_counters(ctx, cnt));
    CHECK(cnt->fallback_error == 0, "a valid call counted %lld fallback_error(s): %s",
          (long long)cnt->fallback_error, "the router chose a backend whose launcher refused");
    CHECK(!memcmp(c->out.t.data, want.t.data, want.bytes) && tb_guard_ok(&c->out),
          "output differs from the reference");
    tb_free(&want);
    nsa_context_destroy(ref);
    nsa_context_destroy(ctx);
    nsa_backend_unregister_all();
}

/* The bug seen on the H100: caller-compressed cmp keys and T < l (no compressed block) went to
 * FA-2, whose launcher refused the empty tensor. Now the cmp branch has nothing to accelerate
 * (said in the reason, nothing counted) and the window still runs the fast backend. */
static void empty_cmp_never_routed(void) {
    for (int64_t T = 1; T < 8; T += 3) {
        call c;
        call_make(&c, T, 1, 0);
        nsa_counters cnt;
        run_tc(&c, &cnt);
        CHECK(cnt.fallback_unsupported == 0, "T=%lld: %lld", (long long)T,
              (long long)cnt.fallback_unsupported);
        CHECK(tc_launches == 1, "T=%lld: %d fast launches, want the window's only", (long long)T,
              tc_launches);
        call_free(&c);
    }
    nsa_context *ctx = ctx_with("NSA_USE_FA2", "1");
    CHECK(ctx != NULL);
    nsa_route_problem p = {nsa_config_default(HQ, HKV, DK, DV), B, 5, NSA_DTYPE_F32,
                           NSA_PASS_FORWARD, 0, 0};
    p.cfg.l = 8, p.cfg.d = 4, p.cfg.lp = 8;
    nsa_device_caps caps;
    nsa_route_decision d;
    CHECK(nsa_device_caps_named("cpu", &caps) == NSA_OK);
    nsa_backend_register(&be_tc);
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    nsa_backend_unregister_all();
    CHECK(strstr(d.reason[NSA_BRANCH_CMP], "T < l"), "%s", d.reason[NSA_BRANCH_CMP]);
    CHECK(!strcmp(d.backend[NSA_BRANCH_WIN], "fake.tc"), "%s", d.backend[NSA_BRANCH_WIN]);
    nsa_context_destroy(ctx);
}

/* Window keys as a padded view (valid strides, rows not 16-byte loadable): the fast backend
 * declines up front (counted unsupported, with the reason), its launcher never refuses. */
static void unaligned_view_never_routed(void) {
    call c;
    call_make(&c, 40, 0, 1);
    nsa_counters cnt;
    run_tc(&c, &cnt);
    CHECK(cnt.fallback_unsupported == 1, "%lld", (long long)cnt.fallback_unsupported);
    CHECK(tc_launches == 1, "%d fast launches, want cmp's only", tc_launches);
    call_free(&c);
    /* the same call with aligned windows runs both branches fast */
    call_make(&c, 40, 0, 0);
    run_tc(&c, &cnt);
    CHECK(cnt.fallback_unsupported == 0 && tc_launches == 2, "%lld, %d",
          (long long)cnt.fallback_unsupported, tc_launches);
    call_free(&c);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"empty_cmp_never_routed", empty_cmp_never_routed},
        {"unaligned_view_never_routed", unaligned_view_never_routed},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
