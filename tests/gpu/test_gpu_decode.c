// SPDX-License-Identifier: Apache-2.0
/* test_gpu_decode.c — the CUDA KV cache and decode step (issue 7) against the CPU decode on the
 * same random tokens: rows filled to different lengths (append) or by prefill, then decode steps
 * of the whole batch at different positions, crossing compressed-block emissions; outputs,
 * lengths and measured read counters compared after every step; an active mask leaves inactive
 * rows untouched; cmp_external with caller-supplied compressed tokens and the raw cmp tail.
 * Two CUDA steps: the reference step (NSA_FORCE_PARITY=1; double like the CPU, so
 * |gpu − cpu| ≤ 2·u·|cpu| + 1e-6·rms + 1e-7, u: 2^-8 bf16, 2^-11 f16, 2^-24 f32) and the
 * split-key step (f32 arithmetic, probabilities rounded to the dtype on tensor cores:
 * 4·u·(|cpu| + rms) + 2^-15·(|cpu| + rms) + 1e-7, as FA-2's bound), the latter on f32
 * caches (compressed tokens rounded to f32) or cmp_external ones (the caller's compressed tokens,
 * identical on both sides) so that it selects the reference's blocks; decode_fast_splits
 * makes the split-key step cut its keys into splits of several chunks.
 * Skips (77) without a GPU.
 */
#include "gpu_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dmake(nsa_context *ctx, dbuf *b, nsa_dtype dt, int ndim, const int64_t *s,
                 double scale) {
    memset(b, 0, sizeof *b);
    b->h = tb_new(dt, ndim, s, scale);
    if (nsa_cuda_malloc(ctx, &b->d, b->h.bytes + NSA_GUARD_BYTES) != NSA_OK) return 0;
    b->t = b->h.t;
    b->t.data = b->d;
    b->t.device.kind = NSA_DEVICE_CUDA;
    return nsa_cuda_memcpy_h2d(ctx, b->d, b->h.base, b->h.bytes + NSA_GUARD_BYTES) == NSA_OK;
}

static int dput(nsa_context *ctx, dbuf *b) {
    return nsa_cuda_memcpy_h2d(ctx, b->d, b->h.base, b->h.bytes) == NSA_OK;
}

static void dfree(dbuf *b) {
    if (b->d) nsa_cuda_free(b->d);
    tb_free(&b->h);
}

/* Fills host tbuf with N(0,1) rounded to its dtype. */
static void fill(tbuf *t) {
    for (int64_t i = 0; i < tb_numel(t); i++) tb_set(t, i, nsa_rng_normal());
}

static int g_fast; /* 1: the split-key step and its tolerance */

static double unit(nsa_dtype dt) {
    return dt == NSA_DTYPE_BF16 ? 1.0 / 256 : dt == NSA_DTYPE_F16 ? 1.0 / 2048 : 1.0 / 16777216;
}

/* Two caches (CPU, CUDA) of one desc. */
typedef struct {
    nsa_kv_cache *c[2];
    nsa_kv_cache_desc d;
} pair;

static int pair_make(nsa_context *ctx, pair *p, nsa_config cfg, nsa_dtype dt, int B,
                     int64_t max_len, int ext) {
    memset(p, 0, sizeof *p);
    p->d.cfg = cfg;
    p->d.dtype = dt;
    p->d.B = B;
    p->d.max_len = max_len;
    p->d.cmp_external = ext;
    for (int i = 0; i < 2; i++) {
        p->d.device.kind = i ? NSA_DEVICE_CUDA : NSA_DEVICE_CPU;
        if (nsa_kv_cache_create(ctx, &p->d, &p->c[i]) != NSA_OK) return 0;
    }
    return 1;
}

static void pair_free(pair *p) {
    nsa_kv_cache_destroy(p->c[0]);
    nsa_kv_cache_destroy(p->c[1]);
}

