// SPDX-License-Identifier: Apache-2.0
/* gpu_bwd_util.c — see gpu_bwd_util.h. */
#include "gpu_bwd_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NG 9 /* dout, dq, dk_cmp, dv_cmp, dk_sel, dv_sel, dk_win, dv_win, dgates */
static const char *gname[NG] = {"dout",   "dq",     "dk_cmp", "dv_cmp", "dk_sel",
                                "dv_sel", "dk_win", "dv_win", "dgates"};

typedef struct {
    dbuf d[NG]; /* device gradients (d[0]: dout, the input) */
    tbuf r[NG]; /* reference gradients on the host (r[0] unused) */
    int alias;  /* shared K/V: one dK and one dV for every branch */
} gset;

static int dmake(nsa_context *ctx, dbuf *b, nsa_dtype dt, const int64_t s[4], double scale) {
    memset(b, 0, sizeof *b);
    b->h = tb_new(dt, 4, s, scale);
    if (nsa_cuda_malloc(ctx, &b->d, b->h.bytes + NSA_GUARD_BYTES) != NSA_OK) return 0;
    if (nsa_cuda_memcpy_h2d(ctx, b->d, b->h.base, b->h.bytes + NSA_GUARD_BYTES) != NSA_OK)
        return 0;
    b->t = b->h.t;
    b->t.data = b->d;
    b->t.device.kind = NSA_DEVICE_CUDA;
    return 1;
}

static int gs_make(nsa_context *ctx, gset *G, const gprob *p, int alias) {
    memset(G, 0, sizeof *G);
    G->alias = alias;
    const nsa_config *c = &p->c;
    const int64_t B = p->B, T = p->T;
    const int64_t sh[NG][4] = {{B, T, c->Hq, c->Dv},  {B, T, c->Hq, c->Dk},  {B, T, c->Hkv, c->Dk},
                               {B, T, c->Hkv, c->Dv}, {B, T, c->Hkv, c->Dk}, {B, T, c->Hkv, c->Dv},
                               {B, T, c->Hkv, c->Dk}, {B, T, c->Hkv, c->Dv}, {B, T, c->Hq, 3}};
    for (int i = 0; i < NG; i++) {
        if (alias && (i == 4 || i == 5 || i == 6 || i == 7)) continue;
        if (!dmake(ctx, &G->d[i], p->dt, sh[i], i == 0 ? 1.0 : 0.0)) return 0;
        if (i) G->r[i] = tb_new(p->dt, 4, sh[i], 0.0);
    }
    return 1;
}

static void gs_free(gset *G) {
    for (int i = 0; i < NG; i++) {
        if (G->d[i].d) nsa_cuda_free(G->d[i].d);
        tb_free(&G->d[i].h);
        tb_free(&G->r[i]);
    }
}

/* Gradient args over the device (dev = 1) or reference (dev = 0) buffers. */
static nsa_bwd_args gs_args(gset *G, int dev) {
    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    nsa_tensor t[NG];
    for (int i = 0; i < NG; i++) {
        const int j = G->alias && i >= 4 && i <= 7 ? 2 + (i % 2) : i;
        t[i] = dev || i == 0 ? (dev ? G->d[j].t : G->d[0].h.t) : G->r[j].t;
    }
    g.dout = t[0]; g.dq = t[1]; g.dk_cmp = t[2]; g.dv_cmp = t[3]; g.dk_sel = t[4];
    g.dv_sel = t[5]; g.dk_win = t[6]; g.dv_win = t[7]; g.dgates = t[8];
    return g;
}

static int gs_poison(nsa_context *ctx, gset *G) {
    for (int i = 1; i < NG; i++) {
        if (!G->d[i].d) continue;
        if (nsa_cuda_memset(ctx, G->d[i].d, 0xff, G->d[i].h.bytes) != NSA_OK ||
            nsa_cuda_memset(ctx, (char *)G->d[i].d + G->d[i].h.bytes, 0xA5, NSA_GUARD_BYTES) !=
                NSA_OK)
            return 0;
    }
    return 1;
}

