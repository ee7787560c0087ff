// SPDX-License-Identifier: Apache-2.0
/* test_ref_convert.c — the public bf16/f16 <-> f32 conversions against independent definitions:
 * decoding every one of the 65536 patterns by its formula, round trips, and rounding of random
 * f32 values (any bit pattern: NaN, inf, subnormals) and of exact midpoints against
 * rint(x / quantum) · quantum in double (round to nearest, ties to even).
 */
#include "harness.h"

#include <float.h>
#include <math.h>
#include <string.h>

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Value of a binary float with `eb` exponent bits (bias 2^(eb-1) - 1) and `mb` mantissa bits. */
static double decode(uint32_t h, int eb, int mb) {
    const uint32_t s = h >> (eb + mb) & 1u, e = h >> mb & ((1u << eb) - 1), m = h & ((1u << mb) - 1);
    const int bias = (1 << (eb - 1)) - 1;
    double v;
    if (e == (1u << eb) - 1)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, 1 - bias - mb);
    else
        v = ldexp((double)(m | 1u << mb), (int)e - bias - mb);
    return s ? -v : v;
}

/* x rounded to the format (mb mantissa bits, smallest normal exponent emin, overflow at 2^emax1
 * after rounding) in double, ties to even; sign kept. */
static double round_to(double x, int mb, int emin, int emax1) {
    if (isnan(x) || isinf(x) || x == 0) return x;
    int ex;
    frexp(fabs(x), &ex); /* |x| in [2^(ex-1), 2^ex) */
    int E = ex - 1 < emin ? emin : ex - 1;
    double q = ldexp(1.0, E - mb);
    double r = rint(fabs(x) / q) * q;
    if (r >= ldexp(1.0, emax1)) r = INFINITY;
    return copysign(r, x);
}

static bool same_value(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

/* Every f16 pattern decodes to its formula's value and converts back to itself (NaN stays NaN). */
static void f16_exhaustive(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = nsa_f16_to_f32((uint16_t)h);
        const double want = decode(h, 5, 10);
        CHECK(same_value(f, want), "f16 0x%04x decodes to %a, expected %a", h, f, want);
        const uint16_t back = nsa_f32_to_f16(f);
        if (isnan(want))
            CHECK(isnan(nsa_f16_to_f32(back)) && (back & 0x8000) == (h & 0x8000),
                  "f16 NaN 0x%04x came back as 0x%04x", h, back);
        else
            CHECK(back == h, "f16 0x%04x came back as 0x%04x", h, back);
    }
}

static void bf16_exhaustive(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = nsa_bf16_to_f32((uint16_t)h);
        const double want = decode(h, 8, 7);
        CHECK(same_value(f, want), "bf16 0x%04x decodes to %a, expected %a", h, f, want);
        const uint16_t back = nsa_f32_to_bf16(f);
        if (isnan(want))
            CHECK(isnan(nsa_bf16_to_f32(back)) && (back & 0x8000) == (h & 0x8000),
                  "bf16 NaN 0x%04x came back as 0x%04x", h, back);
        else
            CHECK(back == h, "bf16 0x%04x came back as 0x%04x", h, back);
    }
}

/* One f32 value through both conversions against the independent rounding. */
static void check_round(float x) {
    const double w16 = round_to(x, 10, -14, 16), wb = round_to(x, 7, -126, 128);
    const float g16 = nsa_f16_to_f32(nsa_f32_to_f16(x)), gb = nsa_bf16_to_f32(nsa_f32_to_bf16(x));
    CHECK(same_value(g16, w16), "f16(%a = 0x%08x) = %a, expected %a", x, bits(x), g16, w16);
    CHECK(same_value(gb, wb), "bf16(%a = 0x%08x) = %a, expected %a", x, bits(x), gb, wb);
}

/* Random f32 bit patterns (every class: NaN, inf, normal, subnormal, zero) and special values. */
static void random_f32_rounding(void) {
    const float special[] = {0.0f,        -0.0f,       INFINITY,    -INFINITY,   NAN,
                             65504.0f,    65519.99f,   65520.0f,    -65520.0f,   0x1p-24f,
                             0x1p-25f,    0x1.8p-25f,  0x1p-26f,    0x1.ffcp-15f, 0x1p-14f,
                             FLT_MAX,     -FLT_MAX,    FLT_MIN,     0x1p-149f,   0x1p-133f,
                             0x1.8p-134f, 0x1p-134f,   1.0f + 0x1p-8f, 1.0f + 0x1p-11f,
                             1.0f + 0x3p-11f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        check_round(special[i]);
        if (nsa_test_failed) return;
    }
    for (int i = 0; i < 1000000; i++) {
        check_round(from_bits((uint32_t)nsa_rng_u64()));
        if (nsa_test_failed) return;
    }
    /* values near the f16 range, where most f32 patterns are not */
    for (int i = 0; i < 200000; i++) {
        check_round((float)ldexp(nsa_rng_uniform() * 2 - 1, nsa_rng_int(-26, 17)));
        if (nsa_test_failed) return;
    }
}

/* Exact midpoints between neighbouring representable values round to the even one. */
static void ties_to_even(void) {
    for (int i = 0; i < 200000; i++) {
        uint16_t h = (uint16_t)(nsa_rng_u64() & 0x7bffu); /* finite f16, below the largest */
        if (h == 0x7bff) continue;
        double a = decode(h, 5, 10), b = decode(h + 1u, 5, 10);
        float mid = (float)((a + b) / 2);
        uint16_t want = (h & 1u) ? (uint16_t)(h + 1u) : h;
        CHECK(nsa_f32_to_f16(mid) == want, "f16 midpoint %a of 0x%04x: got 0x%04x, want 0x%04x",
              mid, h, nsa_f32_to_f16(mid), want);
        CHECK(nsa_f32_to_f16(-mid) == (want | 0x8000u), "negative f16 midpoint %a", -mid);
        uint16_t hb = (uint16_t)(nsa_rng_u64() & 0x7f7fu);
        if (hb == 0x7f7f) continue;
        double ab = decode(hb, 8, 7), bb = decode(hb + 1u, 8, 7);
        float midb = (float)((ab + bb) / 2);
        uint16_t wantb = (hb & 1u) ? (uint16_t)(hb + 1u) : hb;
        CHECK(nsa_f32_to_bf16(midb) == wantb, "bf16 midpoint %a of 0x%04x: got 0x%04x, want "
              "0x%04x", midb, hb, nsa_f32_to_bf16(midb), wantb);
    }
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"f16_exhaustive", f16_exhaustive},
        {"bf16_exhaustive", bf16_exhaustive},
        {"random_f32_rounding", random_f32_rounding},
        {"ties_to_even", ties_to_even},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
