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

typedef struct {
    const char *ckpt, *out, *prompt, *device, *precision;
    int tokens, top_k, threads;
    float temperature;
    uint64_t seed;
} sample_args;

#define O(f) CLI_OPT(sample_args, f)
/* --precision, --device, --threads and --out have the defaults of `nsa train`: a checkpoint
 * samples with the numerics it was trained with unless told otherwise. */
static const cli_opt table[] = {
    {"ckpt", CLI_FILE, O(ckpt), "FILE", NULL, 0, 0, NULL,
     "checkpoint to load instead of DIR/model.safetensors of --out", NULL},
    {"out", CLI_STR, O(out), "DIR", "runs/kjv", 0, 0, NULL, "run directory of nsa train", NULL},
    {"prompt", CLI_STR, O(prompt), "TEXT", "Ge1:1 In the beginning", 0, 0, NULL,
     "bytes to prefill (at least one)", NULL},
    {"tokens", CLI_INT, O(tokens), "N", "300", 0, 1 << 20, NULL, "bytes to generate", NULL},
    {"temperature", CLI_FLOAT, O(temperature), "T", "0.8", 0, 100, NULL, "0 = greedy", NULL},
    {"top-k", CLI_INT, O(top_k), "K", "40", 0, 256, NULL,
     "sample among the K most likely bytes; 0 = all", NULL},
    {"seed", CLI_U64, O(seed), "S", "1", 0, 0, NULL, "sampling seed", NULL},
    {"threads", CLI_INT, O(threads), "N", "0", 0, 4096, NULL, "CPU threads (0: all cores)", NULL},
    {"device", CLI_CHOICE, O(device), NULL, "cpu", 0, 0, "cpu|cuda",
     "cuda: KV caches and decode on the GPU", NULL},
    {"precision", CLI_CHOICE, O(precision), NULL, "bf16", 0, 0, "bf16|f32",
     "cuda: bf16 or f32 attention and GEMMs (as nsa train)", NULL},
};
#undef O

static int sample_run(void *opts);
const cli_command cmd_sample = {
    "sample", "generate text from a checkpoint through the KV-cache decode",
    "Loads a checkpoint written by nsa train, prefills the prompt and generates bytes\n"
    "through the library's KV-cache decode; prints prompt + continuation.",
    table, CLI_NOPTS(table), sizeof(sample_args), sample_run, NULL, NULL};

static int sample_run(void *opts) {
    const sample_args *a = opts;
    const char *ckpt = a->ckpt, *prompt = a->prompt;
    const int tokens = a->tokens, threads = a->threads;
    nsa_decode_reads reads;
    memset(&reads, 0, sizeof reads);
    lm_sample_opts o = {a->temperature, a->top_k, a->seed, &reads};
    if (!prompt[0])
        return cli_usage_error("sample", "--prompt: empty; the decode needs at least one byte");
    char path[700], err[1024];
    if (!ckpt) {
        snprintf(path, sizeof path, "%s/model.safetensors", a->out);
        ckpt = path;
    }
    lm_ckpt_meta meta;
    lm_model_config mc;
    if (lm_ckpt_read_meta(ckpt, &meta, err, sizeof err) ||
        lm_model_config_parse(&mc, meta.config, err, sizeof err)) {
        fprintf(stderr, "nsa sample: %s\nhint: train first: nsa train --out DIR\n", err);
        return 1;
    }
    if (meta.note[0]) fprintf(stderr, "nsa sample: %s\n", meta.note); /* a weights-only file */
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
    if (!strcmp(a->device, "cuda"))
        be = lm_cuda_backend(!strcmp(a->precision, "f32"), err, sizeof err);
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
