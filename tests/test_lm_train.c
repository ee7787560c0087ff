// SPDX-License-Identifier: Apache-2.0
/* test_lm_train.c — training on a tiny corpus: checkpoint save/load round trip (bitwise), resume
 * equals an uninterrupted run (bitwise), every heartbeat line is JSON with the fields and types
 * of docs/design.md §4, a non-finite loss stops without touching the checkpoint, and each bad input
 * (corrupted, truncated or wrong-config checkpoint, empty or missing corpus, an output directory
 * that cannot be created) fails with a message and loses nothing.
 * The JSON check uses its own small parser, independent of lm/json.c.
 */
#include "harness.h"
#include "lm.h"
#include "lm_test_util.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void tiny_config(lm_train_config *c, const char *corpus, const char *out) {
    lm_train_config_default(c);
    c->m = (lm_model_config){.n_layer = 2, .dim = 16, .n_head = 4, .n_kv_head = 2, .ffn = 24,
                             .l = 4, .d = 2, .lp = 4, .n = 3, .w = 8, .phi = LM_PHI_LEARNED,
                             .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
    c->seq_len = 24, c->batch = 2, c->steps = 12, c->warmup = 3, c->lr = 3e-3f;
    c->log_every = 2, c->eval_every = 4, c->eval_batches = 2, c->ckpt_every = 4;
    snprintf(c->data, sizeof c->data, "%s", corpus);
    snprintf(c->out, sizeof c->out, "%s", out);
}

static void ckpt_roundtrip(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    lm_train_config c;
    tiny_config(&c, "", "");
    lm_model a, b;
    char err[512], p1[128], p2[128];
    CHECK(lm_model_create(&a, &c.m, ctx, 1, err, sizeof err) == 0, "%s", err);
    CHECK(lm_model_create(&b, &c.m, ctx, 2, err, sizeof err) == 0, "%s", err);
    float *m1 = malloc(4 * a.nparams), *v1 = malloc(4 * a.nparams);
    float *m2 = calloc(a.nparams, 4), *v2 = calloc(a.nparams, 4);
    for (size_t i = 0; i < a.nparams; i++)
        m1[i] = (float)nsa_rng_normal(), v1[i] = (float)nsa_rng_uniform(), a.params[i] += (float)nsa_rng_normal();
    a.params[0] = -0.0f; /* signed zero and denormals survive bitwise */
    a.params[1] = 1e-40f;
    lm_ckpt_meta meta = {77, 5, 0xabcdefULL, "", 0, ""}, got;
    lm_model_config_str(&c.m, meta.config, sizeof meta.config);
    snprintf(p1, sizeof p1, "%s/a.safetensors", lmt_dir);
    snprintf(p2, sizeof p2, "%s/b.safetensors", lmt_dir);
    CHECK(lm_ckpt_save(p1, &a, m1, v1, &meta, err, sizeof err) == 0, "%s", err);
    CHECK(lm_ckpt_load(p1, &b, m2, v2, &got, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(a.params, b.params, 4 * a.nparams) == 0, "params differ after load");
    CHECK(memcmp(m1, m2, 4 * a.nparams) == 0 && memcmp(v1, v2, 4 * a.nparams) == 0, "moments differ");
    CHECK(got.step == 77 && got.seed == 5 && got.data_hash == 0xabcdefULL, "metadata");
    CHECK(lm_ckpt_save(p2, &b, m2, v2, &got, err, sizeof err) == 0, "%s", err);
    CHECK(lmt_same_file(p1, p2), "save(load(file)) is not byte-identical to file");
    free(m1), free(v1), free(m2), free(v2);
    lm_model_destroy(&a), lm_model_destroy(&b);
    nsa_context_destroy(ctx);
    lmt_rmdir();
}

/* Runs A (uninterrupted) and B (stopped after 5 steps, then resumed) must end bitwise equal. */
static void resume_bitwise(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char corpus[128], outa[128], outb[128], ca[160], cb[160];
    lmt_corpus(corpus, sizeof corpus, 4096);
    snprintf(outa, sizeof outa, "%s/a", lmt_dir);
    snprintf(outb, sizeof outb, "%s/b", lmt_dir);
    lm_train_config c;
    tiny_config(&c, corpus, outa);
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    snprintf(c.out, sizeof c.out, "%s", outb);
    o.stop_after = 5;
    CHECK(lm_train(&c, &o) == 0);
    snprintf(cb, sizeof cb, "%s/model.safetensors", outb);
    snprintf(ca, sizeof ca, "%s/model.safetensors", outa);
    lm_ckpt_meta meta;
    char err[512];
    CHECK(lm_ckpt_read_meta(cb, &meta, err, sizeof err) == 0 && meta.step == 5, "step %lld",
          (long long)meta.step);
    CHECK(!lmt_same_file(ca, cb), "the interrupted run already equals the full one");
    o.stop_after = 0;
    o.resume = cb;
    CHECK(lm_train(&c, &o) == 0);
    CHECK(lmt_same_file(ca, cb), "resumed run differs from the uninterrupted one");
    lmt_rmdir();
}

/* ------------------------------------------------------------------ a small JSON parser */

typedef enum { J_NULL, J_NUM, J_INT, J_STR, J_ARR, J_OBJ, J_BOOL } jtype;
typedef struct {
    char key[48];
    jtype type;
    int arr_len, arr_nums; /* arrays, objects: members, numeric (or null) members */
} jfield;

typedef struct {
    const char *p;
    jfield f[64];
    int nf;
} jdoc;

static void jws(jdoc *d) {
    while (isspace((unsigned char)*d->p)) d->p++;
}

static int jstring(jdoc *d, char *out, size_t n) {
    if (*d->p != '"') return -1;
    d->p++;
    size_t k = 0;
    while (*d->p && *d->p != '"') {
        if (*d->p == '\\') {
            d->p++;
            if (*d->p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)d->p[i])) return -1;
                d->p += 4;
            } else if (!strchr("\"\\/bfnrt", *d->p)) {
                return -1;
            }
        } else if ((unsigned char)*d->p < 0x20) {
            return -1;
        }
        if (out && k + 1 < n) out[k++] = *d->p;
        d->p++;
    }
    if (out) out[k] = 0;
    if (*d->p != '"') return -1;
    d->p++;
    return 0;
}

