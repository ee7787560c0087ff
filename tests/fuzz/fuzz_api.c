// SPDX-License-Identifier: Apache-2.0
/* fuzz_api.c — libFuzzer target for the argument checks of nsa_forward, nsa_backward and
 * nsa_decode_step (CPU): a config and descriptors drawn from the input, starting from a call
 * that is valid for tiny shapes and then mutated (presence, dtype, device, ndim, shape,
 * stride), with packed documents (cu_seqlens) and caller-supplied blocks (block_indices)
 * whose values are input bytes too; every buffer is exactly as large as its descriptor's
 * extent, so ASan sees any read the checks should have refused.
 * Not a numerical check (the reference tests do that).
 * Invariant: a call either returns an error status with a message or runs on memory its
 * descriptors describe; calls whose work could be large (B·T > 64, a head count, head dim or n
 * past 64, extents past 2^16) run the argument checks only (nsa_args_check_fwd / _bwd, exactly
 * what the entry points run first); caches past 4 MiB are not made.
 */
#include "fuzz.h"
#include "ref/ref.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BUFS 48
#define MAX_EXTENT 65536

typedef struct {
    fz_in in;
    void *bufs[MAX_BUFS];
    int nbufs, huge;
} fz_call;

static const nsa_dtype dts[] = {NSA_DTYPE_F32, NSA_DTYPE_BF16, NSA_DTYPE_F16, NSA_DTYPE_I32};

/* Gives t a buffer exactly as large as its descriptor addresses (filled from the input, so
 * inputs may be NaN or huge), or a 1-element one when the extent is past MAX_EXTENT. */
static void back_buf(fz_call *c, nsa_tensor *t, int read_in_checks);
static void back(fz_call *c, nsa_tensor *t) { back_buf(c, t, 0); }

/* cu_seqlens and block_indices: the checks read their values, so a descriptor claims memory
 * the checks may read; one too large to back is left out rather than lied about. */
static void back_values(fz_call *c, nsa_tensor *t) { back_buf(c, t, 1); }

static void back_buf(fz_call *c, nsa_tensor *t, int read_in_checks) {
    if (!t->data || c->nbufs == MAX_BUFS) {
        t->data = NULL;
        return;
    }
    int64_t ext = 1, span;
    for (int i = 0; i < t->ndim && i < NSA_MAX_DIMS; i++)
        if (t->shape[i] > 0 &&
            (!nsa_mul_ok(t->shape[i] - 1, t->stride[i], &span) || !nsa_add_ok(ext, span, &ext)))
            ext = INT64_MAX;
    if (ext > MAX_EXTENT || t->ndim < 0 || t->ndim > NSA_MAX_DIMS) {
        if (read_in_checks) {
            t->data = NULL;
            return;
        }
        c->huge = 1, ext = 1;
    }
    size_t es = nsa_dtype_size(t->dtype);
    if (!es) es = 4;
    const size_t bytes = (size_t)ext * es;
    uint8_t *b = malloc(bytes);
    if (!b) abort();
    for (size_t i = 0; i < bytes; i++) b[i] = fz_byte(&c->in) ^ (uint8_t)(i * 37);
    t->data = b;
    c->bufs[c->nbufs++] = b;
}

/* A contiguous descriptor of the given shape (data non-NULL for now), then 0..3 mutations. */
static nsa_tensor desc(fz_call *c, nsa_dtype dt, int ndim, const int64_t *shape) {
    static float present;
    nsa_tensor t = nsa_tensor_make(&present, dt, ndim, shape);
    const int muts = fz_byte(&c->in) % 8;
    for (int m = 0; m < muts && m < 3; m++) {
        const uint8_t what = fz_byte(&c->in), i = fz_byte(&c->in) % NSA_MAX_DIMS;
        switch (what % 7) {
        case 0: t.data = NULL; break;
        case 1: t.dtype = dts[fz_byte(&c->in) % 4]; break;
        case 2: t.device.kind = (nsa_device_kind)(fz_byte(&c->in) % 3); break;
        case 3: t.ndim = fz_int(&c->in, NSA_MAX_DIMS + 1); break;
        case 4: t.shape[i] = fz_val(&c->in, 8); break;
        case 5: t.stride[i] = fz_val(&c->in, 16); break;
        case 6: t.device.index = fz_int(&c->in, 2); break;
        }
    }
    return t;
}

