// SPDX-License-Identifier: Apache-2.0
/* test_lm_layers.c — each layer of the language model (lm/layers.c) against central finite
 * differences, the RoPE invariants (q and k rotate identically, so q·k depends only on the
 * relative position), gradient clipping and the learning-rate schedule.
 * Gradients are checked on L = Σ r·y for a random r: the analytic dL/dx is the layer's
 * backward with dy = r. Inputs are fp32; FD steps are large enough that fp32 rounding of L
 * stays far below the tolerance (|fd - an| ≤ 1e-2·max(1, |an|)).
 */
#include "harness.h"
#include "lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(int64_t n, double scale) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = (float)(nsa_rng_normal() * scale);
    return x;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* A layer under test: computes y from the inputs held in the fixture. */
typedef struct fixture fixture;
struct fixture {
    void (*fwd)(fixture *f);
    float *y, *r;
    int64_t ny;
    /* generic slots */
    float *x, *w, *aux, *aux2, *aux3, *aux4;
    int M, C, K, O, kind;
    float temp;
};

static double loss_of(fixture *f) {
    f->fwd(f);
    return dot(f->y, f->r, f->ny);
}

/* Checks d loss / d p[0..n) against an, by central differences with step h. */
static int fd_check(fixture *f, float *p, const float *an, int64_t n, double h, const char *what) {
    int bad = 0;
    for (int64_t i = 0; i < n && !bad; i++) {
        const float keep = p[i];
        p[i] = keep + (float)h;
        const double lp = loss_of(f);
        p[i] = keep - (float)h;
        const double lm = loss_of(f);
        p[i] = keep;
        const double fd = (lp - lm) / (2 * h), tol = 1e-2 * fmax(1.0, fabs(an[i]));
        if (!(fabs(fd - an[i]) <= tol)) {
            fprintf(stderr, "  %s[%lld]: fd %.6g analytic %.6g\n", what, (long long)i, fd, an[i]);
            bad = 1;
        }
    }
    return !bad;
}

static void f_matmul(fixture *f) { lm_matmul(f->y, f->x, f->w, f->M, f->K, f->O, 0); }

static void matmul_grad(void) {
    fixture f = {0};
    f.fwd = f_matmul;
    f.M = 5, f.K = 7, f.O = 3;
    f.x = rnd(f.M * f.K, 1), f.w = rnd(f.O * f.K, 1), f.r = rnd(f.M * f.O, 1);
    f.ny = f.M * f.O;
    f.y = rnd(f.ny, 0);
    float *dx = calloc((size_t)(f.M * f.K), 4), *dw = calloc((size_t)(f.O * f.K), 4);
    lm_matmul_backward(dx, dw, f.r, f.x, f.w, f.M, f.K, f.O, 0);
    CHECK(fd_check(&f, f.x, dx, f.M * f.K, 1e-2, "dx"));
    CHECK(fd_check(&f, f.w, dw, f.O * f.K, 1e-2, "dW"));
    free(dx), free(dw), free(f.x), free(f.w), free(f.r), free(f.y);
}

static void f_rms(fixture *f) { lm_rmsnorm(f->y, f->aux, f->x, f->w, f->M, f->C); }

static void rmsnorm_grad(void) {
    fixture f = {0};
    f.fwd = f_rms;
    f.M = 4, f.C = 9;
    f.x = rnd(f.M * f.C, 1), f.w = rnd(f.C, 1), f.r = rnd(f.M * f.C, 1), f.aux = rnd(f.M, 0);
    f.ny = f.M * f.C;
    f.y = rnd(f.ny, 0);
    f_rms(&f);
    float *dx = calloc((size_t)f.ny, 4), *dw = calloc((size_t)f.C, 4);
    lm_rmsnorm_backward(dx, dw, f.r, f.x, f.w, f.aux, f.M, f.C);
    CHECK(fd_check(&f, f.x, dx, f.ny, 1e-2, "dx"));
    CHECK(fd_check(&f, f.w, dw, f.C, 1e-2, "dw"));
    free(dx), free(dw), free(f.x), free(f.w), free(f.r), free(f.y), free(f.aux);
}

static void f_swiglu(fixture *f) { lm_swiglu(f->y, f->x, f->w, f->ny); }

static void swiglu_grad(void) {
    fixture f = {0};
    f.fwd = f_swiglu;
    f.ny = 40;
    f.x = rnd(f.ny, 2), f.w = rnd(f.ny, 1), f.r = rnd(f.ny, 1), f.y = rnd(f.ny, 0);
    float *da = calloc((size_t)f.ny, 4), *db = calloc((size_t)f.ny, 4);
    lm_swiglu_backward(da, db, f.r, f.x, f.w, f.ny);
    CHECK(fd_check(&f, f.x, da, f.ny, 1e-2, "da"));
    CHECK(fd_check(&f, f.w, db, f.ny, 1e-2, "db"));
    free(da), free(db), free(f.x), free(f.w), free(f.r), free(f.y);
}