/* Appends T random tokens to row b of both caches. */
static int append_both(nsa_context *ctx, pair *p, int b, int64_t T) {
    const nsa_config *g = &p->d.cfg;
    const nsa_dtype dt = p->d.dtype;
    const int64_t S0 = nsa_kv_cache_len(p->c[0], b);
    const int64_t nC = nsa_num_cmp(g, S0 + T) - nsa_num_cmp(g, S0);
    dbuf x[8];
    int ok = 1;
    for (int i = 0; i < 8 && ok; i++) {
        const int D = i % 2 ? g->Dv : g->Dk;
        int64_t s[4] = {1, i >= 6 ? (nC > 0 ? nC : 1) : T, g->Hkv, D};
        ok = dmake(ctx, &x[i], dt, 4, s, 1.0);
    }
    for (int dev = 0; dev < 2 && ok; dev++) {
        nsa_kv_append_args a;
        memset(&a, 0, sizeof a);
        a.b0 = b;
#define PICK(i) (dev ? x[i].t : x[i].h.t)
        a.k_cmp = PICK(0); a.v_cmp = PICK(1); a.k_sel = PICK(2); a.v_sel = PICK(3);
        a.k_win = PICK(4); a.v_win = PICK(5);
        if (p->d.cmp_external && nC > 0) { a.kc = PICK(6); a.vc = PICK(7); }
#undef PICK
        ok = nsa_kv_cache_append(ctx, p->c[dev], &a) == NSA_OK;
        if (!ok) printf("  append: %s\n", nsa_context_message(ctx));
    }
    for (int i = 0; i < 8; i++) dfree(&x[i]);
    return ok;
}

/* `steps` decode steps of both caches; mask_every > 0: row b is inactive at step s when
 * (b + s) % mask_every == 0. Returns 1 when every step matched. */
