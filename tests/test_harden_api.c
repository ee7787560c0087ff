// SPDX-License-Identifier: Apache-2.0
/* test_harden_api.c — the library's size arithmetic on hostile input (issue 13): descriptors
 * from NULL, huge or negative shapes, num_cmp on extreme T, config fields whose sums overflow or
 * that pass every lower bound but no upper one, and the reference forward at the largest valid n.
 * Each case names the finding it pins down; every call must return a status naming the field
 * (or a documented value), never overflow (UBSan) or touch memory it does not own (ASan).
 */
#include "ref_util.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* nsa_tensor_make(p, dt, 2, NULL) read shape[0] and shape[1] through NULL. */
static void tensor_make_null_shape(void) {
    float x[4];
    nsa_tensor t = nsa_tensor_make(x, NSA_DTYPE_F32, 2, NULL);
    CHECK(t.ndim == 0, "ndim %d from a NULL shape", t.ndim);
    CHECK(nsa_tensor_numel(&t) == 1, "numel %lld", (long long)nsa_tensor_numel(&t));
}

/* Contiguous strides of a shape whose element count overflows int64: before, the stride product
 * overflowed (UB) and numel wrapped; now numel is -1 and every entry point says NSA_ERR_OVERFLOW. */
static void tensor_make_overflow(void) {
    float x[4];
    const int64_t big = (int64_t)1 << 40;
    nsa_tensor t = nsa_tensor_4d(x, NSA_DTYPE_F32, big, big, big, 2);
    CHECK(nsa_tensor_numel(&t) == -1, "numel %lld of a 2^121-element shape",
          (long long)nsa_tensor_numel(&t));
    nsa_tensor u = nsa_tensor_4d(x, NSA_DTYPE_F32, 1, -3, 2, 2);
    CHECK(nsa_tensor_numel(&u) == -1, "numel %lld of a negative shape", (long long)nsa_tensor_numel(&u));
    nsa_tensor v = nsa_tensor_4d(x, NSA_DTYPE_F32, 1, 1, 2, 2);
    CHECK(nsa_tensor_numel(&v) == 4);
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = nsa_config_default(2, 1, 2, 2);
    a.q = nsa_tensor_4d(x, NSA_DTYPE_F32, big, big, 2, 2);
    a.k_cmp = a.v_cmp = a.k_sel = a.v_sel = a.k_win = a.v_win = a.gates = a.out = a.q;
    nsa_status st = nsa_forward(ctx, &a);
    CHECK(st == NSA_ERR_OVERFLOW && strstr(nsa_context_message(ctx), "q"), "%s: %s",
          nsa_status_name(st), nsa_context_message(ctx));
    nsa_context_destroy(ctx);
}

/* Found by fuzz_api: a descriptor whose largest offset is exactly INT64_MAX made the extent
 * check compute INT64_MAX + 1 (signed overflow; only UBSan sees it, the wrapped value was
 * refused by luck). */
static void extent_at_int64_max(void) {
    float x[4];
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = nsa_config_default(1, 1, 1, 1);
    a.q = nsa_tensor_4d(x, NSA_DTYPE_F32, 2, 1, 1, 1);
    a.q.stride[0] = INT64_MAX;
    nsa_status st = nsa_forward(ctx, &a);
    CHECK(st == NSA_ERR_OVERFLOW && strstr(nsa_context_message(ctx), "q"), "%s: %s",
          nsa_status_name(st), nsa_context_message(ctx));
    nsa_context_destroy(ctx);
}

/* Found by the 30-minute fuzz_api run (2026-12-08): a gradient whose size-1 dim carries the
 * stride INT64_MAX (any stride is valid on a size-1 dim; PyTorch makes such views) passed the
 * extent check, then the aliasing check turned strides into bytes, INT64_MAX · 4: signed
 * overflow (UBSan only). The backward must run and give the gradient of the plain layout. */
static void disjoint_unit_dim_huge_stride(void) {
    enum { T = 5 };
    float q[T], k[T], v[T], gates[T * 3], out[T], dout[T], dq[T], dq_ref[T];
    for (int i = 0; i < T; i++)
        q[i] = (float)nsa_rng_normal(), k[i] = (float)nsa_rng_normal(),
        v[i] = (float)nsa_rng_normal(), dout[i] = (float)nsa_rng_normal();
    for (int i = 0; i < 3 * T; i++) gates[i] = (float)nsa_rng_uniform();
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = nsa_config_default(1, 1, 1, 1);
    a.cfg.l = 2, a.cfg.d = 1, a.cfg.lp = 2, a.cfg.n = 3, a.cfg.w = 2;
    a.q = nsa_tensor_4d(q, NSA_DTYPE_F32, 1, T, 1, 1);
    a.k_cmp = a.k_sel = a.k_win = nsa_tensor_4d(k, NSA_DTYPE_F32, 1, T, 1, 1);
    a.v_cmp = a.v_sel = a.v_win = nsa_tensor_4d(v, NSA_DTYPE_F32, 1, T, 1, 1);
    a.gates = nsa_tensor_4d(gates, NSA_DTYPE_F32, 1, T, 1, 3);
    a.out = nsa_tensor_4d(out, NSA_DTYPE_F32, 1, T, 1, 1);
    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    g.dout = nsa_tensor_4d(dout, NSA_DTYPE_F32, 1, T, 1, 1);
    g.dq = nsa_tensor_4d(dq_ref, NSA_DTYPE_F32, 1, T, 1, 1);
    nsa_status st = nsa_backward(ctx, &a, &g);
    CHECK(st == NSA_OK, "%s: %s", nsa_status_name(st), nsa_context_message(ctx));
    g.dq = nsa_tensor_4d(dq, NSA_DTYPE_F32, 1, T, 1, 1);
    g.dq.stride[0] = INT64_MAX, g.dq.stride[2] = INT64_MAX; /* size-1 dims */
    st = nsa_backward(ctx, &a, &g);
    CHECK(st == NSA_OK, "%s: %s", nsa_status_name(st), nsa_context_message(ctx));
    CHECK(memcmp(dq, dq_ref, sizeof dq) == 0, "dq through the huge-stride view differs");
    nsa_context_destroy(ctx);
}

