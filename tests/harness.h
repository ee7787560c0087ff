// SPDX-License-Identifier: Apache-2.0
/* harness.h — the project's test harness: named cases, checks that name the case, fresh random
 * inputs with a printed seed, and guarded buffers.
 * A failure prints "FAIL <exe> <case>" plus the command that reruns it (with its seed).
 * Invariant: a case that checks nothing cannot pass silently — a case must call CHECK at
 * least once or it is reported as failed.
 */
#ifndef NSA_HARNESS_H
#define NSA_HARNESS_H

#include "nsa.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} nsa_case;

/* Runs argv[1] (one case by name) or every case; returns the process exit code
 * (0 pass, 1 fail, 77 skip: when every run case called nsa_test_skip). */
int nsa_test_main(int argc, char **argv, const nsa_case *cases, int ncases);

void nsa_test_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* A failed CHECK: cond is printed as text (it may contain '%'), then the message. */
void nsa_test_fail_check(const char *file, int line, const char *cond, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
void nsa_test_skip(const char *why);
extern int nsa_test_failed;
extern long nsa_test_checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        nsa_test_checks++;                                                                         \
        if (!(cond)) {                                                                             \
            nsa_test_fail_check(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Checks an nsa_status is NSA_OK, printing the context message otherwise. */
#define CHECK_OK(ctx, expr)                                                                        \
    do {                                                                                           \
        nsa_status st_ = (expr);                                                                   \
        CHECK(st_ == NSA_OK, "%s: %s", nsa_status_name(st_), nsa_context_message(ctx));            \
    } while (0)

/* ---- random numbers: seeded from NSA_TEST_SEED or the clock; the seed is printed on failure */
uint64_t nsa_test_seed(void);
void nsa_rng_seed(uint64_t seed);
uint64_t nsa_rng_u64(void);
double nsa_rng_uniform(void);            /* [0, 1) */
double nsa_rng_normal(void);
int nsa_rng_int(int lo, int hi);         /* [lo, hi] */

/* ---- guarded buffers: bytes after the data hold a pattern that must survive every call */
#define NSA_GUARD_BYTES 64
typedef struct {
    void *base;   /* data then NSA_GUARD_BYTES of guard */
    size_t bytes; /* data bytes */
    nsa_tensor t;
} tbuf;

/* A contiguous CPU tensor of the given dims, filled with N(0,1)·scale rounded to dtype (scale 0:
 * filled with the poison byte 0x7f… so unwritten outputs show up as NaN). */
tbuf tb_new(nsa_dtype dt, int ndim, const int64_t *shape, double scale);
tbuf tb_new4(nsa_dtype dt, int64_t a, int64_t b, int64_t c, int64_t d, double scale);
void tb_free(tbuf *b);
bool tb_guard_ok(const tbuf *b);
/* Element i (row-major) as double. */
double tb_get(const tbuf *b, int64_t i);
void tb_set(tbuf *b, int64_t i, double x);
int64_t tb_numel(const tbuf *b);
/* Fills with uniform values in [lo, hi] rounded to the dtype. */
void tb_uniform(tbuf *b, double lo, double hi);

#endif
