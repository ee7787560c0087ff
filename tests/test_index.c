// SPDX-License-Identifier: Apache-2.0
/* test_index.c — core/nsa_index.h, the index math of the reference and every kernel, against
 * brute-force definitions written from docs/design.md §1 (count shared positions, scan windows,
 * sort whole candidate lists), over exhaustive small ranges of l, d, lp, n, w and t.
 * Not a test of attention: only indices. Invariant: every function of the header (both the
 * 64-bit and the 32-bit copy) meets its definition at every point of the ranges below.
 */
#include "harness.h"

#include "core/nsa_index.h"

#include <stdlib.h>
#include <string.h>

/* (l, d, lp) with d | l and d | lp, as docs/design.md's validity rules require */
#define FOR_GEOMETRY(l, d, lp)                                                                     \
    for (int d = 1; d <= 4; d++)                                                                   \
        for (int l = d; l <= 16; l += d)                                                           \
            for (int lp = d; lp <= 16; lp += d)

/* positions p in both [a0, a1) and [b0, b1), counted one by one */
static int64_t shared_positions(int64_t a0, int64_t a1, int64_t b0, int64_t b1) {
    int64_t n = 0;
    for (int64_t p = a0; p < a1; p++) n += p >= b0 && p < b1;
    return n;
}

/* num_cmp counts the blocks [i·d, i·d+l) lying inside [0, T); cmp_sees: every token of block i
 * is ≤ t. */
static void cmp_blocks(void) {
    FOR_GEOMETRY(l, d, lp) {
        (void)lp;
        for (int64_t T = 0; T <= 60; T++) {
            int64_t want = 0;
            for (int64_t i = 0; i * d + l <= T; i++) want++;
            CHECK(nsa_ix_num_cmp(l, d, T) == want, "l=%d d=%d T=%lld: %lld, want %lld", l, d,
                  (long long)T, (long long)nsa_ix_num_cmp(l, d, T), (long long)want);
            const int64_t t = T - 1;
            for (int64_t i = 0; i <= 20; i++) {
                int all = 1;
                for (int64_t p = i * d; p < i * d + l; p++) all &= p <= t;
                CHECK(nsa_ix_cmp_sees(l, d, t, i) == all, "l=%d d=%d t=%lld i=%lld", l, d,
                      (long long)t, (long long)i);
                int64_t first = 0; /* the first t that sees block i: its latest token */
                for (int64_t p = i * d; p < i * d + l; p++) first = p > first ? p : first;
                CHECK(nsa_ix_cmp_first_query(l, d, i) == first, "first query of block %lld",
                      (long long)i);
                CHECK(all == (i < nsa_ix_num_cmp(l, d, t + 1)), "sees vs num_cmp: t=%lld i=%lld",
                      (long long)t, (long long)i);
            }
        }
    }
}

/* m(i, j) is the count of shared positions over d (a whole number); the score span is the
 * exact set of visible i with m(i, j) > 0. */
static void overlap_weights(void) {
    FOR_GEOMETRY(l, d, lp) {
        for (int j = 0; j <= 12; j++) {
            for (int i = 0; i <= 30; i++) {
                const int64_t s = shared_positions((int64_t)i * d, (int64_t)i * d + l,
                                                   (int64_t)j * lp, (int64_t)(j + 1) * lp);
                CHECK(s % d == 0, "l=%d d=%d lp=%d: %lld shared positions", l, d, lp, (long long)s);
                CHECK(nsa_ix_overlap(l, d, lp, i, j) == s / d, "l=%d d=%d lp=%d m(%d, %d) = %d, "
                      "want %lld", l, d, lp, i, j, nsa_ix_overlap(l, d, lp, i, j), (long long)(s / d));
                CHECK(nsa_ix_overlap32(l, d, lp, i, j) == s / d, "32-bit: l=%d d=%d lp=%d "
                      "m(%d, %d)", l, d, lp, i, j);
            }
            for (int nc = 0; nc <= 30; nc++) {
                int64_t lo = -1, hi = -2;
                for (int i = 0; i < nc; i++)
                    if (shared_positions((int64_t)i * d, (int64_t)i * d + l, (int64_t)j * lp,
                                         (int64_t)(j + 1) * lp) > 0) {
                        if (lo < 0) lo = i;
                        hi = i;
                    }
                int64_t a, b;
                nsa_ix_score_span(l, d, lp, j, nc, &a, &b);
                int a32, b32;
                nsa_ix_score_span32(l, d, lp, j, nc, &a32, &b32);
                if (lo < 0) {
                    CHECK(b < a && b32 < a32, "l=%d d=%d lp=%d j=%d nc=%d: span [%lld, %lld] "
                          "should be empty", l, d, lp, j, nc, (long long)a, (long long)b);
                } else {
                    CHECK(a == lo && b == hi, "l=%d d=%d lp=%d j=%d nc=%d: span [%lld, %lld], "
                          "want [%lld, %lld]", l, d, lp, j, nc, (long long)a, (long long)b,
                          (long long)lo, (long long)hi);
                    CHECK(a32 == lo && b32 == hi, "32-bit span: l=%d d=%d lp=%d j=%d nc=%d", l, d,
                          lp, j, nc);
                }
            }
        }
    }
}

