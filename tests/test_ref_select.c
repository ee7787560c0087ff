// SPDX-License-Identifier: Apache-2.0
/* test_ref_select.c — block selection of the reference (docs/design.md §1.2) against an independent
 * brute force: Eq. 9 weights by counting sub-blocks, the group sum, forced blocks, top-n with
 * ties to the lower block, merged ranges; group consistency under head permutation; exact ties;
 * the same blocks whether the inputs are stored as f32, bf16 or f16.
 */
#include "ref_util.h"

#include "ref/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static nsa_config sel_cfg(int Hq, int Hkv, int l, int d, int lp, int n) {
    nsa_config c = nsa_config_default(Hq, Hkv, 6, 5);
    c.l = l;
    c.d = d;
    c.lp = lp;
    c.n = n;
    c.w = 5;
    return c;
}

typedef struct {
    float s;
    int j;
} cand;

static int cand_cmp(const void *x, const void *y) {
    const cand *a = x, *b = y;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return a->j - b->j;
}

/* Expected blocks (ascending, -1 padded) of query t for group g, from the group's compressed
 * probabilities computed here; score[] receives the f32 scores of blocks 0..t/lp. */
static void brute_select(const nsa_config *c, const double *q, const double *kc, int T, int64_t Tc,
                         int b, int t, int g, int32_t *out, float *score) {
    const int G = c->Hq / c->Hkv, Dk = c->Dk;
    const int64_t nc = nsa_num_cmp(c, t + 1), cur = t / c->lp;
    double *p = calloc((size_t)(G * (nc > 0 ? nc : 1)), sizeof(double));
    for (int u = 0; u < G; u++) {
        const double *qh = q + (((int64_t)b * T + t) * c->Hq + g * G + u) * Dk;
        double mx = -INFINITY, z = 0;
        for (int64_t i = 0; i < nc; i++) {
            double s = 0;
            for (int e = 0; e < Dk; e++) s += qh[e] * kc[(((int64_t)b * Tc + i) * c->Hkv + g) * Dk + e];
            p[u * nc + i] = s / sqrt((double)Dk);
            mx = fmax(mx, p[u * nc + i]);
        }
        for (int64_t i = 0; i < nc; i++) z += (p[u * nc + i] = exp(p[u * nc + i] - mx));
        for (int64_t i = 0; i < nc; i++) p[u * nc + i] /= z;
    }
    for (int64_t j = 0; j <= cur; j++) {
        double s = 0;
        for (int u = 0; u < G; u++)
            for (int64_t i = 0; i < nc; i++)
                s += p[u * nc + i] * ut_overlap(c->l, c->d, c->lp, i, j);
        score[j] = (float)s;
    }
    unsigned char *taken = calloc((size_t)(cur + 1), 1);
    int nf = 0;
    for (int64_t j = 0; j < c->n_init && j <= cur; j++) taken[j] = 1;
    for (int64_t k = 0; k < c->n_local && cur - k >= 0; k++) taken[cur - k] = 1;
    for (int64_t j = 0; j <= cur; j++) nf += taken[j];
    cand *cs = malloc(sizeof(cand) * (size_t)(cur + 1));
    int ncand = 0;
    for (int64_t j = 0; (j + 1) * c->lp <= t + 1; j++)
        if (!taken[j]) cs[ncand++] = (cand){score[j], (int)j};
    qsort(cs, (size_t)ncand, sizeof(cand), cand_cmp);
    for (int k = 0; k < ncand && k < c->n - nf; k++) taken[cs[k].j] = 1;
    int m = 0;
    for (int64_t j = 0; j <= cur; j++)
        if (taken[j]) out[m++] = (int32_t)j;
    while (m < c->n) out[m++] = -1;
    free(p);
    free(taken);
    free(cs);
}

/* Compressed keys (B, Tc, Hkv, Dk) by φ = avg, computed here. */
static double *avg_blocks(const nsa_config *c, const double *k, int B, int T, int64_t Tc) {
    double *kc = calloc((size_t)(B * Tc * c->Hkv * c->Dk + 1), sizeof(double));
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < Tc; i++)
            for (int h = 0; h < c->Hkv; h++)
                for (int r = 0; r < c->l; r++)
                    for (int e = 0; e < c->Dk; e++)
                        kc[(((int64_t)b * Tc + i) * c->Hkv + h) * c->Dk + e] +=
                            k[(((int64_t)b * T + i * c->d + r) * c->Hkv + h) * c->Dk + e] / c->l;
    return kc;
}

/* Runs the forward on p and compares sel_blocks with brute_select for every row and group, and
 * sel_ranges with the blocks merged and clipped here. A difference is allowed only where the
 * two blocks' f32 scores tie within 4 ulp (rounding of p); *near counts those. */
