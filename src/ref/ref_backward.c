// SPDX-License-Identifier: Apache-2.0
/* ref_backward.c — the reference backward (docs/design.md §1.5): gradients of q, of each branch's
 * keys/values (compressed, and through φ = avg down to the raw cmp tokens) and of the gates.
 * Selection indices are constants: recomputed exactly as the forward does (nsa_ref_select on the
 * same probabilities), or read from a present fwd->sel_ranges. Not fast: plain loops in double.
 * Invariant: deterministic for any thread count — work is split by (b, KV head), each of which
 * owns every accumulator it touches and visits rows, heads, branches and keys in a fixed order;
 * gradients that alias one tensor are summed per element in field order.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { GQ, GKC, GVC, GKS, GVS, GKW, GVW, GG, NGRAD };

/* Double accumulators, each in the logical (row-major) shape of its gradient; NULL = unwanted. */
typedef struct {
    double *buf[NGRAD];
    double *dkc, *dvc; /* (B, Tc, Hkv, Dk|Dv): buf[GKC|GVC] when cmp_compressed, else scratch */
} grad_acc;

/* Per-thread scratch of one (b, KV head) item. */
typedef struct {
    nsa_ref_scratch w;
    double *o;       /* (3, G, Dv) branch outputs      */
    double *lse;     /* (3, G)                          */
    double *dO;      /* (Dv) gradient of one branch output */
    int32_t *blocks; /* (2n): selected, then caller's  */
    int64_t *ranges; /* (n, 2)                          */
} item_scratch;

static int32_t range_at(const nsa_tensor *R, int64_t b, int64_t t, int g, int k, int e) {
    return ((const int32_t *)R->data)[nsa_off4(R, b, t, g, k) + e * R->stride[4]];
}

/* A present sel_ranges must hold causal, ascending, disjoint ranges ([x, x) = unused slot):
 * the backward reads keys through them. */
static nsa_status check_ranges(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s) {
    const nsa_tensor *R = &a->sel_ranges;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t t = 0; t < s->T; t++)
            for (int g = 0; g < s->Hkv; g++) {
                int64_t prev = 0;
                for (int k = 0; k < a->cfg.n; k++) {
                    int64_t r0 = range_at(R, b, t, g, k, 0), r1 = range_at(R, b, t, g, k, 1);
                    if (r0 == r1) continue;
                    if (r0 < prev || r1 < r0 || r1 > t + 1)
                        return nsa_fail(ctx, NSA_ERR_INVALID_ARG,
                                        "sel_ranges: [%lld, %lld, %d, %d] = [%lld, %lld) is not "
                                        "an ascending range within [0, t+1 = %lld)",
                                        (long long)b, (long long)t, g, k, (long long)r0,
                                        (long long)r1, (long long)(t + 1));
                    prev = r1;
                }
            }
    return NSA_OK;
}

static int read_ranges(const nsa_tensor *R, int n, int64_t b, int64_t t, int g, int64_t *ranges) {
    int nr = 0;
    for (int k = 0; k < n; k++) {
        int32_t r0 = range_at(R, b, t, g, k, 0), r1 = range_at(R, b, t, g, k, 1);
        if (r0 == r1) continue;
        ranges[2 * nr] = r0;
        ranges[2 * nr + 1] = r1;
        nr++;
    }
    return nr;
}

/* Row hk of a per-position (B, X, Hkv, D) accumulator for batch row b; NULL when unwanted. */
static double *acc_row(double *buf, int64_t b, int64_t X, int Hkv, int hk, int D) {
    return buf ? buf + (b * X * Hkv + hk) * D : NULL;
}