/* Parses one value; *t its type; nums/len for arrays. */
static int jvalue(jdoc *d, jtype *t, int *len, int *nums) {
    jws(d);
    *len = *nums = 0;
    if (*d->p == '"') return *t = J_STR, jstring(d, NULL, 0);
    if (!strncmp(d->p, "null", 4)) return d->p += 4, *t = J_NULL, 0;
    if (!strncmp(d->p, "true", 4)) return d->p += 4, *t = J_BOOL, 0;
    if (!strncmp(d->p, "false", 5)) return d->p += 5, *t = J_BOOL, 0;
    if (*d->p == '[') {
        d->p++;
        *t = J_ARR;
        jws(d);
        if (*d->p == ']') return d->p++, 0;
        for (;;) {
            jtype et;
            int l2, n2;
            if (jvalue(d, &et, &l2, &n2)) return -1;
            (*len)++;
            *nums += et == J_NUM || et == J_INT || et == J_NULL;
            jws(d);
            if (*d->p == ',') {
                d->p++;
                continue;
            }
            if (*d->p != ']') return -1;
            d->p++;
            return 0;
        }
    }
    if (*d->p == '{') { /* one level: gate_branch_shares {"cmp":…,"sel":…,"win":…} */
        d->p++;
        *t = J_OBJ;
        jws(d);
        if (*d->p == '}') return d->p++, 0;
        for (;;) {
            jtype et;
            int l2, n2;
            jws(d);
            if (jstring(d, NULL, 0)) return -1;
            jws(d);
            if (*d->p++ != ':' || jvalue(d, &et, &l2, &n2) || et == J_OBJ) return -1;
            (*len)++;
            *nums += et == J_NUM || et == J_INT || et == J_NULL;
            jws(d);
            if (*d->p == ',') {
                d->p++;
                continue;
            }
            if (*d->p != '}') return -1;
            d->p++;
            return 0;
        }
    }
    const char *s = d->p;
    if (*d->p == '-') d->p++;
    if (!isdigit((unsigned char)*d->p)) return -1;
    while (isdigit((unsigned char)*d->p)) d->p++;
    int integer = 1;
    if (*d->p == '.') {
        integer = 0;
        d->p++;
        if (!isdigit((unsigned char)*d->p)) return -1;
        while (isdigit((unsigned char)*d->p)) d->p++;
    }
    if (*d->p == 'e' || *d->p == 'E') {
        integer = 0;
        d->p++;
        if (*d->p == '+' || *d->p == '-') d->p++;
        if (!isdigit((unsigned char)*d->p)) return -1;
        while (isdigit((unsigned char)*d->p)) d->p++;
    }
    *t = integer ? J_INT : J_NUM;
    return d->p > s ? 0 : -1;
}