static nsa_config config(fz_call *c) {
    nsa_config g = nsa_config_default(1, 1, 1, 1);
    g.Hkv = 1 + fz_byte(&c->in) % 2;
    g.Hq = g.Hkv * (1 + fz_byte(&c->in) % 2);
    g.Dk = 1 + fz_byte(&c->in) % 4;
    g.Dv = 1 + fz_byte(&c->in) % 4;
    g.d = 1 + fz_byte(&c->in) % 2;
    g.l = g.d * (1 + fz_byte(&c->in) % 3);
    g.lp = g.d * (1 + fz_byte(&c->in) % 4);
    g.n_init = fz_byte(&c->in) % 2;
    g.n_local = fz_byte(&c->in) % 3;
    g.n = g.n_init + g.n_local + fz_byte(&c->in) % 3;
    if (g.n < 1) g.n = 1;
    g.w = fz_byte(&c->in) % 6;
    const int muts = fz_byte(&c->in) % 4;
    for (int m = 0; m < muts; m++) {
        int *f[] = {&g.l, &g.d, &g.lp, &g.n, &g.n_init, &g.n_local, &g.w, &g.Hq, &g.Hkv, &g.Dk, &g.Dv};
        *f[fz_byte(&c->in) % 11] = fz_int(&c->in, 8);
    }
    static const float scales[] = {0.0f, 0.5f, -1.0f, 1e30f, __builtin_nanf(""), __builtin_inff()};
    if (fz_byte(&c->in) > 200) g.scale = scales[fz_byte(&c->in) % 6];
    return g;
}

static void fwd_args(fz_call *c, nsa_fwd_args *a, int64_t B, int64_t T, nsa_dtype dt) {
    const nsa_config *g = &a->cfg;
    const int cc = a->cmp_compressed;
    const int64_t Tc = nsa_num_cmp(g, T), Tk = cc ? Tc : T;
    const int64_t q[4] = {B, T, g->Hq, g->Dk}, o[4] = {B, T, g->Hq, g->Dv};
    const int64_t k[4] = {B, T, g->Hkv, g->Dk}, v[4] = {B, T, g->Hkv, g->Dv};
    const int64_t kc[4] = {B, Tk, g->Hkv, g->Dk}, vc[4] = {B, Tk, g->Hkv, g->Dv};
    const int64_t ga[4] = {B, T, g->Hq, 3}, ls[3] = {B, T, g->Hq};
    const int64_t bl[4] = {B, T, g->Hkv, g->n}, rg[5] = {B, T, g->Hkv, g->n, 2};
    a->q = desc(c, dt, 4, q);
    a->k_cmp = desc(c, dt, 4, kc), a->v_cmp = desc(c, dt, 4, vc);
    a->k_sel = desc(c, dt, 4, k), a->v_sel = desc(c, dt, 4, v);
    a->k_win = desc(c, dt, 4, k), a->v_win = desc(c, dt, 4, v);
    a->gates = desc(c, dt, 4, ga), a->out = desc(c, dt, 4, o);
    const uint8_t extras = fz_byte(&c->in);
    nsa_tensor *opt[8] = {&a->out_cmp, &a->out_sel, &a->out_win, &a->lse_cmp, &a->lse_sel,
                          &a->lse_win, &a->sel_blocks, &a->sel_ranges};
    for (int i = 0; i < 8; i++) {
        if (!(extras >> i & 1)) continue;
        *opt[i] = i < 3 ? desc(c, dt, 4, o) : i < 6 ? desc(c, NSA_DTYPE_F32, 3, ls)
                  : i == 6 ? desc(c, NSA_DTYPE_I32, 4, bl) : desc(c, NSA_DTYPE_I32, 5, rg);
    }
    /* packed documents and caller-supplied blocks: their values come from the input too */
    const uint8_t more = fz_byte(&c->in);
    if (more & 1) {
        const int64_t docs = fz_val(&c->in, 4), cs[1] = {docs < INT64_MAX ? docs + 1 : docs};
        a->cu_seqlens = desc(c, NSA_DTYPE_I32, 1, cs);
        a->max_seqlen = fz_val(&c->in, 10);
    }
    if (more & 2) a->block_indices = desc(c, NSA_DTYPE_I32, 4, bl);
    nsa_tensor *all[17] = {&a->q, &a->k_cmp, &a->v_cmp, &a->k_sel, &a->v_sel, &a->k_win,
                           &a->v_win, &a->gates, &a->out, &a->out_cmp, &a->out_sel, &a->out_win,
                           &a->lse_cmp, &a->lse_sel, &a->lse_win, &a->sel_blocks, &a->sel_ranges};
    for (int i = 0; i < 17; i++) back(c, all[i]);
    back_values(c, &a->cu_seqlens);
    back_values(c, &a->block_indices);
}

