// SPDX-License-Identifier: Apache-2.0
/* test_lm_docs.c — training on packed documents (nsa train --documents, docs/varlen.md): a
 * model trained a few steps with packing computes, for one packed row, what it computes for
 * each document alone; the loss skips a document's last byte (its target is the next
 * document's first); the bundled corpus splits into its 66 books; a separator splits a text.
 * Not the library's varlen (tests/test_varlen*.c).
 */
#include "harness.h"
#include "lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lm_model_config tiny(void) {
    lm_model_config c = {.n_layer = 2, .dim = 16, .n_head = 4, .n_kv_head = 2, .ffn = 24,
                         .l = 4, .d = 2, .lp = 4, .n = 3, .w = 6, .phi = LM_PHI_AVG,
                         .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
    return c;
}

/* Cross-entropy in double of one row of logits against target y. */
static double row_ce(const float *lg, uint8_t y) {
    double mx = lg[0], s = 0.0;
    for (int v = 1; v < LM_VOCAB; v++) mx = lg[v] > mx ? lg[v] : mx;
    for (int v = 0; v < LM_VOCAB; v++) s += exp((double)lg[v] - mx);
    return mx + log(s) - (double)lg[y];
}

static void packed_row_equals_docs(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    lm_train_config tc;
    lm_train_config_default(&tc);
    tc.m = tiny();
    tc.lr = 1e-2f, tc.warmup = 1;
    lm_model m;
    char err[512];
    CHECK(lm_model_create(&m, &tc.m, ctx, nsa_rng_u64(), err, sizeof err) == 0, "%s", err);
    float *mo = calloc(m.nparams, 4), *ve = calloc(m.nparams, 4);
    enum { B = 2, T = 24 };
    uint8_t x[B * T], y[B * T], bound[B * T];
    /* a few packed steps: random text, random boundaries */
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < B * T; i++) {
            x[i] = (uint8_t)nsa_rng_int(0, 255), y[i] = (uint8_t)nsa_rng_int(0, 255);
            bound[i] = nsa_rng_int(0, 5) == 0;
        }
        float loss;
        CHECK(lm_model_set_docs(&m, bound, B, T, err, sizeof err) == 0, "%s", err);
        CHECK(lm_forward(&m, x, y, B, T, NULL, &loss, err, sizeof err) == 0, "%s", err);
        CHECK(lm_backward(&m, x, err, sizeof err) == 0, "%s", err);
        lm_adamw(&m, mo, ve, s + 1, lm_lr_at(&tc, s), &tc);
    }
    /* one packed row: documents [0, 5), [5, 6), [6, 16), [16, 24) */
    memset(bound, 0, sizeof bound);
    bound[4] = bound[5] = bound[15] = 1;
    static const int cu[5] = {0, 5, 6, 16, 24};
    for (int i = 0; i < T; i++)
        x[i] = (uint8_t)nsa_rng_int(0, 255), y[i] = (uint8_t)nsa_rng_int(0, 255);
    float lp;
    CHECK(lm_model_set_docs(&m, bound, 1, T, err, sizeof err) == 0, "%s", err);
    CHECK(m.doc_n == 4, "%d documents", m.doc_n);
    CHECK(lm_forward(&m, x, y, 1, T, NULL, &lp, err, sizeof err) == 0, "%s", err);
    float *packed = malloc(sizeof(float) * T * LM_VOCAB);
    memcpy(packed, m.logits, sizeof(float) * T * LM_VOCAB);
    CHECK(lm_model_set_docs(&m, NULL, 1, T, err, sizeof err) == 0);
    double worst = 0.0, scale = 0.0, sum = 0.0;
    int rows = 0;
    for (int d = 0; d < 4; d++) {
        const int s0 = cu[d], len = cu[d + 1] - cu[d];
        float ld;
        CHECK(lm_forward(&m, x + s0, y + s0, 1, len, NULL, &ld, err, sizeof err) == 0, "%s", err);
        for (int r = 0; r < len; r++) {
            const float *a = packed + (size_t)(s0 + r) * LM_VOCAB;
            const float *b = m.logits + (size_t)r * LM_VOCAB;
            for (int v = 0; v < LM_VOCAB; v++) {
                worst = fmax(worst, fabs((double)a[v] - b[v]));
                scale = fmax(scale, fabs((double)b[v]));
            }
            if (!bound[s0 + r]) { /* the loss the packed row should see: its own targets */
                sum += row_ce(b, y[s0 + r]);
                rows++;
            }
        }
    }
    /* f32 GEMMs over 24 rows and over one document's rows may round differently; the
     * attention itself is bitwise per document. 1e-5 relative is ~100 f32 ulps. */
    CHECK(worst <= 1e-5 * (1.0 + scale), "packed logits differ from the per-document "
          "forward by %g (scale %g)", worst, scale);
    CHECK(rows == T - 3 && fabs(lp - sum / rows) <= 1e-5 * (1.0 + fabs(lp)),
          "packed loss %g, per-document rows (a document's last byte left out) %g over %d rows",
          (double)lp, sum / rows, rows);
    /* attention really stops at the boundaries: the plain row differs after the first one */
    float lplain;
    CHECK(lm_forward(&m, x, y, 1, T, NULL, &lplain, err, sizeof err) == 0, "%s", err);
    double diff = 0.0;
    for (int i = cu[1] * LM_VOCAB; i < T * LM_VOCAB; i++)
        diff = fmax(diff, fabs((double)packed[i] - m.logits[i]));
    CHECK(diff > 1e-3 * (1.0 + scale), "the plain row equals the packed one (%g)", diff);
    /* no loss across a boundary: the target of a document's last byte changes nothing */
    float *g0 = malloc(sizeof(float) * m.nparams);
    float l0, l1;
    CHECK(lm_model_set_docs(&m, bound, 1, T, err, sizeof err) == 0, "%s", err);
    CHECK(lm_forward(&m, x, y, 1, T, NULL, &l0, err, sizeof err) == 0, "%s", err);
    CHECK(lm_backward(&m, x, err, sizeof err) == 0, "%s", err);
    memcpy(g0, m.grads, sizeof(float) * m.nparams);
    y[4] ^= 0x55, y[15] ^= 0x0f;
    CHECK(lm_forward(&m, x, y, 1, T, NULL, &l1, err, sizeof err) == 0, "%s", err);
    CHECK(lm_backward(&m, x, err, sizeof err) == 0, "%s", err);
    CHECK(l0 == l1 && !memcmp(g0, m.grads, sizeof(float) * m.nparams),
          "the loss (%g, %g) or a gradient depends on a target across a boundary", (double)l0,
          (double)l1);
    free(g0);
    free(packed);
    free(mo), free(ve);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
}

