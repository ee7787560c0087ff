// SPDX-License-Identifier: Apache-2.0
/* test_varlen.c — packed documents (cu_seqlens) on the reference: a packed forward and backward
 * equal, bit for bit, one plain call per document on copies of its tokens; one document of T
 * tokens equals the plain call; bad offsets are refused naming the field with nothing written;
 * NSA_STRICT_ASSERTS finds a read across a boundary.
 * Not the KV cache (test_varlen_kv.c). The expected values come from plain calls on fresh
 * buffers, never from the library's document views.
 */
#include "ref_util.h"

#include <stdlib.h>
#include <string.h>

/* l=4 d=2 lp=8 n=3 w=5: documents of 1, l-1, l, lp+1 tokens cross every edge of the blocks. */
static nsa_config vcfg(void) {
    nsa_config c = nsa_config_default(4, 2, 4, 3);
    c.l = 4;
    c.d = 2;
    c.lp = 8;
    c.n = 3;
    c.w = 5;
    return c;
}

/* Empty documents first, between and last; lengths 1, l-1, l, lp+1 and a long one. */
static const int lens_mix[] = {0, 1, 3, 4, 0, 9, 21, 0};
#define NMIX ((int)(sizeof lens_mix / sizeof lens_mix[0]))

/* A packed problem: prob over (1, T) with the documents' offsets. */
typedef struct {
    prob p;
    tbuf cu;
    int n;
    int32_t off[16];
    int64_t coff[16]; /* compressed-row offsets */
} packed;

static void packed_init(packed *k, nsa_config c, nsa_dtype dt, const int *lens, int n,
                        unsigned flags) {
    memset(k, 0, sizeof *k);
    k->n = n;
    int T = 0, mx = 0;
    for (int i = 0; i < n; i++) {
        k->off[i] = T;
        T += lens[i];
        mx = lens[i] > mx ? lens[i] : mx;
    }
    k->off[n] = T;
    prob_init(&k->p, c, dt, 1, T, flags);
    const int64_t Tk = nsa_num_cmp_docs(&c, k->off, n, k->coff);
    if (flags & P_CMP_COMPRESSED) { /* (1, Σ num_cmp(len_i), Hkv, D) */
        tb_free(&k->p.kc);
        tb_free(&k->p.vc);
        k->p.kc = tb_new4(dt, 1, Tk, c.Hkv, c.Dk, 1.0);
        k->p.vc = tb_new4(dt, 1, Tk, c.Hkv, c.Dv, 1.0);
        k->p.a.k_cmp = k->p.kc.t;
        k->p.a.v_cmp = k->p.vc.t;
    }
    int64_t shape[1] = {n + 1};
    k->cu = tb_new(NSA_DTYPE_I32, 1, shape, 0.0);
    memcpy(k->cu.base, k->off, sizeof(int32_t) * (size_t)(n + 1));
    k->p.a.cu_seqlens = k->cu.t;
    k->p.a.max_seqlen = mx;
}

static void packed_free(packed *k) {
    tb_free(&k->cu);
    prob_free(&k->p);
}

/* Copies rows [r0, r0 + nr) of src (1, R, ...) into dst (1, nr, ...), both contiguous. */
static void copy_rows(tbuf *dst, const tbuf *src, int64_t r0, int64_t nr) {
    if (!dst->base || !src->base || nr == 0) return;
    const size_t row = dst->bytes / (size_t)nr;
    memcpy(dst->base, (const char *)src->base + (size_t)r0 * row, (size_t)nr * row);
}

/* 1 when rows [r0, r0 + nr) of packed buffer a hold the bytes of b. */
static int same_rows(const tbuf *a, int64_t r0, int64_t nr, const tbuf *b) {
    if (nr == 0) return 1;
    const size_t row = b->bytes / (size_t)nr;
    return memcmp((const char *)a->base + (size_t)r0 * row, b->base, (size_t)nr * row) == 0;
}

/* Document i of k as a plain problem on fresh buffers holding copies of its tokens. */
static void doc_prob(const packed *k, int i, prob *d) {
    const int64_t t0 = k->off[i], len = k->off[i + 1] - t0;
    const int64_t c0 = k->coff[i], nc = k->coff[i + 1] - c0;
    prob_init(d, k->p.c, k->p.dt, 1, (int)len, k->p.flags);
    const int cc = (k->p.flags & P_CMP_COMPRESSED) != 0;
    copy_rows(&d->q, &k->p.q, t0, len);
    copy_rows(&d->kc, &k->p.kc, cc ? c0 : t0, cc ? nc : len);
    copy_rows(&d->vc, &k->p.vc, cc ? c0 : t0, cc ? nc : len);
    copy_rows(&d->ks, &k->p.ks, t0, len);
    copy_rows(&d->vs, &k->p.vs, t0, len);
    copy_rows(&d->kw, &k->p.kw, t0, len);
    copy_rows(&d->vw, &k->p.vw, t0, len);
    copy_rows(&d->g, &k->p.g, t0, len);
}