static void bwd_args(fz_call *c, const nsa_fwd_args *a, nsa_bwd_args *gr, int64_t B, int64_t T,
                     nsa_dtype dt) {
    const nsa_config *g = &a->cfg;
    const int64_t Tk = a->cmp_compressed ? nsa_num_cmp(g, T) : T;
    const int64_t q[4] = {B, T, g->Hq, g->Dk}, o[4] = {B, T, g->Hq, g->Dv};
    const int64_t k[4] = {B, T, g->Hkv, g->Dk}, v[4] = {B, T, g->Hkv, g->Dv};
    const int64_t kc[4] = {B, Tk, g->Hkv, g->Dk}, vc[4] = {B, Tk, g->Hkv, g->Dv};
    const int64_t ga[4] = {B, T, g->Hq, 3};
    gr->dout = desc(c, dt, 4, o), gr->dq = desc(c, dt, 4, q);
    gr->dk_cmp = desc(c, dt, 4, kc), gr->dv_cmp = desc(c, dt, 4, vc);
    gr->dk_sel = desc(c, dt, 4, k), gr->dv_sel = desc(c, dt, 4, v);
    gr->dk_win = desc(c, dt, 4, k), gr->dv_win = desc(c, dt, 4, v);
    gr->dgates = desc(c, dt, 4, ga);
    nsa_tensor *all[9] = {&gr->dout, &gr->dq, &gr->dk_cmp, &gr->dv_cmp, &gr->dk_sel,
                          &gr->dv_sel, &gr->dk_win, &gr->dv_win, &gr->dgates};
    for (int i = 0; i < 9; i++) back(c, all[i]);
}

static void expect_status(nsa_context *ctx, nsa_status st) {
    if (st != NSA_OK && !nsa_context_message(ctx)[0]) abort(); /* an error names its field */
    if (st == NSA_ERR_INTERNAL) abort();
}

static void forward_backward(fz_call *c, nsa_context *ctx, int backward) {
    nsa_fwd_args a;
    nsa_bwd_args g;
    memset(&a, 0, sizeof a);
    memset(&g, 0, sizeof g);
    a.cfg = config(c);
    a.cmp_compressed = fz_byte(&c->in) & 1;
    const int64_t B = fz_val(&c->in, 2), T = fz_val(&c->in, 9);
    const nsa_dtype dt = dts[fz_byte(&c->in) % 3];
    fwd_args(c, &a, B, T, dt);
    if (backward) bwd_args(c, &a, &g, B, T, dt);
    const nsa_config *cf = &a.cfg;
    const int small = !c->huge && a.q.ndim == 4 && a.q.shape[0] >= 0 && a.q.shape[1] >= 0 &&
                      a.q.shape[0] <= 8 && a.q.shape[1] <= 64 && a.q.shape[0] * a.q.shape[1] <= 64 &&
                      cf->Hq <= 64 && cf->Hkv <= 64 && cf->Dk <= 64 && cf->Dv <= 64 && cf->n <= 64;
    nsa_shape s;
    if (!small) { /* the checks only: what the entry points run before any work */
        nsa_status st = nsa_args_check_fwd(ctx, &a, &s);
        if (st == NSA_OK && backward) st = nsa_args_check_bwd(ctx, &a, &g, &s);
        expect_status(ctx, st);
        return;
    }
    expect_status(ctx, backward ? nsa_backward(ctx, &a, &g) : nsa_forward(ctx, &a));
}

