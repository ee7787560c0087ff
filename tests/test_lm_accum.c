// SPDX-License-Identifier: Apache-2.0
/* test_lm_accum.c — gradient accumulation (grad_accum) in `nsa train`: 2 micro-batches of 2
 * sequences give the step of one batch of 4 (same rows: the global batch of lm_batch), in the
 * loss and gradient norm of each step and in the parameters and AdamW moments after 2 steps,
 * with plain rows and with packed documents (micro-batches of unequal loss rows); and a run with
 * grad_accum repeats itself bit for bit, interrupted and resumed or not.
 * Not a test of the layers (test_lm_model) nor of the plain resume (test_lm_train).
 */
#include "harness.h"
#include "lm.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void mkdir_tmp(void) {
    snprintf(dir, sizeof dir, "/tmp/nsa_accum_test_XXXXXX");
    if (!mkdtemp(dir)) dir[0] = 0;
}

static void rm_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (dir[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* A tiny corpus of sentences (each word a document when packing: micro-batches of unequal
 * loss rows). */
static void write_corpus(char *path, size_t n) {
    snprintf(path, n, "%s/corpus.txt", dir);
    static const char *w[] = {"light", "earth", "water", "day", "night", "God", "saw", "good"};
    FILE *f = fopen(path, "wb");
    if (!f) return;
    for (int i = 0; i < 120; i++)
        fprintf(f, "And the %s was %s %d. ", w[i % 8], w[(i * 5 + 3) % 8], i);
    fclose(f);
}

/* 2 steps, no clipping (a clipped gradient would hide its scale), a record every step. */
static void config(lm_train_config *c, const char *corpus, const char *out, int batch, int accum,
                   int docs) {
    lm_train_config_default(c);
    c->m = (lm_model_config){.n_layer = 2, .dim = 16, .n_head = 4, .n_kv_head = 2, .ffn = 24,
                             .l = 4, .d = 2, .lp = 4, .n = 3, .w = 8, .phi = LM_PHI_AVG,
                             .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
    c->seq_len = 24, c->batch = batch, c->grad_accum = accum, c->steps = 2, c->warmup = 1;
    c->lr = 1e-2f, c->clip = 0.0f, c->threads = 1;
    c->log_every = 1, c->eval_every = 100, c->eval_batches = 1, c->ckpt_every = 100;
    snprintf(c->data, sizeof c->data, "%s", corpus);
    snprintf(c->out, sizeof c->out, "%s", out);
    if (docs) snprintf(c->documents, sizeof c->documents, " ");
}

/* The loss and grad_norm of the progress records of out/heartbeat.jsonl, in order; the count. */
static int read_progress(const char *out, double *loss, double *norm, int cap) {
    char path[200], line[4096];
    snprintf(path, sizeof path, "%s/heartbeat.jsonl", out);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int k = 0;
    while (fgets(line, sizeof line, f)) {
        const char *l = strstr(line, "\"loss\":"), *g = strstr(line, "\"grad_norm\":");
        if (!strstr(line, "\"msg\":\"progress\"") || !l || !g || k == cap) continue;
        loss[k] = strtod(l + 7, NULL);
        norm[k++] = strtod(g + 12, NULL);
    }
    fclose(f);
    return k;
}

/* Params, then AdamW m, then v of out/model.safetensors into p (3 · nparams). */
static int read_state(const lm_train_config *c, const char *out, float *p, size_t np) {
    nsa_context *ctx;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return -1;
    lm_model m;
    char err[512], path[200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    int rc = lm_model_create(&m, &c->m, ctx, 1, err, sizeof err);
    if (!rc && m.nparams != np) rc = -1;
    lm_ckpt_meta meta;
    if (!rc) rc = lm_ckpt_load(path, &m, p + np, p + 2 * np, &meta, err, sizeof err);
    if (!rc) memcpy(p, m.hparams, sizeof(float) * np);
    if (rc) fprintf(stderr, "read_state %s: %s\n", path, err);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    return rc;
}

static size_t nparams(const lm_train_config *c) {
    nsa_context *ctx;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return 0;
    lm_model m;
    char err[512];
    size_t n = lm_model_create(&m, &c->m, ctx, 1, err, sizeof err) ? 0 : m.nparams;
    if (n) lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    return n;
}

static void equals_global(int docs) {
    mkdir_tmp();
    CHECK(dir[0]);
    char corpus[128], o1[128], o2[128];
    write_corpus(corpus, sizeof corpus);
    snprintf(o1, sizeof o1, "%s/global", dir);
    snprintf(o2, sizeof o2, "%s/accum", dir);
    lm_train_config g, a;
    config(&g, corpus, o1, 4, 1, docs);
    config(&a, corpus, o2, 2, 2, docs);
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&g, &o) == 0 && lm_train(&a, &o) == 0);
    double lg[4], ng[4], la[4], na[4];
    CHECK(read_progress(o1, lg, ng, 4) == 2 && read_progress(o2, la, na, 4) == 2);
    const size_t np = nparams(&g);
    CHECK(np > 0);
    float *sg = malloc(3 * np * sizeof(float)), *sa = malloc(3 * np * sizeof(float));
    CHECK(sg && sa);
    CHECK(read_state(&g, o1, sg, np) == 0 && read_state(&a, o2, sa, np) == 0);
    /* Where the two may differ: per row, the forward and the backward are the same arithmetic
     * (the same 1/rows in dlogits); only the parameter gradients' sums over the K = 4·24 rows
     * run in another order (2 partial sums of K/2, then one addition), so each differs by at
     * most 2·K·u·Σ|terms| ≈ 192·u·|g|·c, c the cancellation (Σ|terms| / |Σ terms|). The loss
     * (a mean of K positive terms, in double then float) differs by a few u. In step 2 the
     * weights differ by lr · δ(m̂ / (√v̂ + eps)) ≤ lr · (relative gradient error) for |g| ≫ eps,
     * about 1e-2 · 1e-4 even with cancellation c = 10: so 1e-5 relative to each quantity's
     * largest magnitude bounds a correct run, while a missing micro-batch or a doubled
     * division moves the loss, the norm or the moments by tens of percent. */
    const double u = FLT_EPSILON / 2, tol_loss = 64 * u, tol = 1e-5;
    for (int s = 0; s < 2; s++) {
        CHECK(fabs(lg[s] - la[s]) <= tol_loss * fabs(lg[s]), "step %d loss: global %.9g, "
              "accumulated %.9g", s + 1, lg[s], la[s]);
        CHECK(fabs(ng[s] - na[s]) <= tol * ng[s], "step %d grad_norm: global %.9g, accumulated "
              "%.9g", s + 1, ng[s], na[s]);
    }
    static const char *const what[3] = {"params", "adam m", "adam v"};
    for (int k = 0; k < 3; k++) {
        const float *x = sg + k * np, *y = sa + k * np;
        double mx = 0.0, worst = 0.0;
        size_t at = 0;
        for (size_t i = 0; i < np; i++) mx = fmax(mx, fabs((double)x[i]));
        for (size_t i = 0; i < np; i++)
            if (fabs((double)x[i] - y[i]) > worst) worst = fabs((double)x[i] - y[i]), at = i;
        CHECK(mx > 0 && worst <= tol * mx, "%s[%zu]: global %.9g, accumulated %.9g (max |%s| "
              "%.3g)", what[k], at, x[at], y[at], what[k], mx);
    }
    free(sg), free(sa);
    rm_tmp();
}

static void equals_global_rows(void) { equals_global(0); }
static void equals_global_docs(void) { equals_global(1); }

static int same_file(const char *a, const char *b) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* grad_accum 2, 3 steps: twice uninterrupted, and stopped after 1 step then resumed. */
static void bitwise_resume(void) {
    mkdir_tmp();
    CHECK(dir[0]);
    char corpus[128], out[3][128], ck[3][160];
    write_corpus(corpus, sizeof corpus);
    lm_train_config c;
    for (int r = 0; r < 3; r++) {
        snprintf(out[r], sizeof out[r], "%s/r%d", dir, r);
        snprintf(ck[r], sizeof ck[r], "%s/model.safetensors", out[r]);
        config(&c, corpus, out[r], 2, 2, 0);
        c.steps = 3;
        lm_train_opts o = {NULL, 1, NULL, r == 2 ? 1 : 0};
        CHECK(lm_train(&c, &o) == 0);
    }
    lm_ckpt_meta meta;
    char err[512];
    CHECK(lm_ckpt_read_meta(ck[2], &meta, err, sizeof err) == 0 && meta.step == 1, "step %lld",
          (long long)meta.step);
    CHECK(!same_file(ck[0], ck[2]), "the interrupted run already equals the full one");
    lm_train_opts o = {ck[2], 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    CHECK(same_file(ck[0], ck[1]), "two runs with grad_accum 2 differ");
    CHECK(same_file(ck[0], ck[2]), "the resumed run differs from the uninterrupted one");
    rm_tmp();
}

int main(int argc, char **argv) {
    const nsa_case cases[] = {
        {"equals_global_rows", equals_global_rows},
        {"equals_global_docs", equals_global_docs},
        {"bitwise_resume", bitwise_resume},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