static int jparse(jdoc *d, const char *line) {
    d->p = line;
    d->nf = 0;
    jws(d);
    if (*d->p++ != '{') return -1;
    jws(d);
    if (*d->p == '}') return d->p++, 0;
    for (;;) {
        jws(d);
        jfield *f = &d->f[d->nf];
        if (d->nf >= 64 || jstring(d, f->key, sizeof f->key)) return -1;
        jws(d);
        if (*d->p++ != ':') return -1;
        if (jvalue(d, &f->type, &f->arr_len, &f->arr_nums)) return -1;
        d->nf++;
        jws(d);
        if (*d->p == ',') {
            d->p++;
            continue;
        }
        if (*d->p++ != '}') return -1;
        jws(d);
        return *d->p ? -1 : 0;
    }
}

static const jfield *jget(const jdoc *d, const char *k) {
    for (int i = 0; i < d->nf; i++)
        if (!strcmp(d->f[i].key, k)) return &d->f[i];
    return NULL;
}

static int is_num(const jfield *f) { return f && (f->type == J_NUM || f->type == J_INT || f->type == J_NULL); }
static int is_int(const jfield *f) { return f && f->type == J_INT; }

/* Every line of a real run's heartbeat parses and carries its record's fields and types. */
static void heartbeat_json(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char corpus[128], out[128], hb[160];
    lmt_corpus(corpus, sizeof corpus, 4096);
    snprintf(out, sizeof out, "%s/run", lmt_dir);
    lm_train_config c;
    tiny_config(&c, corpus, out);
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    snprintf(hb, sizeof hb, "%s/heartbeat.jsonl", out);
    size_t n;
    char *text = lmt_slurp(hb, &n);
    CHECK(text && n > 0, "no heartbeat at %s", hb);
    int counts[5] = {0}, ln = 0;
    static const char *kinds[5] = {"boot", "progress", "eval", "checkpoint", "stop"};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        ln++;
        jdoc d;
        CHECK(jparse(&d, line) == 0, "line %d is not a JSON object: %s", ln, line);
        CHECK(is_num(jget(&d, "ts")) && jget(&d, "ts")->type != J_NULL, "line %d: ts", ln);
        CHECK(jget(&d, "iso") && jget(&d, "iso")->type == J_STR, "line %d: iso", ln);
        CHECK(is_int(jget(&d, "pid")) && is_int(jget(&d, "rank")) && is_int(jget(&d, "step")),
              "line %d: pid/rank/step", ln);
        const jfield *msg = jget(&d, "msg");
        CHECK(msg && msg->type == J_STR, "line %d: msg", ln);
        const char *mv = strstr(line, "\"msg\":\"") + 7;
        int kind = -1;
        for (int k = 0; k < 5; k++)
            if (!strncmp(mv, kinds[k], strlen(kinds[k])) && mv[strlen(kinds[k])] == '"') kind = k;
        CHECK(kind >= 0, "line %d: unknown msg", ln);
        counts[kind]++;
        if (kind == 1) {
            static const char *num[] = {"loss", "bits_per_byte", "toks_per_s", "dt_fetch_s",
                                        "gate_entropy_mean", "gate_collapse_frac"};
            for (int k = 0; k < 6; k++) CHECK(is_num(jget(&d, num[k])), "line %d: %s", ln, num[k]);
            const jfield *sh = jget(&d, "gate_branch_shares");
            CHECK(sh && sh->type == J_OBJ && sh->arr_len == 3 && sh->arr_nums == 3 &&
                  strstr(line, "\"gate_branch_shares\":{\"cmp\":") && strstr(line, ",\"sel\":") &&
                  strstr(line, ",\"win\":"), "line %d: gate_branch_shares", ln);
            static const char *ints[] = {"fallback_nonfinite", "fallback_error", "fallback_unsupported"};
            for (int k = 0; k < 3; k++) CHECK(is_int(jget(&d, ints[k])), "line %d: %s", ln, ints[k]);
        }
        if (kind == 0) {
            CHECK(jget(&d, "version") && jget(&d, "version")->type == J_STR &&
                  strstr(line, "\"version\":\"" ) && jget(&d, "commit") &&
                  jget(&d, "commit")->type == J_STR && is_num(jget(&d, "flops_per_token")),
                  "line %d: boot version, commit, flops_per_token", ln);
            CHECK(strstr(line, nsa_version_string()), "line %d: version is not %s", ln,
                  nsa_version_string());
        }
        if (kind == 2) {
            static const char *num[] = {"val_loss", "ppl", "bits_per_byte"};
            for (int k = 0; k < 3; k++) CHECK(is_num(jget(&d, num[k])), "line %d: %s", ln, num[k]);
        }
    }
    CHECK(counts[0] == 1 && counts[1] == 6 && counts[2] == 4 && counts[3] == 3 && counts[4] == 1,
          "records boot %d progress %d eval %d checkpoint %d stop %d", counts[0], counts[1],
          counts[2], counts[3], counts[4]);
    /* the parser itself rejects broken lines and accepts null */
    jdoc d;
    CHECK(jparse(&d, "{\"a\":nan}") != 0 && jparse(&d, "{\"a\":1,}") != 0 && jparse(&d, "{\"a\":null}") == 0);
    free(text);
    lmt_rmdir();
}