static void decode(fz_call *c, nsa_context *ctx) {
    nsa_kv_cache_desc d;
    memset(&d, 0, sizeof d);
    d.cfg = config(c);
    d.dtype = dts[fz_byte(&c->in) % 4];
    d.device.kind = fz_byte(&c->in) > 250 ? NSA_DEVICE_CUDA : NSA_DEVICE_CPU;
    d.B = fz_int(&c->in, 3);
    d.max_len = fz_val(&c->in, 12);
    d.cmp_external = fz_byte(&c->in) > 200;
    const size_t bytes = nsa_kv_cache_bytes(&d);
    if (bytes > ((size_t)4 << 20)) return; /* valid but too slow to fuzz with */
    nsa_kv_cache *cache = NULL;
    nsa_status st = nsa_kv_cache_create(ctx, &d, &cache);
    expect_status(ctx, st);
    if (st != NSA_OK) {
        if (cache) abort();
        return;
    }
    const int steps = fz_byte(&c->in) % 6;
    for (int s = 0; s < steps; s++) {
        nsa_decode_args a;
        memset(&a, 0, sizeof a);
        a.cfg = fz_byte(&c->in) > 240 ? config(c) : d.cfg;
        const nsa_config *g = &a.cfg;
        const int64_t B = fz_byte(&c->in) > 240 ? fz_val(&c->in, 4) : d.B;
        const nsa_dtype dt = fz_byte(&c->in) > 240 ? dts[fz_byte(&c->in) % 4] : d.dtype;
        const int64_t q[4] = {B, 1, g->Hq, g->Dk}, o[4] = {B, 1, g->Hq, g->Dv};
        const int64_t k[4] = {B, 1, g->Hkv, g->Dk}, v[4] = {B, 1, g->Hkv, g->Dv};
        const int64_t ga[4] = {B, 1, g->Hq, 3};
        a.q = desc(c, dt, 4, q), a.out = desc(c, dt, 4, o), a.gates = desc(c, dt, 4, ga);
        a.k_cmp = desc(c, dt, 4, k), a.v_cmp = desc(c, dt, 4, v);
        a.k_sel = desc(c, dt, 4, k), a.v_sel = desc(c, dt, 4, v);
        a.k_win = desc(c, dt, 4, k), a.v_win = desc(c, dt, 4, v);
        if (d.cmp_external) a.kc_new = desc(c, dt, 4, k), a.vc_new = desc(c, dt, 4, v);
        nsa_tensor *all[11] = {&a.q, &a.out, &a.gates, &a.k_cmp, &a.v_cmp, &a.k_sel,
                               &a.v_sel, &a.k_win, &a.v_win, &a.kc_new, &a.vc_new};
        for (int i = 0; i < 11; i++) back(c, all[i]);
        uint8_t active[8];
        for (int i = 0; i < 8; i++) active[i] = fz_byte(&c->in) & 1;
        /* active must hold B flags (a caller contract the library cannot check) */
        a.active = B >= 0 && B <= 8 && fz_byte(&c->in) & 1 ? active : NULL;
        if (c->huge) break; /* a step reads whole descriptors */
        expect_status(ctx, nsa_decode_step(ctx, cache, &a));
    }
    nsa_kv_cache_destroy(cache);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static nsa_context *ctx;
    if (!ctx) {
        if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) abort();
        nsa_context_set_threads(ctx, 1);
        nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", "0");
    }
    fz_call c;
    memset(&c, 0, sizeof c);
    c.in = (fz_in){data, size, 0};
    const uint8_t which = fz_byte(&c.in) % 3;
    if (which == 2) decode(&c, ctx);
    else forward_backward(&c, ctx, which);
    for (int i = 0; i < c.nbufs; i++) free(c.bufs[i]);
    return 0;
}
