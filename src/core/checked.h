// SPDX-License-Identifier: Apache-2.0
/* checked.h — overflow-checked size arithmetic: the one helper the library (src/) and the
 * language model (lm/) use for every size they compute from input.
 * Not general integer arithmetic: operands are sizes, so a negative one is refused too.
 * Invariant: *out is written only when the exact result fits int64.
 */
#ifndef NSA_CHECKED_H
#define NSA_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* *out = a·b; false (and *out untouched) on overflow or a negative operand. */
static inline bool nsa_mul_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return false;
    if (a != 0 && b > INT64_MAX / a) return false;
    *out = a * b;
    return true;
}

/* *out = a + b; false (and *out untouched) on overflow or a negative operand. */
static inline bool nsa_add_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || a > INT64_MAX - b) return false;
    *out = a + b;
    return true;
}

#endif /* NSA_CHECKED_H */
