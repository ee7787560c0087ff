// SPDX-License-Identifier: Apache-2.0
/* test_decode_bad.c — decode read counters against their formula and budget, the decode.reads
 * log and its NSA_LOG_LIMIT cap, the size formula, and every bad input: each returns its status
 * with a message naming the field, leaves the whole cache state byte for byte as it was, and the
 * next valid call still works (its output equal to the prefill's).
 */
#include "test_decode_util.h"

#include "ref/kv_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nsa_context *new_ctx(const char *log_limit) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    nsa_context_set_flag(ctx, "NSA_FORCE_PARITY", "1");
    nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", log_limit);
    return ctx;
}

typedef struct {
    int lines;
    char first[512];
} log_seen;
static void on_log(void *user, const char *tag, const char *line) {
    log_seen *l = user;
    if (strcmp(tag, "decode.reads") != 0) return;
    if (l->lines++ == 0) snprintf(l->first, sizeof l->first, "%s", line);
}

/* Steady state (S ≥ n·lp): cmp = num_cmp(S), win = min(w, S), sel = (n-1)·lp + (S-1) % lp + 1
 * (n-1 whole blocks and the current one up to t); the total never exceeds the budget and equals
 * it when S is a multiple of lp. */
static void counters_formula(void) {
    nsa_context *ctx = new_ctx("3");
    CHECK(ctx);
    log_seen seen = {0, ""};
    nsa_context_set_log_callback(ctx, on_log, &seen);
    nsa_config cfg = dec_cfg();
    seq s;
    CHECK(seq_new(ctx, &s, cfg, NSA_DTYPE_F32, 1, 120));
    nsa_kv_cache *c = dec_cache(ctx, &s, 1, 120, 0);
    CHECK(c);
    nsa_decode_reads r;
    CHECK_OK(ctx, nsa_kv_cache_last_reads(ctx, c, 0, &r));
    CHECK(r.total == 0 && r.dense == 0, "reads before the first step");
    step_in st;
    step_new(&st, &s);
    int at_budget = 0;
    for (int64_t t = 0; t < s.T; t++) {
        const int64_t S = t + 1;
        step_fill(&st, &s, &t);
        CHECK_OK(ctx, nsa_decode_step(ctx, c, &st.a));
        CHECK_OK(ctx, nsa_kv_cache_last_reads(ctx, c, 0, &r));
        CHECK(r.cmp == nsa_num_cmp(&cfg, S), "S=%lld cmp=%lld", (long long)S, (long long)r.cmp);
        CHECK(r.win == (cfg.w < S ? cfg.w : S), "S=%lld win=%lld", (long long)S, (long long)r.win);
        CHECK(r.sel <= (int64_t)cfg.n * cfg.lp && r.sel <= S);
        CHECK(r.total == r.cmp + r.sel + r.win && r.dense == S);
        CHECK(r.budget == nsa_num_cmp(&cfg, S) + (int64_t)cfg.n * cfg.lp + (cfg.w < S ? cfg.w : S));
        CHECK(r.total <= r.budget, "S=%lld total %lld > budget %lld", (long long)S,
              (long long)r.total, (long long)r.budget);
        if (S >= (int64_t)cfg.n * cfg.lp) {
            const int64_t want = (int64_t)(cfg.n - 1) * cfg.lp + (S - 1) % cfg.lp + 1;
            CHECK(r.sel == want, "S=%lld sel=%lld", (long long)S, (long long)r.sel);
            if (S % cfg.lp == 0) {
                CHECK(r.total == r.budget);
                at_budget++;
            }
        }
    }
    CHECK(at_budget >= 5);
    CHECK(seen.lines == 3, "decode.reads lines: %d with NSA_LOG_LIMIT=3", seen.lines);
    CHECK(strstr(seen.first, "S=1 ") && strstr(seen.first, "budget=33") && strstr(seen.first, "dense=1"),
          "first line: %s", seen.first);
    step_free(&st);
    nsa_kv_cache_destroy(c);
    seq_free(&s);
    nsa_context_destroy(ctx);
}

