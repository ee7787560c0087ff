// SPDX-License-Identifier: Apache-2.0
/* test_harden_train.c — the trainer's leftovers and promises (issue 13): orphaned temporary
 * files of a killed save are removed at start (only ours, only of dead processes); a resumed
 * run's heartbeat never repeats a step (a resume record says where it picked up); training is
 * bitwise the same for 1, 2 and 3 threads; a plain weights file fine-tunes from step 0.
 */
#include "harness.h"
#include "lm.h"
#include "lm_test_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void tiny(lm_train_config *c, const char *data, const char *out) {
    lm_train_config_default(c);
    c->m = (lm_model_config){.n_layer = 1, .dim = 16, .n_head = 2, .n_kv_head = 1, .ffn = 24,
                             .l = 4, .d = 2, .lp = 4, .n = 3, .w = 8, .phi = LM_PHI_AVG,
                             .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
    c->seq_len = 24, c->batch = 2, c->steps = 8, c->warmup = 2;
    c->log_every = 2, c->eval_every = 4, c->eval_batches = 1, c->ckpt_every = 4;
    snprintf(c->data, sizeof c->data, "%s", data);
    snprintf(c->out, sizeof c->out, "%s", out);
}

/* A pid that is not alive: a child that has exited and been reaped. */
static long dead_pid(void) {
    const pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return (long)p;
}

/* model.safetensors.tmp.<dead> and config.txt.tmp.<dead> go; a live process's temp file, and
 * files that are not ours, stay. */
static void orphan_tmp_removed(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char data[128], out[128], p[4][192];
    lmt_corpus(data, sizeof data, 8192);
    snprintf(out, sizeof out, "%s/run", lmt_dir);
    CHECK(mkdir(out, 0777) == 0);
    const long dead = dead_pid();
    snprintf(p[0], sizeof p[0], "%s/model.safetensors.tmp.%ld", out, dead);
    snprintf(p[1], sizeof p[1], "%s/config.txt.tmp.%ld", out, dead);
    snprintf(p[2], sizeof p[2], "%s/model.safetensors.tmp.%ld", out, (long)getppid());
    snprintf(p[3], sizeof p[3], "%s/notes.tmp.%ld", out, dead);
    for (int i = 0; i < 4; i++) CHECK(lmt_spit(p[i], "x", 1) == 0);
    lm_train_config c;
    tiny(&c, data, out);
    c.steps = 1;
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    CHECK(!exists(p[0]) && !exists(p[1]), "the dead process's temp files are still there");
    CHECK(exists(p[2]), "a live process's temp file was removed");
    CHECK(exists(p[3]), "a file that is not ours was removed");
    lmt_rmdir();
}

/* Largest "step" of progress/eval/checkpoint records, and whether any repeats within a kind. */
static int scan(const char *text, int *repeats, int *resumes) {
    int max = -1, seen[3][64] = {{0}};
    static const char *kinds[3] = {"\"msg\":\"progress\"", "\"msg\":\"eval\"", "\"msg\":\"checkpoint\""};
    *repeats = *resumes = 0;
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *e = strchr(l, '\n'), *s = strstr(l, "\"step\":");
        if (!s || (e && s > e)) continue;
        const int step = atoi(s + 7);
        const char *r = strstr(l, "\"msg\":\"resume\"");
        if (r && (!e || r < e)) ++*resumes;
        for (int k = 0; k < 3; k++) {
            const char *m = strstr(l, kinds[k]);
            if (!m || (e && m > e) || step < 0 || step >= 64) continue;
            if (seen[k][step]++) ++*repeats;
            if (step > max) max = step;
        }
    }
    return max;
}

/* Killed after logging step 8 with the checkpoint of step 4 on disk (simulated: the step-4
 * checkpoint of an identical run put back), then resumed: steps 6 and 8 were logged twice. */
