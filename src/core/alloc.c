// SPDX-License-Identifier: Apache-2.0
/* alloc.c — the one door of libnsa's host allocations (nsa_malloc, nsa_calloc, nsa_realloc;
 * freed with free), and the test switch that makes the Nth of them fail
 * (nsa_testing_fail_alloc_at).
 * Not a pool or a tracker: plain malloc/calloc/realloc behind one counter. Device memory
 * (cudaMalloc) does not come through here.
 * Invariant: every host allocation inside the library calls these, so the switch reaches each
 * one (tests/test_alloc_fail.c walks N over all of them). The counter is atomic: allocations in
 * OpenMP regions count too.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_llong alloc_count; /* allocations since the switch was last set */
static atomic_llong fail_at;     /* 0: off; n: the n-th allocation after it was set fails */

static int alloc_fails(void) {
    const long long n = atomic_fetch_add(&alloc_count, 1) + 1;
    return n == atomic_load(&fail_at);
}

void *nsa_malloc(size_t bytes) { return alloc_fails() ? NULL : malloc(bytes); }

void *nsa_calloc(size_t count, size_t size) { return alloc_fails() ? NULL : calloc(count, size); }

void *nsa_realloc(void *p, size_t bytes) { return alloc_fails() ? NULL : realloc(p, bytes); }

void nsa_testing_fail_alloc_at(int64_t n) {
    atomic_store(&fail_at, (long long)(n > 0 ? n : 0));
    atomic_store(&alloc_count, 0);
}

int64_t nsa_testing_alloc_count(void) { return (int64_t)atomic_load(&alloc_count); }