static void compare_selection(nsa_context *ctx, prob *p, int *near) {
    const nsa_config *c = &p->c;
    const int B = p->B, T = p->T;
    const int64_t Tc = nsa_num_cmp(c, T);
    CHECK_OK(ctx, nsa_forward(ctx, &p->a));
    double *q = ut_doubles(&p->q), *k = ut_doubles(&p->kc);
    double *kc = (p->flags & P_CMP_COMPRESSED) ? k : avg_blocks(c, k, B, T, Tc);
    int32_t *exp_ = malloc(sizeof(int32_t) * (size_t)c->n);
    float *score = malloc(sizeof(float) * (size_t)(T / c->lp + 1));
    *near = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int g = 0; g < c->Hkv; g++) {
                brute_select(c, q, kc, T, Tc, b, t, g, exp_, score);
                const int64_t at = (((int64_t)b * T + t) * c->Hkv + g) * c->n;
                int32_t got[64];
                for (int s = 0; s < c->n; s++) got[s] = (int32_t)tb_get(&p->blocks, at + s);
                if (memcmp(got, exp_, sizeof(int32_t) * (size_t)c->n)) {
                    /* each block only one side chose must tie with one only the other chose */
                    int tie = 1;
                    for (int s = 0; s < c->n && got[s] >= 0; s++) {
                        int only = 1, match = 0;
                        for (int u = 0; u < c->n; u++) only &= exp_[u] != got[s];
                        for (int u = 0; u < c->n && only; u++) {
                            int other_only = exp_[u] >= 0;
                            for (int v = 0; v < c->n; v++) other_only &= got[v] != exp_[u];
                            float a = score[got[s]], e = score[exp_[u]];
                            match |= other_only && fabsf(a - e) <= 4 * 1.2e-7f * fmaxf(a, e);
                        }
                        tie &= !only || match;
                    }
                    CHECK(tie, "b=%d t=%d g=%d: blocks %d %d %d .. differ from brute force %d %d %d ..",
                          b, t, g, got[0], got[1], c->n > 2 ? got[2] : -1, exp_[0], exp_[1],
                          c->n > 2 ? exp_[2] : -1);
                    (*near)++;
                    continue;
                }
                /* ranges: adjacent blocks merged, ends clipped to t+1, unused [0, 0) */
                int nr = 0;
                int64_t er[128];
                for (int s = 0; s < c->n && exp_[s] >= 0; s++) {
                    int64_t s0 = (int64_t)exp_[s] * c->lp, s1 = s0 + c->lp > t + 1 ? t + 1 : s0 + c->lp;
                    if (nr && er[2 * nr - 1] == s0)
                        er[2 * nr - 1] = s1;
                    else
                        er[2 * nr] = s0, er[2 * nr + 1] = s1, nr++;
                }
                for (int s = nr; s < c->n; s++) er[2 * s] = er[2 * s + 1] = 0;
                for (int s = 0; s < 2 * c->n; s++)
                    CHECK(tb_get(&p->ranges, at * 2 + s) == er[s], "b=%d t=%d g=%d: range slot %d",
                          b, t, g, s / 2);
            }
    free(q);
    if (kc != k) free(kc);
    free(k);
    free(exp_);
    free(score);
}

/* Brute-force selection over several configs: paper blocks, identity, l not dividing lp,
 * different forced counts, compressed inputs. */
static void sel_bruteforce(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    struct {
        nsa_config c;
        int T;
        unsigned flags;
    } cs[] = {
        {sel_cfg(4, 2, 8, 4, 8, 4), 70, 0},     {sel_cfg(2, 1, 32, 16, 64, 5), 420, 0},
        {sel_cfg(6, 3, 4, 4, 4, 5), 41, 0},     {sel_cfg(4, 1, 12, 4, 8, 4), 67, P_CMP_COMPRESSED},
        {sel_cfg(4, 2, 8, 8, 16, 3), 90, 0},    {sel_cfg(2, 2, 6, 3, 12, 6), 100, 0},
    };
    cs[3].c.n_init = 2;
    cs[3].c.n_local = 1;
    cs[5].c.n_init = 0;
    int near_total = 0;
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        prob p;
        prob_init(&p, cs[k].c, NSA_DTYPE_F32, 2, cs[k].T, P_EXTRAS | cs[k].flags);
        int near = 0;
        compare_selection(ctx, &p, &near);
        near_total += near;
        prob_free(&p);
        if (nsa_test_failed) break;
    }
    CHECK(near_total <= 2, "%d rows differ from brute force at near-ties", near_total);
    nsa_context_destroy(ctx);
}

