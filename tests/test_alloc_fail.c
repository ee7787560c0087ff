// SPDX-License-Identifier: Apache-2.0
/* test_alloc_fail.c — the allocation-failure walk: for every host allocation N of a CPU forward,
 * backward, decode step and KV-cache create / prefill / append, the call with allocation N
 * failing (nsa_testing_fail_alloc_at) returns NSA_ERR_NOMEM with a message, leaves the cache it
 * was given byte for byte as it was, and the same call repeated normally succeeds with bitwise
 * the output of an undisturbed call. Leaks show under ASan (scripts/test.sh: detect_leaks=1).
 * Not a test of device memory. Invariant: the walk covers every allocation the undisturbed call
 * makes (N = 1 .. its count), and that count must be > 0.
 */
#include "ref_util.h"
#include "test_decode_util.h"

#include "core/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One call under test. run() makes the call (prep() first, outside the counted allocations,
 * builds whatever state it starts from); out() lists the bytes that are its result. */
typedef struct walk walk;
struct walk {
    const char *name;
    void (*prep)(walk *w);
    nsa_status (*run)(walk *w);
    /* result bytes: up to 12 regions */
    int (*out)(walk *w, const unsigned char *p[12], size_t n[12]);
    nsa_context *ctx;
    prob p;
    pgrad g;
    seq s;
    step_in st;
    nsa_kv_cache *cache, *made;
    unsigned char *own; /* a buffer out() made for its regions, freed once they are copied */
    int T0;
    int no_alloc; /* the call is documented to allocate nothing: the walk checks it stays so */
};

static nsa_context *new_ctx(int parity) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    nsa_context_set_threads(ctx, 1); /* one order of allocations */
    nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", "0");
    if (parity) nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "1");
    return ctx;
}

/* the regions' bytes, concatenated into a new buffer */
static unsigned char *result(walk *w, size_t *len) {
    const unsigned char *p[12];
    size_t n[12];
    const int k = w->out(w, p, n);
    *len = 0;
    for (int i = 0; i < k; i++) *len += n[i];
    unsigned char *r = malloc(*len + 1), *o = r;
    for (int i = 0; i < k; i++) {
        memcpy(o, p[i], n[i]);
        o += n[i];
    }
    free(w->own);
    w->own = NULL;
    return r;
}

/* The cache's whole state, or NULL (no cache). */
static unsigned char *cache_state(const nsa_kv_cache *c, size_t *n) {
    *n = 0;
    return c ? kv_snapshot(c, n) : NULL;
}

/* The walk itself (see the file comment). Returns through CHECK on the first failure. */
static void walk_all(walk *w) {
    CHECK(w->ctx, "context");
    nsa_testing_fail_alloc_at(0);
    w->prep(w);
    nsa_testing_fail_alloc_at(0);
    CHECK_OK(w->ctx, w->run(w));
    const int64_t count = nsa_testing_alloc_count();
    CHECK(w->no_alloc ? count == 0 : count > 0, "%s: %lld allocations (the walk needs some; "
          "append makes none)", w->name, (long long)count);
    size_t nref;
    unsigned char *ref = result(w, &nref);
    for (int64_t N = 1; N <= count; N++) {
        w->prep(w);
        size_t nbefore, nafter;
        unsigned char *before = cache_state(w->cache, &nbefore);
        nsa_testing_fail_alloc_at(N);
        const nsa_status st = w->run(w);
        nsa_testing_fail_alloc_at(0);
        const char *msg = nsa_context_message(w->ctx);
        unsigned char *after = cache_state(w->cache, &nafter);
        const int same_cache = nbefore == nafter && (!before || !memcmp(before, after, nbefore));
        free(before);
        free(after);
        if (st != NSA_ERR_NOMEM || !msg[0] || !same_cache) free(ref);
        CHECK(st == NSA_ERR_NOMEM, "%s, allocation %lld of %lld failing: %s (%s), want "
              "NSA_ERR_NOMEM", w->name, (long long)N, (long long)count, nsa_status_name(st), msg);
        CHECK(msg[0], "%s, allocation %lld failing: NSA_ERR_NOMEM without a message", w->name,
              (long long)N);
        CHECK(same_cache, "%s, allocation %lld failing (%s): the cache changed", w->name,
              (long long)N, msg);
        if (w->made) { /* a failed create hands back no cache */
            free(ref);
            CHECK(!w->made, "%s, allocation %lld failing: *out is not NULL", w->name,
                  (long long)N);
        }
        /* the same call again, undisturbed: it works and gives the undisturbed result */
        w->prep(w);
        const nsa_status again = w->run(w);
        if (again != NSA_OK) free(ref);
        CHECK(again == NSA_OK, "%s after allocation %lld failed: %s", w->name, (long long)N,
              nsa_context_message(w->ctx));
        size_t ngot;
        unsigned char *got = result(w, &ngot);
        const int same = ngot == nref && !memcmp(got, ref, nref);
        free(got);
        if (!same) free(ref);
        CHECK(same, "%s after allocation %lld failed: the result differs bitwise", w->name,
              (long long)N);
    }
    free(ref);
}

