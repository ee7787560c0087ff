// SPDX-License-Identifier: Apache-2.0
/* bench_util.h — what every CUDA benchmark program shares: fail-fast checks of CUDA and nsa calls
 * and the median of repeated timings. Benchmarks are programs, not tests: they exit on the first
 * failed call, naming it.
 */
#ifndef NSA_BENCH_UTIL_H
#define NSA_BENCH_UTIL_H

#include "nsa.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench: %s: %s\n", #x, cudaGetErrorString(e_));                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define NK(ctx, x)                                                                                 \
    do {                                                                                           \
        nsa_status s_ = (x);                                                                       \
        if (s_ != NSA_OK) {                                                                        \
            fprintf(stderr, "bench: %s: %s\n", #x, nsa_context_message(ctx));                      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static inline int bench_cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts v). */
static inline float bench_median(float *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_f);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

#endif
