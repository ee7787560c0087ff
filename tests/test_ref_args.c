// SPDX-License-Identifier: Apache-2.0
/* test_ref_args.c — bad inputs to nsa_forward / nsa_backward and the context calls: every invalid
 * config field, NULL pointers, wrong shapes, ndims, dtypes, devices, negative strides and
 * overflowing sizes each return the documented status with a message that names the field,
 * never crash, and leave the outputs untouched.
 */
#include "ref_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nsa_config args_cfg(void) {
    nsa_config c = nsa_config_default(4, 2, 5, 3);
    c.l = 4;
    c.d = 2;
    c.lp = 4;
    c.n = 3;
    c.w = 5;
    return c;
}

enum { NFWD = 17, NBWD = 9 };
static const char *const fwd_names[NFWD] = {
    "q",       "k_cmp",   "v_cmp",   "k_sel",   "v_sel",   "k_win",      "v_win",      "gates", "out",
    "out_cmp", "out_sel", "out_win", "lse_cmp", "lse_sel", "lse_win", "sel_blocks", "sel_ranges"};
static const char *const bwd_names[NBWD] = {"dout",   "dq",     "dk_cmp", "dv_cmp", "dk_sel",
                                            "dv_sel", "dk_win", "dv_win", "dgates"};

static nsa_tensor *fwd_field(nsa_fwd_args *a, int i) {
    nsa_tensor *f[NFWD] = {&a->q,       &a->k_cmp,   &a->v_cmp,   &a->k_sel,      &a->v_sel,
                           &a->k_win,   &a->v_win,   &a->gates,   &a->out,        &a->out_cmp,
                           &a->out_sel, &a->out_win, &a->lse_cmp, &a->lse_sel,    &a->lse_win,
                           &a->sel_blocks, &a->sel_ranges};
    return f[i];
}

static nsa_tensor *bwd_field(nsa_bwd_args *g, int i) {
    nsa_tensor *f[NBWD] = {&g->dout,   &g->dq,     &g->dk_cmp, &g->dv_cmp, &g->dk_sel,
                           &g->dv_sel, &g->dk_win, &g->dv_win, &g->dgates};
    return f[i];
}

typedef struct {
    nsa_context *ctx;
    prob p;
    pgrad g;
    int calls; /* failing calls made */
} fixture;

static void fx_init(fixture *f) {
    CHECK(nsa_context_create(&f->ctx, NULL, 0) == NSA_OK);
    prob_init(&f->p, args_cfg(), NSA_DTYPE_F32, 2, 11, P_EXTRAS);
    pgrad_init(&f->g, &f->p);
    f->calls = 0;
}

static void fx_free(fixture *f) {
    pgrad_free(&f->g);
    prob_free(&f->p);
    nsa_context_destroy(f->ctx);
}

/* Outputs still hold the poison byte 0x7f everywhere (no partial write) and guards are intact. */
static bool untouched(const tbuf *b) {
    const unsigned char *x = b->base;
    for (size_t i = 0; i < b->bytes; i++)
        if (x[i] != 0x7f) return false;
    return tb_guard_ok(b);
}

static bool fx_untouched(const fixture *f) {
    if (!untouched(&f->p.out) || !untouched(&f->p.blocks) || !untouched(&f->p.ranges)) return false;
    for (int k = 0; k < 3; k++)
        if (!untouched(&f->p.ob[k]) || !untouched(&f->p.lse[k])) return false;
    for (int k = 0; k < 8; k++)
        if (f->g.d[k].base && !untouched(&f->g.d[k])) return false;
    return true;
}

/* Runs forward (g == NULL) or backward and expects status st with `field` in the message. */
static void expect(fixture *f, const nsa_fwd_args *a, const nsa_bwd_args *g, nsa_status st,
                   const char *field, const char *what) {
    nsa_status got = g ? nsa_backward(f->ctx, a, g) : nsa_forward(f->ctx, a);
    const char *m = nsa_context_message(f->ctx);
    f->calls++;
    CHECK(got == st, "%s: status %s, expected %s (message '%s')", what, nsa_status_name(got),
          nsa_status_name(st), m);
    CHECK(strstr(m, field) != NULL, "%s: message '%s' does not name %s", what, m, field);
    CHECK(fx_untouched(f), "%s: an output was written by a failing call", what);
}