/* A NaN parameter makes the first loss NaN: the run stops with a "nonfinite" stop record
 * before any optimizer step and leaves the checkpoint byte for byte as it was. */
static void nonfinite_stops(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char corpus[128], out[128], ck[160], copy[160], hb[160];
    lmt_corpus(corpus, sizeof corpus, 4096);
    snprintf(out, sizeof out, "%s/run", lmt_dir);
    lm_train_config c;
    tiny_config(&c, corpus, out);
    c.steps = 4;
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    snprintf(ck, sizeof ck, "%s/model.safetensors", out);
    /* poison: load, set one weight to NaN, save as the checkpoint with more steps to go */
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    lm_model m;
    char err[512];
    CHECK(lm_model_create(&m, &c.m, ctx, 1, err, sizeof err) == 0, "%s", err);
    float *mo = calloc(m.nparams, 4), *ve = calloc(m.nparams, 4);
    lm_ckpt_meta meta;
    CHECK(lm_ckpt_load(ck, &m, mo, ve, &meta, err, sizeof err) == 0, "%s", err);
    m.w.layer[0].wq[3] = NAN;
    CHECK(lm_ckpt_save(ck, &m, mo, ve, &meta, err, sizeof err) == 0, "%s", err);
    snprintf(copy, sizeof copy, "%s/before.safetensors", lmt_dir);
    size_t n;
    char *bytes = lmt_slurp(ck, &n);
    CHECK(bytes && lmt_spit(copy, bytes, n) == 0);
    free(bytes);
    c.steps = 8;
    c.ckpt_every = 1; /* any step that got through would write a checkpoint */
    o.resume = ck;
    CHECK(lm_train(&c, &o) == 1, "a NaN loss must fail the run");
    CHECK(lmt_same_file(ck, copy), "the checkpoint changed");
    snprintf(hb, sizeof hb, "%s/heartbeat.jsonl", out);
    char *text = lmt_slurp(hb, &n);
    CHECK(text && strstr(text, "\"msg\":\"stop\",\"reason\":\"nonfinite\""), "no nonfinite stop record");
    CHECK(strstr(text, "\"loss\":null"), "the NaN loss is not written as null");
    free(text), free(mo), free(ve);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    lmt_rmdir();
}

