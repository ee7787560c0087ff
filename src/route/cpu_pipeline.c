// SPDX-License-Identifier: Apache-2.0
/* cpu_pipeline.c — the CPU pipeline (begin, select, finite, finish, end) and the CPU reference
 * backend, whose per-branch steps are the reference's own row primitives (nsa_ref_attend,
 * nsa_ref_select) in the order nsa_ref_row calls them.
 * Not the usual CPU path: when every branch is the reference, dispatch calls nsa_ref_forward
 * in one pass. This pipeline runs when some branch has another CPU backend (test fakes).
 * Invariant: with the reference on every branch this pipeline's outputs equal nsa_ref_forward's
 * bitwise (same primitives, same order of every sum, acc = double).
 */
#include "route.h"
#include "../ref/kv_cache.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    nsa_ref_inputs in;
    int loaded;
} cpu_state;

static int threads_of(const nsa_context *ctx) {
    return ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
}

static void cpu_end(nsa_fwd_work *w) {
    cpu_state *st = w->impl;
    if (st && st->loaded) nsa_ref_unload(&st->in);
    free(st);
    for (int b = 0; b < 3; b++) {
        free(w->o[b]);
        free(w->lse[b]);
        w->o[b] = w->lse[b] = NULL;
    }
    free(w->blocks);
    free(w->ranges);
    w->blocks = w->ranges = NULL;
    w->impl = NULL;
}

static nsa_status cpu_begin(nsa_context *ctx, nsa_fwd_work *w) {
    const nsa_shape *s = w->s;
    const size_t rows = (size_t)(s->B * s->T), n = (size_t)w->a->cfg.n;
    cpu_state *st = nsa_calloc(1, sizeof *st);
    w->impl = st;
    w->acc_size = sizeof(double);
    int ok = st != NULL;
    for (int b = 0; b < 3 && ok; b++) {
        w->o[b] = nsa_malloc(sizeof(double) * (rows * (size_t)s->Hq * (size_t)s->Dv + 1));
        w->lse[b] = nsa_malloc(sizeof(double) * (rows * (size_t)s->Hq + 1));
        ok = w->o[b] && w->lse[b];
    }
    w->blocks = ok ? nsa_malloc(sizeof(int32_t) * (rows * (size_t)s->Hkv * n + 1)) : NULL;
    w->ranges = ok ? nsa_malloc(sizeof(int32_t) * (rows * (size_t)s->Hkv * n * 2 + 1)) : NULL;
    if (!w->blocks || !w->ranges) {
        cpu_end(w);
        return nsa_fail(ctx, NSA_ERR_NOMEM, "cpu pipeline: out of memory for work buffers");
    }
    NSA_TRY(nsa_ref_load(ctx, w->a, s, &st->in));
    st->loaded = 1;
    w->kc = st->in.kc;
    w->vc = st->in.vc;
    return NSA_OK;
}

/* Per-thread scratch of one step: the reference row scratch, one output row, one group's
 * blocks and ranges. */
typedef struct {
    nsa_ref_scratch sc;
    double *o;       /* (Hq, Dv) discarded outputs (selection recomputes cmp)   */
    double *lse;     /* (Hq) discarded log-sum-exps                             */
    int32_t *blocks; /* (2n): selected, then the caller's block_indices row    */
    int64_t *ranges; /* (n, 2)                                                  */
} thread_scratch;

typedef void (*row_fn)(const nsa_fwd_work *w, nsa_branch br, int64_t row, thread_scratch *ts);

