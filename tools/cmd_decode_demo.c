// SPDX-License-Identifier: Apache-2.0
/* cmd_decode_demo.c — `nsa decode-demo`: prefills a prompt of random tokens into a KV cache,
 * decodes N steps, and prints the token reads each step measured beside the paper's budget and
 * dense attention; then the paper's Table 4 (8k..64k, paper defaults) from measured decode steps.
 * Not a benchmark: the reference runs on the CPU, and reads do not depend on head dims, so small
 * heads (Hq = Hkv = 1, Dk = Dv = 8 by default) keep 64k feasible. Exit code 1 if a measured count
 * at a table length exceeds the budget num_cmp(S) + n·lp + min(w, S), or differs from it where
 * they must be equal (S a multiple of lp, S >= n·lp: the paper's 8k..64k).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int Hq, Hkv, Dk, Dv;
    const char *dtype, *fill;
    int64_t prompt, steps, every;
    int no_table;
    int64_t lens[8];
    int nlens;
    uint64_t seed;
} demo_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng;
static float urand(void) { /* xorshift64, uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* A contiguous (a, b, c, d) tensor of dtype dt with random values (gates: in [0, 1]). */
static nsa_tensor rand_tensor(nsa_dtype dt, int64_t a, int64_t b, int64_t c, int64_t d, int gate) {
    const int64_t n = a * b * c * d;
    void *p = malloc(nsa_dtype_size(dt) * (size_t)(n > 0 ? n : 1));
    if (!p) {
        fprintf(stderr, "nsa decode-demo: out of memory for %lld elements\n", (long long)n);
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        float x = gate ? 0.5f + 0.5f * urand() : urand();
        if (dt == NSA_DTYPE_F32) ((float *)p)[i] = x;
        else ((uint16_t *)p)[i] = dt == NSA_DTYPE_BF16 ? nsa_f32_to_bf16(x) : nsa_f32_to_f16(x);
    }
    return nsa_tensor_4d(p, dt, a, b, c, d);
}

/* Progress of long work on stderr: a rewritten line on a terminal, else one line per 5 s. */
static void progress(const char *what, int64_t done, int64_t total, double *last) {
    const double t = now_s();
    const int tty = isatty(2);
    if (done < total && t - *last < (tty ? 0.2 : 5.0)) return;
    *last = t;
    fprintf(stderr, tty ? "\r%s: %lld / %lld%s" : "%s: %lld / %lld%s\n", what, (long long)done,
            (long long)total, tty && done == total ? "\n" : "");
}

static int die(nsa_context *ctx, const char *what) {
    fprintf(stderr, "nsa decode-demo: %s: %s\n", what, nsa_context_message(ctx));
    return 1;
}

/* All inputs of one sequence of T tokens (B = 1): q, k/v per branch, gates. */
typedef struct {
    nsa_tensor q, k[3], v[3], g;
} tokens;

static tokens tokens_new(const nsa_config *c, nsa_dtype dt, int64_t T) {
    tokens x;
    x.q = rand_tensor(dt, 1, T, c->Hq, c->Dk, 0);
    for (int b = 0; b < 3; b++) {
        x.k[b] = rand_tensor(dt, 1, T, c->Hkv, c->Dk, 0);
        x.v[b] = rand_tensor(dt, 1, T, c->Hkv, c->Dv, 0);
    }
    x.g = rand_tensor(dt, 1, T, c->Hq, 3, 1);
    return x;
}

static void tokens_free(tokens *x) {
    free(x->q.data);
    free(x->g.data);
    for (int b = 0; b < 3; b++) {
        free(x->k[b].data);
        free(x->v[b].data);
    }
}

/* Token t of x as a (1, 1, H, D) view. */
static nsa_tensor at(nsa_tensor x, int64_t t) {
    x.data = (char *)x.data + t * x.stride[1] * (int64_t)nsa_dtype_size(x.dtype);
    x.shape[1] = 1;
    return x;
}

