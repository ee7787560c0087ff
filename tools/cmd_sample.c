// SPDX-License-Identifier: Apache-2.0
/* cmd_sample.c — `nsa sample`: loads a checkpoint written by `nsa train`, prefills a prompt (or
 * each line of --prompts, --batch of them decoded together) and generates bytes through the
 * library's KV-cache decode; prints prompt + continuation, and the measured speed (stderr, and
 * --report FILE as JSON). Not the sampler (lm/sample.c).
 * Invariant: prompt i (from 0) draws with seed + i, so its bytes do not depend on --batch; the
 * report file is whole or absent (tmp + rename).
 */
#include "cli.h"
#include "gpu.h"
#include "lm.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Library log lines go to stderr, except the per-step decode.reads lines: their summary is
 * printed once at the end. */
static void log_line(void *user, const char *tag, const char *line) {
    (void)user;
    if (strcmp(tag, "decode.reads")) fprintf(stderr, "[nsa %s] %s\n", tag, line);
}

typedef struct {
    const char *ckpt, *out, *prompt, *prompts, *device, *precision, *report;
    int tokens, top_k, threads, batch;
    float temperature, top_p;
    uint64_t seed;
} sample_args;

/* --top-p: in (0, 1]; 0 would keep no byte, so it is refused rather than read as "off". */
static int set_top_p(void *opts, const char *val, char *err, size_t n) {
    float p;
    if (cli_parse_float(val, 0.0, 1.0, &p) || !(p > 0.0f)) {
        snprintf(err, n, "'%s' is not a number in (0, 1]", val);
        return -1;
    }
    ((sample_args *)opts)->top_p = p;
    return 0;
}

#define O(f) CLI_OPT(sample_args, f)
/* --precision, --device, --threads and --out have the defaults of `nsa train`: a checkpoint
 * samples with the numerics it was trained with unless told otherwise. */
static const cli_opt table[] = {
    {"ckpt", CLI_FILE, O(ckpt), "FILE", NULL, 0, 0, NULL,
     "checkpoint to load instead of DIR/model.safetensors of --out", NULL},
    {"out", CLI_STR, O(out), "DIR", "runs/kjv", 0, 0, NULL, "run directory of nsa train", NULL},
    {"prompt", CLI_STR, O(prompt), "TEXT", "Ge1:1 In the beginning", 0, 0, NULL,
     "bytes to prefill (at least one)", NULL},
    {"prompts", CLI_STR, O(prompts), "FILE", NULL, 0, 0, NULL,
     "one prompt per line (- = stdin) instead of --prompt", NULL},
    {"batch", CLI_INT, O(batch), "N", "1", 1, LM_MAX_ROWS, NULL,
     "prompts decoded together (KV caches of N rows)", NULL},
    {"tokens", CLI_INT, O(tokens), "N", "300", 0, 1 << 20, NULL, "bytes to generate", NULL},
    {"temperature", CLI_FLOAT, O(temperature), "T", "0.8", 0, 100, NULL, "0 = greedy", NULL},
    {"top-k", CLI_INT, O(top_k), "K", "40", 0, 256, NULL,
     "sample among the K most likely bytes; 0 = all", NULL},
    {"top-p", CLI_CUSTOM, O(top_p), "P", "1", 0, 0, NULL,
     "then among the most likely of those up to mass P, in (0, 1]; 1 = all", set_top_p},
    {"seed", CLI_U64, O(seed), "S", "1", 0, 0, NULL, "sampling seed", NULL},
    {"threads", CLI_INT, O(threads), "N", "0", 0, 4096, NULL, "CPU threads (0: all cores)", NULL},
    {"device", CLI_CHOICE, O(device), NULL, "cpu", 0, 0, "cpu|cuda",
     "cuda: KV caches and decode on the GPU", NULL},
    {"precision", CLI_CHOICE, O(precision), NULL, "bf16", 0, 0, "bf16|f32",
     "cuda: bf16 or f32 attention and GEMMs (as nsa train)", NULL},
    {"report", CLI_STR, O(report), "FILE", NULL, 0, 0, NULL,
     "also write the measured speed as one JSON object to FILE (docs/decode.md)", NULL},
};
#undef O

static int sample_run(void *opts);
const cli_command cmd_sample = {
    "sample", "generate text from a checkpoint through the KV-cache decode",
    "Loads a checkpoint written by nsa train, prefills the prompt and generates bytes\n"
    "through the library's KV-cache decode; prints prompt + continuation.",
    table, CLI_NOPTS(table), sizeof(sample_args), sample_run, NULL, NULL};