static void bad_inputs(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char corpus[128], out[128], ck[160], bad[160], err[512];
    lmt_corpus(corpus, sizeof corpus, 4096);
    snprintf(out, sizeof out, "%s/run", lmt_dir);
    lm_train_config c;
    tiny_config(&c, corpus, out);
    c.steps = 2;
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    snprintf(ck, sizeof ck, "%s/model.safetensors", out);
    size_t n;
    char *good = lmt_slurp(ck, &n);
    CHECK(good && n > 64);
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    lm_model m;
    CHECK(lm_model_create(&m, &c.m, ctx, 9, err, sizeof err) == 0, "%s", err);
    float *before = malloc(4 * m.nparams);
    memcpy(before, m.params, 4 * m.nparams);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", lmt_dir);
    /* corrupted: one flipped bit in the data */
    good[n - 5] ^= 0x10;
    CHECK(lmt_spit(bad, good, n) == 0);
    good[n - 5] ^= 0x10;
    CHECK(lm_ckpt_load(bad, &m, NULL, NULL, NULL, err, sizeof err) != 0 && strstr(err, "checksum"),
          "corrupted: %s", err);
    /* truncated */
    CHECK(lmt_spit(bad, good, n - 100) == 0);
    CHECK(lm_ckpt_load(bad, &m, NULL, NULL, NULL, err, sizeof err) != 0 && strstr(err, "truncated"),
          "truncated: %s", err);
    CHECK(lmt_spit(bad, good, 5) == 0);
    CHECK(lm_ckpt_load(bad, &m, NULL, NULL, NULL, err, sizeof err) != 0 && strstr(err, "truncated"),
          "5 bytes: %s", err);
    CHECK(memcmp(before, m.params, 4 * m.nparams) == 0, "a failed load changed the model");
    /* wrong config: the message names the field */
    lm_model m2;
    lm_model_config c2 = c.m;
    c2.dim = 32;
    CHECK(lm_model_create(&m2, &c2, ctx, 9, err, sizeof err) == 0, "%s", err);
    CHECK(lm_ckpt_load(ck, &m2, NULL, NULL, NULL, err, sizeof err) != 0 && strstr(err, "dim"),
          "wrong config: %s", err);
    lm_model_destroy(&m2);
    /* resuming with another config fails and leaves the checkpoint alone */
    lm_train_config c3 = c;
    c3.m.w = 4;
    o.resume = ck;
    CHECK(lm_train(&c3, &o) == 1);
    o.resume = NULL;
    /* empty and missing corpus */
    lm_corpus cor;
    snprintf(bad, sizeof bad, "%s/empty.txt", lmt_dir);
    CHECK(lmt_spit(bad, "", 0) == 0);
    CHECK(lm_corpus_load(&cor, bad, 24, err, sizeof err) != 0 && strstr(err, "empty"), "%s", err);
    snprintf(bad, sizeof bad, "%s/missing.txt", lmt_dir);
    CHECK(lm_corpus_load(&cor, bad, 24, err, sizeof err) != 0 && strstr(err, "cannot open"), "%s", err);
    lm_train_config c4 = c;
    snprintf(c4.data, sizeof c4.data, "%s", bad);
    CHECK(lm_train(&c4, &o) == 1);
    /* an output directory below a regular file cannot be created */
    lm_train_config c5 = c;
    snprintf(c5.out, sizeof c5.out, "%s/sub", corpus);
    CHECK(lm_train(&c5, &o) == 1);
    size_t n2;
    char *after = lmt_slurp(ck, &n2);
    CHECK(after && n2 == n && memcmp(after, good, n) == 0, "a failed run touched the checkpoint");
    free(after), free(good), free(before);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    lmt_rmdir();
}