static void f_gates(fixture *f) { lm_gates(f->y, f->x, f->M, f->kind, f->temp); }

static void gates_grad_kind(int kind, float temp) {
    fixture f = {0};
    f.fwd = f_gates;
    f.M = 6, f.kind = kind, f.temp = temp;
    f.ny = 3 * f.M;
    f.x = rnd(f.ny, 2), f.r = rnd(f.ny, 1), f.y = rnd(f.ny, 0);
    f_gates(&f);
    float *dz = calloc((size_t)f.ny, 4);
    lm_gates_backward(dz, f.r, f.y, f.M, kind, temp);
    CHECK(fd_check(&f, f.x, dz, f.ny, 1e-2, "dz"));
    if (kind == LM_GATE_SOFTMAX)
        for (int i = 0; i < f.M; i++)
            CHECK(fabs(f.y[3 * i] + f.y[3 * i + 1] + f.y[3 * i + 2] - 1.0) < 1e-6, "softmax row %d", i);
    free(dz), free(f.x), free(f.r), free(f.y);
}
static void gates_sigmoid_grad(void) { gates_grad_kind(LM_GATE_SIGMOID, 1.0f); }
static void gates_softmax_grad(void) { gates_grad_kind(LM_GATE_SOFTMAX, 0.7f); }

static void cross_entropy_grad(void) {
    const int M = 3, V = 11;
    float *lg = rnd(M * V, 2), *pr = rnd(M * V, 0), *dl = rnd(M * V, 0);
    uint8_t t[3] = {1, 7, 10};
    /* unmasked, then row 1 masked out (a document's last byte): no loss, no gradient there */
    static const uint8_t mask1[3] = {1, 0, 1};
    const uint8_t *masks[2] = {NULL, mask1};
    for (int k = 0; k < 2; k++) {
        const uint8_t *mk = masks[k];
        lm_cross_entropy(pr, lg, t, mk, M, V);
        lm_cross_entropy_backward(dl, pr, t, mk, M, V, 0);
        for (int i = 0; i < M * V; i++) {
            const float keep = lg[i], h = 1e-2f;
            lg[i] = keep + h;
            double lp = lm_cross_entropy(pr, lg, t, mk, M, V);
            lg[i] = keep - h;
            double lm = lm_cross_entropy(pr, lg, t, mk, M, V);
            lg[i] = keep;
            double fd = (lp - lm) / (2 * h);
            CHECK(fabs(fd - dl[i]) < 1e-3, "mask %d: dlogits[%d]: fd %g analytic %g", k, i, fd,
                  dl[i]);
            if (mk && !mk[i / V]) CHECK(dl[i] == 0.0f, "masked row %d has a gradient", i / V);
        }
    }
    /* the loss of uniform logits is ln V */
    memset(lg, 0, sizeof(float) * M * V);
    CHECK(fabs(lm_cross_entropy(pr, lg, t, NULL, M, V) - log((double)V)) < 1e-6);
    free(lg), free(pr), free(dl);
}

/* learnable φ: B=2, T=11, Hkv=2, D=4, l=4, d=2 → Tc = 4 blocks */
enum { PB = 2, PT = 11, PH = 2, PD = 4, PL = 4, PS = 2 };
static void f_phi(fixture *f) {
    lm_phi(f->y, f->aux, f->aux2, f->x, f->w, f->aux3, f->aux4, PB, PT, PH, PD, PL, PS);
}

static void phi_grad(void) {
    const int Tc = (PT - PL) / PS + 1, M = PB * Tc * PH;
    fixture f = {0};
    f.fwd = f_phi;
    f.ny = (int64_t)M * PD;
    f.x = rnd(PB * PT * PH * PD, 1), f.w = rnd(PL * PD, 0.5), f.aux3 = rnd(PD * PL * PD, 0.3);
    f.aux4 = rnd(PD * PD, 0.5), f.aux = rnd(M * PL * PD, 0), f.aux2 = rnd(2 * M * PD, 0);
    f.r = rnd(f.ny, 1), f.y = rnd(f.ny, 0);
    f_phi(&f);
    float *draw = calloc((size_t)(PB * PT * PH * PD), 4), *dpe = calloc(PL * PD, 4);
    float *dw1 = calloc(PD * PL * PD, 4), *dw2 = calloc(PD * PD, 4);
    float *work = calloc((size_t)(M * (PL * PD + 2 * PD)), 4);
    lm_phi_backward(draw, dpe, dw1, dw2, f.r, f.aux, f.aux2, f.aux3, f.aux4, PB, PT, PH, PD, PL,
                    PS, work);
    CHECK(fd_check(&f, f.x, draw, PB * PT * PH * PD, 1e-2, "draw"));
    CHECK(fd_check(&f, f.w, dpe, PL * PD, 1e-2, "dpe"));
    CHECK(fd_check(&f, f.aux3, dw1, PD * PL * PD, 1e-2, "dW1"));
    CHECK(fd_check(&f, f.aux4, dw2, PD * PD, 1e-2, "dW2"));
    /* with W2 = 0, φ is the mean of the block (the library's avg) */
    memset(f.aux4, 0, sizeof(float) * PD * PD);
    f_phi(&f);
    double err = 0;
    for (int e = 0; e < PD; e++) {
        double m = 0;
        for (int r = 0; r < PL; r++) m += f.x[(r * PH + 0) * PD + e];
        err = fmax(err, fabs(m / PL - f.y[e]));
    }
    CHECK(err < 1e-6, "phi with W2 = 0 differs from the block mean by %g", err);
    free(draw), free(dpe), free(dw1), free(dw2), free(work);
    free(f.x), free(f.w), free(f.aux), free(f.aux2), free(f.aux3), free(f.aux4), free(f.r), free(f.y);
}

