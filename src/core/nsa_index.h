// SPDX-License-Identifier: Apache-2.0
/* nsa_index.h — NSA's index math (docs/design.md §1.1–§1.3) as inline functions that compile
 * for the host (C11) and the device (CUDA): compressed blocks, the Eq. 9 overlap weight, the
 * window span, forced blocks, candidates, the tie rule, sorting and merging selected blocks into
 * ranges, and the union of block lists. The reference and every kernel call these.
 * Not attention and not a policy: no scores are computed here, nothing allocates, no state.
 * Invariant: each rule of docs/design.md §1 that turns positions into indices is written once,
 * here; positions are int64_t, and a suffix 32 marks a 32-bit copy for kernels whose index math stays
 * 32-bit for speed (T < 2^31 is checked at the API), equal to the 64-bit one on that domain.
 */
#ifndef NSA_INDEX_H
#define NSA_INDEX_H

#include <stdint.h>

#ifdef __CUDACC__
#define NSA_HD __host__ __device__ __forceinline__
#else
#define NSA_HD inline
#endif

/* ---- compression (§1.1): block i covers raw positions [i·d, i·d + l) ---- */

/* Compressed blocks complete after T tokens: T < l ? 0 : (T − l)/d + 1. Query t sees blocks
 * i < nsa_ix_num_cmp(l, d, t + 1). */
static NSA_HD int64_t nsa_ix_num_cmp(int64_t l, int64_t d, int64_t T) {
    return T < l ? 0 : (T - l) / d + 1;
}

/* The first query that sees compressed block i: its last token, i·d + l − 1. */
static NSA_HD int64_t nsa_ix_cmp_first_query(int64_t l, int64_t d, int64_t i) {
    return i * d + l - 1;
}

/* Does query t see compressed block i (all of its tokens are ≤ t)? */
static NSA_HD int nsa_ix_cmp_sees(int64_t l, int64_t d, int64_t t, int64_t i) {
    return nsa_ix_cmp_first_query(l, d, i) <= t;
}

/* ---- Eq. 9 (§1.2 step 2): selection block j covers [j·lp, (j+1)·lp) ---- */

/* m(i, j): stride-d sub-blocks shared by compressed block i and selection block j,
 * |[i·d, i·d+l) ∩ [j·lp, (j+1)·lp)| / d. */
static NSA_HD int nsa_ix_overlap(int64_t l, int64_t d, int64_t lp, int64_t i, int64_t j) {
    const int64_t a0 = i * d, a1 = a0 + l, b0 = j * lp, b1 = b0 + lp;
    const int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? (int)((hi - lo) / d) : 0;
}
static NSA_HD int nsa_ix_overlap32(int l, int d, int lp, int i, int j) {
    const int a0 = i * d, a1 = a0 + l, b0 = j * lp, b1 = b0 + lp;
    const int lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? (hi - lo) / d : 0;
}

/* The compressed blocks i with m(i, j) > 0 among the nc visible ones: i in [*i_lo, *i_hi]
 * (empty when *i_hi < *i_lo). Score loops walk exactly this span, in ascending i. */
static NSA_HD void nsa_ix_score_span(int64_t l, int64_t d, int64_t lp, int64_t j, int64_t nc,
                                     int64_t *i_lo, int64_t *i_hi) {
    const int64_t hi = ((j + 1) * lp - 1) / d;          /* i·d < (j+1)·lp */
    *i_lo = j * lp < l ? 0 : (j * lp - l) / d + 1;      /* i·d + l > j·lp */
    *i_hi = hi > nc - 1 ? nc - 1 : hi;
}
static NSA_HD void nsa_ix_score_span32(int l, int d, int lp, int j, int nc, int *i_lo,
                                       int *i_hi) {
    const int hi = ((j + 1) * lp - 1) / d;
    *i_lo = j * lp < l ? 0 : (j * lp - l) / d + 1;
    *i_hi = hi > nc - 1 ? nc - 1 : hi;
}

/* ---- sliding window (§1.3): query t sees [max(0, t − w + 1), t]; w = 0 sees nothing ---- */

/* First key of the window of query t. With w = 0 it is t + 1: the span [lo, t + 1) is empty. */
static NSA_HD int64_t nsa_ix_win_lo(int64_t w, int64_t t) { return t - w + 1 > 0 ? t - w + 1 : 0; }
static NSA_HD int nsa_ix_win_lo32(int w, int t) { return t - w + 1 > 0 ? t - w + 1 : 0; }

/* Keys in the window of query t: min(w, t + 1) (0 when w = 0). The decode budget's min(w, S) is
 * nsa_ix_win_len(w, S − 1). */
static NSA_HD int64_t nsa_ix_win_len(int64_t w, int64_t t) { return t + 1 - nsa_ix_win_lo(w, t); }

/* Does query t see window key j? */
static NSA_HD int nsa_ix_win_sees(int64_t w, int64_t t, int64_t j) { return j <= t && j > t - w; }
static NSA_HD int nsa_ix_win_sees32(int w, int t, int j) { return j <= t && j > t - w; }