/* The speed line (stderr) and, with --report, the same numbers as JSON written to a temporary
 * file renamed over FILE. 0, or -1 with why in err. */
static int report(const sample_args *a, const lm_sample_stats *st, char *err, size_t n) {
    const double tps = st->decode_s > 0 ? (double)st->decode_tokens / st->decode_s : 0.0;
    fprintf(stderr, "nsa sample: %d row(s) by %d, %lld prompt bytes: first token after %.1f ms "
                    "(prefill); decode %lld tokens in %.3f s = %.1f tokens/s\n",
            st->rows, a->batch, (long long)st->prompt_tokens, 1e3 * st->prefill_s,
            (long long)st->decode_tokens, st->decode_s, tps);
    if (!a->report) return 0;
    lm_json j;
    lm_json_begin(&j);
    lm_json_str(&j, "device", a->device);
    lm_json_str(&j, "precision", !strcmp(a->device, "cuda") ? a->precision : "f32");
    lm_json_int(&j, "rows", st->rows);
    lm_json_int(&j, "batch", a->batch);
    lm_json_int(&j, "prompt_tokens", st->prompt_tokens);
    lm_json_int(&j, "tokens_per_row", a->tokens);
    lm_json_num(&j, "time_to_first_token_s", st->prefill_s);
    lm_json_int(&j, "decode_tokens", st->decode_tokens);
    lm_json_num(&j, "decode_s", st->decode_s);
    lm_json_num(&j, "decode_tokens_per_s", st->decode_s > 0 ? tps : NAN);
    const char *line = lm_json_end(&j);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", a->report, (long)getpid());
    FILE *f = line ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(line, f) >= 0;
    ok = f && fclose(f) == 0 && ok;
    if (!ok || rename(tmp, a->report)) {
        snprintf(err, n, "--report %s: %s", a->report, line ? strerror(errno) : "out of memory");
        if (f) unlink(tmp);
        lm_json_free(&j);
        return -1;
    }
    lm_json_free(&j);
    return 0;
}

/* The prompts: --prompts' lines (a final line without '\n' counts; one trailing '\r' is
 * dropped), or --prompt. *buf owns the bytes (NULL for --prompt). The count, or -1 after a usage
 * error was printed (an unreadable file, an empty line, no line). */
static int read_prompts(const sample_args *a, char **buf, const uint8_t ***pp, int **lens) {
    *buf = NULL;
    size_t len = 0, cap = 0;
    if (a->prompts) {
        struct stat st;
        const int in = !strcmp(a->prompts, "-");
        if (!in && (stat(a->prompts, &st) || !S_ISREG(st.st_mode)))
            return cli_usage_error("sample", "--prompts %s: not a regular file", a->prompts),
                   -1;
        FILE *f = in ? stdin : fopen(a->prompts, "rb");
        for (int ok = f != NULL; ok;) {
            if (len == cap) {
                char *nb = realloc(*buf, cap = cap ? 2 * cap : 4096);
                if (!nb) break;
                *buf = nb;
            }
            const size_t got = fread(*buf + len, 1, cap - len, f);
            len += got;
            ok = got > 0;
        }
        const int bad = !f || ferror(f) || !feof(f);
        if (f && !in) fclose(f);
        if (bad)
            return cli_usage_error("sample", "--prompts %s: cannot read it", a->prompts), -1;
    }
    int n = 0;
    for (size_t i = 0; i < len; i++) n += (*buf)[i] == '\n';
    n += a->prompts ? len > 0 && (*buf)[len - 1] != '\n' : 1;
    if (n < 1) return cli_usage_error("sample", "--prompts %s: no prompt in it", a->prompts), -1;
    *pp = malloc(sizeof **pp * (size_t)n);
    *lens = malloc(sizeof **lens * (size_t)n);
    if (!*pp || !*lens) return cli_usage_error("sample", "out of memory for the prompts"), -1;
    if (!a->prompts) {
        (*pp)[0] = (const uint8_t *)a->prompt;
        (*lens)[0] = (int)strlen(a->prompt);
    }
    for (size_t i = 0, k = 0; a->prompts && i < len; k++) {
        size_t e = i;
        while (e < len && (*buf)[e] != '\n') e++;
        size_t l = e - i;
        if (l > 0 && (*buf)[i + l - 1] == '\r') l--;
        if (l < 1 || l > (size_t)(1 << 30))
            return cli_usage_error("sample", "--prompts %s: line %zu is %s", a->prompts, k + 1,
                                   l ? "too long" : "empty; the decode needs at least one byte"),
                   -1;
        (*pp)[k] = (const uint8_t *)*buf + i;
        (*lens)[k] = (int)l;
        i = e + 1;
    }
    return n;
}

