// SPDX-License-Identifier: Apache-2.0
/* test_gpu_route.c — on the real card, what nsa_route_explain says is what runs, for every pass:
 * a forward, a backward and decode steps on cuda:0, each run's log line (forward.route,
 * backward.route, decode.route) against the explanation of the same problem on the queried
 * caps; and the H100 bug of issue 14: caller-compressed cmp keys with T < l never count a
 * fallback_error. Skipped (77) without a GPU. The CPU twin is tests/test_route_passes.c.
 */
#include "harness.h"
#include "cuda/cuda_api.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    char fwd[600], bwd[600], dec[600];
} route_log;

static void sink(void *user, const char *tag, const char *line) {
    route_log *l = user;
    char *dst = !strcmp(tag, "forward.route") ? l->fwd : !strcmp(tag, "backward.route") ? l->bwd
              : !strcmp(tag, "decode.route") ? l->dec : NULL;
    if (dst && !dst[0]) snprintf(dst, 600, "%s", line);
}

/* Device tensors of one case, freed together. */
typedef struct {
    void *p[32];
    int n;
} pool;

static nsa_tensor dev4(nsa_context *ctx, pool *m, nsa_dtype dt, int64_t a, int64_t b, int64_t c,
                       int64_t d, float scale) {
    nsa_tensor t;
    memset(&t, 0, sizeof t);
    const int64_t n = a * b * c * d;
    void *p = NULL;
    if (m->n == 32 || nsa_cuda_malloc(ctx, &p, (size_t)n * nsa_dtype_size(dt)) != NSA_OK)
        return t;
    m->p[m->n++] = p;
    if (nsa_cuda_fill_normal(ctx, p, dt, n, 1234u + (uint64_t)m->n, scale) != NSA_OK) return t;
    t = nsa_tensor_4d(p, dt, a, b, c, d);
    t.device.kind = NSA_DEVICE_CUDA;
    t.device.index = 0;
    return t;
}

static void pool_free(pool *m) {
    for (int i = 0; i < m->n; i++) nsa_cuda_free(m->p[i]);
    m->n = 0;
}

static nsa_context *gpu_ctx(route_log *log) {
    nsa_context *ctx = NULL;
    int n = 0;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    nsa_device_caps caps;
    n = nsa_device_caps_query(ctx, (nsa_device){NSA_DEVICE_CUDA, 0}, &caps) == NSA_OK;
    if (!n) {
        nsa_context_destroy(ctx);
        nsa_test_skip("no CUDA device");
        return NULL;
    }
    memset(log, 0, sizeof *log);
    nsa_context_set_log_callback(ctx, sink, log);
    return ctx;
}

static nsa_route_decision explain(nsa_context *ctx, const nsa_config *c, int64_t B, int64_t T,
                                  nsa_dtype dt, nsa_pass pass) {
    nsa_route_problem p = {*c, B, T, dt, pass, 0, 0};
    nsa_device_caps caps;
    nsa_route_decision d;
    memset(&d, 0, sizeof d);
    if (nsa_device_caps_query(ctx, (nsa_device){NSA_DEVICE_CUDA, 0}, &caps) != NSA_OK ||
        nsa_route_explain(ctx, &p, &caps, &d) != NSA_OK)
        d.backend[0] = d.backend[1] = d.backend[2] = "(explain failed)";
    return d;
}

static void names(const nsa_route_decision *d, char *buf, size_t len) {
    snprintf(buf, len, "cmp %s, sel %s, win %s", d->backend[0], d->backend[1], d->backend[2]);
}

static nsa_config paper_cfg(void) {
    nsa_config c = nsa_config_default(16, 1, 64, 64);
    c.l = 32, c.d = 16, c.lp = 64, c.n = 16, c.w = 512;
    return c;
}