/* Runs fn for every row b·T + t in parallel; rows are independent. */
static nsa_status for_rows(nsa_context *ctx, nsa_fwd_work *w, nsa_branch br, row_fn fn) {
    const nsa_shape *s = w->s;
    const int64_t rows = s->B * s->T;
    const size_t n = (size_t)w->a->cfg.n;
    int failed = 0;
#pragma omp parallel if (rows > 1) num_threads(threads_of(ctx))
    {
        thread_scratch ts;
        ts.o = nsa_malloc(sizeof(double) * (size_t)s->Hq * (size_t)s->Dv);
        ts.lse = nsa_malloc(sizeof(double) * (size_t)s->Hq);
        ts.blocks = nsa_malloc(sizeof(int32_t) * 2 * n);
        ts.ranges = nsa_malloc(sizeof(int64_t) * 2 * n);
        int ok = ts.o && ts.lse && ts.blocks && ts.ranges &&
                 nsa_ref_scratch_init(&ts.sc, &w->a->cfg, s->T - 1) == NSA_OK;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t row = 0; row < rows; row++)
            if (ok) fn(w, br, row, &ts);
        if (ok) nsa_ref_scratch_free(&ts.sc);
        free(ts.o);
        free(ts.lse);
        free(ts.blocks);
        free(ts.ranges);
    }
    if (failed) return nsa_fail(ctx, NSA_ERR_NOMEM, "cpu pipeline: out of memory for scratch");
    return NSA_OK;
}

/* cmp attention of every head of one row, as nsa_ref_row does it: o (Hq, Dv), lse (Hq);
 * leaves the probabilities in sc->p (Hq rows of num_cmp(t+1)). */
static void cmp_row(const nsa_fwd_work *w, int64_t row, nsa_ref_scratch *sc, double *o,
                    double *lse) {
    const nsa_shape *s = w->s;
    const cpu_state *st = w->impl;
    const int64_t b = row / s->T, t = row % s->T, nc = nsa_num_cmp(&w->a->cfg, t + 1);
    nsa_ref_kv kv[3];
    nsa_ref_kv_of(&st->in, s, b, kv);
    const nsa_ref_kv *k = &kv[NSA_BRANCH_CMP];
    int64_t cr[2] = {0, nc};
    const double *q = st->in.q + row * s->Hq * s->Dk;
    for (int h = 0; h < s->Hq; h++) {
        const int hk = h / s->G;
        lse[h] = nsa_ref_attend(q + (int64_t)h * s->Dk, k->K + hk * k->khs, k->ks,
                                k->V + hk * k->vhs, k->vs, s->Dk, s->Dv, cr, 1, s->scale,
                                o + (int64_t)h * s->Dv, sc->p + h * nc, sc->s);
    }
}

static void ref_row(const nsa_fwd_work *w, nsa_branch br, int64_t row, thread_scratch *ts) {
    const nsa_shape *s = w->s;
    const cpu_state *st = w->impl;
    const int64_t b = row / s->T, t = row % s->T;
    const int n = w->a->cfg.n, Hq = s->Hq, Dv = s->Dv, Dk = s->Dk;
    double *o = (double *)w->o[br] + row * Hq * Dv, *lse = (double *)w->lse[br] + row * Hq;
    if (br == NSA_BRANCH_CMP) {
        cmp_row(w, row, &ts->sc, o, lse);
        return;
    }
    nsa_ref_kv kv[3];
    nsa_ref_kv_of(&st->in, s, b, kv);
    const nsa_ref_kv *k = &kv[br];
    const double *q = st->in.q + row * Hq * Dk;
    if (br == NSA_BRANCH_SEL) {
        for (int g = 0; g < s->Hkv; g++) {
            const int32_t *rr = w->ranges + ((row * s->Hkv + g) * n) * 2;
            int64_t *ranges = ts->ranges;
            int nr = 0;
            for (int r = 0; r < n; r++)
                if (rr[2 * r + 1] > rr[2 * r]) {
                    ranges[2 * nr] = rr[2 * r];
                    ranges[2 * nr + 1] = rr[2 * r + 1];
                    nr++;
                }
            for (int h = g * s->G; h < (g + 1) * s->G; h++)
                lse[h] = nsa_ref_attend(q + (int64_t)h * Dk, k->K + g * k->khs, k->ks,
                                        k->V + g * k->vhs, k->vs, Dk, Dv, ranges, nr, s->scale,
                                        o + (int64_t)h * Dv, NULL, ts->sc.s);
        }
        return;
    }
    const int wlen = w->a->cfg.w;
    int64_t wr[2] = {nsa_ix_win_lo(wlen, t), t + 1};
    for (int h = 0; h < Hq; h++) {
        const int hk = h / s->G;
        if (wlen > 0) {
            lse[h] = nsa_ref_attend(q + (int64_t)h * Dk, k->K + hk * k->khs, k->ks,
                                    k->V + hk * k->vhs, k->vs, Dk, Dv, wr, 1, s->scale,
                                    o + (int64_t)h * Dv, NULL, ts->sc.s);
        } else {
            lse[h] = -INFINITY;
            for (int e = 0; e < Dv; e++) o[(int64_t)h * Dv + e] = 0.0;
        }
    }
}