/* Every gradient contribution of KV head hk of batch row b. */
static void backward_item(const nsa_fwd_args *a, const nsa_shape *s, const nsa_ref_inputs *in,
                          const double *dout, grad_acc *ga, int64_t b, int hk, item_scratch *x) {
    const nsa_config *c = &a->cfg;
    const int G = s->G, Hq = s->Hq, Hkv = s->Hkv, Dk = s->Dk, Dv = s->Dv;
    const int64_t T = s->T, Tc = s->Tc;
    nsa_ref_kv kv[3];
    nsa_ref_kv_of(in, s, b, kv);
    const double *K[3], *V[3];
    for (int br = 0; br < 3; br++) {
        K[br] = kv[br].K ? kv[br].K + hk * kv[br].khs : NULL;
        V[br] = kv[br].V ? kv[br].V + hk * kv[br].vhs : NULL;
    }
    double *dK[3] = {acc_row(ga->dkc, b, Tc, Hkv, hk, Dk), acc_row(ga->buf[GKS], b, T, Hkv, hk, Dk),
                     acc_row(ga->buf[GKW], b, T, Hkv, hk, Dk)};
    double *dV[3] = {acc_row(ga->dvc, b, Tc, Hkv, hk, Dv), acc_row(ga->buf[GVS], b, T, Hkv, hk, Dv),
                     acc_row(ga->buf[GVW], b, T, Hkv, hk, Dv)};
    const int64_t ks = (int64_t)Hkv * Dk, vs = (int64_t)Hkv * Dv;

    for (int64_t t = 0; t < T; t++) {
        const int64_t nc = nsa_num_cmp(c, t + 1), row = b * T + t;
        int64_t rg[3][2] = {{0, nc}, {0, 0}, {nsa_ix_win_lo(c->w, t), t + 1}};
        const int64_t *ranges[3] = {rg[0], x->ranges, rg[2]};
        int nr[3] = {1, 0, c->w > 0 ? 1 : 0};

        /* forward of the group's rows, exactly as nsa_ref_row computes them */
        for (int u = 0; u < G; u++) {
            const double *qh = in->q + (row * Hq + hk * G + u) * Dk;
            x->lse[u] = nsa_ref_attend(qh, K[0], ks, V[0], vs, Dk, Dv, ranges[0], nr[0], s->scale,
                                       x->o + (int64_t)u * Dv, x->w.p + u * nc, x->w.s);
        }
        if (nsa_present(&a->sel_ranges))
            nr[1] = read_ranges(&a->sel_ranges, c->n, b, t, hk, x->ranges);
        else
            nr[1] = nsa_ref_select(c, t, x->w.p, G, nc, nc,
                                   nsa_ref_given(a, b, t, hk, x->blocks + c->n), x->blocks,
                                   x->ranges, x->w.score, x->w.order);
        for (int br = 1; br < 3; br++)
            for (int u = 0; u < G; u++) {
                const double *qh = in->q + (row * Hq + hk * G + u) * Dk;
                double *o = x->o + ((int64_t)br * G + u) * Dv;
                if (nr[br])
                    x->lse[br * G + u] = nsa_ref_attend(qh, K[br], ks, V[br], vs, Dk, Dv,
                                                        ranges[br], nr[br], s->scale, o, NULL,
                                                        x->w.s);
                else {
                    x->lse[br * G + u] = -INFINITY;
                    for (int e = 0; e < Dv; e++) o[e] = 0.0;
                }
            }

        /* out = Σ_br g_br·o_br: dg_br = dout·o_br, do_br = g_br·dout */
        for (int u = 0; u < G; u++) {
            const int64_t hr = row * Hq + hk * G + u;
            const double *qh = in->q + hr * Dk, *dy = dout + hr * Dv, *gt = in->gates + hr * 3;
            double *dq = ga->buf[GQ] ? ga->buf[GQ] + hr * Dk : NULL;
            for (int br = 0; br < 3; br++) {
                const double *o = x->o + ((int64_t)br * G + u) * Dv;
                if (ga->buf[GG]) {
                    double dg = 0.0;
                    for (int e = 0; e < Dv; e++) dg += dy[e] * o[e];
                    ga->buf[GG][hr * 3 + br] = dg;
                }
                for (int e = 0; e < Dv; e++) x->dO[e] = gt[br] * dy[e];
                nsa_ref_attend_bwd(qh, K[br], ks, V[br], vs, Dk, Dv, ranges[br], nr[br], s->scale,
                                   o, x->lse[br * G + u], x->dO, dq, dK[br], ks, dV[br], vs);
            }
        }
    }

    /* φ = avg: raw token p gets Σ over the blocks i holding it of dcmp[i] / l, i ascending */
    if (a->cmp_compressed) return;
    for (int kvi = 0; kvi < 2; kvi++) {
        const int D = kvi ? Dv : Dk;
        const double *dc = kvi ? dV[0] : dK[0];
        double *raw = acc_row(ga->buf[kvi ? GVC : GKC], b, T, Hkv, hk, D);
        if (!raw) continue;
        const int64_t rs = (int64_t)Hkv * D;
        for (int64_t p = 0; p < T; p++) {
            int64_t i_lo = p < c->l ? 0 : (p - c->l) / c->d + 1, i_hi = p / c->d;
            if (i_hi > Tc - 1) i_hi = Tc - 1;
            double *rp = raw + p * rs;
            for (int64_t i = i_lo; i <= i_hi; i++)
                for (int e = 0; e < D; e++) rp[e] += dc[i * rs + e];
            for (int e = 0; e < D; e++) rp[e] /= (double)c->l;
        }
    }
}

static void scratch_free(item_scratch *x) {
    nsa_ref_scratch_free(&x->w);
    free(x->o);
    free(x->blocks);
    free(x->ranges);
}