static int steps_both(nsa_context *ctx, pair *p, int steps, int mask_every, double *worst) {
    const nsa_config *g = &p->d.cfg;
    const nsa_dtype dt = p->d.dtype;
    const int B = p->d.B;
    enum { Q, KC, VC, KS, VS, KW, VW, KN, VN, GT, NIN };
    const int64_t sh[NIN][4] = {{B, 1, g->Hq, g->Dk},  {B, 1, g->Hkv, g->Dk}, {B, 1, g->Hkv, g->Dv},
                                {B, 1, g->Hkv, g->Dk}, {B, 1, g->Hkv, g->Dv}, {B, 1, g->Hkv, g->Dk},
                                {B, 1, g->Hkv, g->Dv}, {B, 1, g->Hkv, g->Dk}, {B, 1, g->Hkv, g->Dv},
                                {B, 1, g->Hq, 3}};
    const int64_t os[4] = {B, 1, g->Hq, g->Dv};
    dbuf in[NIN], out;
    tbuf rout = tb_new(dt, 4, os, 0.0);
    int ok = dmake(ctx, &out, dt, 4, os, 0.0);
    for (int i = 0; i < NIN; i++) ok = ok && dmake(ctx, &in[i], dt, 4, sh[i], 1.0);
    uint8_t *active = malloc((size_t)B);
    *worst = 0.0;
    for (int st = 0; st < steps && ok; st++) {
        for (int i = 0; i < NIN; i++) {
            fill(&in[i].h);
            if (i == GT) tb_uniform(&in[i].h, 0.0, 1.0);
            ok = ok && dput(ctx, &in[i]);
        }
        for (int b = 0; b < B; b++) active[b] = !(mask_every > 0 && (b + st) % mask_every == 0);
        fill(&out.h); /* the reference's out starts equal to the device's (untouched rows) */
        memcpy(rout.base, out.h.base, out.h.bytes);
        ok = ok && dput(ctx, &out);
        int64_t len0[64];
        for (int b = 0; b < B && b < 64; b++) len0[b] = nsa_kv_cache_len(p->c[0], b);
        for (int dev = 0; dev < 2 && ok; dev++) {
            nsa_decode_args a;
            memset(&a, 0, sizeof a);
            a.cfg = *g;
#define PICK(i) (dev ? in[i].t : in[i].h.t)
            a.q = PICK(Q); a.k_cmp = PICK(KC); a.v_cmp = PICK(VC); a.k_sel = PICK(KS);
            a.v_sel = PICK(VS); a.k_win = PICK(KW); a.v_win = PICK(VW); a.gates = PICK(GT);
            if (p->d.cmp_external) { a.kc_new = PICK(KN); a.vc_new = PICK(VN); }
#undef PICK
            a.out = dev ? out.t : rout.t;
            a.active = mask_every > 0 ? active : NULL;
            nsa_status s = nsa_decode_step(ctx, p->c[dev], &a);
            if (s != NSA_OK) {
                printf("  step %d on %s: %s\n", st, dev ? "cuda" : "cpu", nsa_context_message(ctx));
                ok = 0;
            }
        }
        ok = ok && nsa_cuda_sync(ctx) == NSA_OK &&
             nsa_cuda_memcpy_d2h(ctx, out.h.base, out.d, out.h.bytes + NSA_GUARD_BYTES) ==
                 NSA_OK && tb_guard_ok(&out.h);
        double ss = 0.0;
        const int64_t n = tb_numel(&rout);
        for (int64_t i = 0; i < n; i++) ss += tb_get(&rout, i) * tb_get(&rout, i);
        const double rms = sqrt(ss / (double)n);
        for (int64_t i = 0; i < n && ok; i++) {
            const double a = tb_get(&out.h, i), r = tb_get(&rout, i);
            const double tol = g_fast ? 4.0 * unit(dt) * (fabs(r) + rms) + (fabs(r) + rms) / 32768.0 + 1e-7
                                      : 2.0 * unit(dt) * fabs(r) + 1e-6 * rms + 1e-7;
            if (!(fabs(a - r) <= tol)) {
                printf("  step %d: out[%lld] = %.9g, cpu %.9g (tol %.3g)\n", st, (long long)i, a, r,
                       tol);
                ok = 0;
            } else if (fabs(a - r) / tol > *worst) {
                *worst = fabs(a - r) / tol;
            }
        }
        for (int b = 0; b < B && ok; b++) {
            nsa_decode_reads r0, r1;
            const int64_t l0 = nsa_kv_cache_len(p->c[0], b), l1 = nsa_kv_cache_len(p->c[1], b);
            ok = l0 == l1 && (b >= 64 || l0 == len0[b] + active[b]) &&
                 nsa_kv_cache_last_reads(ctx, p->c[0], b, &r0) == NSA_OK &&
                 nsa_kv_cache_last_reads(ctx, p->c[1], b, &r1) == NSA_OK &&
                 memcmp(&r0, &r1, sizeof r0) == 0;
            if (!ok)
                printf("  step %d row %d: len %lld/%lld, reads cpu %lld/%lld/%lld cuda "
                       "%lld/%lld/%lld\n", st, b, (long long)l0, (long long)l1, (long long)r0.cmp,
                       (long long)r0.sel, (long long)r0.win, (long long)r1.cmp, (long long)r1.sel,
                       (long long)r1.win);
        }
    }
    free(active);
    for (int i = 0; i < NIN; i++) dfree(&in[i]);
    dfree(&out);
    tb_free(&rout);
    return ok;
}

static nsa_config cfg(int Hq, int Hkv, int Dk, int Dv, int l, int d, int lp, int n, int w) {
    nsa_config c = nsa_config_default(Hq, Hkv, Dk, Dv);
    c.l = l; c.d = d; c.lp = lp; c.n = n; c.w = w;
    return c;
}

