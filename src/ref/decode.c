// SPDX-License-Identifier: Apache-2.0
/* decode.c — the reference decode step (validated and routed here by src/route/kv_api.c): each
 * active row pushes its token (nsa_kv_push), then attends through nsa_ref_row — the function the
 * reference prefill calls per row — over the cache, so decode equals prefill bitwise.
 * Not fast: each step converts the row's sel history to double; the read counters count what
 * nsa_ref_row read. NSA_FORCE_BRANCH and NSA_STRICT_ASSERTS apply as in the forward.
 * Invariant: every scratch buffer is allocated before the cache changes, so a failed step leaves
 * the cache exactly as it was.
 */
#include "kv_cache.h"

#include <stdlib.h>

/* Scratch of one step, sized for positions up to t_max. */
typedef struct {
    double *q, *gates, *o, *hk, *hv, *wk, *wv;
    int32_t *blocks;
    int64_t *ranges;
    int *nr;
    nsa_ref_scratch w;
    int has_w;
} step_scratch;

static void scratch_free(step_scratch *s) {
    free(s->q);
    free(s->gates);
    free(s->o);
    free(s->hk);
    free(s->hv);
    free(s->wk);
    free(s->wv);
    free(s->blocks);
    free(s->ranges);
    free(s->nr);
    if (s->has_w) nsa_ref_scratch_free(&s->w);
}

static int scratch_init(step_scratch *s, const nsa_kv_cache *c, int64_t t_max) {
    const nsa_config *g = &c->desc.cfg;
    const size_t Hq = (size_t)g->Hq, Hkv = (size_t)g->Hkv, n = (size_t)g->n;
    const size_t rows = (size_t)t_max + 1, wrows = c->nwin > 0 ? (size_t)c->nwin : 1;
    memset(s, 0, sizeof *s);
    s->q = nsa_malloc(sizeof(double) * Hq * (size_t)g->Dk);
    s->gates = nsa_malloc(sizeof(double) * Hq * 3);
    s->o = nsa_malloc(sizeof(double) * (3 * Hq * (size_t)g->Dv + 3 * Hq + Hq * (size_t)g->Dv));
    s->hk = nsa_malloc(sizeof(double) * rows * (size_t)c->rk);
    s->hv = nsa_malloc(sizeof(double) * rows * (size_t)c->rv);
    s->wk = nsa_malloc(sizeof(double) * wrows * (size_t)c->rk);
    s->wv = nsa_malloc(sizeof(double) * wrows * (size_t)c->rv);
    s->blocks = nsa_malloc(sizeof(int32_t) * Hkv * n);
    s->ranges = nsa_malloc(sizeof(int64_t) * Hkv * n * 2);
    s->nr = nsa_malloc(sizeof(int) * Hkv);
    s->has_w = nsa_ref_scratch_init(&s->w, g, t_max) == NSA_OK;
    if (!s->q || !s->gates || !s->o || !s->hk || !s->hv || !s->wk || !s->wv || !s->blocks ||
        !s->ranges || !s->nr || !s->has_w) {
        scratch_free(s);
        return 0;
    }
    return 1;
}

/* Converts n rows of r elements (cache dtype) at src into dst (double); rows follow each other
 * from `first` on, wrapping at `ring` rows (ring = 0: no wrap). */
static void to_double(const nsa_kv_cache *c, const unsigned char *src, int64_t first, int64_t n,
                      int64_t ring, int64_t r, double *dst) {
    for (int64_t i = 0; i < n; i++) {
        const int64_t slot = ring ? (first + i) % ring : first + i;
        const unsigned char *p = src + slot * r * (int64_t)c->e;
        for (int64_t x = 0; x < r; x++) dst[i * r + x] = nsa_kv_get(c, p + x * (int64_t)c->e);
    }
}

/* NSA_STRICT_ASSERTS: every selected range lies in [0, t+1), ascending and disjoint. A failure
 * is a bug of the library, not of the input (the token is already in the cache). */
static nsa_status strict_ranges(nsa_context *ctx, const nsa_config *g, int b, int64_t t,
                                const nsa_ref_row_out *r) {
    for (int k = 0; k < g->Hkv; k++) {
        int64_t prev = 0;
        for (int i = 0; i < r->nr[k]; i++) {
            const int64_t *q = r->ranges + ((int64_t)k * g->n + i) * 2;
            if (q[0] < prev || q[1] <= q[0] || q[1] > t + 1) {
                ctx->counters.causality_violations++;
                return nsa_fail(ctx, NSA_ERR_CAUSALITY, "decode row %d, t=%lld, KV head %d: "
                                "selected range [%lld, %lld) leaves [0, t+1)", b, (long long)t, k,
                                (long long)q[0], (long long)q[1]);
            }
            prev = q[1];
        }
    }
    return NSA_OK;
}