/* Copies device gradients to their host mirrors; 0 if a guard was overwritten. */
static int gs_fetch(nsa_context *ctx, gset *G) {
    for (int i = 1; i < NG; i++) {
        dbuf *b = &G->d[i];
        if (!b->d) continue;
        unsigned char guard[NSA_GUARD_BYTES];
        if (nsa_cuda_memcpy_d2h(ctx, b->h.base, b->d, b->h.bytes) != NSA_OK ||
            nsa_cuda_memcpy_d2h(ctx, guard, (char *)b->d + b->h.bytes, NSA_GUARD_BYTES) != NSA_OK)
            return 0;
        for (int k = 0; k < NSA_GUARD_BYTES; k++)
            if (guard[k] != 0xA5) return 0;
    }
    return 1;
}

static double unit(nsa_dtype dt) {
    return dt == NSA_DTYPE_BF16 ? 1.0 / 256 : dt == NSA_DTYPE_F16 ? 1.0 / 2048 : 1.0 / 16777216;
}

/* Compares every fetched gradient with the reference; worst |err|/tol into *worst; returns the
 * number of failing elements (NaN counts) and names the first in msg. Without lp: element-wise,
 * |gpu − ref| ≤ 2·u·|ref| + rms_floor·rms(ref) + 1e-7. With lp (the low-precision run, field
 * order): per gradient, max |gpu − ref| ≤ 2·max |lp − ref| + u·max |ref| (one ulp of the
 * largest element: the stored gradient's own rounding) and rms |gpu − ref| ≤ 2·rms |lp − ref|,
 * each + 1e-7. */
static int64_t gs_compare(const gset *G, nsa_dtype dt, double rms_floor, double *const *lp,
                          double *worst, char *msg, size_t len) {
    int64_t bad = 0;
    *worst = 0.0;
    msg[0] = 0;
    for (int i = 1; i < NG; i++) {
        if (!G->d[i].d) continue;
        const tbuf *x = &G->d[i].h, *r = &G->r[i];
        const int64_t n = tb_numel(r);
        double ss = 0.0;
        for (int64_t k = 0; k < n; k++) ss += tb_get(r, k) * tb_get(r, k);
        const double rms = n ? sqrt(ss / (double)n) : 0.0;
        double emax = 0.0, ess = 0.0, lmax = 0.0, lss = 0.0, rmax = 0.0;
        for (int64_t k = 0; k < n; k++) {
            const double a = tb_get(x, k), b = tb_get(r, k);
            const double e = fabs(a - b);
            rmax = fabs(b) > rmax ? fabs(b) : rmax;
            if (lp) {
                const double el = fabs(lp[i - 1][k] - b);
                lmax = el > lmax ? el : lmax;
                lss += el * el;
                if (e != e) { /* NaN; the norms are decided on the whole tensor below */
                    if (!bad)
                        snprintf(msg, len, "%s[%lld] = %.9g, reference %.9g", gname[i],
                                 (long long)k, a, b);
                    bad++;
                }
                emax = e > emax ? e : emax;
                ess += e * e;
                continue;
            }
            const double tol = 2.0 * unit(dt) * fabs(b) + rms_floor * rms + 1e-7;
            emax = e > emax ? e : emax;
            ess += e * e;
            if (!(e <= tol)) {
                if (!bad)
                    snprintf(msg, len, "%s[%lld] = %.9g, reference %.9g (tol %.3g)", gname[i],
                             (long long)k, a, b, tol);
                bad++;
            } else if (e / tol > *worst) {
                *worst = e / tol;
            }
        }
        const double erms = n ? sqrt(ess / (double)n) : 0.0, lrms = n ? sqrt(lss / (double)n) : 0.0;
        if (lp) {
            /* the stored gradient may land one ulp from the correctly rounded value */
            const double rm = emax / (2.0 * lmax + unit(dt) * rmax + 1e-7);
            const double rr = erms / (2.0 * lrms + 1e-7);
            if (!(rm <= 1.0) || !(rr <= 1.0)) {
                if (!bad)
                    snprintf(msg, len, "%s: max error %.3g, rms %.3g; low-precision run %.3g, %.3g",
                             gname[i], emax, erms, lmax, lrms);
                bad++;
            }
            *worst = rm > *worst ? rm : *worst;
            *worst = rr > *worst ? rr : *worst;
        }
        if (getenv("NSA_TEST_ERRSTATS") && rms > 0.0) /* errors in units of u·rms(ref) */
            printf("    %-6s rms %.3g: error rms %.3f, max %.3f; low-precision run %.3f, %.3f "
                   "(u·rms)\n", gname[i], rms, erms / (unit(dt) * rms), emax / (unit(dt) * rms),
                   lrms / (unit(dt) * rms), lmax / (unit(dt) * rms));
    }
    return bad;
}