static nsa_context *new_ctx(void) {
    nsa_context *ctx = NULL;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) return NULL;
    nsa_context_set_flag(ctx, "NSA_LOG_LIMIT", "0");
    return ctx;
}

/* The packed forward equals a plain forward per document, in every output, bit for bit. */
static void fwd_check(const int *lens, int n, unsigned flags, nsa_dtype dt) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    packed k;
    packed_init(&k, vcfg(), dt, lens, n, flags | P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &k.p.a));
    CHECK(prob_guards_ok(&k.p) && tb_guard_ok(&k.cu), "guard bytes overwritten");
    for (int i = 0; i < n; i++) {
        prob d;
        doc_prob(&k, i, &d);
        const int64_t t0 = k.off[i], len = k.off[i + 1] - t0;
        CHECK_OK(ctx, nsa_forward(ctx, &d.a));
        const tbuf *pa[9] = {&k.p.out, &k.p.ob[0], &k.p.ob[1], &k.p.ob[2], &k.p.lse[0],
                             &k.p.lse[1], &k.p.lse[2], &k.p.blocks, &k.p.ranges};
        const tbuf *da[9] = {&d.out, &d.ob[0], &d.ob[1], &d.ob[2], &d.lse[0],
                             &d.lse[1], &d.lse[2], &d.blocks, &d.ranges};
        static const char *names[9] = {"out", "out_cmp", "out_sel", "out_win", "lse_cmp",
                                       "lse_sel", "lse_win", "sel_blocks", "sel_ranges"};
        for (int o = 0; o < 9; o++)
            CHECK(same_rows(pa[o], t0, len, da[o]), "%s of document %d (%lld tokens, %s) "
                  "differs from its plain call", names[o], i, (long long)len, nsa_dtype_name(dt));
        prob_free(&d);
    }
    packed_free(&k);
    nsa_context_destroy(ctx);
}

static void fwd_docs_bitwise(void) {
    fwd_check(lens_mix, NMIX, 0, NSA_DTYPE_F32);
    fwd_check(lens_mix, NMIX, 0, NSA_DTYPE_BF16);
}
static void fwd_docs_compressed(void) { fwd_check(lens_mix, NMIX, P_CMP_COMPRESSED, NSA_DTYPE_F32); }
static void fwd_docs_shared_kv(void) { fwd_check(lens_mix, NMIX, P_SHARED, NSA_DTYPE_F16); }

/* One document of all T tokens: bitwise the plain call (no cu_seqlens) on the same buffers. */
static void one_doc_is_plain(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    static const int one[1] = {37};
    packed k;
    packed_init(&k, vcfg(), NSA_DTYPE_F32, one, 1, P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &k.p.a));
    tbuf *outs[9] = {&k.p.out, &k.p.ob[0], &k.p.ob[1], &k.p.ob[2], &k.p.lse[0], &k.p.lse[1],
                     &k.p.lse[2], &k.p.blocks, &k.p.ranges};
    unsigned char *keep[9];
    for (int o = 0; o < 9; o++) {
        keep[o] = malloc(outs[o]->bytes);
        memcpy(keep[o], outs[o]->base, outs[o]->bytes);
        memset(outs[o]->base, 0x7f, outs[o]->bytes);
    }
    nsa_fwd_args plain = k.p.a;
    memset(&plain.cu_seqlens, 0, sizeof plain.cu_seqlens);
    plain.max_seqlen = 0;
    CHECK_OK(ctx, nsa_forward(ctx, &plain));
    for (int o = 0; o < 9; o++) {
        CHECK(memcmp(keep[o], outs[o]->base, outs[o]->bytes) == 0, "output %d differs", o);
        free(keep[o]);
    }
    packed_free(&k);
    nsa_context_destroy(ctx);
}