/* The window of t is the positions p ≤ t with t − p < w; the queries that see key j are a run
 * starting at j. */
static void window_span(void) {
    const int64_t T = 40;
    for (int64_t w = 0; w <= 12; w++)
        for (int64_t t = 0; t < T; t++) {
            int64_t lo = -1, n = 0;
            for (int64_t p = 0; p <= t; p++)
                if (t - p < w) {
                    if (lo < 0) lo = p;
                    n++;
                }
            if (lo < 0) lo = t + 1; /* empty: [t+1, t+1) */
            CHECK(nsa_ix_win_lo(w, t) == lo, "w=%lld t=%lld: lo %lld, want %lld", (long long)w,
                  (long long)t, (long long)nsa_ix_win_lo(w, t), (long long)lo);
            CHECK(nsa_ix_win_lo32((int)w, (int)t) == lo, "32-bit: w=%lld t=%lld", (long long)w,
                  (long long)t);
            CHECK(nsa_ix_win_len(w, t) == n, "w=%lld t=%lld: len %lld, want %lld", (long long)w,
                  (long long)t, (long long)nsa_ix_win_len(w, t), (long long)n);
            for (int64_t j = 0; j < T; j++) {
                CHECK(nsa_ix_win_sees(w, t, j) == (j <= t && t - j < w), "w=%lld t=%lld j=%lld",
                      (long long)w, (long long)t, (long long)j);
                CHECK(nsa_ix_win_sees32((int)w, (int)t, (int)j) == (j <= t && t - j < w),
                      "32-bit: w=%lld t=%lld j=%lld", (long long)w, (long long)t, (long long)j);
            }
        }
    for (int64_t w = 0; w <= 12; w++)
        for (int64_t j = 0; j < T; j++) {
            const int64_t qe = nsa_ix_win_qend(w, j, T);
            CHECK(nsa_ix_win_qend32((int)w, (int)j, (int)T) == qe, "32-bit qend: w=%lld j=%lld",
                  (long long)w, (long long)j);
            for (int64_t u = 0; u < T; u++)
                CHECK(nsa_ix_win_sees(w, u, j) == (u >= j && u < qe), "w=%lld key %lld query "
                      "%lld: queries [%lld, %lld)", (long long)w, (long long)j, (long long)u,
                      (long long)j, (long long)qe);
        }
}

/* Complete blocks: every position of [j·lp, (j+1)·lp) is ≤ t. Forced: the set {0..n_init−1} ∩
 * [0, cur] ∪ {cur−k : k < n_local} ∩ [0, ∞), initial ones first, each once. */
static void forced_and_candidates(void) {
    for (int lp = 1; lp <= 9; lp++)
        for (int64_t t = 0; t <= 50; t++) {
            int64_t want = 0;
            for (int64_t j = 0;; j++) {
                int all = 1;
                for (int64_t p = j * lp; p < (j + 1) * lp; p++) all &= p <= t;
                if (!all) break;
                want++;
            }
            CHECK(nsa_ix_ncomplete(lp, t) == want, "lp=%d t=%lld: %lld, want %lld", lp,
                  (long long)t, (long long)nsa_ix_ncomplete(lp, t), (long long)want);
        }
    for (int ni = 0; ni <= 3; ni++)
        for (int nl = 0; nl <= 3; nl++)
            for (int64_t cur = 0; cur <= 8; cur++) {
                int32_t blk[8];
                const int nf = nsa_ix_forced(ni, nl, cur, blk);
                int inset[16] = {0}, n = 0;
                for (int64_t j = 0; j <= cur; j++) {
                    inset[j] = j < ni || (cur - j < nl);
                    n += inset[j];
                }
                CHECK(nf == n, "n_init=%d n_local=%d cur=%lld: %d forced, want %d", ni, nl,
                      (long long)cur, nf, n);
                for (int a = 0; a < nf; a++) {
                    CHECK(blk[a] >= 0 && blk[a] <= cur && inset[blk[a]], "block %d not forced",
                          blk[a]);
                    inset[blk[a]] = 0; /* a second copy fails the line above */
                    if (a > 0 && blk[a] < ni) CHECK(blk[a - 1] < blk[a], "initial blocks first");
                    CHECK(nsa_ix_member(blk, nf, blk[a]) && !nsa_ix_member(blk, a, blk[a]),
                          "member: block %d", blk[a]);
                }
            }
}

static const float *qs_score; /* qsort has no context pointer in C11 */
static int by_rank(const void *x, const void *y) {
    const int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    if (qs_score[a] != qs_score[b]) return qs_score[a] > qs_score[b] ? -1 : 1;
    return a < b ? -1 : (a > b);
}
static int by_value(const void *x, const void *y) {
    const int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return a < b ? -1 : (a > b);
}

/* top_k picks the first k of the whole list sorted by (score descending, index ascending);
 * scores come from a few values so that ties are common. */