/* The bundled corpus: one document per book, 66, each opening at its chapter 1 verse 1. */
static void kjv_books(void) {
    const char *path = lm_default_corpus();
    if (!path) {
        nsa_test_skip("the built-in corpus is not in the build tree");
        return;
    }
    lm_corpus c;
    char err[512];
    CHECK(lm_corpus_load(&c, path, 64, err, sizeof err) == 0, "%s", err);
    CHECK(lm_corpus_documents(&c, "books", err, sizeof err) == 0, "%s", err);
    CHECK(c.ndocs == 66, "%lld books", (long long)c.ndocs);
    static const char *first[4] = {"Ge1:1 ", "Exo1:1 ", "Mal1:1 ", "Rev1:1 "};
    int k = 0, seen = 0;
    for (size_t i = 0; i < c.len; i++) {
        if (!c.starts[i]) continue;
        const size_t sp = (size_t)(strchr((const char *)c.bytes + i, ' ') - (const char *)c.bytes);
        CHECK(sp - i >= 4 && !memcmp(c.bytes + sp - 3, "1:1", 3) && (i == 0 || c.bytes[i - 1] == '\n'),
              "document %d opens with '%.12s'", k, (const char *)c.bytes + i);
        for (int f = 0; f < 4; f++) seen += !memcmp(c.bytes + i, first[f], strlen(first[f]));
        k++;
    }
    CHECK(seen == 4, "Genesis, Exodus, Malachi and Revelation each open a document (%d)", seen);
    lm_corpus_free(&c);
}

/* A separator (with escapes) starts each document; the separator stays at its start. */
static void separator_documents(void) {
    const char text[] = "alpha\n\nbeta gamma\n\ndelta\n\n";
    char path[64];
    snprintf(path, sizeof path, "/tmp/nsa_docs_%d.txt", nsa_rng_int(0, 1 << 30));
    FILE *f = fopen(path, "wb");
    CHECK(f);
    for (int i = 0; i < 12; i++) fputs(text, f); /* long enough for seq_len 8 in each split */
    fclose(f);
    lm_corpus c;
    char err[512];
    CHECK(lm_corpus_load(&c, path, 8, err, sizeof err) == 0, "%s", err);
    remove(path);
    CHECK(lm_corpus_documents(&c, "\\n\\n", err, sizeof err) == 0, "%s", err);
    CHECK(c.ndocs == 1 + 3 * 12, "%lld documents", (long long)c.ndocs);
    CHECK(c.starts[0] && c.starts[5] && c.bytes[5] == '\n' && c.starts[17] && !c.starts[6],
          "offsets of the first documents");
    /* a batch's bound marks exactly the targets that open a document: a separator's first
     * newline, after a letter */
    enum { B = 16, T = 8 };
    uint8_t x[B * T], y[B * T], bd[B * T];
    int marks = 0;
    for (int s = 0; s < 4; s++) {
        lm_batch(&c, 3, s, B, T, x, y, bd);
        for (int i = 0; i < B * T; i++) {
            marks += bd[i];
            CHECK(bd[i] == (y[i] == '\n' && x[i] != '\n'), "bound %d at '%c' -> '%c'", bd[i],
                  x[i], y[i]);
        }
    }
    CHECK(marks > 0);
    CHECK(lm_corpus_documents(&c, "", err, sizeof err) != 0 && strstr(err, "documents"), "%s",
          err);
    lm_corpus_free(&c);
}

static const nsa_case cases[] = {
    {"packed_row_equals_docs", packed_row_equals_docs},
    {"kjv_books", kjv_books},
    {"separator_documents", separator_documents},
};

int main(int argc, char **argv) {
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
