// SPDX-License-Identifier: Apache-2.0
/* select.c — row-level pieces of the reference: block selection for one query and group (its
 * index math from core/nsa_index.h), and softmax attention of one query over a list of key ranges.
 * Decode and backward call these same functions, which is what makes decode bitwise equal to
 * prefill on the reference.
 * Invariant (selection): scores are summed in double, rounded once to f32, and compared
 * exactly; ties go to the lower block index.
 */
#include "ref.h"

#include <math.h>
#include <string.h>

int64_t nsa_ref_range_len(const int64_t *ranges, int nr) {
    int64_t n = 0;
    for (int r = 0; r < nr; r++) n += ranges[2 * r + 1] - ranges[2 * r];
    return n;
}

/* 6: merge the nsel ascending blocks into ranges of adjacent blocks, ends clipped to t+1;
 * unused pairs [0, 0). */
static int merge_ranges(const nsa_config *c, int64_t t, const int32_t *blocks, int nsel,
                        int64_t *ranges) {
    int nr = 0;
    for (int a = 0; a < nsel; nr++)
        a = nsa_ix_run(blocks, nsel, a, c->lp, t, &ranges[2 * nr], &ranges[2 * nr + 1]);
    for (int r = nr; r < c->n; r++) ranges[2 * r] = ranges[2 * r + 1] = 0;
    return nr;
}

const int32_t *nsa_ref_given(const nsa_fwd_args *a, int64_t b, int64_t t, int g, int32_t *buf) {
    const nsa_tensor *gt = &a->block_indices;
    if (!nsa_present(gt)) return NULL;
    for (int k = 0; k < a->cfg.n; k++)
        buf[k] = ((const int32_t *)gt->data)[nsa_off4(gt, b, t, g, k)];
    return buf;
}

int nsa_ref_select(const nsa_config *c, int64_t t, const double *p, int G, int64_t p_stride,
                   int64_t nc, const int32_t *given, int32_t *blocks, int64_t *ranges,
                   float *score, int32_t *order) {
    if (given) { /* the caller's blocks, validated by nsa_args_check_fwd: only merge them */
        int nsel = 0;
        for (int k = 0; k < c->n; k++) {
            blocks[k] = given[k];
            nsel += given[k] >= 0;
        }
        return merge_ranges(c, t, blocks, nsel, ranges);
    }
    const int64_t cur = t / c->lp;                         /* block holding t (maybe partial) */
    const int64_t ncomplete = nsa_ix_ncomplete(c->lp, t); /* candidates are j < ncomplete    */

    /* 1-3: score[j] = Σ_h Σ_i p[h,i]·m(i,j), summed in double, rounded once to f32. */
    for (int64_t j = 0; j <= cur; j++) {
        int64_t i_lo, i_hi;
        nsa_ix_score_span(c->l, c->d, c->lp, j, nc, &i_lo, &i_hi);
        double sum = 0.0;
        for (int h = 0; h < G; h++) {
            const double *ph = p + (int64_t)h * p_stride;
            for (int64_t i = i_lo; i <= i_hi; i++)
                sum += ph[i] * (double)nsa_ix_overlap(c->l, c->d, c->lp, i, j);
        }
        score[j] = (float)sum;
    }

    /* 4: forced blocks, initial then local; duplicates once. */
    const int nf = nsa_ix_forced(c->n_init, c->n_local, cur, blocks);

    /* 5: the top n - |forced| of the other complete blocks. */
    int ncand = 0;
    for (int64_t j = 0; j < ncomplete; j++)
        if (!nsa_ix_member(blocks, nf, (int32_t)j)) order[ncand++] = (int32_t)j;
    int k = c->n - nf < ncand ? c->n - nf : ncand;
    nsa_ix_top_k(score, order, ncand, k);
    for (int a = 0; a < k; a++) blocks[nf + a] = order[a];
    int nsel = nf + k;
    nsa_ix_sort_blocks(blocks, nsel);
    for (int a = nsel; a < c->n; a++) blocks[a] = -1;
    return merge_ranges(c, t, blocks, nsel, ranges);
}

double nsa_ref_attend(const double *q, const double *K, int64_t ks, const double *V, int64_t vs,
                      int Dk, int Dv, const int64_t *ranges, int nr, double scale, double *out,
                      double *p, double *s) {
    int64_t n = 0;
    double mx = -INFINITY;
    for (int r = 0; r < nr; r++) {
        for (int64_t j = ranges[2 * r]; j < ranges[2 * r + 1]; j++) {
            const double *kj = K + j * ks;
            double dot = 0.0;
            for (int e = 0; e < Dk; e++) dot += q[e] * kj[e];
            dot *= scale;
            s[n++] = dot;
            if (dot > mx) mx = dot;
        }
    }
    for (int e = 0; e < Dv; e++) out[e] = 0.0;
    if (n == 0) return -INFINITY;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        s[j] = exp(s[j] - mx);
        sum += s[j];
    }
    double inv = 1.0 / sum;
    n = 0;
    for (int r = 0; r < nr; r++) {
        for (int64_t j = ranges[2 * r]; j < ranges[2 * r + 1]; j++) {
            double pj = s[n] * inv;
            if (p) p[n] = pj;
            n++;
            const double *vj = V + j * vs;
            for (int e = 0; e < Dv; e++) out[e] += pj * vj[e];
        }
    }
    return mx + log(sum);
}