/* Rejects ranges outside [0, T], descending or overlapping, before any key is read (a fast
 * select step may be wrong; the scratch holds at most T keys per query). */
static nsa_status ranges_in_bounds(nsa_context *ctx, const nsa_fwd_work *w) {
    const int n = w->a->cfg.n;
    const int64_t lists = w->s->B * w->s->T * w->s->Hkv;
    for (int64_t i = 0; i < lists; i++) {
        int64_t prev = 0;
        for (int k = 0; k < n; k++) {
            const int32_t a = w->ranges[(i * n + k) * 2], e = w->ranges[(i * n + k) * 2 + 1];
            if (a == 0 && e == 0) continue;
            if (a < prev || e < a || e > w->s->T)
                return nsa_fail(ctx, NSA_ERR_INTERNAL, "sel ranges: list %lld slot %d = [%d, %d) "
                                "not ascending, disjoint and within [0, T=%lld]", (long long)i, k,
                                a, e, (long long)w->s->T);
            prev = e;
        }
    }
    return NSA_OK;
}

static nsa_status ref_fwd(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                          nsa_fwd_work *w) {
    (void)self;
    if (w->s->B * w->s->T == 0) return NSA_OK;
    if (br == NSA_BRANCH_SEL) NSA_TRY(ranges_in_bounds(ctx, w));
    return for_rows(ctx, w, br, ref_row);
}

/* Selection of one row: cmp probabilities recomputed exactly as nsa_ref_row has them. */
static void select_row(const nsa_fwd_work *w, nsa_branch br, int64_t row, thread_scratch *ts) {
    (void)br;
    const nsa_shape *s = w->s;
    const nsa_config *c = &w->a->cfg;
    const int64_t t = row % s->T, nc = nsa_num_cmp(c, t + 1);
    cmp_row(w, row, &ts->sc, ts->o, ts->lse); /* only the probabilities are used */
    for (int g = 0; g < s->Hkv; g++) {
        int32_t *given = ts->blocks + c->n; /* thread_scratch.blocks holds 2n */
        int nr = nsa_ref_select(c, t, ts->sc.p + (int64_t)g * s->G * nc, s->G, nc, nc,
                                nsa_ref_given(w->a, row / s->T, t, g, given), ts->blocks,
                                ts->ranges, ts->sc.score, ts->sc.order);
        int32_t *ob = w->blocks + (row * s->Hkv + g) * c->n;
        int32_t *orr = w->ranges + ((row * s->Hkv + g) * c->n) * 2;
        for (int k = 0; k < c->n; k++) {
            ob[k] = ts->blocks[k];
            orr[2 * k] = k < nr ? (int32_t)ts->ranges[2 * k] : 0;
            orr[2 * k + 1] = k < nr ? (int32_t)ts->ranges[2 * k + 1] : 0;
        }
    }
}

static nsa_status cpu_select(nsa_context *ctx, nsa_fwd_work *w) {
    if (w->s->B * w->s->T == 0) return NSA_OK;
    return for_rows(ctx, w, NSA_BRANCH_SEL, select_row);
}

static nsa_status cpu_finite(nsa_context *ctx, const nsa_fwd_work *w, nsa_branch br,
                             int *finite) {
    (void)ctx;
    const int64_t cnt = w->s->B * w->s->T * w->s->Hq * w->s->Dv;
    const double *o = w->o[br];
    int ok = 1;
    for (int64_t i = 0; i < cnt && ok; i++) ok = isfinite(o[i]);
    *finite = ok;
    return NSA_OK;
}