/* Fills cache with tokens [0, T0) of x: prefill (a forward, output discarded) or append. */
static int fill(nsa_context *ctx, nsa_kv_cache *cache, const nsa_config *c, const tokens *x,
                int64_t T0, int use_prefill, nsa_dtype dt) {
    if (T0 == 0) return 0;
    if (use_prefill) {
        nsa_fwd_args a;
        memset(&a, 0, sizeof a);
        a.cfg = *c;
        a.q = x->q;
        a.k_cmp = x->k[0], a.v_cmp = x->v[0];
        a.k_sel = x->k[1], a.v_sel = x->v[1];
        a.k_win = x->k[2], a.v_win = x->v[2];
        a.gates = x->g;
        nsa_tensor *all[] = {&a.q, &a.k_cmp, &a.v_cmp, &a.k_sel, &a.v_sel, &a.k_win, &a.v_win,
                             &a.gates};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) all[i]->shape[1] = T0;
        a.out = rand_tensor(dt, 1, T0, c->Hq, c->Dv, 0);
        nsa_status st = nsa_kv_cache_prefill(ctx, cache, &a, NULL);
        free(a.out.data);
        return st == NSA_OK ? 0 : die(ctx, "nsa_kv_cache_prefill");
    }
    double last = now_s();
    const int64_t chunk = 4096;
    for (int64_t t0 = 0; t0 < T0; t0 += chunk) {
        const int64_t n = T0 - t0 < chunk ? T0 - t0 : chunk;
        nsa_kv_append_args a;
        memset(&a, 0, sizeof a);
        nsa_tensor *dst[6] = {&a.k_cmp, &a.v_cmp, &a.k_sel, &a.v_sel, &a.k_win, &a.v_win};
        const nsa_tensor *src[6] = {&x->k[0], &x->v[0], &x->k[1], &x->v[1], &x->k[2], &x->v[2]};
        for (int i = 0; i < 6; i++) {
            *dst[i] = at(*src[i], t0);
            dst[i]->shape[1] = n;
        }
        if (nsa_kv_cache_append(ctx, cache, &a) != NSA_OK) return die(ctx, "nsa_kv_cache_append");
        progress("  append", t0 + n, T0, &last);
    }
    return 0;
}

/* Decodes tokens [S0, S1) of x; prints every `every`-th step's reads (every 0: none) and
 * returns the last step's reads in *last. */
static int decode(nsa_context *ctx, nsa_kv_cache *cache, const nsa_config *c, const tokens *x,
                  int64_t S0, int64_t S1, int64_t every, nsa_dtype dt, nsa_decode_reads *last) {
    nsa_tensor out = rand_tensor(dt, 1, 1, c->Hq, c->Dv, 0);
    for (int64_t t = S0; t < S1; t++) {
        nsa_decode_args a;
        memset(&a, 0, sizeof a);
        a.cfg = *c;
        a.q = at(x->q, t);
        a.k_cmp = at(x->k[0], t), a.v_cmp = at(x->v[0], t);
        a.k_sel = at(x->k[1], t), a.v_sel = at(x->v[1], t);
        a.k_win = at(x->k[2], t), a.v_win = at(x->v[2], t);
        a.gates = at(x->g, t);
        a.out = out;
        if (nsa_decode_step(ctx, cache, &a) != NSA_OK) {
            free(out.data);
            return die(ctx, "nsa_decode_step");
        }
        if (nsa_kv_cache_last_reads(ctx, cache, 0, last) != NSA_OK) {
            free(out.data);
            return die(ctx, "nsa_kv_cache_last_reads");
        }
        if (every > 0 && ((t - S0) % every == 0 || t == S1 - 1))
            printf("%8lld %6lld %6lld %6lld %8lld %8lld %8lld %9.2fx\n", (long long)last->dense,
                   (long long)last->cmp, (long long)last->sel, (long long)last->win,
                   (long long)last->total, (long long)last->budget, (long long)last->dense,
                   (double)last->dense / (double)last->total);
    }
    free(out.data);
    return 0;
}

static nsa_kv_cache *new_cache(nsa_context *ctx, const nsa_config *c, nsa_dtype dt, int64_t len,
                               size_t *bytes) {
    nsa_kv_cache_desc d;
    memset(&d, 0, sizeof d);
    d.cfg = *c;
    d.dtype = dt;
    d.device.kind = NSA_DEVICE_CPU;
    d.B = 1;
    d.max_len = len;
    nsa_kv_cache *cache = NULL;
    if (nsa_kv_cache_create(ctx, &d, &cache) != NSA_OK) die(ctx, "nsa_kv_cache_create");
    *bytes = nsa_kv_cache_bytes(&d);
    return cache;
}

static int set_lens(void *opts, const char *v, char *err, size_t n) {
    demo_opts *o = opts;
    o->nlens = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (o->nlens == 8 || cli_parse_i64(p, 1, 1 << 24, &o->lens[o->nlens++])) {
            snprintf(err, n, "'%s', expected up to 8 comma-separated lengths in 1..16777216", v);
            return -1;
        }
    }
    if (!o->nlens || strlen(v) >= sizeof buf) {
        snprintf(err, n, "'%s', expected a,b,...", v);
        return -1;
    }
    return 0;
}