/* ---- forward and backward ---- */

static nsa_config small_cfg(void) {
    nsa_config c = nsa_config_default(4, 2, 8, 6);
    c.l = 8, c.d = 4, c.lp = 8, c.n = 4, c.w = 13;
    return c;
}

static void prep_none(walk *w) { (void)w; }
static nsa_status run_forward(walk *w) { return nsa_forward(w->ctx, &w->p.a); }
static int out_forward(walk *w, const unsigned char *p[12], size_t n[12]) {
    const tbuf *b[] = {&w->p.out,    &w->p.ob[0],  &w->p.ob[1],  &w->p.ob[2],    &w->p.lse[0],
                       &w->p.lse[1], &w->p.lse[2], &w->p.blocks, &w->p.ranges};
    int k = 0;
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i]->base) p[k] = b[i]->base, n[k++] = b[i]->bytes;
    return k;
}
static nsa_status run_backward(walk *w) { return nsa_backward(w->ctx, &w->p.a, &w->g.g); }
static int out_backward(walk *w, const unsigned char *p[12], size_t n[12]) {
    for (int i = 0; i < 8; i++) p[i] = w->g.d[i].base, n[i] = w->g.d[i].bytes;
    return 8;
}

/* Forward with every optional output, on the default route and on the reference (parity). */
static void forward(void) {
    for (int parity = 0; parity < 2; parity++) {
        walk w = {.name = parity ? "forward (NSA_FORCE_PARITY)" : "forward", .prep = prep_none,
                  .run = run_forward, .out = out_forward, .ctx = new_ctx(parity)};
        prob_init(&w.p, small_cfg(), NSA_DTYPE_BF16, 2, 37, P_EXTRAS);
        walk_all(&w);
        prob_free(&w.p);
        nsa_context_destroy(w.ctx);
        if (nsa_test_failed) return;
    }
}

/* Backward recomputing the selection, and reusing the forward's sel_ranges (P_EXTRAS). */
static void backward(void) {
    for (int extras = 0; extras < 2; extras++) {
        walk w = {.name = extras ? "backward (sel_ranges given)" : "backward", .prep = prep_none,
                  .run = run_backward, .out = out_backward, .ctx = new_ctx(0)};
        prob_init(&w.p, small_cfg(), NSA_DTYPE_F32, 2, 29, extras ? P_EXTRAS : 0);
        pgrad_init(&w.g, &w.p);
        if (extras && w.ctx) nsa_forward(w.ctx, &w.p.a);
        walk_all(&w);
        pgrad_free(&w.g);
        prob_free(&w.p);
        nsa_context_destroy(w.ctx);
        if (nsa_test_failed) return;
    }
}

/* ---- KV cache and decode (rows of 40 tokens; prefill and append of T0 = 21) ---- */

static void drop_caches(walk *w) {
    nsa_kv_cache_destroy(w->cache);
    nsa_kv_cache_destroy(w->made);
    w->cache = w->made = NULL;
}