/* All heads of a group use the group's blocks: permuting the query heads within each group
 * keeps every group's selection bitwise, and permutes out_sel with the heads. */
static void group_consistency(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const nsa_config c = sel_cfg(8, 2, 8, 4, 8, 4);
    const int B = 2, T = 75, G = 4;
    prob p, p2;
    prob_init(&p, c, NSA_DTYPE_F32, B, T, P_EXTRAS);
    prob_init(&p2, c, NSA_DTYPE_F32, B, T, P_EXTRAS);
    tbuf *in[8], *in2[8];
    prob_inputs(&p, in);
    prob_inputs(&p2, in2);
    for (int i = 1; i < 8; i++) memcpy(in2[i]->base, in[i]->base, in[i]->bytes);
    const int perm[4] = {2, 0, 3, 1};
    const size_t qrow = (size_t)c.Dk * 4, grow = 3 * 4;
    for (int64_t r = 0; r < (int64_t)B * T; r++)
        for (int h = 0; h < c.Hq; h++) {
            int h2 = (h / G) * G + perm[h % G];
            memcpy((char *)p2.q.base + ((size_t)r * c.Hq + h2) * qrow,
                   (char *)p.q.base + ((size_t)r * c.Hq + h) * qrow, qrow);
            memcpy((char *)p2.g.base + ((size_t)r * c.Hq + h2) * grow,
                   (char *)p.g.base + ((size_t)r * c.Hq + h) * grow, grow);
        }
    int near = 0;
    compare_selection(ctx, &p, &near);
    CHECK_OK(ctx, nsa_forward(ctx, &p2.a));
    CHECK(ut_same_bytes(&p.blocks, &p2.blocks), "permuting heads within a group changed its blocks");
    CHECK(ut_same_bytes(&p.ranges, &p2.ranges), "permuting heads within a group changed its ranges");
    const size_t orow = (size_t)c.Dv * 4;
    for (int64_t r = 0; r < (int64_t)B * T; r++)
        for (int h = 0; h < c.Hq; h++) {
            int h2 = (h / G) * G + perm[h % G];
            CHECK(!memcmp((char *)p2.ob[1].base + ((size_t)r * c.Hq + h2) * orow,
                          (char *)p.ob[1].base + ((size_t)r * c.Hq + h) * orow, orow),
                  "out_sel of head %d did not move to head %d", h, h2);
        }
    prob_free(&p);
    prob_free(&p2);
    nsa_context_destroy(ctx);
}

/* Exact ties: every raw cmp key is one vector, so every compressed block gets the same
 * probability and blocks with the same Eq. 9 weight pattern tie bitwise. The expected choice,
 * from integer weights W_j = Σ_i m(i, j): larger W first, ties to the lower block. */
static void tie_case(nsa_context *ctx, nsa_config c, int T) {
    prob p;
    prob_init(&p, c, NSA_DTYPE_F32, 1, T, P_EXTRAS);
    for (int64_t i = 0; i < tb_numel(&p.kc); i++)
        tb_set(&p.kc, i, tb_get(&p.kc, i % (c.Hkv * c.Dk)));
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    for (int t = 0; t < T; t++) {
        const int64_t nc = nsa_num_cmp(&c, t + 1), cur = t / c.lp;
        int W[256];
        unsigned char taken[256] = {0};
        for (int64_t j = 0; j <= cur; j++) {
            W[j] = 0;
            for (int64_t i = 0; i < nc; i++) W[j] += ut_overlap(c.l, c.d, c.lp, i, j);
        }
        for (int64_t j = 0; j < c.n_init && j <= cur; j++) taken[j] = 1;
        for (int64_t k = 0; k < c.n_local && cur - k >= 0; k++) taken[cur - k] = 1;
        int free_slots = c.n;
        for (int64_t j = 0; j <= cur; j++) free_slots -= taken[j];
        for (; free_slots > 0; free_slots--) {
            int best = -1;
            for (int64_t j = 0; (j + 1) * c.lp <= t + 1; j++)
                if (!taken[j] && (best < 0 || W[j] > W[best])) best = (int)j;
            if (best < 0) break;
            taken[best] = 1;
        }
        for (int g = 0; g < c.Hkv; g++) {
            int s = 0;
            for (int64_t j = 0; j <= cur; j++) {
                if (!taken[j]) continue;
                int got = (int)tb_get(&p.blocks, ((int64_t)t * c.Hkv + g) * c.n + s);
                CHECK(got == j, "t=%d g=%d slot %d: block %d, expected %d (ties go to the lower "
                      "block)", t, g, s, got, (int)j);
                s++;
            }
        }
    }
    prob_free(&p);
}