static nsa_status cpu_to_host(nsa_context *ctx, const nsa_fwd_work *w, const void *src,
                              void *dst, size_t bytes) {
    (void)ctx;
    (void)w;
    memcpy(dst, src, bytes);
    return NSA_OK;
}

static nsa_status cpu_finish(nsa_context *ctx, nsa_fwd_work *w) {
    (void)ctx;
    const nsa_fwd_args *a = w->a;
    const nsa_shape *s = w->s;
    const cpu_state *st = w->impl;
    const int Hq = s->Hq, Dv = s->Dv, n = a->cfg.n;
    const nsa_tensor *ob[3] = {&a->out_cmp, &a->out_sel, &a->out_win};
    const nsa_tensor *lb[3] = {&a->lse_cmp, &a->lse_sel, &a->lse_win};
    for (int64_t row = 0; row < s->B * s->T; row++) {
        const int64_t b = row / s->T, t = row % s->T;
        const double *gates = st->in.gates + row * Hq * 3;
        for (int h = 0; h < Hq; h++) {
            double g[3] = {gates[3 * h], gates[3 * h + 1], gates[3 * h + 2]};
            if (w->force_branch >= 0)
                for (int k = 0; k < 3; k++) g[k] = k == w->force_branch ? 1.0 : 0.0;
            for (int e = 0; e < Dv; e++) {
                const int64_t i = (row * Hq + h) * Dv + e;
                const double *o0 = w->o[0], *o1 = w->o[1], *o2 = w->o[2];
                nsa_store(&a->out, nsa_off4(&a->out, b, t, h, e),
                          g[0] * o0[i] + g[1] * o1[i] + g[2] * o2[i]);
                for (int br = 0; br < 3; br++)
                    if (nsa_present(ob[br]))
                        nsa_store(ob[br], nsa_off4(ob[br], b, t, h, e), ((double *)w->o[br])[i]);
            }
            for (int br = 0; br < 3; br++)
                if (nsa_present(lb[br])) {
                    const nsa_tensor *L = lb[br];
                    ((float *)L->data)[b * L->stride[0] + t * L->stride[1] + h * L->stride[2]] =
                        (float)((double *)w->lse[br])[row * Hq + h];
                }
        }
        for (int g = 0; g < s->Hkv; g++)
            for (int k = 0; k < n; k++) {
                const int64_t i = (row * s->Hkv + g) * n + k;
                if (nsa_present(&a->sel_blocks))
                    ((int32_t *)a->sel_blocks.data)[nsa_off4(&a->sel_blocks, b, t, g, k)] =
                        w->blocks[i];
                if (nsa_present(&a->sel_ranges))
                    for (int e = 0; e < 2; e++)
                        ((int32_t *)a->sel_ranges.data)[nsa_off4(&a->sel_ranges, b, t, g, k) +
                                                        e * a->sel_ranges.stride[4]] =
                            w->ranges[2 * i + e];
            }
    }
    return NSA_OK;
}

const nsa_pipeline nsa_cpu_pipeline = {
    "cpu", NSA_DEVICE_CPU, cpu_begin, cpu_select, cpu_finite, cpu_to_host, cpu_finish, cpu_end,
    &nsa_ref_kv_ops,
};

static int ref_supports(const nsa_backend *self, const nsa_call *c, nsa_branch br,
                        const nsa_device_caps *dev, char *why, size_t why_len) {
    (void)self, (void)c, (void)br, (void)dev, (void)why, (void)why_len;
    return 1;
}

static nsa_status ref_decode(nsa_context *ctx, const nsa_backend *self, nsa_kv_cache *c,
                             const nsa_decode_args *a) {
    (void)self;
    return nsa_ref_decode_step(ctx, c, a);
}

const nsa_backend nsa_backend_ref_cpu = {
    "ref", NSA_ROLE_REF, NSA_BRANCHES_ALL, NSA_DEVICE_CPU, ref_supports, ref_fwd, NULL, NULL,
    NULL, ref_decode,
};