static nsa_kv_cache_desc desc_of(const walk *w) {
    nsa_kv_cache_desc d;
    memset(&d, 0, sizeof d);
    d.cfg = w->s.c;
    d.dtype = w->s.dt;
    d.device.kind = NSA_DEVICE_CPU;
    d.B = w->s.B;
    d.max_len = w->s.T;
    return d;
}

static nsa_status run_create(walk *w) {
    const nsa_kv_cache_desc d = desc_of(w);
    nsa_kv_cache_destroy(w->made);
    w->made = (nsa_kv_cache *)&w->made; /* must come back NULL on failure */
    return nsa_kv_cache_create(w->ctx, &d, &w->made);
}
static int out_create(walk *w, const unsigned char *p[12], size_t n[12]) {
    p[0] = w->own = kv_snapshot(w->made, &n[0]);
    return 1;
}

static void prep_empty(walk *w) {
    drop_caches(w);
    w->cache = dec_cache(w->ctx, &w->s, w->s.B, w->s.T, 0);
}
static void prep_filled(walk *w) {
    prep_empty(w);
    nsa_prefill_extra x = {0};
    nsa_fwd_args a = seq_fwd(&w->s, w->T0, &w->s.out.t);
    if (nsa_kv_cache_prefill(w->ctx, w->cache, &a, &x) != NSA_OK) drop_caches(w);
}
static nsa_status run_prefill(walk *w) {
    nsa_prefill_extra x = {0};
    nsa_fwd_args a = seq_fwd(&w->s, w->T0, &w->s.out.t);
    return nsa_kv_cache_prefill(w->ctx, w->cache, &a, &x);
}
static nsa_status run_append(walk *w) {
    nsa_kv_append_args a;
    memset(&a, 0, sizeof a);
    a.k_cmp = seq_view(&w->s.kc, w->T0), a.v_cmp = seq_view(&w->s.vc, w->T0);
    a.k_sel = seq_view(&w->s.ks, w->T0), a.v_sel = seq_view(&w->s.vs, w->T0);
    a.k_win = seq_view(&w->s.kw, w->T0), a.v_win = seq_view(&w->s.vw, w->T0);
    return nsa_kv_cache_append(w->ctx, w->cache, &a);
}
static nsa_status run_step(walk *w) { return nsa_decode_step(w->ctx, w->cache, &w->st.a); }
/* the cache's state (and, for prefill and step, the output) */
static int out_cache(walk *w, const unsigned char *p[12], size_t n[12]) {
    p[0] = w->own = kv_snapshot(w->cache, &n[0]);
    p[1] = w->s.out.base, n[1] = w->s.out.bytes;
    p[2] = w->st.out.base, n[2] = w->st.out.bytes;
    return 3;
}

static void cache_and_decode(void) {
    static const struct {
        const char *name;
        void (*prep)(walk *);
        nsa_status (*run)(walk *);
        int (*out)(walk *, const unsigned char *[12], size_t[12]);
        int no_alloc;
    } calls[] = {
        {"kv_cache_create", prep_none, run_create, out_create, 0},
        {"kv_cache_prefill", prep_empty, run_prefill, out_cache, 0},
        {"kv_cache_append", prep_empty, run_append, out_cache, 1},
        {"decode_step", prep_filled, run_step, out_cache, 0},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        walk w = {.name = calls[i].name, .prep = calls[i].prep, .run = calls[i].run,
                  .out = calls[i].out, .ctx = new_ctx(0), .T0 = 21,
                  .no_alloc = calls[i].no_alloc};
        CHECK(w.ctx);
        CHECK(seq_new(w.ctx, &w.s, dec_cfg(), NSA_DTYPE_BF16, 2, 40), "%s",
              nsa_context_message(w.ctx));
        step_new(&w.st, &w.s);
        int64_t pos[2] = {w.T0, w.T0};
        step_fill(&w.st, &w.s, pos);
        walk_all(&w);
        drop_caches(&w);
        step_free(&w.st);
        seq_free(&w.s);
        nsa_context_destroy(w.ctx);
        if (nsa_test_failed) return;
    }
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"forward", forward},
        {"backward", backward},
        {"cache_and_decode", cache_and_decode},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