static int set_seed(void *opts, const char *v, char *err, size_t n) {
    demo_opts *o = opts;
    if (!strcmp(v, "clock")) {
        o->seed = (uint64_t)time(NULL);
        return 0;
    }
    if (!cli_parse_u64(v, &o->seed)) return 0;
    snprintf(err, n, "'%s', expected clock or an integer", v);
    return -1;
}

/* Sizes up to 2^24 tokens and 256 heads of 512 keep every product below 2^63. */
#define O(f) CLI_OPT(demo_opts, f)
static const cli_opt table[] = {
    {"prompt", CLI_I64, O(prompt), "N", "2048", 0, 1 << 24, NULL,
     "prompt tokens prefilled before decoding", NULL},
    {"steps", CLI_I64, O(steps), "N", "128", 1, 1 << 24, NULL, "decode steps after the prompt", NULL},
    {"every", CLI_I64, O(every), "N", "16", 1, 1 << 24, NULL, "print every N-th step", NULL},
    {"Hq", CLI_INT, O(Hq), "H", "1", 1, 256, NULL, "query heads (reads do not depend on heads)", NULL},
    {"Hkv", CLI_INT, O(Hkv), "H", "1", 1, 256, NULL, "KV heads", NULL},
    {"Dk", CLI_INT, O(Dk), "D", "8", 1, 512, NULL, "query/key head dim", NULL},
    {"Dv", CLI_INT, O(Dv), "D", "8", 1, 512, NULL, "value head dim", NULL},
    {"dtype", CLI_CHOICE, O(dtype), NULL, "bf16", 0, 0, "f32|bf16|f16", "cache and token dtype", NULL},
    {"lens", CLI_CUSTOM, 0, "a,b,...", "8192,16384,32768,65536", 0, 0, NULL, "Table 4 lengths",
     set_lens},
    {"no-table", CLI_SWITCH, O(no_table), NULL, NULL, 0, 0, NULL, "skip Table 4", NULL},
    {"fill", CLI_CHOICE, O(fill), NULL, "prefill", 0, 0, "prefill|append",
     "how the table's caches are filled: a full reference forward, or storing the tokens "
     "without attention", NULL},
    {"seed", CLI_CUSTOM, 0, "N|clock", "clock", 0, 0, NULL, "random seed", set_seed},
};
#undef O

static int demo_run(void *opts);
const cli_command cmd_decode_demo = {
    "decode-demo", "decode with a KV cache; measured token reads vs budget vs dense (Table 4)",
    "Prefills a prompt of random tokens into a KV cache, decodes, and prints the token reads\n"
    "each step measured beside the paper's budget and dense attention; then the paper's Table 4\n"
    "from measured decode steps. Config: paper defaults l=32 d=16 lp=64 n=16 (1 initial +\n"
    "2 local) w=512. Exit code 1 if a measured count breaks the budget.",
    table, CLI_NOPTS(table), sizeof(demo_opts), demo_run, NULL, NULL};