static void heartbeat_no_repeat(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char data[128], a[128], b[128], cka[192], ckb[192], hb[192];
    lmt_corpus(data, sizeof data, 8192);
    snprintf(a, sizeof a, "%s/a", lmt_dir);
    snprintf(b, sizeof b, "%s/b", lmt_dir);
    lm_train_config c;
    tiny(&c, data, a);
    lm_train_opts o = {NULL, 1, NULL, 4};
    CHECK(lm_train(&c, &o) == 0); /* a: the checkpoint of step 4 */
    tiny(&c, data, b);
    o.stop_after = 0;
    CHECK(lm_train(&c, &o) == 0); /* b: logged up to step 8 */
    snprintf(cka, sizeof cka, "%s/model.safetensors", a);
    snprintf(ckb, sizeof ckb, "%s/model.safetensors", b);
    size_t n;
    char *ck4 = lmt_slurp(cka, &n);
    CHECK(ck4 && lmt_spit(ckb, ck4, n) == 0);
    free(ck4);
    c.steps = 12;
    o.resume = ckb;
    CHECK(lm_train(&c, &o) == 0);
    snprintf(hb, sizeof hb, "%s/heartbeat.jsonl", b);
    char *text = lmt_slurp(hb, &n);
    CHECK(text != NULL);
    int repeats, resumes;
    const int max = scan(text, &repeats, &resumes);
    free(text);
    CHECK(max == 12 && repeats == 0 && resumes == 1, "max step %d, %d repeated records, %d resume "
          "records", max, repeats, resumes);
    lmt_rmdir();
}

/* The same run with 1, 2 and 3 threads ends with the same bits (weights and moments), at a
 * size where OpenBLAS splits its GEMMs over threads (M = 256 rows, dims 64..192). */
static void threads_bitwise(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char data[128], out[3][128], ck[3][192];
    lmt_corpus(data, sizeof data, 8192);
    for (int t = 0; t < 3; t++) {
        snprintf(out[t], sizeof out[t], "%s/t%d", lmt_dir, t + 1);
        lm_train_config c;
        tiny(&c, data, out[t]);
        c.m.dim = 64, c.m.n_head = 4, c.m.n_kv_head = 2, c.m.ffn = 192;
        c.seq_len = 64, c.batch = 4, c.steps = 4, c.ckpt_every = 4, c.eval_every = 4;
        c.threads = t + 1;
        lm_train_opts o = {NULL, 1, NULL, 0};
        CHECK(lm_train(&c, &o) == 0);
        snprintf(ck[t], sizeof ck[t], "%s/model.safetensors", out[t]);
    }
    CHECK(lmt_same_file(ck[0], ck[1]), "1 and 2 threads differ");
    CHECK(lmt_same_file(ck[0], ck[2]), "1 and 3 threads differ");
    lmt_rmdir();
}

/* A weights-only file (the bf16 export of a trained model) as --resume: fine-tunes from step 0
 * with fresh moments and says so in the heartbeat. */
static void weights_finetune(void) {
    lmt_mkdir();
    CHECK(lmt_dir[0]);
    char data[128], out[128], ck[192], hb[192], err[512];
    lmt_corpus(data, sizeof data, 8192);
    snprintf(out, sizeof out, "%s/run", lmt_dir);
    lm_train_config c;
    tiny(&c, data, out);
    c.steps = 2;
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    snprintf(ck, sizeof ck, "%s/model.safetensors", out);
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    lm_model m;
    CHECK(lm_model_create(&m, &c.m, ctx, 1, err, sizeof err) == 0, "%s", err);
    CHECK(lm_ckpt_load(ck, &m, NULL, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(lm_ckpt_export(ck, &m, err, sizeof err) == 0, "%s", err);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    c.steps = 3;
    c.seed = 99; /* another seed and corpus are fine for fine-tuning */
    o.resume = ck;
    CHECK(lm_train(&c, &o) == 0);
    snprintf(hb, sizeof hb, "%s/heartbeat.jsonl", out);
    size_t n;
    char *text = lmt_slurp(hb, &n);
    CHECK(text && strstr(text, "\"msg\":\"resume\"") && strstr(text, "\"weights_only\":1"),
          "no weights-only resume record");
    lm_ckpt_meta meta;
    CHECK(lm_ckpt_read_meta(ck, &meta, err, sizeof err) == 0 && meta.step == 3 && !meta.weights_only,
          "%s: step %lld", err, (long long)meta.step);
    free(text);
    lmt_rmdir();
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"orphan_tmp_removed", orphan_tmp_removed},
        {"heartbeat_no_repeat", heartbeat_no_repeat},
        {"threads_bitwise", threads_bitwise},
        {"weights_finetune", weights_finetune},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