static void create_and_size(void) {
    nsa_context *ctx = new_ctx("0");
    CHECK(ctx);
    nsa_kv_cache_desc d;
    memset(&d, 0, sizeof d);
    d.cfg = dec_cfg();
    d.dtype = NSA_DTYPE_BF16;
    d.B = 3;
    d.max_len = 100;
    /* the header's formula: B·R·(e·(max_len + W + L) + 8·C) + B·64 + 8·l·Hkv·max(Dk,Dv) + 256 */
    const int64_t R = 2 * (8 + 6), C = nsa_num_cmp(&d.cfg, 100);
    CHECK(nsa_kv_cache_bytes(&d) == (size_t)(3 * R * (2 * (100 + 13 + 8) + 8 * C) + 3 * 64 + 8 * 8 * 2 * 8 + 256));
    d.max_len = 5; /* W = L = 5, C = 1 */
    CHECK(nsa_kv_cache_bytes(&d) == (size_t)(3 * R * (2 * (5 + 5 + 5) + 8) + 3 * 64 + 8 * 8 * 2 * 8 + 256));
    nsa_kv_cache *c = (nsa_kv_cache *)&d; /* must be set to NULL on failure */
#define BAD(field, val, st, name)                                                                  \
    do {                                                                                           \
        nsa_kv_cache_desc b = d;                                                                   \
        b.field = val;                                                                             \
        c = (nsa_kv_cache *)&d;                                                                    \
        CHECK(nsa_kv_cache_create(ctx, &b, &c) == st, "desc." #field);                             \
        CHECK(c == NULL && strstr(nsa_context_message(ctx), name), "%s", nsa_context_message(ctx)); \
    } while (0)
#ifndef NSA_HAVE_CUDA /* CUDA caches: tests/gpu/test_gpu_decode.c */
    BAD(device.kind, NSA_DEVICE_CUDA, NSA_ERR_UNSUPPORTED, "desc.device");
#endif
    BAD(dtype, NSA_DTYPE_I32, NSA_ERR_DTYPE, "desc.dtype");
    BAD(B, 0, NSA_ERR_INVALID_ARG, "desc.B");
    BAD(max_len, 0, NSA_ERR_INVALID_ARG, "desc.max_len");
    BAD(cmp_external, 2, NSA_ERR_INVALID_ARG, "desc.cmp_external");
    BAD(cfg.d, 3, NSA_ERR_CONFIG, "cfg.d");
#undef BAD
    nsa_kv_cache_desc huge = d;
    huge.max_len = INT32_MAX;
    huge.B = INT32_MAX;
    CHECK(nsa_kv_cache_bytes(&huge) == 0);
    CHECK(nsa_kv_cache_create(ctx, &huge, &c) == NSA_ERR_OVERFLOW);
    CHECK(nsa_kv_cache_bytes(NULL) == 0);
    CHECK(nsa_kv_cache_create(ctx, NULL, &c) == NSA_ERR_INVALID_ARG);
    CHECK(nsa_kv_cache_len(NULL, 0) == -1 && nsa_kv_cache_emits_next(NULL, 0) == -1);
    nsa_kv_cache_destroy(NULL);
    CHECK_OK(ctx, nsa_kv_cache_create(ctx, &d, &c));
    CHECK(nsa_kv_cache_len(c, 3) == -1 && nsa_kv_cache_len(c, -1) == -1 && nsa_kv_cache_len(c, 2) == 0);
    CHECK(nsa_kv_cache_emits_next(c, 3) == -1);
    nsa_kv_cache_destroy(c);
    nsa_context_destroy(ctx);
}

/* The fixture of bad_inputs: 2 rows of 60 tokens; row 0 prefilled with 13, row 1 with 60 (full). */
typedef struct {
    nsa_context *ctx;
    seq s;
    nsa_kv_cache *c;
    step_in st;
    unsigned char *snap;
    size_t nsnap;
} fixture;

/* The cache state equals the snapshot, and the next valid step (row 0 only) equals prefill. */
static int unchanged_then_valid(fixture *f) {
    size_t n;
    unsigned char *now = kv_snapshot(f->c, &n);
    int same = n == f->nsnap && memcmp(now, f->snap, n) == 0;
    free(now);
    if (!same) {
        fprintf(stderr, "cache state changed by a failed call\n");
        return 0;
    }
    int64_t pos[2] = {nsa_kv_cache_len(f->c, 0), -1};
    step_fill(&f->st, &f->s, pos);
    if (nsa_decode_step(f->ctx, f->c, &f->st.a) != NSA_OK) {
        fprintf(stderr, "next valid step: %s\n", nsa_context_message(f->ctx));
        return 0;
    }
    free(f->snap);
    f->snap = kv_snapshot(f->c, &f->nsnap);
    return step_out_equals(&f->st, &f->s.out, 0, pos[0]) && tb_guard_ok(&f->st.out);
}

#define EXPECT(f, call, status, field)                                                             \
    do {                                                                                           \
        nsa_status st_ = (call);                                                                   \
        CHECK(st_ == (status), "%s: got %s (%s)", #call, nsa_status_name(st_),                     \
              nsa_context_message((f)->ctx));                                                      \
        CHECK(strstr(nsa_context_message((f)->ctx), field), "%s: message \"%s\" lacks \"%s\"",    \
              #call, nsa_context_message((f)->ctx), field);                                        \
        CHECK(unchanged_then_valid(f), "after %s", #call);                                         \
    } while (0)

static void bad_inputs(void) {
    fixture fx, *f = &fx;
    memset(f, 0, sizeof *f);
    f->ctx = new_ctx("0");
    CHECK(f->ctx);
    CHECK(seq_new(f->ctx, &f->s, dec_cfg(), NSA_DTYPE_F32, 2, 60));
    f->c = dec_cache(f->ctx, &f->s, 2, 60, 0);
    CHECK(f->c);
    tbuf po = tb_new4(f->s.dt, 2, 60, f->s.c.Hq, f->s.c.Dv, 0.0);
    seq one = f->s; /* row 1 alone: a (1, T, ...) view */
    tbuf *bufs[] = {&one.q, &one.kc, &one.vc, &one.ks, &one.vs, &one.kw, &one.vw, &one.g};
    for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) {
        bufs[k]->t.data = (char *)bufs[k]->t.data + bufs[k]->t.stride[0] * 4;
        bufs[k]->t.shape[0] = 1;
    }
    nsa_fwd_args a1 = seq_fwd(&one, 60, &po.t), a0 = seq_fwd(&f->s, 13, &po.t);
    a1.out.shape[0] = 1;
    a0.out.shape[0] = 1;
    a0.q.shape[0] = a0.k_cmp.shape[0] = a0.v_cmp.shape[0] = a0.k_sel.shape[0] = 1;
    a0.v_sel.shape[0] = a0.k_win.shape[0] = a0.v_win.shape[0] = a0.gates.shape[0] = 1;
    nsa_prefill_extra ex1 = {1, {0}, {0}};
    CHECK_OK(f->ctx, nsa_kv_cache_prefill(f->ctx, f->c, &a1, &ex1));
    CHECK_OK(f->ctx, nsa_kv_cache_prefill(f->ctx, f->c, &a0, NULL));
    step_new(&f->st, &f->s);
    f->snap = kv_snapshot(f->c, &f->nsnap);
    nsa_context *ctx = f->ctx;
    nsa_decode_args d;

    /* decode: past max_len (row 1 full; row 0 fine — the whole step is refused) */
    step_fill(&f->st, &f->s, (int64_t[2]){13, 59});
    EXPECT(f, nsa_decode_step(ctx, f->c, &f->st.a), NSA_ERR_CACHE, "max_len");
    /* decode: another config, another dtype, NULL cache, NULL args, bad shapes, missing tensors */
    d = f->st.a;
    d.cfg.w = 12;
    EXPECT(f, nsa_decode_step(ctx, f->c, &d), NSA_ERR_CACHE, "cfg.w");
    d = f->st.a;
    d.cfg.scale = 0.5f;
    EXPECT(f, nsa_decode_step(ctx, f->c, &d), NSA_ERR_CACHE, "cfg.scale");
    tbuf qb = tb_new4(NSA_DTYPE_BF16, 2, 1, f->s.c.Hq, f->s.c.Dk, 1.0);
    d = f->st.a;
    d.q = qb.t;
    EXPECT(f, nsa_decode_step(ctx, f->c, &d), NSA_ERR_DTYPE, "q");
    EXPECT(f, nsa_decode_step(ctx, NULL, &f->st.a), NSA_ERR_INVALID_ARG, "cache");
    EXPECT(f, nsa_decode_step(ctx, f->c, NULL), NSA_ERR_INVALID_ARG, "args");
    d = f->st.a;
    d.k_sel.shape[2] = 1;
    EXPECT(f, nsa_decode_step(ctx, f->c, &d), NSA_ERR_SHAPE, "k_sel");
    d = f->st.a;
    d.gates.data = NULL;
    EXPECT(f, nsa_decode_step(ctx, f->c, &d), NSA_ERR_INVALID_ARG, "gates");
    d = f->st.a;
    d.kc_new = f->st.kcn.t;
    EXPECT(f, nsa_decode_step(ctx, f->c, &d), NSA_ERR_INVALID_ARG, "kc_new");
    /* prefill: non-empty row, row out of range, other config / dtype / cmp mode, too long */
    EXPECT(f, nsa_kv_cache_prefill(ctx, f->c, &a0, NULL), NSA_ERR_CACHE, "empty row");
    nsa_prefill_extra ex = {2, {0}, {0}};
    EXPECT(f, nsa_kv_cache_prefill(ctx, f->c, &a0, &ex), NSA_ERR_CACHE, "extra.b0");
    ex.b0 = -1;
    EXPECT(f, nsa_kv_cache_prefill(ctx, f->c, &a0, &ex), NSA_ERR_CACHE, "extra.b0");
    nsa_fwd_args ab = a0;
    ab.cfg.n = 5;
    EXPECT(f, nsa_kv_cache_prefill(ctx, f->c, &ab, &ex1), NSA_ERR_CACHE, "cfg.n");
    EXPECT(f, nsa_kv_cache_prefill(ctx, NULL, &a0, &ex1), NSA_ERR_INVALID_ARG, "cache");
    /* append: unequal rows, past max_len, NULL cache */
    nsa_kv_append_args ap;
    memset(&ap, 0, sizeof ap);
    ap.k_cmp = seq_view(&f->s.kc, 1);
    ap.v_cmp = seq_view(&f->s.vc, 1);
    ap.k_sel = seq_view(&f->s.ks, 1);
    ap.v_sel = seq_view(&f->s.vs, 1);
    ap.k_win = seq_view(&f->s.kw, 1);
    ap.v_win = seq_view(&f->s.vw, 1);
    EXPECT(f, nsa_kv_cache_append(ctx, f->c, &ap), NSA_ERR_CACHE, "equal length");
    nsa_kv_append_args ap1 = ap;
    ap1.b0 = 1;
    ap1.k_cmp.shape[0] = ap1.v_cmp.shape[0] = ap1.k_sel.shape[0] = ap1.v_sel.shape[0] = 1;
    ap1.k_win.shape[0] = ap1.v_win.shape[0] = 1;
    EXPECT(f, nsa_kv_cache_append(ctx, f->c, &ap1), NSA_ERR_CACHE, "max_len");
    ap1.b0 = 2;
    EXPECT(f, nsa_kv_cache_append(ctx, f->c, &ap1), NSA_ERR_CACHE, "b0");
    EXPECT(f, nsa_kv_cache_append(ctx, NULL, &ap1), NSA_ERR_INVALID_ARG, "cache");
    /* queries with a row out of range */
    nsa_decode_reads r;
    EXPECT(f, nsa_kv_cache_reset(ctx, f->c, 2), NSA_ERR_CACHE, "b");
    EXPECT(f, nsa_kv_cache_reset(ctx, f->c, -2), NSA_ERR_CACHE, "b");
    EXPECT(f, nsa_kv_cache_reset(ctx, NULL, 0), NSA_ERR_INVALID_ARG, "cache");
    EXPECT(f, nsa_kv_cache_last_reads(ctx, f->c, 2, &r), NSA_ERR_CACHE, "b");
    EXPECT(f, nsa_kv_cache_last_reads(ctx, NULL, 0, &r), NSA_ERR_INVALID_ARG, "cache");
    tbuf tk = tb_new4(f->s.dt, 1, 7, 2, 8, 1.0), tv = tb_new4(f->s.dt, 1, 7, 2, 6, 1.0);
    nsa_tensor tk3 = nsa_tensor_3d(tk.base, f->s.dt, 7, 2, 8), tv3 = nsa_tensor_3d(tv.base, f->s.dt, 7, 2, 6);
    EXPECT(f, nsa_kv_cache_raw_cmp_tail(ctx, f->c, 2, tk3, tv3), NSA_ERR_CACHE, "b");
    tk3.shape[0] = 6;
    EXPECT(f, nsa_kv_cache_raw_cmp_tail(ctx, f->c, 0, tk3, tv3), NSA_ERR_SHAPE, "k");

    /* with row 1 emptied, prefill into it: other dtype, other cmp mode, too long */
    CHECK_OK(ctx, nsa_kv_cache_reset(ctx, f->c, 1));
    free(f->snap);
    f->snap = kv_snapshot(f->c, &f->nsnap);
    seq sb;
    CHECK(seq_new(ctx, &sb, dec_cfg(), NSA_DTYPE_BF16, 1, 60));
    ab = seq_fwd(&sb, 60, &sb.out.t);
    EXPECT(f, nsa_kv_cache_prefill(ctx, f->c, &ab, &ex1), NSA_ERR_DTYPE, "q");
    seq_free(&sb);
    ab = a1;
    ab.cmp_compressed = 1;
    ab.k_cmp.shape[1] = ab.v_cmp.shape[1] = nsa_num_cmp(&ab.cfg, 60);
    EXPECT(f, nsa_kv_cache_prefill(ctx, f->c, &ab, &ex1), NSA_ERR_CACHE, "cmp_compressed");
    nsa_kv_cache *small = dec_cache(ctx, &f->s, 2, 30, 0);
    CHECK(small);
    nsa_kv_cache *keep = f->c;
    free(f->snap);
    f->c = small;
    f->snap = kv_snapshot(f->c, &f->nsnap);
    ab = a1;
    EXPECT(f, nsa_kv_cache_prefill(ctx, f->c, &ab, NULL), NSA_ERR_CACHE, "max_len");
    f->c = keep;
    nsa_kv_cache_destroy(small);

    tb_free(&tk); tb_free(&tv); tb_free(&qb); tb_free(&po);
    free(f->snap);
    step_free(&f->st);
    nsa_kv_cache_destroy(f->c);
    seq_free(&f->s);
    nsa_context_destroy(ctx);
}

/* cmp_external: a step that emits needs kc_new/vc_new; one that does not emit does not. */
static void external_needs_kc_new(void) {
    fixture fx, *f = &fx;
    memset(f, 0, sizeof *f);
    f->ctx = new_ctx("0");
    CHECK(f->ctx);
    CHECK(seq_new(f->ctx, &f->s, dec_cfg(), NSA_DTYPE_F16, 1, 10));
    f->c = dec_cache(f->ctx, &f->s, 1, 10, 1);
    CHECK(f->c);
    step_new(&f->st, &f->s);
    nsa_context *ctx = f->ctx;
    tbuf tk = tb_new4(f->s.dt, 1, 7, 2, 8, 1.0), tv = tb_new4(f->s.dt, 1, 7, 2, 6, 1.0);
    nsa_tensor tk3 = nsa_tensor_3d(tk.base, f->s.dt, 7, 2, 8), tv3 = nsa_tensor_3d(tv.base, f->s.dt, 7, 2, 6);
    for (int64_t t = 0; t < 7; t++) { /* no emission before t = l-1 = 7 */
        step_fill(&f->st, &f->s, &t);
        CHECK(nsa_kv_cache_emits_next(f->c, 0) == 0);
        CHECK(nsa_kv_cache_raw_cmp_tail(ctx, f->c, 0, tk3, tv3) == NSA_ERR_CACHE, "tail of %lld tokens", (long long)t);
        CHECK_OK(ctx, nsa_decode_step(ctx, f->c, &f->st.a));
    }
    CHECK(nsa_kv_cache_emits_next(f->c, 0) == 1);
    CHECK_OK(ctx, nsa_kv_cache_raw_cmp_tail(ctx, f->c, 0, tk3, tv3));
    f->snap = kv_snapshot(f->c, &f->nsnap);
    int64_t t = 7;
    step_fill(&f->st, &f->s, &t);
    nsa_status st = nsa_decode_step(ctx, f->c, &f->st.a);
    CHECK(st == NSA_ERR_INVALID_ARG && strstr(nsa_context_message(ctx), "kc_new"), "%s",
          nsa_context_message(ctx));
    size_t n;
    unsigned char *now = kv_snapshot(f->c, &n);
    CHECK(n == f->nsnap && memcmp(now, f->snap, n) == 0, "state changed");
    free(now);
    f->st.a.kc_new = f->st.kcn.t;
    f->st.a.vc_new = f->st.vcn.t;
    CHECK_OK(ctx, nsa_decode_step(ctx, f->c, &f->st.a));
    CHECK(nsa_kv_cache_len(f->c, 0) == 8);
    tb_free(&tk); tb_free(&tv);
    free(f->snap);
    step_free(&f->st);
    nsa_kv_cache_destroy(f->c);
    seq_free(&f->s);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"counters_formula", counters_formula},
        {"create_and_size", create_and_size},
        {"bad_inputs", bad_inputs},
        {"external_needs_kc_new", external_needs_kc_new},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