int gb_route_backward(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt,
                      nsa_route_decision *d) {
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = c;
    p.B = B;
    p.T = T;
    p.dtype = dt;
    p.pass = NSA_PASS_BACKWARD;
    nsa_device dev = {NSA_DEVICE_CUDA, 0};
    nsa_device_caps caps;
    if (nsa_device_caps_query(ctx, dev, &caps) != NSA_OK ||
        nsa_route_explain(ctx, &p, &caps, d) != NSA_OK) {
        printf("  route: %s\n", nsa_context_message(ctx));
        return 0;
    }
    return 1;
}

nsa_config gb_cfg(int Hq, int Hkv, int Dk, int Dv, int l, int d, int lp, int n, int w) {
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = l; c.d = d; c.lp = lp; c.n = n; c.w = w;
    return c;
}

int gb_run_one(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt, int shared, int mode,
               double rms_floor, const char *label) {
    gprob p;
    gset G;
    int ok = gp_make(ctx, &p, c, B, T, dt, shared) && gs_make(ctx, &G, &p, shared);
    nsa_status st = ok ? gp_reference(ctx, &p) : NSA_ERR_NOMEM; /* fills p.rranges */
    nsa_fwd_args ah = gp_args(&p, 0), ad = gp_args(&p, 1);
    if (!(mode & RANGES_GIVEN)) {
        memset(&ah.sel_ranges, 0, sizeof ah.sel_ranges);
        memset(&ad.sel_ranges, 0, sizeof ad.sel_ranges);
    } else if (ok) {
        if (mode & BAD_RANGES) { /* a range reaching past t+1 at the last row */
            int32_t *r = (int32_t *)p.rranges.base + ((int64_t)B * T * c.Hkv - 1) * c.n * 2;
            r[1] = T + 1;
        }
        ok = nsa_cuda_memcpy_h2d(ctx, p.ranges.d, p.rranges.base, p.rranges.bytes) == NSA_OK;
    }
    if (!(mode & SAVED)) { /* not written by a forward: the backward must not read them */
        nsa_tensor none;
        memset(&none, 0, sizeof none);
        ad.out_cmp = ad.out_sel = ad.out_win = ad.lse_cmp = ad.lse_sel = ad.lse_win = none;
    } else if (ok && st == NSA_OK) {
        /* the device forward keeps its outputs for the backward; its selection becomes the
         * reference's too (near-ties may pick other blocks than the CPU did) */
        st = nsa_forward(ctx, &ad);
        if (st == NSA_OK) st = nsa_cuda_sync(ctx);
        if (st == NSA_OK)
            st = nsa_cuda_memcpy_d2h(ctx, p.rranges.base, p.ranges.d, p.rranges.bytes);
    }
    int64_t nsel_diff = 0;
    if (!(mode & (RANGES_GIVEN | BAD_RANGES)) && ok && st == NSA_OK) {
        /* the device backward recomputes the selection as its routed forward makes it (bitwise
         * the same kernels): the reference gets that selection too, so a near-tie the CPU broke
         * the other way is not a gradient error; the rows that differ are counted and bounded */
        nsa_fwd_args af = ad;
        memset(&af.out_cmp, 0, sizeof af.out_cmp);
        af.out_sel = af.out_win = af.lse_cmp = af.lse_sel = af.lse_win = af.out_cmp;
        af.sel_ranges = p.ranges.t;
        st = nsa_forward(ctx, &af);
        tbuf dr = tb_new(NSA_DTYPE_I32, 5, p.rranges.t.shape, 0.0);
        if (st == NSA_OK) st = nsa_cuda_sync(ctx);
        if (st == NSA_OK) st = nsa_cuda_memcpy_d2h(ctx, dr.base, p.ranges.d, p.rranges.bytes);
        const int64_t row = (int64_t)c.n * 2, nrow = tb_numel(&dr) / row;
        for (int64_t r = 0; st == NSA_OK && r < nrow; r++)
            nsel_diff += memcmp((int32_t *)dr.base + r * row, (int32_t *)p.rranges.base + r * row,
                                sizeof(int32_t) * (size_t)row) != 0;
        if (st == NSA_OK) memcpy(p.rranges.base, dr.base, p.rranges.bytes);
        tb_free(&dr);
        ah.sel_ranges = p.rranges.t;
        if (nsel_diff)
            printf("  recomputed selection differs from the CPU's in %lld of %lld (t, g) rows%s\n",
                   (long long)nsel_diff, (long long)nrow,
                   nsel_diff > nrow / 100 + 1 ? ": more than near-ties explain" : " (near-ties)");
        if (nsel_diff > nrow / 100 + 1) ok = 0;
    }
    nsa_bwd_args gh = gs_args(&G, 0), gd = gs_args(&G, 1);
    const char *why = "";
    if (ok && st == NSA_OK && !(mode & BAD_RANGES)) st = nsa_backward(ctx, &ah, &gh);
    if (ok && st == NSA_OK) ok = gs_poison(ctx, &G);
    if (ok && st == NSA_OK) st = nsa_backward(ctx, &ad, &gd);
    if (mode & BAD_RANGES) {
        int pass = ok && st == NSA_ERR_INVALID_ARG && gs_fetch(ctx, &G);
        for (int i = 1; i < NG && pass; i++) /* nothing written: still the poison */
            for (int64_t k = 0; G.d[i].d && k < tb_numel(&G.d[i].h) && pass; k++)
                pass = isnan(tb_get(&G.d[i].h, k));
        printf("  bad ranges: %s (%s)\n", nsa_status_name(st), nsa_context_message(ctx));
        gs_free(&G);
        gp_free(&p);
        return pass;
    }
    if (ok && st == NSA_OK) st = nsa_cuda_sync(ctx);
    int fetched = ok && st == NSA_OK && gs_fetch(ctx, &G);
    double worst = 0.0;
    char msg[256] = "";
    double *lp[8] = {NULL};
    const int use_lp = rms_floor < 0.0; /* the tensor-core yardstick: gpu_bwd_lowp.c */
    if (fetched && use_lp && !gb_lowp_backward(&ah, &G.d[0].h.t, &p.rranges.t, shared, lp))
        fetched = 0;
    int64_t bad = fetched ? gs_compare(&G, dt, rms_floor, use_lp ? lp : NULL, &worst, msg,
                                       sizeof msg)
                          : -1;
    for (int i = 0; i < 8; i++) free(lp[i]);
    int same = 1;
    if (fetched && (mode & TWICE)) { /* bitwise repeatability: run again, compare bytes */
        tbuf keep[NG];
        for (int i = 1; i < NG; i++)
            if (G.d[i].d) {
                keep[i] = tb_new(dt, 4, G.d[i].h.t.shape, 0.0);
                memcpy(keep[i].base, G.d[i].h.base, G.d[i].h.bytes);
            }
        ok = gs_poison(ctx, &G) && nsa_backward(ctx, &ad, &gd) == NSA_OK &&
             nsa_cuda_sync(ctx) == NSA_OK && gs_fetch(ctx, &G);
        for (int i = 1; i < NG; i++)
            if (G.d[i].d) {
                same &= ok && memcmp(keep[i].base, G.d[i].h.base, G.d[i].h.bytes) == 0;
                tb_free(&keep[i]);
            }
        if (!same) why = "second run differs bitwise";
    }
    if (st != NSA_OK) why = nsa_context_message(ctx);
    else if (nsel_diff > 0 && !ok) why = "the recomputed selection differs from the CPU's";
    else if (!fetched) why = "guard overwritten or fetch failed";
    else if (bad) why = msg;
    const int pass = fetched && bad == 0 && same;
    printf("  %s%-5s G=%-2d Dk=%-3d Dv=%-3d l=%d d=%d lp=%d n=%d w=%-3d B=%d T=%-4d %s %s%s: "
           "worst %.3f of tol%s%s\n",
           label, nsa_dtype_name(dt), c.Hq / c.Hkv, c.Dk, c.Dv, c.l, c.d, c.lp, c.n, c.w, B, T,
           shared ? "shared" : "separate", mode & RANGES_GIVEN ? "ranges given" : "recomputed",
           mode & TWICE ? ", twice" : mode & SAVED ? ", forward outputs kept" : "", worst,
           pass ? "" : "  FAIL: ", pass ? "" : why);
    gs_free(&G);
    gp_free(&p);
    return pass;
}