static void top_k_tie_rule(void) {
    for (int iter = 0; iter < 3000; iter++) {
        const int nb = nsa_rng_int(0, 24), levels = nsa_rng_int(1, 4);
        float score[24];
        int32_t cand[24], want[24];
        int nc = 0;
        for (int j = 0; j < nb; j++) {
            score[j] = (float)nsa_rng_int(0, levels - 1) * 0.25f;
            if (nsa_rng_int(0, 3)) cand[nc++] = j; /* a subset: forced ones left out */
        }
        for (int a = nc - 1; a > 0; a--) { /* candidate order must not matter */
            const int b = nsa_rng_int(0, a);
            const int32_t x = cand[a];
            cand[a] = cand[b];
            cand[b] = x;
        }
        memcpy(want, cand, sizeof(int32_t) * (size_t)nc);
        qs_score = score;
        qsort(want, (size_t)nc, sizeof *want, by_rank);
        const int k = nsa_rng_int(0, nc + 2);
        nsa_ix_top_k(score, cand, nc, k);
        for (int a = 0; a < k && a < nc; a++)
            CHECK(cand[a] == want[a], "iter %d: rank %d is block %d, want %d", iter, a, cand[a],
                  want[a]);
        for (int a = 0; a + 1 < nc; a++)
            CHECK(nsa_ix_better(score[want[a]], want[a], score[want[a + 1]], want[a + 1]) &&
                      !nsa_ix_better(score[want[a + 1]], want[a + 1], score[want[a]], want[a]),
                  "better() disagrees with the order at rank %d", a);
    }
}

/* sort_blocks equals qsort; run() gives the maximal intervals of the covered positions, each
 * clipped to t+1; bits_list lists a bitmap's set bits ascending. */
static void merge_and_union(void) {
    for (int lp = 1; lp <= 9; lp++)
        for (int64_t t = 0; t <= 60; t++) {
            const int64_t cur = t / lp;
            for (int iter = 0; iter < 20; iter++) {
                int32_t blk[64], ref[64];
                int nsel = 0;
                for (int64_t j = 0; j <= cur && j < 64; j++)
                    if (nsa_rng_int(0, 2) == 0) blk[nsel++] = (int32_t)j;
                for (int a = nsel - 1; a > 0; a--) {
                    const int b = nsa_rng_int(0, a);
                    const int32_t x = blk[a];
                    blk[a] = blk[b];
                    blk[b] = x;
                }
                memcpy(ref, blk, sizeof(int32_t) * (size_t)nsel);
                qsort(ref, (size_t)nsel, sizeof *ref, by_value);
                nsa_ix_sort_blocks(blk, nsel);
                CHECK(memcmp(blk, ref, sizeof(int32_t) * (size_t)nsel) == 0, "sort: lp=%d t=%lld",
                      lp, (long long)t);
                unsigned char cov[640] = {0};
                for (int a = 0; a < nsel; a++)
                    for (int64_t p = (int64_t)blk[a] * lp; p < (int64_t)(blk[a] + 1) * lp; p++)
                        cov[p] = p <= t;
                int64_t want[128], nw = 0;
                for (int64_t p = 0; p <= t; p++)
                    if (cov[p] && (p == 0 || !cov[p - 1])) want[nw++] = p;
                    else if (!cov[p] && p > 0 && cov[p - 1]) want[nw++] = p;
                if (nw % 2) want[nw++] = t + 1;
                int64_t got[128], ng = 0;
                for (int a = 0; a < nsel; ng += 2)
                    a = nsa_ix_run(blk, nsel, a, lp, t, &got[ng], &got[ng + 1]);
                CHECK(ng == nw, "lp=%d t=%lld: %lld range ends, want %lld", lp, (long long)t,
                      (long long)ng, (long long)nw);
                for (int64_t q = 0; q < ng; q++)
                    CHECK(got[q] == want[q], "lp=%d t=%lld: range end %lld is %lld, want %lld", lp,
                          (long long)t, (long long)q, (long long)got[q], (long long)want[q]);
            }
        }
    for (int iter = 0; iter < 2000; iter++) {
        const int words = nsa_rng_int(0, 4);
        unsigned bits[4] = {0, 0, 0, 0};
        for (int wd = 0; wd < words; wd++)
            bits[wd] = (unsigned)nsa_rng_u64() & (unsigned)nsa_rng_u64(); /* sparse */
        int list[128], want[128], nw = 0;
        for (int j = 0; j < 32 * words; j++)
            if (bits[j / 32] >> (j % 32) & 1u) want[nw++] = j;
        const int n = nsa_ix_bits_list(bits, words, list);
        CHECK(n == nw, "bitmap %d: %d blocks, want %d", iter, n, nw);
        for (int a = 0; a < n; a++) CHECK(list[a] == want[a], "bitmap %d: entry %d", iter, a);
    }
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"cmp_blocks", cmp_blocks},
        {"overlap_weights", overlap_weights},
        {"window_span", window_span},
        {"forced_and_candidates", forced_and_candidates},
        {"top_k_tie_rule", top_k_tie_rule},
        {"merge_and_union", merge_and_union},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