/* Rows appended to different lengths (0, below l, below lp, ragged), then steps. */
static int run_case(nsa_context *ctx, nsa_config c, nsa_dtype dt, int B, int64_t base, int steps,
                    int mask_every, int ext) {
    if (nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", g_fast ? "0" : "1") != NSA_OK) return 0;
    pair p;
    int ok = pair_make(ctx, &p, c, dt, B, base + 40 * B + steps + 8, ext);
    for (int b = 0; b < B && ok; b++) {
        const int64_t T = b == 0 ? 0 : b == 1 ? c.l - 1 : base + 37 * b;
        if (T > 0) ok = append_both(ctx, &p, b, T);
    }
    double worst = 0.0;
    ok = ok && steps_both(ctx, &p, steps, mask_every, &worst);
    if (ok && ext && c.l > 1) { /* the raw cmp tail of row B-1 on both caches */
        const int64_t n1 = c.l - 1;
        int64_t ks[3] = {n1, c.Hkv, c.Dk}, vs[3] = {n1, c.Hkv, c.Dv};
        dbuf k, v;
        tbuf hk = tb_new(dt, 3, ks, 0.0), hv = tb_new(dt, 3, vs, 0.0);
        ok = dmake(ctx, &k, dt, 3, ks, 0.0) && dmake(ctx, &v, dt, 3, vs, 0.0) &&
             nsa_kv_cache_raw_cmp_tail(ctx, p.c[0], B - 1, hk.t, hv.t) == NSA_OK &&
             nsa_kv_cache_raw_cmp_tail(ctx, p.c[1], B - 1, k.t, v.t) == NSA_OK &&
             nsa_cuda_memcpy_d2h(ctx, k.h.base, k.d, k.h.bytes) == NSA_OK &&
             nsa_cuda_memcpy_d2h(ctx, v.h.base, v.d, v.h.bytes) == NSA_OK &&
             memcmp(k.h.base, hk.base, hk.bytes) == 0 && memcmp(v.h.base, hv.base, hv.bytes) == 0;
        if (!ok) printf("  raw cmp tail differs\n");
        dfree(&k);
        dfree(&v);
        tb_free(&hk);
        tb_free(&hv);
    }
    printf("  %s %-5s G=%-2d Dk=%-3d Dv=%-3d l=%d d=%d lp=%d n=%d w=%-3d B=%d base=%lld steps=%d"
           "%s%s: worst %.3f of tol%s\n", g_fast ? "split-key" : "reference", nsa_dtype_name(dt), c.Hq / c.Hkv, c.Dk, c.Dv, c.l, c.d, c.lp,
           c.n, c.w, B, (long long)base, steps, mask_every ? " masked" : "",
           ext ? " cmp_external" : "", worst, ok ? "" : "  FAIL");
    pair_free(&p);
    return ok;
}

static nsa_context *gpu_ctx(void) {
    g_fast = 0;
    return gp_context();
}

static void decode_f32(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_case(ctx, cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), NSA_DTYPE_F32, 4, 30, 40, 0, 0));
    CHECK(run_case(ctx, cfg(4, 4, 16, 16, 4, 2, 8, 3, 10), NSA_DTYPE_F32, 3, 50, 30, 0, 0));
    CHECK(run_case(ctx, cfg(16, 1, 48, 32, 16, 8, 32, 5, 40), NSA_DTYPE_F32, 3, 90, 40, 0, 0));
    nsa_context_destroy(ctx);
}

static void decode_bf16_f16(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_case(ctx, cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), NSA_DTYPE_BF16, 3, 300, 40, 0,
                   0));
    CHECK(run_case(ctx, cfg(8, 2, 64, 32, 32, 16, 64, 3, 100), NSA_DTYPE_F16, 4, 120, 40, 0, 0));
    nsa_context_destroy(ctx);
}

static void decode_masked(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_case(ctx, cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), NSA_DTYPE_BF16, 5, 20, 30, 3, 0));
    nsa_context_destroy(ctx);
}