/* Every invalid config field: NSA_ERR_CONFIG naming cfg.<field>. */
static void bad_config(void) {
    fixture f;
    fx_init(&f);
    struct {
        const char *field;
        int which;
        double v;
    } cs[] = {{"cfg.l:", 0, 0},       {"cfg.l:", 0, -3},      {"cfg.d:", 1, 0},
              {"cfg.d:", 1, 3},       {"cfg.lp:", 2, 0},      {"cfg.d:", 2, 5},
              {"cfg.n:", 3, 0},       {"cfg.n:", 3, 2},       {"cfg.n_init:", 4, -1},
              {"cfg.n_local:", 5, -1}, {"cfg.w:", 6, -1},     {"cfg.Hq:", 7, 0},
              {"cfg.Hkv:", 8, 0},     {"cfg.Hkv:", 8, 3},     {"cfg.Dk:", 9, 0},
              {"cfg.Dv:", 10, 0},     {"cfg.scale:", 11, -1}, {"cfg.scale:", 11, NAN},
              {"cfg.scale:", 11, INFINITY}};
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        nsa_fwd_args a = f.p.a;
        nsa_config *c = &a.cfg;
        int *fields[11] = {&c->l,  &c->d,  &c->lp, &c->n,   &c->n_init, &c->n_local,
                           &c->w,  &c->Hq, &c->Hkv, &c->Dk, &c->Dv};
        if (cs[k].which == 11)
            c->scale = (float)cs[k].v;
        else
            *fields[cs[k].which] = (int)cs[k].v;
        char what[64];
        snprintf(what, sizeof what, "%s = %g", cs[k].field, cs[k].v);
        expect(&f, &a, NULL, NSA_ERR_CONFIG, cs[k].field, what);
        expect(&f, &a, &f.g.g, NSA_ERR_CONFIG, cs[k].field, what);
        if (nsa_test_failed) break;
    }
    fx_free(&f);
}

/* NULL context, args, grads and each required tensor's data. */
static void null_pointers(void) {
    fixture f;
    fx_init(&f);
    CHECK(nsa_forward(NULL, &f.p.a) == NSA_ERR_INVALID_ARG, "NULL ctx");
    CHECK(nsa_backward(NULL, &f.p.a, &f.g.g) == NSA_ERR_INVALID_ARG, "NULL ctx");
    expect(&f, NULL, NULL, NSA_ERR_INVALID_ARG, "args", "NULL args");
    expect(&f, NULL, &f.g.g, NSA_ERR_INVALID_ARG, "args", "NULL args (backward)");
    CHECK(nsa_backward(f.ctx, &f.p.a, NULL) == NSA_ERR_INVALID_ARG, "NULL grads");
    CHECK(strstr(nsa_context_message(f.ctx), "grads"), "message: %s", nsa_context_message(f.ctx));
    for (int i = 0; i < 9; i++) { /* q .. out: required */
        nsa_fwd_args a = f.p.a;
        fwd_field(&a, i)->data = NULL;
        expect(&f, &a, NULL, NSA_ERR_INVALID_ARG, fwd_names[i], fwd_names[i]);
        expect(&f, &a, &f.g.g, NSA_ERR_INVALID_ARG, fwd_names[i], fwd_names[i]);
    }
    nsa_bwd_args g = f.g.g;
    g.dout.data = NULL;
    expect(&f, &f.p.a, &g, NSA_ERR_INVALID_ARG, "dout", "NULL dout");
    /* context calls */
    CHECK(nsa_context_create(NULL, NULL, 0) == NSA_ERR_INVALID_ARG, "NULL out");
    CHECK(nsa_context_set_threads(f.ctx, -1) == NSA_ERR_INVALID_ARG &&
              strstr(nsa_context_message(f.ctx), "threads"),
          "negative threads: %s", nsa_context_message(f.ctx));
    CHECK(nsa_context_set_threads(NULL, 1) == NSA_ERR_INVALID_ARG, "NULL ctx");
    CHECK(!strcmp(nsa_context_message(NULL), ""), "message of NULL");
    nsa_context_destroy(NULL);
    CHECK(nsa_context_counters(f.ctx, NULL) == NSA_ERR_INVALID_ARG, "NULL counters");
    fx_free(&f);
}

/* Per tensor: each dim off by one, a wrong ndim, a negative stride (SHAPE); a wrong dtype
 * (DTYPE); another device (DEVICE). q's B and T define the call, so they are not mutated. */