/* q and k go through one function with one table: rotating both by the same extra offset s
 * leaves every q·k unchanged (it depends on p_q - p_k only), and the backward (inverse) undoes
 * the rotation. Frequencies are base^(-2i/D) for pair i. */
static void rope_relative(void) {
    const int D = 16, P = 300;
    float *c = malloc(sizeof(float) * P * D / 2), *s = malloc(sizeof(float) * P * D / 2);
    lm_rope_table(c, s, P, D, 10000.0f);
    for (int i = 0; i < D / 2; i++) {
        double want = pow(10000.0, -2.0 * i / D);
        CHECK(fabs(atan2(s[D / 2 + i], c[D / 2 + i]) - want) < 1e-6, "frequency of pair %d", i);
    }
    float q[16], k[16], q2[16], k2[16];
    for (int trial = 0; trial < 20; trial++) {
        for (int e = 0; e < D; e++) q[e] = (float)nsa_rng_normal(), k[e] = (float)nsa_rng_normal();
        const int pq = nsa_rng_int(0, 140), pk = nsa_rng_int(0, 140), sh = nsa_rng_int(1, 150);
        memcpy(q2, q, sizeof q), memcpy(k2, k, sizeof k);
        float a[16], b[16];
        memcpy(a, q, sizeof q), memcpy(b, k, sizeof k);
        lm_rope(a, c, s, 1, 1, 1, D, pq, 0);
        lm_rope(b, c, s, 1, 1, 1, D, pk, 0);
        lm_rope(q2, c, s, 1, 1, 1, D, pq + sh, 0);
        lm_rope(k2, c, s, 1, 1, 1, D, pk + sh, 0);
        const double d1 = dot(a, b, D), d2 = dot(q2, k2, D);
        CHECK(fabs(d1 - d2) < 1e-4 * (1 + fabs(d1)), "q.k at (%d,%d) = %g, shifted by %d: %g", pq,
              pk, d1, sh, d2);
        lm_rope(a, c, s, 1, 1, 1, D, pq, 1);
        for (int e = 0; e < D; e++) CHECK(fabs(a[e] - q[e]) < 1e-5, "inverse rotation");
    }
    free(c), free(s);
}

static void schedule_and_clip(void) {
    lm_train_config c;
    lm_train_config_default(&c);
    c.steps = 100, c.warmup = 10, c.lr = 1e-3f, c.lr_min_ratio = 0.1f;
    CHECK(fabs(lm_lr_at(&c, 0) - 1e-4) < 1e-9, "warm-up starts at lr/warmup");
    CHECK(fabs(lm_lr_at(&c, 9) - 1e-3) < 1e-9, "warm-up ends at lr");
    CHECK(fabs(lm_lr_at(&c, 99) - 1e-4) < 1e-9, "cosine ends at lr·lr_min_ratio");
    for (int s = 10; s < 99; s++) CHECK(lm_lr_at(&c, s + 1) <= lm_lr_at(&c, s), "cosine decays");
    float g[4] = {3, 4, 0, 0};
    CHECK(fabs(lm_clip_grads(g, 4, 1.0f) - 5.0f) < 1e-6 && fabs(g[0] - 0.6f) < 1e-6);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"matmul_grad", matmul_grad},
        {"rmsnorm_grad", rmsnorm_grad},
        {"swiglu_grad", swiglu_grad},
        {"gates_sigmoid_grad", gates_sigmoid_grad},
        {"gates_softmax_grad", gates_softmax_grad},
        {"cross_entropy_grad", cross_entropy_grad},
        {"phi_grad", phi_grad},
        {"rope_relative", rope_relative},
        {"schedule_and_clip", schedule_and_clip},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