/* num_cmp on negative and huge T, and on a config it cannot use (l < 1: T - l overflowed). */
static void num_cmp_extremes(void) {
    nsa_config c = nsa_config_default(1, 1, 1, 1); /* l 32, d 16 */
    CHECK(nsa_num_cmp(&c, -1) == 0 && nsa_num_cmp(&c, INT64_MIN) == 0);
    CHECK(nsa_num_cmp(&c, INT64_MAX) == (INT64_MAX - 32) / 16 + 1);
    c.l = -5;
    CHECK(nsa_num_cmp(&c, INT64_MAX) == 0, "l = -5 gave %lld", (long long)nsa_num_cmp(&c, INT64_MAX));
    c.l = INT_MIN;
    CHECK(nsa_num_cmp(&c, INT64_MAX) == 0);
    c.l = 32, c.d = 0;
    CHECK(nsa_num_cmp(&c, 100) == 0);
    CHECK(nsa_num_cmp(NULL, 100) == 0);
}

/* Runs the validator on one config; the status and the field the message names. */
static nsa_status check_cfg(nsa_config c, char *msg, size_t n) {
    nsa_context *ctx;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NSA_ERR_INTERNAL;
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    const nsa_status st = nsa_forward(ctx, &a);
    snprintf(msg, n, "%s", nsa_context_message(ctx));
    nsa_context_destroy(ctx);
    return st;
}

/* n_init + n_local overflowed int inside the validator (INT_MAX + INT_MAX < n passed). */
static void config_sum_overflow(void) {
    char msg[512];
    nsa_config c = nsa_config_default(2, 1, 4, 4);
    c.n_init = INT_MAX, c.n_local = INT_MAX, c.n = 5;
    nsa_status st = check_cfg(c, msg, sizeof msg);
    CHECK(st == NSA_ERR_CONFIG && (strstr(msg, "n_init") || strstr(msg, "cfg.n")), "%s: %s",
          nsa_status_name(st), msg);
}

/* Every field has an upper bound (docs/hardening.md); one past it names the field. */
static void config_upper_bounds(void) {
    static const struct {
        const char *field;
        size_t off;
    } f[] = {
        {"cfg.l", offsetof(nsa_config, l)},       {"cfg.d", offsetof(nsa_config, d)},
        {"cfg.lp", offsetof(nsa_config, lp)},     {"cfg.n:", offsetof(nsa_config, n)},
        {"cfg.n_init", offsetof(nsa_config, n_init)}, {"cfg.n_local", offsetof(nsa_config, n_local)},
        {"cfg.Hq", offsetof(nsa_config, Hq)},     {"cfg.Hkv", offsetof(nsa_config, Hkv)},
        {"cfg.Dk", offsetof(nsa_config, Dk)},     {"cfg.Dv", offsetof(nsa_config, Dv)},
    };
    char msg[512];
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        nsa_config c = nsa_config_default(2, 1, 4, 4);
        *(int *)((char *)&c + f[i].off) = INT_MAX;
        nsa_status st = check_cfg(c, msg, sizeof msg);
        CHECK(st == NSA_ERR_CONFIG && strstr(msg, f[i].field), "%s = INT_MAX: %s: %s", f[i].field,
              nsa_status_name(st), msg);
    }
}

/* A valid config with a huge n: the reference forward sized its per-thread selection scratch
 * as int Hkv·n·2 (2^32 for n = 2^30, Hkv = 2, a 0-byte malloc that was then written). Now
 * n = 2^30 is refused and the largest valid n runs. */
static void forward_huge_n(void) {
    char msg[512];
    nsa_config c = nsa_config_default(2, 2, 4, 4);
    c.l = 4, c.d = 2, c.lp = 4, c.w = 4;
    c.n = 1 << 30;
    nsa_status st = check_cfg(c, msg, sizeof msg);
    CHECK(st == NSA_ERR_CONFIG && strstr(msg, "cfg.n"), "n = 2^30: %s: %s", nsa_status_name(st), msg);
    c.n = NSA_MAX_SELECTED;
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    prob p;
    prob_init(&p, c, NSA_DTYPE_F32, 1, 9, 0);
    CHECK_OK(ctx, nsa_forward(ctx, &p.a));
    CHECK(prob_guards_ok(&p), "guard bytes overwritten");
    prob_free(&p);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"tensor_make_null_shape", tensor_make_null_shape},
        {"tensor_make_overflow", tensor_make_overflow},
        {"extent_at_int64_max", extent_at_int64_max},
        {"disjoint_unit_dim_huge_stride", disjoint_unit_dim_huge_stride},
        {"num_cmp_extremes", num_cmp_extremes},
        {"config_sum_overflow", config_sum_overflow},
        {"config_upper_bounds", config_upper_bounds},
        {"forward_huge_n", forward_huge_n},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
