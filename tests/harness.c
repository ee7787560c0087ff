// SPDX-License-Identifier: Apache-2.0
/* harness.c — see harness.h. */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int nsa_test_failed;
long nsa_test_checks;
static int skipped;
static const char *cur_exe, *cur_case;
static uint64_t seed0, rng_state;

static void vfail(const char *file, int line, const char *cond, const char *fmt, va_list ap) {
    fprintf(stderr, "FAIL %s %s: %s:%d: ", cur_exe, cur_case, file, line);
    if (cond) fprintf(stderr, "CHECK(%s)", cond);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n  rerun: NSA_TEST_SEED=%llu %s %s\n", (unsigned long long)seed0, cur_exe,
            cur_case);
    nsa_test_failed = 1;
}

void nsa_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(file, line, NULL, fmt, ap);
    va_end(ap);
}

void nsa_test_fail_check(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(file, line, cond, fmt, ap);
    va_end(ap);
}

void nsa_test_skip(const char *why) {
    fprintf(stderr, "SKIP %s %s: %s\n", cur_exe, cur_case, why);
    skipped = 1;
}

uint64_t nsa_test_seed(void) { return seed0; }

void nsa_rng_seed(uint64_t seed) { rng_state = seed ? seed : 0x9e3779b97f4a7c15ull; }

uint64_t nsa_rng_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double nsa_rng_uniform(void) { return (double)(nsa_rng_u64() >> 11) * (1.0 / 9007199254740992.0); }

double nsa_rng_normal(void) {
    double u1 = nsa_rng_uniform(), u2 = nsa_rng_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int nsa_rng_int(int lo, int hi) { return lo + (int)(nsa_rng_u64() % (uint64_t)(hi - lo + 1)); }

tbuf tb_new(nsa_dtype dt, int ndim, const int64_t *shape, double scale) {
    tbuf b;
    memset(&b, 0, sizeof b);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    b.bytes = (size_t)n * nsa_dtype_size(dt);
    b.base = malloc(b.bytes + NSA_GUARD_BYTES);
    if (!b.base) {
        fprintf(stderr, "harness: out of memory\n");
        exit(2);
    }
    memset((char *)b.base + b.bytes, 0xA5, NSA_GUARD_BYTES);
    b.t = nsa_tensor_make(b.base, dt, ndim, shape);
    if (scale == 0.0)
        memset(b.base, 0x7f, b.bytes); /* NaN in f32/bf16/f16; 0x7f7f7f7f in i32 */
    else
        for (int64_t i = 0; i < n; i++) tb_set(&b, i, nsa_rng_normal() * scale);
    return b;
}

tbuf tb_new4(nsa_dtype dt, int64_t a, int64_t b, int64_t c, int64_t d, double scale) {
    int64_t s[4] = {a, b, c, d};
    return tb_new(dt, 4, s, scale);
}

void tb_free(tbuf *b) {
    free(b->base);
    memset(b, 0, sizeof *b);
}

bool tb_guard_ok(const tbuf *b) {
    const unsigned char *g = (const unsigned char *)b->base + b->bytes;
    for (int i = 0; i < NSA_GUARD_BYTES; i++)
        if (g[i] != 0xA5) return false;
    return true;
}

int64_t tb_numel(const tbuf *b) { return (int64_t)(b->bytes / nsa_dtype_size(b->t.dtype)); }

double tb_get(const tbuf *b, int64_t i) {
    switch (b->t.dtype) {
    case NSA_DTYPE_F32: return ((float *)b->base)[i];
    case NSA_DTYPE_BF16: return nsa_bf16_to_f32(((uint16_t *)b->base)[i]);
    case NSA_DTYPE_F16: return nsa_f16_to_f32(((uint16_t *)b->base)[i]);
    case NSA_DTYPE_I32: return ((int32_t *)b->base)[i];
    }
    return 0;
}

void tb_set(tbuf *b, int64_t i, double x) {
    switch (b->t.dtype) {
    case NSA_DTYPE_F32: ((float *)b->base)[i] = (float)x; break;
    case NSA_DTYPE_BF16: ((uint16_t *)b->base)[i] = nsa_f32_to_bf16((float)x); break;
    case NSA_DTYPE_F16: ((uint16_t *)b->base)[i] = nsa_f32_to_f16((float)x); break;
    case NSA_DTYPE_I32: ((int32_t *)b->base)[i] = (int32_t)x; break;
    }
}

void tb_uniform(tbuf *b, double lo, double hi) {
    int64_t n = tb_numel(b);
    for (int64_t i = 0; i < n; i++) tb_set(b, i, lo + (hi - lo) * nsa_rng_uniform());
}

static int run_case(const nsa_case *c) {
    cur_case = c->name;
    nsa_test_failed = 0;
    nsa_test_checks = 0;
    skipped = 0;
    nsa_rng_seed(seed0 ^ (uint64_t)strlen(c->name) * 0x100000001b3ull);
    c->fn();
    if (skipped) return 77;
    if (!nsa_test_failed && nsa_test_checks == 0)
        nsa_test_fail(__FILE__, __LINE__, "the case checked nothing");
    if (nsa_test_failed) return 1;
    printf("ok   %s %s (%ld checks)\n", cur_exe, c->name, nsa_test_checks);
    return 0;
}

int nsa_test_main(int argc, char **argv, const nsa_case *cases, int ncases) {
    cur_exe = argv[0];
    const char *env = getenv("NSA_TEST_SEED");
    seed0 = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    int fails = 0, skips = 0, runs = 0;
    for (int i = 0; i < ncases; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
        runs++;
        int r = run_case(&cases[i]);
        if (r == 1) fails++;
        if (r == 77) skips++;
    }
    if (runs == 0) {
        fprintf(stderr, "%s: no case named %s\n", argv[0], argc > 1 ? argv[1] : "(any)");
        return 1;
    }
    if (fails) return 1;
    return skips == runs ? 77 : 0;
}
