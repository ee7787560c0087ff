// SPDX-License-Identifier: Apache-2.0
/* select.c — row-level pieces of the reference: the Eq. 9 overlap, block selection for one
 * query and group, and softmax attention of one query over a list of key ranges.
 * Decode and backward call these same functions, which is what makes decode bitwise equal to
 * prefill on the reference.
 * Invariant (selection): scores are summed in double, rounded once to f32, and compared
 * exactly; ties go to the lower block index.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int nsa_ref_overlap(const nsa_config *c, int64_t i, int64_t j) {
    int64_t a0 = i * c->d, a1 = a0 + c->l;
    int64_t b0 = j * c->lp, b1 = b0 + c->lp;
    int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? (int)((hi - lo) / c->d) : 0;
}

int64_t nsa_ref_range_len(const int64_t *ranges, int nr) {
    int64_t n = 0;
    for (int r = 0; r < nr; r++) n += ranges[2 * r + 1] - ranges[2 * r];
    return n;
}

/* Puts the k best of cand[0..nc) first, by (f32 score descending, block index ascending).
 * A partial selection sort: candidate lists are short (t/lp + 1) and qsort has no context
 * pointer in C11. */
static void top_k(const float *score, int32_t *cand, int nc, int k) {
    for (int a = 0; a < k && a < nc; a++) {
        int best = a;
        for (int b = a + 1; b < nc; b++) {
            float sb = score[cand[b]], sbest = score[cand[best]];
            if (sb > sbest || (sb == sbest && cand[b] < cand[best])) best = b;
        }
        int32_t tmp = cand[a];
        cand[a] = cand[best];
        cand[best] = tmp;
    }
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return a < b ? -1 : (a > b);
}

static int has(const int32_t *list, int n, int64_t j) {
    for (int f = 0; f < n; f++)
        if (list[f] == j) return 1;
    return 0;
}

int nsa_ref_select(const nsa_config *c, int64_t t, const double *p, int G, int64_t p_stride,
                   int64_t nc, int32_t *blocks, int64_t *ranges, float *score, int32_t *order) {
    const int64_t cur = t / c->lp;             /* block holding t (possibly partial) */
    const int64_t ncomplete = (t + 1) / c->lp; /* blocks j with (j+1)·lp <= t+1     */

    /* 1-3: score[j] = Σ_h Σ_i p[h,i]·m(i,j), summed in double, rounded once to f32. */
    for (int64_t j = 0; j <= cur; j++) {
        int64_t i_lo = j * c->lp < c->l ? 0 : (j * c->lp - c->l) / c->d + 1; /* i·d+l > j·lp */
        int64_t i_hi = ((j + 1) * c->lp - 1) / c->d;                          /* i·d < (j+1)·lp */
        if (i_hi > nc - 1) i_hi = nc - 1;
        double sum = 0.0;
        for (int h = 0; h < G; h++) {
            const double *ph = p + (int64_t)h * p_stride;
            for (int64_t i = i_lo; i <= i_hi; i++) sum += ph[i] * (double)nsa_ref_overlap(c, i, j);
        }
        score[j] = (float)sum;
    }

    /* 4: forced blocks, initial then local; duplicates once. */
    int nf = 0;
    for (int64_t j = 0; j < c->n_init && j <= cur; j++) blocks[nf++] = (int32_t)j;
    for (int64_t k = 0; k < c->n_local && cur - k >= 0; k++)
        if (!has(blocks, nf, cur - k)) blocks[nf++] = (int32_t)(cur - k);

    /* 5: the top n - |forced| of the other complete blocks. */
    int ncand = 0;
    for (int64_t j = 0; j < ncomplete; j++)
        if (!has(blocks, nf, j)) order[ncand++] = (int32_t)j;
    int k = c->n - nf < ncand ? c->n - nf : ncand;
    top_k(score, order, ncand, k);
    for (int a = 0; a < k; a++) blocks[nf + a] = order[a];
    int nsel = nf + k;
    qsort(blocks, (size_t)nsel, sizeof *blocks, cmp_i32);
    for (int a = nsel; a < c->n; a++) blocks[a] = -1;

    /* 6: merge adjacent blocks into ranges, clip ends to t+1. */
    int nr = 0;
    for (int a = 0; a < nsel;) {
        int b = a;
        while (b + 1 < nsel && blocks[b + 1] == blocks[b] + 1) b++;
        int64_t e0 = ((int64_t)blocks[b] + 1) * c->lp;
        ranges[2 * nr] = (int64_t)blocks[a] * c->lp;
        ranges[2 * nr + 1] = e0 > t + 1 ? t + 1 : e0;
        nr++;
        a = b + 1;
    }
    for (int r = nr; r < c->n; r++) ranges[2 * r] = ranges[2 * r + 1] = 0;
    return nr;
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