static void mutate_all(fixture *f, int bwd) {
    const int n = bwd ? NBWD : NFWD;
    for (int i = 0; i < n; i++) {
        const char *name = bwd ? bwd_names[i] : fwd_names[i];
        nsa_fwd_args a0 = f->p.a;
        nsa_bwd_args g0 = f->g.g;
        const nsa_tensor *t0 = bwd ? bwd_field(&g0, i) : fwd_field(&a0, i);
        char what[96];
        for (int d = 0; d <= t0->ndim; d++) { /* d == ndim: change ndim */
            if (!bwd && i == 0 && d < 2) continue;
            nsa_fwd_args a = a0;
            nsa_bwd_args g = g0;
            nsa_tensor *t = bwd ? bwd_field(&g, i) : fwd_field(&a, i);
            if (d < t->ndim)
                t->shape[d]++;
            else
                t->ndim--;
            snprintf(what, sizeof what, "%s shape[%d] + 1 / ndim", name, d);
            expect(f, &a, bwd ? &g : NULL, NSA_ERR_SHAPE, name, what);
            if (d < t->ndim) {
                t->shape[d]--;
                t->stride[d] = -1;
                snprintf(what, sizeof what, "%s stride[%d] = -1", name, d);
                expect(f, &a, bwd ? &g : NULL, NSA_ERR_SHAPE, name, what);
            }
        }
        nsa_fwd_args a = a0;
        nsa_bwd_args g = g0;
        nsa_tensor *t = bwd ? bwd_field(&g, i) : fwd_field(&a, i);
        t->dtype = t->dtype == NSA_DTYPE_F32 ? (i == 0 && !bwd ? NSA_DTYPE_I32 : NSA_DTYPE_F16)
                                             : NSA_DTYPE_F32;
        snprintf(what, sizeof what, "%s dtype %s", name, nsa_dtype_name(t->dtype));
        expect(f, &a, bwd ? &g : NULL, NSA_ERR_DTYPE, name, what);
        t->dtype = t0->dtype;
        t->device.kind = (i == 0 && !bwd) ? (nsa_device_kind)7 : NSA_DEVICE_CUDA;
        snprintf(what, sizeof what, "%s on another device", name);
        expect(f, &a, bwd ? &g : NULL, NSA_ERR_DEVICE, name, what);
        if (nsa_test_failed) return;
    }
}

static void bad_tensors_forward(void) {
    fixture f;
    fx_init(&f);
    mutate_all(&f, 0);
    CHECK(f.calls > 100, "only %d calls", f.calls);
    fx_free(&f);
}

static void bad_tensors_backward(void) {
    fixture f;
    fx_init(&f);
    mutate_all(&f, 1);
    CHECK(f.calls > 50, "only %d calls", f.calls);
    fx_free(&f);
}

/* Sizes that overflow: numel × 8 bytes past int64, a stride whose span overflows, T past int32
 * (every tensor broadcast along T so the shapes themselves are consistent). */
static void overflow_sizes(void) {
    fixture f;
    fx_init(&f);
    nsa_fwd_args a = f.p.a;
    a.q.shape[1] = (int64_t)1 << 61;
    a.q.stride[1] = 0;
    expect(&f, &a, NULL, NSA_ERR_OVERFLOW, "q", "T = 2^61");
    a = f.p.a;
    a.k_sel.stride[0] = (int64_t)1 << 62;
    expect(&f, &a, NULL, NSA_ERR_OVERFLOW, "k_sel", "k_sel stride[0] = 2^62");
    nsa_bwd_args g = f.g.g;
    g.dq.stride[3] = INT64_MAX / 2;
    expect(&f, &f.p.a, &g, NSA_ERR_OVERFLOW, "dq", "dq stride[3] = 2^62");
    a = f.p.a;
    for (int i = 0; i < NFWD; i++) {
        nsa_tensor *t = fwd_field(&a, i);
        t->shape[1] = (int64_t)1 << 32;
        t->stride[1] = 0;
    }
    expect(&f, &a, NULL, NSA_ERR_OVERFLOW, "q", "T = 2^32");
    fx_free(&f);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"bad_config", bad_config},
        {"null_pointers", null_pointers},
        {"bad_tensors_forward", bad_tensors_forward},
        {"bad_tensors_backward", bad_tensors_backward},
        {"overflow_sizes", overflow_sizes},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