static void tie_rule(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    tie_case(ctx, sel_cfg(4, 2, 4, 4, 4, 5), 47);   /* identity: every candidate ties */
    tie_case(ctx, sel_cfg(2, 1, 8, 4, 8, 5), 77);   /* pattern 1,2,1 */
    tie_case(ctx, sel_cfg(2, 2, 32, 16, 64, 4), 400); /* paper pattern 1,2,2,2,1 */
    nsa_context_destroy(ctx);
}

/* m(i, j) against sub-blocks counted one by one, for several (l, d, lp), the identity l = lp = d,
 * and the paper's example: block j gets p[4j−1] + 2p[4j] + 2p[4j+1] + 2p[4j+2] + p[4j+3]. */
static void eq9_weights(void) {
    const int cfgs[][3] = {{32, 16, 64}, {8, 4, 8}, {4, 4, 4}, {16, 4, 8}, {12, 4, 8},
                           {8, 8, 16},   {6, 3, 12}, {2, 1, 2}, {1, 1, 1}, {64, 16, 32}};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        nsa_config c = sel_cfg(1, 1, cfgs[k][0], cfgs[k][1], cfgs[k][2], 3);
        for (int64_t i = 0; i < 48; i++)
            for (int64_t j = 0; j < 24; j++) {
                int want = ut_overlap(c.l, c.d, c.lp, i, j);
                CHECK(nsa_ix_overlap(c.l, c.d, c.lp, i, j) == want, "l=%d d=%d lp=%d: m(%lld, %lld) = %d, "
                      "brute force %d", c.l, c.d, c.lp, (long long)i, (long long)j,
                      nsa_ix_overlap(c.l, c.d, c.lp, i, j), want);
                if (c.l == c.d && c.d == c.lp)
                    CHECK(want == (i == j), "identity: m(%lld, %lld) = %d", (long long)i,
                          (long long)j, want);
            }
    }
    nsa_config c = sel_cfg(1, 1, 32, 16, 64, 3);
    for (int64_t j = 1; j < 12; j++)
        for (int64_t i = 0; i < 4 * j + 12; i++) {
            const int64_t r = i - (4 * j - 1);
            const int want = r == 0 || r == 4 ? 1 : (r >= 1 && r <= 3 ? 2 : 0);
            CHECK(nsa_ix_overlap(c.l, c.d, c.lp, i, j) == want, "paper example: m(%lld, %lld) = %d, want %d",
                  (long long)i, (long long)j, nsa_ix_overlap(c.l, c.d, c.lp, i, j), want);
        }
}

/* Values exactly representable in f32, bf16 and f16 (multiples of 1/8 in [-2, 2]) give the same
 * blocks and lse in all three dtypes. */
static void selection_same_across_dtypes(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const nsa_config c = sel_cfg(4, 2, 8, 4, 8, 4);
    const int B = 2, T = 83;
    const nsa_dtype dts[3] = {NSA_DTYPE_F32, NSA_DTYPE_BF16, NSA_DTYPE_F16};
    prob p[3];
    for (int k = 0; k < 3; k++) prob_init(&p[k], c, dts[k], B, T, P_EXTRAS);
    tbuf *in[3][8];
    for (int k = 0; k < 3; k++) prob_inputs(&p[k], in[k]);
    for (int i = 0; i < 8; i++)
        for (int64_t e = 0; e < tb_numel(in[0][i]); e++) {
            double x = nsa_rng_int(-16, 16) / 8.0;
            for (int k = 0; k < 3; k++) tb_set(in[k][i], e, x);
        }
    for (int k = 0; k < 3; k++) CHECK_OK(ctx, nsa_forward(ctx, &p[k].a));
    for (int k = 1; k < 3; k++) {
        CHECK(ut_same_bytes(&p[0].blocks, &p[k].blocks), "sel_blocks differ: f32 vs %s",
              nsa_dtype_name(dts[k]));
        CHECK(ut_same_bytes(&p[0].ranges, &p[k].ranges), "sel_ranges differ: f32 vs %s",
              nsa_dtype_name(dts[k]));
        for (int br = 0; br < 3; br++)
            CHECK(ut_same_bytes(&p[0].lse[br], &p[k].lse[br]), "lse of branch %d differs: f32 vs "
                  "%s", br, nsa_dtype_name(dts[k]));
    }
    for (int k = 0; k < 3; k++) prob_free(&p[k]);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"sel_bruteforce", sel_bruteforce},
        {"group_consistency", group_consistency},
        {"tie_rule", tie_rule},
        {"eq9_weights", eq9_weights},
        {"selection_same_across_dtypes", selection_same_across_dtypes},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