/* The packed backward equals a plain backward per document, every gradient bit for bit. */
static void bwd_check(unsigned flags) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    packed k;
    packed_init(&k, vcfg(), NSA_DTYPE_F32, lens_mix, NMIX, flags);
    pgrad g;
    pgrad_init(&g, &k.p);
    if (flags & P_CMP_COMPRESSED) { /* gradients of the packed compressed rows */
        const int64_t Tk = k.p.kc.t.shape[1];
        tb_free(&g.d[1]);
        tb_free(&g.d[2]);
        g.d[1] = tb_new4(NSA_DTYPE_F32, 1, Tk, k.p.c.Hkv, k.p.c.Dk, 0.0);
        g.d[2] = tb_new4(NSA_DTYPE_F32, 1, Tk, k.p.c.Hkv, k.p.c.Dv, 0.0);
        g.g.dk_cmp = g.d[1].t;
        g.g.dv_cmp = g.d[2].t;
    }
    if (flags & P_SHARED) { /* one dK, one dV for every branch: the sum */
        g.g.dk_cmp = g.g.dk_win = g.g.dk_sel;
        g.g.dv_cmp = g.g.dv_win = g.g.dv_sel;
    }
    CHECK_OK(ctx, nsa_backward(ctx, &k.p.a, &g.g));
    CHECK(pgrad_guards_ok(&g) && prob_guards_ok(&k.p), "guard bytes overwritten");
    for (int i = 0; i < NMIX; i++) {
        prob d;
        doc_prob(&k, i, &d);
        pgrad dg;
        pgrad_init(&dg, &d);
        const int64_t t0 = k.off[i], len = k.off[i + 1] - t0;
        const int64_t c0 = k.coff[i], nc = k.coff[i + 1] - c0;
        copy_rows(&dg.dout, &g.dout, t0, len);
        if (flags & P_SHARED) {
            dg.g.dk_cmp = dg.g.dk_win = dg.g.dk_sel;
            dg.g.dv_cmp = dg.g.dv_win = dg.g.dv_sel;
        }
        CHECK_OK(ctx, nsa_backward(ctx, &d.a, &dg.g));
        for (int j = 0; j < 8; j++) {
            if (!dg.d[j].base || ((flags & P_SHARED) && (j == 1 || j == 2 || j == 5 || j == 6)))
                continue;
            const int cmp = (j == 1 || j == 2) && (flags & P_CMP_COMPRESSED);
            CHECK(same_rows(&g.d[j], cmp ? c0 : t0, cmp ? nc : len, &dg.d[j]),
                  "%s of document %d (%lld tokens) differs from its plain backward",
                  pgrad_names[j], i, (long long)len);
        }
        pgrad_free(&dg);
        prob_free(&d);
    }
    pgrad_free(&g);
    packed_free(&k);
    nsa_context_destroy(ctx);
}

static void bwd_docs_bitwise(void) { bwd_check(0); }
static void bwd_docs_compressed(void) { bwd_check(P_CMP_COMPRESSED); }
static void bwd_docs_shared_kv(void) { bwd_check(P_SHARED); }

/* Every fault of the offsets: NSA_ERR_SHAPE naming the field, outputs and gradients untouched. */
static void bad_cu_seqlens(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    static const int lens[3] = {5, 0, 9};
    packed k;
    packed_init(&k, vcfg(), NSA_DTYPE_F32, lens, 3, P_EXTRAS);
    pgrad g;
    pgrad_init(&g, &k.p);
    unsigned char *out0 = malloc(k.p.out.bytes), *dq0 = malloc(g.d[0].bytes);
    memcpy(out0, k.p.out.base, k.p.out.bytes);
    memcpy(dq0, g.d[0].base, g.d[0].bytes);
    int32_t *cu = (int32_t *)k.cu.base;
    enum { N = 9 };
    static const char *field[N] = {"cu_seqlens[0]", "cu_seqlens[2]", "cu_seqlens[3]",
                                   "cu_seqlens", "cu_seqlens", "cu_seqlens", "max_seqlen",
                                   "max_seqlen", "cu_seqlens"};
    for (int f = 0; f < N; f++) {
        nsa_fwd_args a = k.p.a;
        memcpy(cu, k.off, sizeof(int32_t) * 4);
        switch (f) {
        case 0: cu[0] = 1; break;                             /* not starting at 0      */
        case 1: cu[2] = 4; break;                             /* descending             */
        case 2: cu[3] = 13; break;                            /* last != T              */
        case 3: a.cu_seqlens.dtype = NSA_DTYPE_F32; break;    /* wrong dtype            */
        case 4: a.cu_seqlens.device.kind = NSA_DEVICE_CUDA; break; /* wrong device      */
        case 5: a.cu_seqlens.ndim = 2; a.cu_seqlens.shape[1] = 1; break;
        case 6: a.max_seqlen = 8; break;                      /* a document of 9 tokens */
        case 7: memset(&a.cu_seqlens, 0, sizeof a.cu_seqlens); break; /* max_seqlen alone */
        case 8: a.q.shape[0] = 2; a.q.stride[0] = 0; break;   /* B = 2                  */
        }
        nsa_status st = nsa_forward(ctx, &a);
        CHECK(st == NSA_ERR_SHAPE && strstr(nsa_context_message(ctx), field[f]),
              "fault %d: forward %s: %s", f, nsa_status_name(st), nsa_context_message(ctx));
        st = nsa_backward(ctx, &a, &g.g);
        CHECK(st == NSA_ERR_SHAPE && strstr(nsa_context_message(ctx), field[f]),
              "fault %d: backward %s: %s", f, nsa_status_name(st), nsa_context_message(ctx));
        CHECK(memcmp(out0, k.p.out.base, k.p.out.bytes) == 0, "fault %d: out written", f);
        CHECK(memcmp(dq0, g.d[0].base, g.d[0].bytes) == 0, "fault %d: dq written", f);
        CHECK(prob_guards_ok(&k.p) && pgrad_guards_ok(&g));
    }
    memcpy(cu, k.off, sizeof(int32_t) * 4);
    CHECK_OK(ctx, nsa_forward(ctx, &k.p.a)); /* the same call, repaired, runs */
    free(out0);
    free(dq0);
    pgrad_free(&g);
    packed_free(&k);
    nsa_context_destroy(ctx);
}