static void decode_external(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    CHECK(run_case(ctx, cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), NSA_DTYPE_F32, 3, 25, 30, 0, 1));
    nsa_context_destroy(ctx);
}

/* The split-key step: f32 caches (GQA 4, 1, 16; masked), bf16/f16 with cmp_external, paper
 * dims. */
static void decode_fast(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    g_fast = 1;
    CHECK(run_case(ctx, cfg(8, 2, 32, 24, 8, 4, 16, 4, 24), NSA_DTYPE_F32, 4, 30, 40, 0, 0));
    CHECK(run_case(ctx, cfg(4, 4, 16, 16, 4, 2, 8, 3, 10), NSA_DTYPE_F32, 3, 50, 30, 3, 0));
    CHECK(run_case(ctx, cfg(16, 1, 48, 32, 16, 8, 32, 5, 40), NSA_DTYPE_F32, 3, 90, 40, 0, 0));
    CHECK(run_case(ctx, cfg(16, 1, 192, 128, 32, 16, 64, 4, 128), NSA_DTYPE_BF16, 3, 300, 40, 0,
                   1));
    CHECK(run_case(ctx, cfg(8, 2, 64, 32, 32, 16, 64, 3, 100), NSA_DTYPE_F16, 4, 120, 40, 0, 1));
    nsa_context_destroy(ctx);
}

/* The split-key step with splits of several chunks (online softmax across chunks, double-
 * buffered copies) and blocks that run several items: with 132 SMs (H100) the plan takes 2
 * chunks of 64 keys per cmp split here (8 rows x 4 KV heads x ~11 chunks > one per block). CUDA
 * cores (f32, G 4) and tensor cores (bf16, G 16, cmp_external). */
static void decode_fast_splits(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    g_fast = 1;
    CHECK(run_case(ctx, cfg(16, 4, 16, 16, 4, 2, 8, 4, 40), NSA_DTYPE_F32, 8, 1200, 12, 0, 0));
    CHECK(run_case(ctx, cfg(64, 4, 32, 16, 8, 4, 16, 4, 64), NSA_DTYPE_BF16, 8, 2400, 12, 0, 1));
    CHECK(run_case(ctx, cfg(16, 4, 16, 16, 4, 2, 8, 4, 40), NSA_DTYPE_F32, 9, 1200, 12, 4, 0));
    nsa_context_destroy(ctx);
}

/* Prefill of two rows (the CUDA forward fills the device cache), then steps. */
static void decode_prefill(void) {
    nsa_context *ctx = gpu_ctx();
    if (!ctx) return;
    const nsa_config c = cfg(8, 2, 32, 24, 8, 4, 16, 4, 24);
    const int B = 2, T = 70;
    CHECK_OK(ctx, nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "1"));
    gprob g;
    pair p;
    int ok = gp_make(ctx, &g, c, B, T, NSA_DTYPE_F32, 0) && pair_make(ctx, &p, c, NSA_DTYPE_F32, B,
                                                                       T + 40, 0);
    for (int dev = 0; dev < 2 && ok; dev++) {
        nsa_fwd_args a = gp_args(&g, dev);
        ok = nsa_kv_cache_prefill(ctx, p.c[dev], &a, NULL) == NSA_OK;
        if (!ok) printf("  prefill: %s\n", nsa_context_message(ctx));
    }
    double worst = 0.0;
    ok = ok && steps_both(ctx, &p, 30, 0, &worst);
    printf("  prefill T=%d then 30 steps: worst %.3f of tol\n", T, worst);
    pair_free(&p);
    gp_free(&g);
    nsa_context_destroy(ctx);
    CHECK(ok);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"decode_f32", decode_f32},         {"decode_bf16_f16", decode_bf16_f16},
        {"decode_masked", decode_masked},   {"decode_external", decode_external},
        {"decode_prefill", decode_prefill}, {"decode_fast", decode_fast},
        {"decode_fast_splits", decode_fast_splits},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