static int demo_run(void *opts) {
    const demo_opts o = *(const demo_opts *)opts;
    const nsa_dtype dt = !strcmp(o.dtype, "f32") ? NSA_DTYPE_F32
                         : !strcmp(o.dtype, "f16") ? NSA_DTYPE_F16 : NSA_DTYPE_BF16;
    const int fill_prefill = !strcmp(o.fill, "prefill");
    rng = o.seed * 0x9e3779b97f4a7c15ull + 1;
    char msg[256];
    nsa_context *ctx;
    if (nsa_context_create(&ctx, msg, sizeof msg) != NSA_OK) {
        fprintf(stderr, "nsa decode-demo: %s\n", msg);
        return 1;
    }
    const nsa_config c = nsa_config_default(o.Hq, o.Hkv, o.Dk, o.Dv);
    printf("nsa decode-demo: l=%d d=%d lp=%d n=%d (%d initial, %d local) w=%d; Hq=%d Hkv=%d Dk=%d "
           "Dv=%d %s; reference decode on the CPU; seed %llu\n", c.l, c.d, c.lp, c.n, c.n_init,
           c.n_local, c.w, c.Hq, c.Hkv, c.Dk, c.Dv, nsa_dtype_name(dt),
           (unsigned long long)o.seed);
    printf("reads are tokens per KV head per step: cmp = compressed tokens, sel = selected raw "
           "tokens, win = window tokens; budget = num_cmp(S) + n*lp + min(w, S); dense = S\n\n");

    /* every error below leaves through `out`, which frees whatever was made */
    int rc = 1;
    const int64_t T = o.prompt + o.steps;
    tokens x = tokens_new(&c, dt, T), y;
    memset(&y, 0, sizeof y);
    size_t bytes;
    nsa_kv_cache *cache = new_cache(ctx, &c, dt, T, &bytes), *cs = NULL;
    if (!cache) goto out;
    double t0 = now_s();
    if (fill(ctx, cache, &c, &x, o.prompt, 1, dt)) goto out;
    printf("prefill of %lld random tokens: %.2f s; cache of %lld tokens: %zu bytes\n",
           (long long)o.prompt, now_s() - t0, (long long)T, bytes);
    printf("decode %lld steps (S = %lld .. %lld), every %lld-th shown:\n", (long long)o.steps,
           (long long)o.prompt + 1, (long long)T, (long long)o.every);
    printf("%8s %6s %6s %6s %8s %8s %8s %10s\n", "S", "cmp", "sel", "win", "total", "budget",
           "dense", "dense/tot");
    nsa_decode_reads r;
    t0 = now_s();
    if (decode(ctx, cache, &c, &x, o.prompt, T, o.every, dt, &r)) goto out;
    printf("%lld steps: %.3f ms per step (reference, includes converting the history to double)\n\n",
           (long long)o.steps, 1e3 * (now_s() - t0) / (double)o.steps);
    rc = 0;

    if (!o.no_table) {
        printf("Table 4 of the paper: tokens read by one decode step at S tokens (measured: the\n"
               "step at position S-1 after filling S-1 tokens by %s)\n",
               fill_prefill ? "a prefill" : "append");
        printf("%8s %6s %6s %6s %9s %8s %7s %8s %9s  %s\n", "S", "cmp", "sel", "win", "measured",
               "budget", "paper", "dense", "dense/msr", "fill s");
        int bad = 0;
        for (int i = 0; i < o.nlens; i++) {
            const int64_t S = o.lens[i];
            rc = 1;
            y = tokens_new(&c, dt, S);
            cs = new_cache(ctx, &c, dt, S, &bytes);
            if (!cs) goto out;
            fprintf(stderr, "decode-demo: S = %lld: filling %lld tokens\n", (long long)S,
                    (long long)S - 1);
            t0 = now_s();
            if (fill(ctx, cs, &c, &y, S - 1, fill_prefill, dt)) goto out;
            const double tf = now_s() - t0;
            if (decode(ctx, cs, &c, &y, S - 1, S, 0, dt, &r)) goto out;
            const int64_t exact = nsa_num_cmp(&c, S) + (int64_t)c.n * c.lp + (c.w < S ? c.w : S);
            /* Table 4 of the paper as published (it rounds the budget) */
            static const int64_t paper_S[4] = {8192, 16384, 32768, 65536};
            static const int64_t paper_reads[4] = {2048, 2560, 3584, 5632};
            char paper[24] = "-";
            for (int k = 0; k < 4; k++)
                if (S == paper_S[k]) snprintf(paper, sizeof paper, "%lld", (long long)paper_reads[k]);
            printf("%8lld %6lld %6lld %6lld %9lld %8lld %7s %8lld %8.2fx  %.1f\n", (long long)S,
                   (long long)r.cmp, (long long)r.sel, (long long)r.win, (long long)r.total,
                   (long long)exact, paper, (long long)r.dense,
                   (double)r.dense / (double)r.total, tf);
            /* at most the budget; exactly it once S >= n·lp is a multiple of lp (Table 4) */
            const int must_equal = S % c.lp == 0 && S >= (int64_t)c.n * c.lp;
            if (r.total > exact || (must_equal && r.total != exact)) bad = 1;
            nsa_kv_cache_destroy(cs);
            tokens_free(&y);
            cs = NULL;
            memset(&y, 0, sizeof y);
        }
        rc = bad;
        printf("%s\n", rc ? "MISMATCH: a measured count exceeds the budget, or differs from it at "
                               "a multiple of lp >= n*lp"
                          : "every measured count is within the budget num_cmp(S) + n*lp + min(w, S), "
                            "and equals it at multiples of lp >= n*lp");
    }
out:
    nsa_kv_cache_destroy(cs);
    nsa_kv_cache_destroy(cache);
    tokens_free(&y);
    tokens_free(&x);
    nsa_context_destroy(ctx);
    return rc;
}