/* Forward and backward (bf16, T = 1000) and decode steps: logged decision == explanation. */
static void explain_is_what_runs_gpu(void) {
    route_log log;
    nsa_context *ctx = gpu_ctx(&log);
    if (!ctx) return;
    const nsa_config c = paper_cfg();
    const nsa_dtype dt = NSA_DTYPE_BF16;
    const int64_t B = 1, T = 1000;
    pool m = {{0}, 0};
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = dev4(ctx, &m, dt, B, T, c.Hq, c.Dk, 1.f);
    a.k_cmp = a.k_sel = a.k_win = dev4(ctx, &m, dt, B, T, c.Hkv, c.Dk, 1.f);
    a.v_cmp = a.v_sel = a.v_win = dev4(ctx, &m, dt, B, T, c.Hkv, c.Dv, 1.f);
    a.gates = dev4(ctx, &m, dt, B, T, c.Hq, 3, 0.5f);
    a.out = dev4(ctx, &m, dt, B, T, c.Hq, c.Dv, 0.f);
    char want[600];
    nsa_route_decision d = explain(ctx, &c, B, T, dt, NSA_PASS_FORWARD);
    CHECK_OK(ctx, nsa_forward(ctx, &a));
    CHECK_OK(ctx, nsa_cuda_sync(ctx));
    names(&d, want, sizeof want);
    CHECK(!strcmp(log.fwd, want), "forward logs \"%s\", explain says \"%s\"", log.fwd, want);

    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    g.dout = dev4(ctx, &m, dt, B, T, c.Hq, c.Dv, 1.f);
    g.dq = dev4(ctx, &m, dt, B, T, c.Hq, c.Dk, 0.f);
    d = explain(ctx, &c, B, T, dt, NSA_PASS_BACKWARD);
    CHECK_OK(ctx, nsa_backward(ctx, &a, &g));
    CHECK_OK(ctx, nsa_cuda_sync(ctx));
    names(&d, want, sizeof want);
    CHECK(!strcmp(log.bwd, want), "backward logs \"%s\", explain says \"%s\"", log.bwd, want);

    nsa_kv_cache_desc desc = {c, dt, {NSA_DEVICE_CUDA, 0}, (int)B, 64, 0};
    nsa_kv_cache *kv = NULL;
    CHECK_OK(ctx, nsa_kv_cache_create(ctx, &desc, &kv));
    nsa_decode_args s;
    memset(&s, 0, sizeof s);
    s.cfg = c;
    s.q = dev4(ctx, &m, dt, B, 1, c.Hq, c.Dk, 1.f);
    s.k_cmp = s.k_sel = s.k_win = dev4(ctx, &m, dt, B, 1, c.Hkv, c.Dk, 1.f);
    s.v_cmp = s.v_sel = s.v_win = dev4(ctx, &m, dt, B, 1, c.Hkv, c.Dv, 1.f);
    s.gates = dev4(ctx, &m, dt, B, 1, c.Hq, 3, 0.5f);
    s.out = dev4(ctx, &m, dt, B, 1, c.Hq, c.Dv, 0.f);
    d = explain(ctx, &c, B, 1, dt, NSA_PASS_DECODE);
    CHECK_OK(ctx, nsa_decode_step(ctx, kv, &s));
    CHECK_OK(ctx, nsa_cuda_sync(ctx));
    snprintf(want, sizeof want, "%s: %s", d.backend[0], d.reason[0]);
    CHECK(!strcmp(log.dec, want), "decode logs \"%s\", explain says \"%s\"", log.dec, want);
    nsa_counters k;
    CHECK_OK(ctx, nsa_context_counters(ctx, &k));
    CHECK(k.fallback_error == 0 && k.fallback_nonfinite == 0, "%lld errors, %lld non-finite",
          (long long)k.fallback_error, (long long)k.fallback_nonfinite);
    nsa_kv_cache_destroy(kv);
    pool_free(&m);
    nsa_context_destroy(ctx);
}

/* Issue 14's H100 finding: caller-compressed cmp keys, T < l (no compressed token; the
 * tensors absent): a valid forward that must count no fallback_error in any dtype. */
static void compressed_short_no_error(void) {
    route_log log;
    nsa_context *ctx = gpu_ctx(&log);
    if (!ctx) return;
    const nsa_config c = paper_cfg();
    const nsa_dtype dts[3] = {NSA_DTYPE_BF16, NSA_DTYPE_F16, NSA_DTYPE_F32};
    for (int i = 0; i < 3; i++)
        for (int64_t T = 1; T < c.l; T += 10) {
            pool m = {{0}, 0};
            nsa_fwd_args a;
            memset(&a, 0, sizeof a);
            a.cfg = c;
            a.cmp_compressed = 1;
            a.q = dev4(ctx, &m, dts[i], 2, T, c.Hq, c.Dk, 1.f);
            a.k_sel = a.k_win = dev4(ctx, &m, dts[i], 2, T, c.Hkv, c.Dk, 1.f);
            a.v_sel = a.v_win = dev4(ctx, &m, dts[i], 2, T, c.Hkv, c.Dv, 1.f);
            a.gates = dev4(ctx, &m, dts[i], 2, T, c.Hq, 3, 0.5f);
            a.out = dev4(ctx, &m, dts[i], 2, T, c.Hq, c.Dv, 0.f);
            CHECK_OK(ctx, nsa_forward(ctx, &a));
            CHECK_OK(ctx, nsa_cuda_sync(ctx));
            pool_free(&m);
        }
    nsa_counters k;
    CHECK_OK(ctx, nsa_context_counters(ctx, &k));
    CHECK(k.fallback_error == 0, "%lld fallback_error on valid calls",
          (long long)k.fallback_error);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"explain_is_what_runs_gpu", explain_is_what_runs_gpu},
        {"compressed_short_no_error", compressed_short_no_error},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
