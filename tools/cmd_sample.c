// SPDX-License-Identifier: Apache-2.0
/* cmd_sample.c — `nsa sample`: loads a checkpoint written by `nsa train`, prefills a prompt and
 * generates bytes through the library's KV-cache decode; prints prompt + continuation.
 */
#include "cli.h"
#include "gpu.h"
#include "lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Library log lines go to stderr, except the per-step decode.reads lines: their summary is
 * printed once at the end. */
static void log_line(void *user, const char *tag, const char *line) {
    (void)user;
    if (strcmp(tag, "decode.reads")) fprintf(stderr, "[nsa %s] %s\n", tag, line);
}

static void usage(FILE *f) {
    fprintf(f, "usage: nsa sample [--ckpt FILE | --out DIR] [--prompt TEXT] [--tokens N]\n"
               "                  [--temperature T] [--top-k K] [--seed S] [--threads N]\n"
               "                  [--device cpu|cuda] [--precision f32|bf16]\n\n"
               "  --ckpt FILE       checkpoint (default: DIR/model.safetensors)\n"
               "  --out DIR         run directory of nsa train (default: runs/kjv)\n"
               "  --prompt TEXT     default: \"Ge1:1 In the beginning\"\n"
               "  --tokens N        bytes to generate (default 300)\n"
               "  --temperature T   0 = greedy (default 0.8)\n"
               "  --top-k K         sample among the K most likely bytes; 0 = all (default 40)\n"
               "  --seed S          sampling seed (default 1)\n"
               "  --device D        cpu (default) or cuda: KV caches and decode on the GPU\n"
               "  --precision P     cuda: f32 (default) or bf16 attention and GEMMs\n");
}

int cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *out = "runs/kjv", *prompt = "Ge1:1 In the beginning";
    const char *device = "cpu", *precision = "f32";
    int tokens = 300, threads = 0;
    nsa_decode_reads reads;
    memset(&reads, 0, sizeof reads);
    lm_sample_opts o = {0.8f, 40, 1, &reads};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "nsa sample: %s: missing value\nhint: nsa sample --help\n", a);
            return 2;
        }
        i++;
        char *end = NULL;
        if (!strcmp(a, "--ckpt")) ckpt = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--tokens")) tokens = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--temperature")) o.temperature = strtof(v, &end);
        else if (!strcmp(a, "--top-k")) o.top_k = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--seed")) o.seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--threads")) threads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else {
            fprintf(stderr, "nsa sample: unknown option %s\nhint: nsa sample --help\n", a);
            return 2;
        }
        if (end && (*end || end == v || tokens < 0 || o.temperature < 0 || o.top_k < 0)) {
            fprintf(stderr, "nsa sample: %s: bad value '%s'\n", a, v);
            return 2;
        }
    }
    char path[700], err[1024];
    if (!ckpt) {
        snprintf(path, sizeof path, "%s/model.safetensors", out);
        ckpt = path;
    }
    lm_ckpt_meta meta;
    lm_model_config mc;
    if (lm_ckpt_read_meta(ckpt, &meta, err, sizeof err) ||
        lm_model_config_parse(&mc, meta.config, err, sizeof err)) {
        fprintf(stderr, "nsa sample: %s\nhint: train first: nsa train --out DIR\n", err);
        return 1;
    }
    nsa_context *ctx;
    if (nsa_context_create(&ctx, err, sizeof err) != NSA_OK) {
        fprintf(stderr, "nsa sample: %s\n", err);
        return 1;
    }
    if (threads > 0) nsa_context_set_threads(ctx, threads);
    lm_blas_threads(threads);
    nsa_context_set_log_callback(ctx, log_line, NULL);
    lm_model m;
    int rc = 1;
    const int len = (int)strlen(prompt);
    uint8_t *gen = malloc((size_t)tokens + 1);
    if (!gen) {
        fprintf(stderr, "nsa sample: out of memory\n");
        nsa_context_destroy(ctx);
        return 1;
    }
    memset(&m, 0, sizeof m);
    const lm_backend *be = &lm_cpu_backend;
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
        snprintf(err, sizeof err, "--device: '%s', expected cpu or cuda", device);
        be = NULL;
    } else if (!strcmp(device, "cuda")) {
        be = lm_cuda_backend(strcmp(precision, "bf16") != 0, err, sizeof err);
    }
    if (!be || lm_model_create_on(&m, &mc, ctx, be, 0, err, sizeof err) ||
        lm_ckpt_load(ckpt, &m, NULL, NULL, NULL, err, sizeof err) ||
        lm_generate(&m, (const uint8_t *)prompt, len, tokens, &o, gen, err, sizeof err)) {
        fprintf(stderr, "nsa sample: %s\n", err);
    } else {
        fwrite(prompt, 1, (size_t)len, stdout);
        fwrite(gen, 1, (size_t)tokens, stdout);
        fputc('\n', stdout);
        if (tokens > 1)
            fprintf(stderr, "nsa sample: last decode step (position %d) read per KV head: cmp %lld "
                            "+ sel %lld + win %lld = %lld tokens (paper budget %lld, dense %lld)\n",
                    len + tokens - 2, (long long)reads.cmp, (long long)reads.sel,
                    (long long)reads.win, (long long)(reads.cmp + reads.sel + reads.win),
                    (long long)reads.budget, (long long)reads.dense);
        rc = 0;
    }
    free(gen);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    return rc;
}