/* Caller-supplied blocks with packed documents: the blocks a packed forward selected
 * (document-relative) given back as block_indices reproduce it bit for bit, forward and
 * backward; a block past a document's own position is refused. */
static void given_blocks_docs(void) {
    nsa_context *ctx = new_ctx();
    CHECK(ctx);
    packed k;
    packed_init(&k, vcfg(), NSA_DTYPE_F32, lens_mix, NMIX, P_EXTRAS);
    CHECK_OK(ctx, nsa_forward(ctx, &k.p.a));
    tbuf out0 = tb_new4(NSA_DTYPE_F32, 1, k.off[NMIX], k.p.c.Hq, k.p.c.Dv, 0.0);
    memcpy(out0.base, k.p.out.base, k.p.out.bytes);
    tbuf given = tb_new4(NSA_DTYPE_I32, 1, k.off[NMIX], k.p.c.Hkv, k.p.c.n, 0.0);
    memcpy(given.base, k.p.blocks.base, k.p.blocks.bytes);
    nsa_fwd_args a = k.p.a;
    a.block_indices = given.t;
    memset(k.p.out.base, 0x7f, k.p.out.bytes);
    CHECK_OK(ctx, nsa_forward(ctx, &a));
    CHECK(!memcmp(out0.base, k.p.out.base, k.p.out.bytes), "out differs with the blocks given");
    pgrad g0, g1;
    pgrad_init(&g0, &k.p);
    pgrad_init(&g1, &k.p);
    memcpy(g1.dout.base, g0.dout.base, g0.dout.bytes);
    CHECK_OK(ctx, nsa_backward(ctx, &k.p.a, &g0.g));
    CHECK_OK(ctx, nsa_backward(ctx, &a, &g1.g));
    for (int j = 0; j < 8; j++)
        CHECK(!memcmp(g0.d[j].base, g1.d[j].base, g0.d[j].bytes), "%s differs", pgrad_names[j]);
    /* the first query of document 6 (tokens [17, 38)) may only see its own block 0; block 1
     * would be causal at the row's position 17 (17/lp = 2), not at the document's 0 */
    ((int32_t *)given.base)[(int64_t)17 * k.p.c.Hkv * k.p.c.n] = 1;
    nsa_status st = nsa_forward(ctx, &a);
    CHECK(st == NSA_ERR_INVALID_ARG && strstr(nsa_context_message(ctx), "block_indices"),
          "%s: %s", nsa_status_name(st), nsa_context_message(ctx));
    pgrad_free(&g0), pgrad_free(&g1);
    tb_free(&given), tb_free(&out0);
    packed_free(&k);
    nsa_context_destroy(ctx);
}

static const nsa_case cases[] = {
    {"given_blocks_docs", given_blocks_docs},
    {"fwd_docs_bitwise", fwd_docs_bitwise},
    {"fwd_docs_compressed", fwd_docs_compressed},
    {"fwd_docs_shared_kv", fwd_docs_shared_kv},
    {"one_doc_is_plain", one_doc_is_plain},
    {"bwd_docs_bitwise", bwd_docs_bitwise},
    {"bwd_docs_compressed", bwd_docs_compressed},
    {"bwd_docs_shared_kv", bwd_docs_shared_kv},
    {"bad_cu_seqlens", bad_cu_seqlens},
};

int main(int argc, char **argv) {
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
