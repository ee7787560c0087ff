// SPDX-License-Identifier: Apache-2.0
/* tensor.c — tensor descriptors, dtypes, status names and the bf16/f16 conversions.
 * Not a tensor library: descriptors only describe caller-owned memory.
 * Invariant: conversions round to nearest even and keep NaN a NaN.
 */
#include "internal.h"

#include <string.h>

const char *nsa_status_name(nsa_status s) {
    static const char *names[] = {
        "NSA_OK",          "NSA_ERR_INVALID_ARG", "NSA_ERR_CONFIG",    "NSA_ERR_SHAPE",
        "NSA_ERR_DTYPE",   "NSA_ERR_DEVICE",      "NSA_ERR_OVERFLOW",  "NSA_ERR_NOMEM",
        "NSA_ERR_UNSUPPORTED", "NSA_ERR_CAUSALITY", "NSA_ERR_CACHE",   "NSA_ERR_FLAG",
        "NSA_ERR_PROFILE", "NSA_ERR_CUDA",        "NSA_ERR_IO",        "NSA_ERR_INTERNAL"};
    if ((unsigned)s < sizeof names / sizeof names[0]) return names[s];
    return "NSA_ERR_UNKNOWN";
}

size_t nsa_dtype_size(nsa_dtype dt) {
    switch (dt) {
    case NSA_DTYPE_F32: return 4;
    case NSA_DTYPE_BF16: return 2;
    case NSA_DTYPE_F16: return 2;
    case NSA_DTYPE_I32: return 4;
    }
    return 0;
}

const char *nsa_dtype_name(nsa_dtype dt) {
    switch (dt) {
    case NSA_DTYPE_F32: return "f32";
    case NSA_DTYPE_BF16: return "bf16";
    case NSA_DTYPE_F16: return "f16";
    case NSA_DTYPE_I32: return "i32";
    }
    return "?";
}

nsa_tensor nsa_tensor_make(void *data, nsa_dtype dt, int ndim, const int64_t *shape) {
    nsa_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dt;
    t.device.kind = NSA_DEVICE_CPU;
    if (ndim < 0 || ndim > NSA_MAX_DIMS || !shape) ndim = 0;
    t.ndim = ndim;
    /* a stride past int64 (the shape has more elements than int64 counts) is INT64_MAX: the
     * entry points' extent check then reports NSA_ERR_OVERFLOW naming the tensor */
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = s;
        if (s != INT64_MAX && !nsa_mul_ok(s, shape[i] > 0 ? shape[i] : 0, &s)) s = INT64_MAX;
    }
    return t;
}

nsa_tensor nsa_tensor_3d(void *data, nsa_dtype dt, int64_t a, int64_t b, int64_t c) {
    int64_t s[3] = {a, b, c};
    return nsa_tensor_make(data, dt, 3, s);
}

nsa_tensor nsa_tensor_4d(void *data, nsa_dtype dt, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t s[4] = {a, b, c, d};
    return nsa_tensor_make(data, dt, 4, s);
}

nsa_tensor nsa_tensor_5d(void *data, nsa_dtype dt, int64_t a, int64_t b, int64_t c, int64_t d,
                         int64_t e) {
    int64_t s[5] = {a, b, c, d, e};
    return nsa_tensor_make(data, dt, 5, s);
}

int64_t nsa_tensor_numel(const nsa_tensor *t) {
    if (!t || !t->data) return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (!nsa_mul_ok(n, t->shape[i], &n)) return -1;
    return n;
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t nsa_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return (uint16_t)(u >> 16);
}

float nsa_bf16_to_f32(uint16_t x) { return bits_f32((uint32_t)x << 16); }

uint16_t nsa_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf (>= 65520) */
    if (a < 0x38800000u) {
        /* subnormal or zero in f16: value = m * 2^-24 */
        if (a < 0x33000000u) return (uint16_t)sign; /* < 2^-25: rounds to 0 */
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14 + (113 - e) - ... : bits to drop below 2^-24 */
        /* value = m * 2^(e-150); in units of 2^-24: m * 2^(e-126) => shift right by 126-e */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent 127 -> 15, round mantissa 23 -> 10 bits */
    uint32_t r = a - 0x38000000u; /* exponent rebiased, still 23-bit mantissa */
    uint32_t lsb = (r >> 13) & 1u;
    r += 0xfffu + lsb;
    return (uint16_t)(sign | (r >> 13));
}

float nsa_f16_to_f32(uint16_t x) {
    uint32_t sign = ((uint32_t)x & 0x8000u) << 16;
    uint32_t e = (x >> 10) & 0x1fu;
    uint32_t m = x & 0x3ffu;
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        /* subnormal: m * 2^-24 */
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}
