// SPDX-License-Identifier: Apache-2.0
/* test_harden_ckpt.c — checkpoints that are cut, edited or foreign (issue 13): a header that
 * ends inside a number list, a negative or non-numeric step, an edited header byte, data_offsets
 * that overlap or leave a gap, an unknown format tag, and a plain safetensors file as Python's
 * `safetensors` writes it (bf16/f16/f32, any tensor order, no optimizer state), which must load
 * as weights only and say what is missing.
 * The checksum is recomputed here by its own FNV-1a (the format of docs/hardening.md), so an
 * edited file that is correctly resealed tests the parser, not the checksum.
 */
#define _GNU_SOURCE /* memmem */
#include "harness.h"
#include "lm.h"
#include "lm_test_util.h"

#include <stdlib.h>
#include <string.h>

static lm_model_config tiny(void) {
    return (lm_model_config){.n_layer = 1, .dim = 8, .n_head = 2, .n_kv_head = 1, .ffn = 12,
                             .l = 4, .d = 2, .lp = 4, .n = 3, .w = 4, .phi = LM_PHI_AVG,
                             .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
}

/* The checksum of nsa-lm-2: FNV-1a 64 over the whole file with the 16 hex digits of the
 * checksum value read as '0'. Rewrites them in place. */
static void reseal(uint8_t *b, size_t n) {
    char *c = memmem(b, n, "\"checksum\":\"", 12);
    if (!c) return;
    c += 12;
    memset(c, '0', 16);
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    memcpy(c, hex, 16);
}

/* Replaces the first `from` after `after` in b[0..n) by `to` of the same length. */
static int edit(uint8_t *b, size_t n, const char *after, const char *from, const char *to) {
    char *a = memmem(b, n, after, strlen(after));
    if (!a || strlen(from) != strlen(to)) return -1;
    char *p = memmem(a, n - (size_t)((uint8_t *)a - b), from, strlen(from));
    if (!p) return -1;
    memcpy(p, to, strlen(to));
    return 0;
}

typedef struct {
    nsa_context *ctx;
    lm_model m;
    float *mom, *vel;
    char path[128], bad[128], err[512];
    uint8_t *good;
    size_t n;
} fixture;

/* A tiny model saved with moments at step 123. */
static int fx_init(fixture *f) {
    memset(f, 0, sizeof *f);
    lmt_mkdir();
    if (!lmt_dir[0] || nsa_context_create(&f->ctx, NULL, 0) != NSA_OK) return -1;
    lm_model_config c = tiny();
    if (lm_model_create(&f->m, &c, f->ctx, 7, f->err, sizeof f->err)) return -1;
    f->mom = calloc(f->m.nparams, 4), f->vel = calloc(f->m.nparams, 4);
    lm_ckpt_meta meta = {123, 5, 0xabcdefULL, "", 0, ""};
    lm_model_config_str(&c, meta.config, sizeof meta.config);
    snprintf(f->path, sizeof f->path, "%s/a.safetensors", lmt_dir);
    snprintf(f->bad, sizeof f->bad, "%s/bad.safetensors", lmt_dir);
    if (lm_ckpt_save(f->path, &f->m, f->mom, f->vel, &meta, f->err, sizeof f->err)) return -1;
    f->good = (uint8_t *)lmt_slurp(f->path, &f->n);
    return f->good ? 0 : -1;
}

static void fx_free(fixture *f) {
    free(f->good), free(f->mom), free(f->vel);
    lm_model_destroy(&f->m);
    nsa_context_destroy(f->ctx);
    lmt_rmdir();
}

/* Loads b as a checkpoint with moments; 0 on success, the message in f->err. */
static int load_bytes(fixture *f, const uint8_t *b, size_t n, lm_ckpt_meta *meta) {
    if (lmt_spit(f->bad, b, n)) return -2;
    return lm_ckpt_load(f->bad, &f->m, f->mom, f->vel, meta, f->err, sizeof f->err);
}

/* A header that ends inside a number list: ints() ran strtoll past the header into whatever
 * followed (past the malloc'd file when nothing did; ASan). */
static void header_ends_in_list(void) {
    static const char *heads[] = {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,2",
                                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[12345678", "{\"a\":{\"shape\":[",
                                  "{\"__metadata__\":{\"step\":\"12"};
    fixture f;
    CHECK(fx_init(&f) == 0, "%s", f.err);
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        const size_t hl = strlen(heads[i]);
        uint8_t *b = malloc(8 + hl);
        for (int k = 0; k < 8; k++) b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
        memcpy(b + 8, heads[i], hl);
        lm_ckpt_meta meta;
        CHECK(lmt_spit(f.bad, b, 8 + hl) == 0);
        free(b);
        CHECK(lm_ckpt_read_meta(f.bad, &meta, f.err, sizeof f.err) != 0 && strstr(f.err, "corrupt"),
              "header %zu: %s", i, f.err);
    }
    fx_free(&f);
}

/* One edited header byte (the seed 5 -> 6) went unnoticed: the checksum covered the data only. */
static void checksum_covers_header(void) {
    fixture f;
    CHECK(fx_init(&f) == 0, "%s", f.err);
    lm_ckpt_meta meta;
    CHECK(load_bytes(&f, f.good, f.n, &meta) == 0, "the good file: %s", f.err);
    CHECK(meta.step == 123 && meta.seed == 5 && !meta.weights_only);
    CHECK(edit(f.good, f.n, "\"seed\"", "\"5\"", "\"6\"") == 0);
    CHECK(load_bytes(&f, f.good, f.n, &meta) != 0 && strstr(f.err, "checksum"), "%s", f.err);
    fx_free(&f);
}

/* A negative step (resealed, so only the parser can refuse it) made the resumed loader write
 * before its buffer (lm/data.c s % SLOTS); and the loader itself must refuse a negative start. */
static void negative_step(void) {
    fixture f;
    CHECK(fx_init(&f) == 0, "%s", f.err);
    CHECK(edit(f.good, f.n, "\"step\"", "\"123\"", "\"-12\"") == 0);
    reseal(f.good, f.n);
    lm_ckpt_meta meta;
    CHECK(load_bytes(&f, f.good, f.n, &meta) != 0 && strstr(f.err, "step"), "%s", f.err);
    lm_corpus cor;
    uint8_t text[300];
    for (int i = 0; i < 300; i++) text[i] = (uint8_t)('a' + i % 26);
    char cp[128];
    snprintf(cp, sizeof cp, "%s/c.txt", lmt_dir);
    CHECK(lmt_spit(cp, text, sizeof text) == 0);
    CHECK(lm_corpus_load(&cor, cp, 8, f.err, sizeof f.err) == 0, "%s", f.err);
    lm_loader *L = lm_loader_start(&cor, 1, -3, 2, 8);
    CHECK(L == NULL, "the loader started at step -3");
    lm_corpus_free(&cor);
    fx_free(&f);
}

/* step "abc" resumed from step 0 with trained weights. */
static void step_not_a_number(void) {
    static const char *bad[] = {"\"abc\"", "\"1e2\"", "\" 12\"", "\"+12\""};
    fixture f;
    CHECK(fx_init(&f) == 0, "%s", f.err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *b = malloc(f.n);
        memcpy(b, f.good, f.n);
        char to[8];
        snprintf(to, sizeof to, "%.5s", bad[i]);
        const int e = edit(b, f.n, "\"step\"", "\"123\"", to);
        reseal(b, f.n);
        lm_ckpt_meta meta;
        const int rc = e == 0 ? load_bytes(&f, b, f.n, &meta) : -9;
        free(b);
        CHECK(e == 0 && rc != 0 && strstr(f.err, "step"), "step %s: %s", bad[i], f.err);
    }
    fx_free(&f);
}

/* data_offsets of ln2 pointed at ln1's bytes (both (C) floats): loaded wrong weights. */
static void offsets_must_tile(void) {
    fixture f;
    CHECK(fx_init(&f) == 0, "%s", f.err);
    char *p = memmem(f.good, f.n, "\"layers.0.ln1\"", 14), *q = memmem(f.good, f.n, "\"layers.0.ln2\"", 14);
    CHECK(p && q);
    char *po = strstr(p, "data_offsets\":["), *qo = strstr(q, "data_offsets\":[");
    CHECK(po && qo);
    po += 15, qo += 15;
    const size_t pl = strcspn(po, "]"), ql = strcspn(qo, "]");
    CHECK(pl <= ql, "offsets text %zu > %zu", pl, ql);
    memset(qo, ' ', ql); /* JSON allows the spaces */
    memcpy(qo, po, pl);
    reseal(f.good, f.n);
    lm_ckpt_meta meta;
    CHECK(load_bytes(&f, f.good, f.n, &meta) != 0 && strstr(f.err, "data_offsets"), "%s", f.err);
    fx_free(&f);
}

/* An unknown format tag was never looked at. */
static void format_tag_checked(void) {
    fixture f;
    CHECK(fx_init(&f) == 0, "%s", f.err);
    char *t = memmem(f.good, f.n, "\"nsa-lm-", 8);
    CHECK(t != NULL);
    t[8] = '9';
    reseal(f.good, f.n);
    lm_ckpt_meta meta;
    CHECK(load_bytes(&f, f.good, f.n, &meta) != 0 && strstr(f.err, "format"), "%s", f.err);
    fx_free(&f);
}

/* What Python's safetensors writes: header {"__metadata__":{"format":"pt"}, tensors...} in its
 * own order, data in another, mixed dtypes, padded with spaces to 8 bytes; no optimizer state,
 * no step, no checksum. The values must arrive converted exactly (bf16/f16 -> f32). */
static void plain_safetensors(void) {
    fixture f;
    CHECK(fx_init(&f) == 0, "%s", f.err);
    lm_model *m = &f.m;
    const int nt = m->ntensors;
    char *head = malloc(256 + 160 * (size_t)nt);
    size_t hl = (size_t)sprintf(head, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint8_t *data = malloc(4 * m->nparams);
    float *want = malloc(4 * m->nparams);
    size_t off = 0;
    for (int k = 0; k < nt; k++) {
        const int i = nt - 1 - k; /* data in reverse table order */
        const lm_tensor_info *ti = &m->tensors[i];
        const int dt = i % 3; /* 0 F32, 1 BF16, 2 F16 */
        const size_t cnt = (size_t)(ti->shape[0] * ti->shape[1]), es = dt ? 2 : 4;
        for (size_t e = 0; e < cnt; e++) {
            const float x = (float)nsa_rng_normal() * 0.1f;
            uint8_t *dst = data + off + e * es;
            if (dt == 0) memcpy(dst, &x, 4), want[ti->off + e] = x;
            else {
                const uint16_t h = dt == 1 ? nsa_f32_to_bf16(x) : nsa_f32_to_f16(x);
                memcpy(dst, &h, 2);
                want[ti->off + e] = dt == 1 ? nsa_bf16_to_f32(h) : nsa_f16_to_f32(h);
            }
        }
        char shape[48];
        if (ti->ndim == 1) snprintf(shape, sizeof shape, "[%lld]", (long long)ti->shape[0]);
        else snprintf(shape, sizeof shape, "[%lld,%lld]", (long long)ti->shape[0], (long long)ti->shape[1]);
        hl += (size_t)sprintf(head + hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                              ti->name, dt == 0 ? "F32" : dt == 1 ? "BF16" : "F16", shape, off,
                              off + cnt * es);
        off += cnt * es;
    }
    const size_t end = off, close = hl; /* an extra tensor only the second file names */
    hl += (size_t)sprintf(head + hl, "}");
    while (hl % 8) head[hl++] = ' ';
    char *head2 = malloc(hl + 100);
    size_t hl2 = (size_t)sprintf(head2, "%.*s,\"extra.bias\":{\"dtype\":\"F32\",\"shape\":[1],"
                                 "\"data_offsets\":[%zu,%zu]}}", (int)close, head, end, end + 4);
    while (hl2 % 8) head2[hl2++] = ' ';
    uint8_t *file = malloc(8 + hl2 + off + 4);
    for (int b = 0; b < 8; b++) file[b] = (uint8_t)((uint64_t)hl >> (8 * b));
    memcpy(file + 8, head, hl);
    memcpy(file + 8 + hl, data, off);
    lm_ckpt_meta meta;
    for (size_t i = 0; i < m->nparams; i++) f.mom[i] = 1.0f;
    CHECK(lmt_spit(f.bad, file, 8 + hl + off) == 0);
    CHECK(lm_ckpt_read_meta(f.bad, &meta, f.err, sizeof f.err) == 0, "read_meta: %s", f.err);
    lm_model_config got, c = tiny();
    CHECK(lm_model_config_parse(&got, meta.config, f.err, sizeof f.err) == 0, "%s", f.err);
    CHECK(got.dim == c.dim && got.n_layer == c.n_layer && got.n_head == c.n_head &&
          got.n_kv_head == c.n_kv_head && got.ffn == c.ffn, "inferred config %s", meta.config);
    CHECK(load_bytes(&f, file, 8 + hl + off, &meta) == 0, "plain file: %s", f.err);
    CHECK(meta.weights_only && meta.step == 0, "weights_only %d step %lld", meta.weights_only,
          (long long)meta.step);
    CHECK(strstr(meta.note, "optimizer") && strstr(meta.note, "checksum"), "note: %s", meta.note);
    CHECK(memcmp(m->params, want, 4 * m->nparams) == 0, "weights differ from the file's");
    CHECK(f.mom[0] == 0.0f && f.mom[m->nparams - 1] == 0.0f, "moments not reset");
    /* an extra tensor this model does not have is refused, not ignored */
    for (int b = 0; b < 8; b++) file[b] = (uint8_t)((uint64_t)hl2 >> (8 * b));
    memcpy(file + 8, head2, hl2);
    memcpy(file + 8 + hl2, data, off);
    memset(file + 8 + hl2 + off, 0, 4);
    CHECK(load_bytes(&f, file, 8 + hl2 + off + 4, &meta) != 0 && strstr(f.err, "extra.bias"),
          "%s", f.err);
    free(head), free(head2), free(data), free(want), free(file);
    fx_free(&f);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"header_ends_in_list", header_ends_in_list},
        {"checksum_covers_header", checksum_covers_header},
        {"negative_step", negative_step},
        {"step_not_a_number", step_not_a_number},
        {"offsets_must_tile", offsets_must_tile},
        {"format_tag_checked", format_tag_checked},
        {"plain_safetensors", plain_safetensors},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
