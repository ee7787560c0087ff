// SPDX-License-Identifier: Apache-2.0
/* test_lm_sample.c — the sampler of lm/sample.c: top-p against greedy, against no top-p and
 * against the nucleus worked out by hand on logits built for it.
 * Not the decode (test_lm_model.c: greedy tokens equal a full forward's).
 * Invariant: every case draws from fresh random logits and seeds; nothing depends on timing.
 */
#include "harness.h"
#include "lm.h"

#include <math.h>
#include <string.h>

enum { DRAWS = 4000 };

static void random_logits(float *lg, double spread) {
    for (int v = 0; v < LM_VOCAB; v++) lg[v] = (float)(spread * nsa_rng_normal());
}

static int argmax(const float *lg) {
    int best = 0;
    for (int v = 1; v < LM_VOCAB; v++)
        if (lg[v] > lg[best]) best = v;
    return best;
}

/* A nucleus smaller than the top byte's probability holds the top byte alone: every draw is
 * the argmax, whatever the seed, temperature and top-k. */
static void top_p_tiny_is_greedy(void) {
    float lg[LM_VOCAB];
    for (int i = 0; i < DRAWS; i++) {
        random_logits(lg, 1.0 + 3.0 * nsa_rng_uniform());
        if (i % 8 == 0) lg[nsa_rng_int(0, LM_VOCAB - 1)] = lg[argmax(lg)]; /* a tie: lowest */
        lm_sample_opts o = {.temperature = (float)(0.2 + 2.0 * nsa_rng_uniform()),
                            .top_k = nsa_rng_int(0, 60), .seed = nsa_rng_u64(),
                            .top_p = 1e-6f};
        uint64_t rng = o.seed;
        const int got = lm_sample_pick(lg, &o, &rng), want = argmax(lg);
        CHECK(got == want, "draw %d: top-p 1e-6 gave byte %d, the argmax is %d", i, got, want);
    }
}

/* top_p = 1 is no filter at all: the same byte as top_p = 0 for every seed, and the RNG
 * advanced alike. */
static void top_p_one_is_off(void) {
    float lg[LM_VOCAB];
    for (int i = 0; i < DRAWS; i++) {
        random_logits(lg, 0.5 + 2.0 * nsa_rng_uniform());
        lm_sample_opts a = {.temperature = (float)(0.3 + 1.5 * nsa_rng_uniform()),
                            .top_k = nsa_rng_int(0, 256), .seed = nsa_rng_u64()};
        lm_sample_opts b = a;
        b.top_p = 1.0f;
        uint64_t ra = a.seed, rb = b.seed;
        const int x = lm_sample_pick(lg, &a, &ra), y = lm_sample_pick(lg, &b, &rb);
        CHECK(x == y && ra == rb, "draw %d: top-p 1 gave byte %d, no top-p %d", i, y, x);
    }
}

/* Probabilities built by hand: 8 bytes with masses .30 .20 .15 .10 .10 .05 .05 .05 (two ties
 * at .10: the lower byte ranks first), every other byte -inf. With top_p = .70 the nucleus is
 * the top four (.30 + .20 + .15 = .65 < .70, + .10 reaches .75): the tied byte ranked fifth and
 * the .05s are never drawn, over many seeds; each of the four is drawn. top_k = 3 first leaves
 * three, and top_p then cuts those to the two whose mass reaches .70 of .65. */
static void nucleus_only(void) {
    static const double mass[8] = {.30, .20, .15, .10, .10, .05, .05, .05};
    float lg[LM_VOCAB];
    int byte[8];
    for (int v = 0; v < LM_VOCAB; v++) lg[v] = -INFINITY;
    for (int i = 0; i < 8; i++) { /* distinct random bytes, the tied pair in ascending order */
        int b;
        do b = nsa_rng_int(0, LM_VOCAB - 1);
        while (lg[b] != -INFINITY);
        byte[i] = b;
        lg[b] = (float)log(mass[i]);
    }
    if (byte[3] > byte[4]) {
        const int t = byte[3];
        byte[3] = byte[4];
        byte[4] = t;
    }
    const struct {
        int top_k, in;
        float top_p;
    } cfg[2] = {{0, 4, 0.70f}, {3, 2, 0.70f}};
    for (int c = 0; c < 2; c++) {
        int seen[LM_VOCAB] = {0};
        for (int i = 0; i < DRAWS; i++) {
            lm_sample_opts o = {.temperature = 1.0f, .top_k = cfg[c].top_k,
                                .seed = nsa_rng_u64(), .top_p = cfg[c].top_p};
            uint64_t rng = o.seed;
            seen[lm_sample_pick(lg, &o, &rng)]++;
        }
        for (int i = 0; i < 8; i++)
            CHECK((seen[byte[i]] > 0) == (i < cfg[c].in),
                  "top-k %d top-p %.2f: byte of mass %.2f drawn %d times of %d (nucleus: the "
                  "top %d)", cfg[c].top_k, (double)cfg[c].top_p, mass[i], seen[byte[i]], DRAWS,
                  cfg[c].in);
    }
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"top_p_tiny_is_greedy", top_p_tiny_is_greedy},
        {"top_p_one_is_off", top_p_one_is_off},
        {"nucleus_only", nucleus_only},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