/* Attention of row b's token at position t (already pushed) into out row b. */
static nsa_status step_row(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a, int b,
                     int64_t t, step_scratch *s) {
    const nsa_config *g = &c->desc.cfg;
    const int Hq = g->Hq, Dk = g->Dk, Dv = g->Dv;
    const int64_t e = (int64_t)c->e, S = t + 1;
    nsa_ref_kv kv[3];
    memset(kv, 0, sizeof kv);
    kv[NSA_BRANCH_CMP] = (nsa_ref_kv){c->kc + (int64_t)b * c->ncmp * c->rk,
                                      c->vc + (int64_t)b * c->ncmp * c->rv, c->rk, c->rv, Dk, Dv, 0};
    to_double(c, c->ks + (int64_t)b * c->desc.max_len * c->rk * e, 0, S, 0, c->rk, s->hk);
    to_double(c, c->vs + (int64_t)b * c->desc.max_len * c->rv * e, 0, S, 0, c->rv, s->hv);
    kv[NSA_BRANCH_SEL] = (nsa_ref_kv){s->hk, s->hv, c->rk, c->rv, Dk, Dv, 0};
    if (g->w > 0) {
        /* the ring in position order: kv[WIN].base is the window's first position */
        const int64_t lo = nsa_ix_win_lo(g->w, t);
        to_double(c, c->kw + (int64_t)b * c->nwin * c->rk * e, lo, S - lo, c->nwin, c->rk, s->wk);
        to_double(c, c->vw + (int64_t)b * c->nwin * c->rv * e, lo, S - lo, c->nwin, c->rv, s->wv);
        kv[NSA_BRANCH_WIN] = (nsa_ref_kv){s->wk, s->wv, c->rk, c->rv, Dk, Dv, lo};
    }
    const int force = ctx->flags.force_branch; /* NSA_FORCE_BRANCH: one-hot, as the forward */
    for (int h = 0; h < Hq; h++) {
        for (int x = 0; x < Dk; x++)
            s->q[h * Dk + x] = nsa_load(&a->q, nsa_off4(&a->q, b, 0, h, x));
        for (int x = 0; x < 3; x++)
            s->gates[h * 3 + x] = force >= 0 ? (x == force ? 1.0 : 0.0)
                                             : nsa_load(&a->gates, nsa_off4(&a->gates, b, 0, h, x));
    }
    nsa_ref_row_out r = {s->o, s->o + 3 * Hq * Dv, s->o + 3 * Hq * Dv + 3 * Hq, s->blocks,
                         s->ranges, s->nr, {0, 0, 0}, NULL};
    nsa_ref_row(g, (double)nsa_config_scale(g), t, s->q, s->gates, kv, &s->w, &r);
    if (ctx->flags.strict_asserts) NSA_TRY(strict_ranges(ctx, g, b, t, &r));
    for (int h = 0; h < Hq; h++)
        for (int x = 0; x < Dv; x++)
            nsa_store(&a->out, nsa_off4(&a->out, b, 0, h, x), r.out[(int64_t)h * Dv + x]);
    if (nsa_present(&a->sel_blocks))
        for (int h = 0; h < g->Hkv; h++)
            for (int k = 0; k < g->n; k++)
                ((int32_t *)a->sel_blocks.data)[nsa_off4(&a->sel_blocks, b, 0, h, k)] =
                    r.blocks[h * g->n + k];

    nsa_decode_reads *rd = &c->row[b].reads;
    rd->cmp = r.reads[NSA_BRANCH_CMP];
    rd->sel = r.reads[NSA_BRANCH_SEL];
    rd->win = r.reads[NSA_BRANCH_WIN];
    rd->total = rd->cmp + rd->sel + rd->win;
    rd->budget = nsa_num_cmp(g, S) + (int64_t)g->n * g->lp + nsa_ix_win_len(g->w, t);
    rd->dense = S;
    nsa_log(ctx, "decode.reads",
            "b=%d S=%lld cmp=%lld sel=%lld win=%lld total=%lld budget=%lld dense=%lld", b,
            (long long)S, (long long)rd->cmp, (long long)rd->sel, (long long)rd->win,
            (long long)rd->total, (long long)rd->budget, (long long)rd->dense);
    return NSA_OK;
}

nsa_status nsa_ref_decode_step(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a) {
    const int B = c->desc.B;
    int64_t t_max = -1;
    for (int b = 0; b < B; b++)
        if ((!a->active || a->active[b]) && c->row[b].len > t_max) t_max = c->row[b].len;
    if (t_max < 0) return NSA_OK;
    step_scratch s;
    if (!scratch_init(&s, c, t_max))
        return nsa_fail(ctx, NSA_ERR_NOMEM, "decode: out of memory for the step's scratch "
                        "(positions up to %lld)", (long long)t_max);
    nsa_kv_src src = {&a->k_cmp, &a->v_cmp, &a->k_sel, &a->v_sel, &a->k_win, &a->v_win,
                      &a->kc_new, &a->vc_new};
    for (int b = 0; b < B; b++) {
        if (a->active && !a->active[b]) continue;
        const int64_t t = c->row[b].len;
        nsa_kv_push(c, b, &src, b, 0, 0);
        nsa_status st = step_row(ctx, c, a, b, t, &s);
        if (st != NSA_OK) {
            scratch_free(&s);
            return st;
        }
    }
    scratch_free(&s);
    return NSA_OK;
}