static int scratch_init(item_scratch *x, const nsa_config *c, const nsa_shape *s) {
    memset(x, 0, sizeof *x);
    if (nsa_ref_scratch_init(&x->w, c, s->T - 1) != NSA_OK) return 0;
    x->o = nsa_malloc(sizeof(double) * (size_t)(3 * s->G * s->Dv + 3 * s->G + s->Dv));
    x->blocks = nsa_malloc(sizeof(int32_t) * (size_t)(2 * c->n));
    x->ranges = nsa_malloc(sizeof(int64_t) * (size_t)(2 * c->n));
    if (!x->o || !x->blocks || !x->ranges) {
        scratch_free(x);
        return 0;
    }
    x->lse = x->o + 3 * s->G * s->Dv;
    x->dO = x->lse + 3 * s->G;
    return 1;
}

static int same_view(const nsa_tensor *x, const nsa_tensor *y) {
    if (x->data != y->data || x->ndim != y->ndim) return 0;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i] || x->stride[i] != y->stride[i]) return 0;
    return 1;
}

/* Stores each distinct gradient view once: the sum, in field order, of the accumulators of
 * every field passed that view. */
static void store_all(const nsa_tensor *const gt[NGRAD], double *const buf[NGRAD], int nt) {
    for (int i = 0; i < NGRAD; i++) {
        if (!buf[i]) continue;
        int lead = 1, mem[NGRAD], nm = 0;
        for (int j = 0; j < NGRAD; j++) {
            if (!buf[j] || !same_view(gt[i], gt[j])) continue;
            if (j < i) lead = 0;
            mem[nm++] = j;
        }
        if (!lead) continue;
        const nsa_tensor *t = gt[i];
        const int64_t n01 = t->shape[0] * t->shape[1], n2 = t->shape[2], n3 = t->shape[3];
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t r = 0; r < n01; r++) {
            const int64_t a0 = r / t->shape[1], a1 = r % t->shape[1];
            for (int64_t a2 = 0; a2 < n2; a2++)
                for (int64_t a3 = 0; a3 < n3; a3++) {
                    const int64_t idx = (r * n2 + a2) * n3 + a3;
                    double v = buf[mem[0]][idx];
                    for (int m = 1; m < nm; m++) v += buf[mem[m]][idx];
                    nsa_store(t, nsa_off4(t, a0, a1, a2, a3), v);
                }
        }
    }
}

nsa_status nsa_ref_backward(nsa_context *ctx, const nsa_fwd_args *a, const nsa_bwd_args *g,
                            const nsa_shape *s) {
    if (s->B == 0 || s->T == 0) return NSA_OK;
    if (nsa_present(&a->sel_ranges)) NSA_TRY(check_ranges(ctx, a, s));
    const nsa_tensor *const gt[NGRAD] = {&g->dq,     &g->dk_cmp, &g->dv_cmp, &g->dk_sel,
                                         &g->dv_sel, &g->dk_win, &g->dv_win, &g->dgates};
    grad_acc ga;
    memset(&ga, 0, sizeof ga);
    nsa_ref_inputs in;
    NSA_TRY(nsa_ref_load(ctx, a, s, &in));
    double *dout = nsa_ref_gather(&g->dout);
    int ok = dout != NULL;
    for (int i = 0; i < NGRAD && ok; i++) {
        if (!nsa_present(gt[i])) continue;
        const int64_t n = nsa_tensor_numel(gt[i]);
        ga.buf[i] = nsa_calloc((size_t)(n > 0 ? n : 1), sizeof(double));
        ok = ga.buf[i] != NULL;
    }
    const size_t nkc = (size_t)(s->B * s->Tc * s->Hkv);
    if (ok && a->cmp_compressed) {
        ga.dkc = ga.buf[GKC];
        ga.dvc = ga.buf[GVC];
    } else if (ok) {
        if (ga.buf[GKC]) ok = (ga.dkc = nsa_calloc(nkc * (size_t)s->Dk + 1, sizeof(double))) != NULL;
        if (ok && ga.buf[GVC])
            ok = (ga.dvc = nsa_calloc(nkc * (size_t)s->Dv + 1, sizeof(double))) != NULL;
    }
    const int nt = nsa_ref_threads(ctx);
    const int64_t items = s->B * s->Hkv;
    int failed = !ok;
    if (ok) {
#pragma omp parallel num_threads(nt) if (items > 1)
        {
            item_scratch x;
            int have = 0, bad = 0;
#pragma omp for schedule(dynamic, 1)
            for (int64_t it = 0; it < items; it++) {
                if (!have && !bad) {
                    have = scratch_init(&x, &a->cfg, s);
                    bad = !have;
                }
                if (bad) continue;
                backward_item(a, s, &in, dout, &ga, it / s->Hkv, (int)(it % s->Hkv), &x);
            }
            if (have) scratch_free(&x);
            if (bad) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    if (!failed) store_all(gt, ga.buf, nt);
    if (!a->cmp_compressed) {
        free(ga.dkc);
        free(ga.dvc);
    }
    for (int i = 0; i < NGRAD; i++) free(ga.buf[i]);
    free(dout);
    nsa_ref_unload(&in);
    if (failed) return nsa_fail(ctx, NSA_ERR_NOMEM, "reference backward: out of memory");
    return NSA_OK;
}
