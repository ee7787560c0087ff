// SPDX-License-Identifier: Apache-2.0
/* optim.c — AdamW with decoupled weight decay, the warm-up + cosine schedule, global-norm
 * gradient clipping, and the one RNG of the model code (splitmix64).
 * Not a general optimizer library: it walks the model's parameter table.
 * Invariant: a step is a pure function of (params, grads, moments, t, lr): no hidden state, so a
 * resumed run repeats an uninterrupted one bit for bit.
 */
#include "lm.h"

#include <math.h>

uint64_t lm_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double lm_rng_uniform(uint64_t *s) { return (double)(lm_rng_next(s) >> 11) * 0x1.0p-53; }

float lm_rng_normal(uint64_t *s) {
    double u1 = lm_rng_uniform(s), u2 = lm_rng_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

float lm_lr_at(const lm_train_config *c, int step) {
    if (step < c->warmup) return c->lr * (float)(step + 1) / (float)c->warmup;
    const int span = c->steps - c->warmup;
    double frac = span > 1 ? (double)(step - c->warmup) / (double)(span - 1) : 1.0;
    if (frac > 1.0) frac = 1.0;
    const double lo = (double)c->lr * c->lr_min_ratio;
    return (float)(lo + 0.5 * ((double)c->lr - lo) * (1.0 + cos(3.141592653589793 * frac)));
}

float lm_clip_grads(float *g, size_t n, float clip) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    const float norm = (float)sqrt(ss);
    if (clip > 0 && norm > clip) {
        const float s = clip / norm;
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}

void lm_adamw(const lm_model *m, float *mom, float *vel, int t, float lr,
              const lm_train_config *c) {
    m->be->adamw(m->params, m->grads, mom, vel, m->decay, m->nparams, t, lr, c->beta1, c->beta2,
                 c->eps, c->weight_decay);
}
