// SPDX-License-Identifier: Apache-2.0
/* row.c — one query row of the reference NSA: compressed attention, selection, selected
 * attention, window, gated sum (docs/design.md §1.1–§1.4), for all heads of position t.
 * Prefill (ref_forward.c) and decode call exactly this, so decode equals prefill bitwise.
 * Invariant: a branch with no visible key outputs 0 with lse -inf, never NaN.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void nsa_ref_compress_block(const double *rows, int64_t rs, int l, int D, double *out) {
    for (int e = 0; e < D; e++) out[e] = 0.0;
    for (int r = 0; r < l; r++)
        for (int e = 0; e < D; e++) out[e] += rows[r * rs + e];
    for (int e = 0; e < D; e++) out[e] /= (double)l;
}

nsa_status nsa_ref_scratch_init(nsa_ref_scratch *w, const nsa_config *c, int64_t t_max) {
    memset(w, 0, sizeof *w);
    int64_t nc = nsa_num_cmp(c, t_max + 1);
    int64_t nb = t_max / c->lp + 1;
    w->nc_cap = nc;
    w->p = nsa_malloc(sizeof(double) * (size_t)(c->Hq * (nc > 0 ? nc : 1)));
    w->s = nsa_malloc(sizeof(double) * (size_t)(t_max + 1));
    w->score = nsa_malloc(sizeof(float) * (size_t)nb);
    w->order = nsa_malloc(sizeof(int32_t) * (size_t)nb);
    if (!w->p || !w->s || !w->score || !w->order) {
        nsa_ref_scratch_free(w);
        return NSA_ERR_NOMEM;
    }
    return NSA_OK;
}

void nsa_ref_scratch_free(nsa_ref_scratch *w) {
    free(w->p);
    free(w->s);
    free(w->score);
    free(w->order);
    memset(w, 0, sizeof *w);
}

void nsa_ref_row(const nsa_config *c, double scale, int64_t t, const double *q,
                 const double *gates, const nsa_ref_kv kv[3], nsa_ref_scratch *w,
                 nsa_ref_row_out *r) {
    const int Hq = c->Hq, Hkv = c->Hkv, G = Hq / Hkv, Dk = c->Dk, Dv = c->Dv;
    const int64_t nc = nsa_num_cmp(c, t + 1);
    double *o_cmp = r->o, *o_sel = r->o + (int64_t)Hq * Dv, *o_win = r->o + 2 * (int64_t)Hq * Dv;
    double *lse_cmp = r->lse, *lse_sel = r->lse + Hq, *lse_win = r->lse + 2 * Hq;

    /* cmp: attention over compressed blocks 0..nc-1, keeping p for the selection scores. */
    int64_t cr[2] = {0, nc};
    for (int h = 0; h < Hq; h++) {
        const int hk = h / G;
        const nsa_ref_kv *k = &kv[NSA_BRANCH_CMP];
        lse_cmp[h] = nsa_ref_attend(q + (int64_t)h * Dk, k->K + hk * k->khs, k->ks,
                                    k->V + hk * k->vhs, k->vs, Dk, Dv, cr,
                                    1, scale, o_cmp + (int64_t)h * Dv, w->p + h * nc, w->s);
    }
    r->reads[NSA_BRANCH_CMP] = nc;

    /* sel: per group, select blocks from the group's p, then attend over the ranges. */
    r->reads[NSA_BRANCH_SEL] = 0;
    for (int g = 0; g < Hkv; g++) {
        int32_t *blocks = r->blocks + (int64_t)g * c->n;
        int64_t *ranges = r->ranges + (int64_t)g * c->n * 2;
        int nr = nsa_ref_select(c, t, w->p + (int64_t)g * G * nc, G, nc, nc,
                                r->given ? r->given + (int64_t)g * c->n : NULL, blocks, ranges,
                                w->score, w->order);
        r->nr[g] = nr;
        r->reads[NSA_BRANCH_SEL] += nsa_ref_range_len(ranges, nr);
        const nsa_ref_kv *k = &kv[NSA_BRANCH_SEL];
        for (int h = g * G; h < (g + 1) * G; h++)
            lse_sel[h] = nsa_ref_attend(q + (int64_t)h * Dk, k->K + g * k->khs, k->ks,
                                        k->V + g * k->vhs, k->vs, Dk, Dv,
                                        ranges, nr, scale, o_sel + (int64_t)h * Dv, NULL, w->s);
    }
    r->reads[NSA_BRANCH_SEL] /= Hkv; /* per KV head, like the budget n·lp */

    /* win: positions [max(0, t-w+1), t]; w = 0 means no key. */
    int64_t wr[2] = {nsa_ix_win_lo(c->w, t), t + 1};
    int64_t wrel[2] = {wr[0] - kv[NSA_BRANCH_WIN].base, wr[1] - kv[NSA_BRANCH_WIN].base};
    int nwr = c->w > 0 ? 1 : 0;
    for (int h = 0; h < Hq; h++) {
        const int hk = h / G;
        const nsa_ref_kv *k = &kv[NSA_BRANCH_WIN];
        if (nwr)
            lse_win[h] = nsa_ref_attend(q + (int64_t)h * Dk, k->K + hk * k->khs, k->ks,
                                        k->V + hk * k->vhs, k->vs, Dk, Dv, wrel, 1, scale, o_win + (int64_t)h * Dv, NULL, w->s);
        else {
            lse_win[h] = -INFINITY;
            for (int e = 0; e < Dv; e++) o_win[(int64_t)h * Dv + e] = 0.0;
        }
    }
    r->reads[NSA_BRANCH_WIN] = nwr ? wr[1] - wr[0] : 0;

    /* gated sum */
    for (int h = 0; h < Hq; h++) {
        const double *g = gates + 3 * h;
        for (int e = 0; e < Dv; e++) {
            int64_t i = (int64_t)h * Dv + e;
            r->out[i] = g[0] * o_cmp[i] + g[1] * o_sel[i] + g[2] * o_win[i];
        }
    }
}