/* Config file, flags and the checkpoint's model-config string. */
static void config_file(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/c.txt", lmt_dir);
    const char *text = "# comment\n  dim = 64  \nphi=learned\ngate = softmax # trailing\n"
                       "lr = 0.0005\nseed = 18446744073709551615\nkv-heads = 1\n\n";
    CHECK(lmt_spit(path, text, strlen(text)) == 0);
    lm_train_config c;
    lm_train_config_default(&c);
    CHECK(lm_config_load(&c, path, err, sizeof err) == 0, "%s", err);
    CHECK(c.m.dim == 64 && c.m.phi == LM_PHI_LEARNED && c.m.gate == LM_GATE_SOFTMAX &&
          c.lr == 0.0005f && c.seed == UINT64_MAX && c.m.n_kv_head == 1);
    CHECK(lm_config_check(&c, err, sizeof err) == 0, "%s", err);
    CHECK(lm_config_set(&c, "heads", "3", err, sizeof err) == 0);
    CHECK(lm_config_check(&c, err, sizeof err) != 0 && strstr(err, "dim"), "%s", err);
    CHECK(lm_config_set(&c, "lr", "fast", err, sizeof err) != 0 && strstr(err, "lr"), "%s", err);
    CHECK(lm_config_set(&c, "nope", "1", err, sizeof err) != 0 && strstr(err, "nope"), "%s", err);
    CHECK(lm_config_set(&c, "seed", "-1", err, sizeof err) != 0, "negative seed accepted");
    const char *bad = "dim = 64\nthis line has no equals sign\n";
    CHECK(lmt_spit(path, bad, strlen(bad)) == 0);
    CHECK(lm_config_load(&c, path, err, sizeof err) != 0 && strstr(err, ":2:"), "%s", err);
    /* written config reads back to the same values */
    lm_train_config a, b;
    lm_train_config_default(&a);
    a.lr = 0.1f + 0.2f, a.m.gate_temp = 0.7f, a.m.phi = LM_PHI_LEARNED;
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    lm_config_write(&a, f);
    fclose(f);
    lm_train_config_default(&b);
    CHECK(lm_config_load(&b, path, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(&a, &b, sizeof a) == 0, "config write/load is not exact");
    char ms[1024];
    lm_model_config m2;
    lm_model_config_str(&a.m, ms, sizeof ms);
    CHECK(lm_model_config_parse(&m2, ms, err, sizeof err) == 0, "%s", err);
    CHECK(lm_model_config_diff(&a.m, &m2, err, sizeof err) == 0, "%s", err);
    m2.lp = 32;
    CHECK(lm_model_config_diff(&a.m, &m2, err, sizeof err) != 0 && strstr(err, "lp"), "%s", err);
    lmt_rmdir();
}

/* The loader thread hands out exactly lm_batch(seed, step0), lm_batch(seed, step0 + 1), ...;
 * targets are the inputs shifted by one byte; validation windows lie in the last 10%. */
static void loader_order(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char corpus[128], err[512];
    lmt_corpus(corpus, sizeof corpus, 4096);
    lm_corpus cor;
    CHECK(lm_corpus_load(&cor, corpus, 24, err, sizeof err) == 0, "%s", err);
    CHECK(cor.train_len == cor.len - cor.len / 10);
    enum { B = 3, T = 24 };
    uint8_t x[B * T], y[B * T], x2[B * T], y2[B * T];
    lm_loader *L = lm_loader_start(&cor, 42, 7, B, T);
    CHECK(L != NULL);
    for (int s = 7; s < 20; s++) {
        double w = lm_loader_next(L, x, y, NULL);
        lm_batch(&cor, 42, s, B, T, x2, y2, NULL);
        CHECK(w >= 0 && memcmp(x, x2, sizeof x) == 0 && memcmp(y, y2, sizeof y) == 0, "step %d", s);
        for (int b = 0; b < B; b++) {
            int found = 0;
            for (size_t o = 0; o + T + 1 <= cor.train_len && !found; o++)
                found = !memcmp(cor.bytes + o, x + b * T, T);
            CHECK(found, "step %d: window %d is not in the training split", s, b);
            CHECK(memcmp(x + b * T + 1, y + b * T, T - 1) == 0, "targets are not shifted inputs");
        }
    }
    lm_loader_stop(L);
    lm_batch(&cor, 43, 7, B, T, x2, y2, NULL);
    lm_batch(&cor, 42, 7, B, T, x, y, NULL);
    CHECK(memcmp(x, x2, sizeof x) != 0, "the seed does not change the batches");
    for (int k = 0; k < 4; k++) {
        lm_val_batch(&cor, k, 4, B, T, x, y, NULL);
        for (int b = 0; b < B; b++) {
            int found = 0;
            for (size_t o = cor.train_len; o + T + 1 <= cor.len && !found; o++)
                found = !memcmp(cor.bytes + o, x + b * T, T) && !memcmp(cor.bytes + o + 1, y + b * T, T);
            CHECK(found, "validation window %d.%d is not in the validation split", k, b);
        }
    }
    lm_corpus_free(&cor);
    lmt_rmdir();
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"ckpt_roundtrip", ckpt_roundtrip},
        {"resume_bitwise", resume_bitwise},
        {"heartbeat_json", heartbeat_json},
        {"nonfinite_stops", nonfinite_stops},
        {"bad_inputs", bad_inputs},
        {"config_file", config_file},
        {"loader_order", loader_order},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