/* Prompt i and its continuation; with --prompts under a header line, so that the texts stay
 * apart whatever bytes they hold. */
static void print_row(const sample_args *a, int i, const uint8_t *p, int len, const uint8_t *g) {
    if (a->prompts) printf("==> prompt %d <==\n", i + 1);
    fwrite(p, 1, (size_t)len, stdout);
    fwrite(g, 1, (size_t)a->tokens, stdout);
    fputc('\n', stdout);
}

static int sample_run(void *opts) {
    const sample_args *a = opts;
    const char *ckpt = a->ckpt;
    const int tokens = a->tokens, threads = a->threads;
    nsa_decode_reads reads;
    memset(&reads, 0, sizeof reads);
    lm_sample_stats stats;
    memset(&stats, 0, sizeof stats);
    lm_sample_opts o = {a->temperature, a->top_k, a->seed, &reads, a->top_p, &stats};
    if (a->report && !a->report[0])
        return cli_usage_error("sample", "--report: empty file name");
    if (!a->prompts && !a->prompt[0])
        return cli_usage_error("sample", "--prompt: empty; the decode needs at least one byte");
    char *text;
    const uint8_t **pp = NULL;
    int *lens = NULL;
    const int np = read_prompts(a, &text, &pp, &lens);
    if (np < 0) {
        free(text);
        free(pp);
        free(lens);
        return 2;
    }
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
        free(text);
        free(pp);
        free(lens);
        return 1;
    }
    if (meta.note[0]) fprintf(stderr, "nsa sample: %s\n", meta.note); /* a weights-only file */
    nsa_context *ctx;
    if (nsa_context_create(&ctx, err, sizeof err) != NSA_OK) {
        fprintf(stderr, "nsa sample: %s\n", err);
        free(text);
        free(pp);
        free(lens);
        return 1;
    }
    if (threads > 0) nsa_context_set_threads(ctx, threads);
    lm_blas_threads(threads);
    nsa_context_set_log_callback(ctx, log_line, NULL);
    lm_model m;
    int rc = 1;
    const int B = np < a->batch ? np : a->batch;
    uint8_t *gen = malloc((size_t)B * (size_t)tokens + 1);
    memset(&m, 0, sizeof m);
    const lm_backend *be = &lm_cpu_backend;
    if (!strcmp(a->device, "cuda"))
        be = lm_cuda_backend(!strcmp(a->precision, "f32"), err, sizeof err);
    int bad = !gen ? (snprintf(err, sizeof err, "out of memory"), 1)
                   : !be || lm_model_create_on(&m, &mc, ctx, be, 0, err, sizeof err) ||
                         lm_ckpt_load(ckpt, &m, NULL, NULL, NULL, err, sizeof err);
    /* Groups of B prompts in input order; prompt i draws with seed + i. */
    int last = 0; /* the first prompt of the last group: whose row 0 the reads line is */
    for (int i = 0; !bad && i < np; i += B) {
        const int rows = np - i < B ? np - i : B;
        lm_sample_stats gs;
        memset(&gs, 0, sizeof gs);
        o.stats = &gs;
        o.seed = a->seed + (uint64_t)i;
        bad = lm_generate_rows(&m, pp + i, lens + i, rows, tokens, &o, gen, err, sizeof err);
        if (bad) break;
        for (int r = 0; r < rows; r++)
            print_row(a, i + r, pp[i + r], lens[i + r], gen + (size_t)r * tokens);
        stats.rows += gs.rows;
        stats.prompt_tokens += gs.prompt_tokens;
        stats.decode_tokens += gs.decode_tokens;
        stats.prefill_s += gs.prefill_s;
        stats.decode_s += gs.decode_s;
        last = i;
    }
    if (bad) {
        fprintf(stderr, "nsa sample: %s\n", err);
    } else {
        fflush(stdout);
        if (tokens > 1)
            fprintf(stderr, "nsa sample: last decode step (position %d) read per KV head: cmp %lld "
                            "+ sel %lld + win %lld = %lld tokens (paper budget %lld, dense %lld)\n",
                    lens[last] + tokens - 2, (long long)reads.cmp, (long long)reads.sel,
                    (long long)reads.win, (long long)(reads.cmp + reads.sel + reads.win),
                    (long long)reads.budget, (long long)reads.dense);
        rc = 0;
        if (report(a, &stats, err, sizeof err)) {
            fprintf(stderr, "nsa sample: %s\n", err);
            rc = 1;
        }
    }
    free(gen);
    free(text);
    free(pp);
    free(lens);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    return rc;
}