/* One past the last query (of T) whose window holds key j < T: queries [j, that) see it. */
static NSA_HD int64_t nsa_ix_win_qend(int64_t w, int64_t j, int64_t T) {
    return j + w < T ? j + w : T;
}
static NSA_HD int nsa_ix_win_qend32(int w, int j, int T) { return j + w < T ? j + w : T; }

/* ---- selection (§1.2 steps 4–6) ---- */

/* Blocks j with (j+1)·lp ≤ t+1 are complete: exactly j < nsa_ix_ncomplete(lp, t). Only they are
 * candidates; the block holding t is cur = t / lp (possibly partial). */
static NSA_HD int64_t nsa_ix_ncomplete(int64_t lp, int64_t t) { return (t + 1) / lp; }

/* Is block j one of list[0..n)? (No early exit: a warp walks it in step.) */
static NSA_HD int nsa_ix_member(const int32_t *list, int n, int32_t j) {
    int in = 0;
    for (int q = 0; q < n; q++) in |= list[q] == j;
    return in;
}

/* The forced blocks of a query in block cur = t / lp: the initial blocks 0 .. n_init−1 (those
 * ≤ cur), then the local blocks cur, cur−1, ... (n_local of them, those ≥ 0), each once. Writes
 * them to blk in that order and returns how many. */
static NSA_HD int nsa_ix_forced(int n_init, int n_local, int64_t cur, int32_t *blk) {
    int nf = 0;
    for (int64_t j = 0; j < n_init && j <= cur; j++) blk[nf++] = (int32_t)j;
    for (int64_t k = 0; k < n_local && cur - k >= 0; k++)
        if (!nsa_ix_member(blk, nf, (int32_t)(cur - k))) blk[nf++] = (int32_t)(cur - k);
    return nf;
}

/* The tie rule: does block ja (score sa) rank before block jb (score sb)? Higher score first,
 * on equal scores the lower block index (exact comparison of the f32 scores). */
static NSA_HD int nsa_ix_better(float sa, int64_t ja, float sb, int64_t jb) {
    return sa > sb || (sa == sb && ja < jb);
}

/* Puts the k best of cand[0..nc) (block indices into score) first, in rank order: a partial
 * selection sort (candidate lists are short, t/lp + 1). */
static NSA_HD void nsa_ix_top_k(const float *score, int32_t *cand, int nc, int k) {
    for (int a = 0; a < k && a < nc; a++) {
        int best = a;
        for (int b = a + 1; b < nc; b++)
            if (nsa_ix_better(score[cand[b]], cand[b], score[cand[best]], cand[best])) best = b;
        const int32_t tmp = cand[a];
        cand[a] = cand[best];
        cand[best] = tmp;
    }
}

/* Sorts blk[0..n) ascending (insertion sort: n ≤ cfg.n, distinct values). */
static NSA_HD void nsa_ix_sort_blocks(int32_t *blk, int n) {
    for (int a = 1; a < n; a++) {
        const int32_t v = blk[a];
        int c = a - 1;
        while (c >= 0 && blk[c] > v) {
            blk[c + 1] = blk[c];
            c--;
        }
        blk[c + 1] = v;
    }
}

/* One range of the merge: the maximal run of adjacent blocks starting at blk[a] (blk ascending,
 * nsel of them) covers keys [*lo, *hi), the end clipped to t + 1. Returns the index past the
 * run, so `for (a = 0; a < nsel; nr++) a = nsa_ix_run(...)` lists the ranges in order. */
static NSA_HD int nsa_ix_run(const int32_t *blk, int nsel, int a, int64_t lp, int64_t t,
                             int64_t *lo, int64_t *hi) {
    int b = a;
    while (b + 1 < nsel && blk[b + 1] == blk[b] + 1) b++;
    const int64_t e = ((int64_t)blk[b] + 1) * lp;
    *lo = (int64_t)blk[a] * lp;
    *hi = e > t + 1 ? t + 1 : e;
    return b + 1;
}

/* ---- union of block lists (the sel kernels walk the union of their queries' blocks) ---- */

/* Lowest set bit of x != 0. */
static NSA_HD int nsa_ix_low_bit(unsigned x) {
#ifdef __CUDA_ARCH__
    return __ffs((int)x) - 1;
#else
    return __builtin_ctz(x);
#endif
}

/* The blocks marked in the bitmap bits[0..words) (block j is bit j % 32 of word j / 32), as an
 * ascending list; returns their number. */
static NSA_HD int nsa_ix_bits_list(const unsigned *bits, int words, int *list) {
    int nu = 0;
    for (int wd = 0; wd < words; wd++)
        for (unsigned x = bits[wd]; x; x &= x - 1) list[nu++] = wd * 32 + nsa_ix_low_bit(x);
    return nu;
}

#endif /* NSA_INDEX_H */
