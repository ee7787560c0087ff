// SPDX-License-Identifier: Apache-2.0
/* cmd_parity.c — `nsa parity`: every fast path this build has, on every parity case and dtype,
 * against the reference, with the contract's thresholds (docs/contract.md, docs/design.md
 * §5): f32 MAE < 1e-5; bf16/f16 max error ≤ 2 × the reference's own error on inputs rounded to
 * the dtype + 1e-5; no NaN/Inf; no fallback taken; selected blocks identical.
 * Not a benchmark: it times nothing. A path is chosen only through public flags, so what is
 * checked is what the router would run. The oracle and the baseline always run on the CPU
 * reference. Adding a case is a row of `cases`, a device a row of `devices`; a new backend
 * needs no change here (each row of `paths` asks the router whether this build binds it).
 */
#include "cli.h"
#ifdef NSA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int B, T, Hq, Hkv, Dk, Dv, l, d, lp, n, w;
    const char *docs; /* packed documents' lengths (B = 1, T their sum); NULL: plain */
} parity_case;

/* Representative shapes and the contract's edge cases (empty ranges, tiny shapes). */
static const parity_case cases[] = {
    {"small", 1, 256, 8, 2, 64, 64, 32, 16, 64, 4, 128, NULL},
    {"ragged-T", 2, 200, 4, 2, 32, 32, 32, 16, 64, 3, 64, NULL},
    {"G=1,Dk!=Dv", 1, 130, 4, 4, 48, 32, 16, 8, 32, 3, 40, NULL},
    {"tiny T=1", 1, 1, 2, 1, 16, 16, 32, 16, 64, 3, 32, NULL},
    {"T<l no cmp", 2, 20, 4, 2, 32, 32, 32, 16, 64, 3, 16, NULL},
    {"w=0 empty win", 1, 96, 4, 1, 32, 32, 16, 16, 32, 3, 0, NULL},
    /* shapes the CUDA tensor-core roles take (head dims 64/128/192-128, G 4 and 16) */
    {"cuda G=16 paper", 1, 600, 16, 1, 192, 128, 32, 16, 64, 16, 512, NULL},
    {"cuda G=4 D=128", 1, 333, 8, 2, 128, 128, 16, 8, 32, 6, 100, NULL},
    {"cuda G=1 D=64", 2, 150, 2, 2, 64, 64, 32, 16, 64, 4, 48, NULL},
    /* packed documents of 1, l-1, l, lp+1 tokens, empty ones, one past w: against one plain
     * reference call per document (docs/varlen.md) */
    {"varlen docs", 1, 269, 8, 2, 64, 64, 32, 16, 64, 4, 128, "0,1,31,32,65,0,140,0"},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))
#define MAX_DOCS 256

/* A fast path: a role on a branch, and the flags that make the router choose it; `backend`,
 * when set, runs the path only where the router binds that backend (an opt-in row of a role). */
typedef struct {
    nsa_role role;
    nsa_branch br;
    const char *flags[4][2];
    const char *backend;
} parity_path;

static const parity_path paths[] = {
    {NSA_ROLE_FA2, NSA_BRANCH_CMP, {{"NSA_USE_FA2_CMP", "1"}, {"NSA_FA2_MIN_LEN_CMP", "0"}}, NULL},
    {NSA_ROLE_FA2, NSA_BRANCH_WIN, {{"NSA_USE_FA2_WIN", "1"}, {"NSA_FA2_MIN_LEN_WIN", "0"}}, NULL},
    /* the Hopper kernels (sm90, opt-in) */
    {NSA_ROLE_FA2, NSA_BRANCH_CMP,
     {{"NSA_USE_FA2_CMP", "1"}, {"NSA_FA2_MIN_LEN_CMP", "0"}, {"NSA_USE_HOPPER", "1"}}, "cuda.fa3"},
    {NSA_ROLE_FA2, NSA_BRANCH_WIN,
     {{"NSA_USE_FA2_WIN", "1"}, {"NSA_FA2_MIN_LEN_WIN", "0"}, {"NSA_USE_HOPPER", "1"}}, "cuda.fa3"},
    {NSA_ROLE_FUSED_SEL, NSA_BRANCH_SEL, {{"NSA_TRITON_SEL_FORCE", "1"}}, NULL},
    /* the other branches pinned off their fast paths too, so a fast backend declining a shape
     * there (counted as a fallback) cannot fail this path's row */
    {NSA_ROLE_MASKED, NSA_BRANCH_CMP,
     {{"NSA_USE_FA2", "0"}, {"NSA_USE_CMP_MASK", "1"}, {"NSA_USE_TRITON_SEL", "0"}}, NULL},
    {NSA_ROLE_MASKED, NSA_BRANCH_WIN,
     {{"NSA_USE_FA2", "0"}, {"NSA_USE_WIN_MASK", "1"}, {"NSA_USE_TRITON_SEL", "0"}}, NULL},
    {NSA_ROLE_PACKED, NSA_BRANCH_SEL,
     {{"NSA_USE_TRITON_SEL", "0"}, {"NSA_USE_SEL_PACK", "1"}, {"NSA_USE_FA2", "0"}}, NULL},
};
#define NPATHS ((int)(sizeof paths / sizeof paths[0]))

static const nsa_dtype dtypes[] = {NSA_DTYPE_F32, NSA_DTYPE_BF16, NSA_DTYPE_F16};

/* Where a path runs: memory of that device, to and from the host. */
typedef struct {
    const char *name;
    nsa_device dev;
    nsa_status (*alloc)(nsa_context *ctx, void **p, size_t bytes);
    nsa_status (*h2d)(nsa_context *ctx, void *dst, const void *src, size_t bytes);
    nsa_status (*d2h)(nsa_context *ctx, void *dst, const void *src, size_t bytes);
    void (*release)(void *p);
} parity_device;

static nsa_status host_alloc(nsa_context *ctx, void **p, size_t bytes) {
    (void)ctx;
    *p = malloc(bytes ? bytes : 1);
    return *p ? NSA_OK : NSA_ERR_NOMEM;
}
static nsa_status host_copy(nsa_context *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    memcpy(dst, src, bytes);
    return NSA_OK;
}

static const parity_device devices[] = {
    {"cpu", {NSA_DEVICE_CPU, 0}, host_alloc, host_copy, host_copy, free},
#ifdef NSA_HAVE_CUDA
    {"cuda:0", {NSA_DEVICE_CUDA, 0}, nsa_cuda_malloc, nsa_cuda_memcpy_h2d, nsa_cuda_memcpy_d2h,
     nsa_cuda_free},
#endif
};
#define NDEVICES ((int)(sizeof devices / sizeof devices[0]))

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* The inputs of one case in f32, and tensors of one dtype made from them. */
typedef struct {
    float *x[8]; /* q, k_cmp, v_cmp, k_sel, v_sel, k_win, v_win, gates */
    int64_t n[8];
    int64_t shape[8][4];
    int64_t ndocs;         /* packed documents; 0: plain */
    int32_t cu[MAX_DOCS + 1];
    int64_t max_seqlen;
} inputs;

static int inputs_make(const parity_case *c, inputs *in) {
    const int64_t s[8][4] = {{c->B, c->T, c->Hq, c->Dk},  {c->B, c->T, c->Hkv, c->Dk},
                             {c->B, c->T, c->Hkv, c->Dv}, {c->B, c->T, c->Hkv, c->Dk},
                             {c->B, c->T, c->Hkv, c->Dv}, {c->B, c->T, c->Hkv, c->Dk},
                             {c->B, c->T, c->Hkv, c->Dv}, {c->B, c->T, c->Hq, 3}};
    memset(in, 0, sizeof *in);
    if (c->docs) {
        char err[200];
        if (cli_parse_docs(c->docs, 0, in->cu, MAX_DOCS + 1, &in->ndocs, err, sizeof err))
            return 0;
        for (int64_t k = 0; k < in->ndocs; k++)
            if (in->cu[k + 1] - in->cu[k] > in->max_seqlen) in->max_seqlen = in->cu[k + 1] - in->cu[k];
    }
    for (int i = 0; i < 8; i++) {
        memcpy(in->shape[i], s[i], sizeof s[i]);
        in->n[i] = s[i][0] * s[i][1] * s[i][2] * s[i][3];
        in->x[i] = malloc(sizeof(float) * (size_t)(in->n[i] + 1));
        if (!in->x[i]) return 0;
        for (int64_t j = 0; j < in->n[i]; j++)
            in->x[i][j] = (float)(i == 7 ? 0.5 + 0.5 * urand() : urand());
    }
    return 1;
}

static void inputs_free(inputs *in) {
    for (int i = 0; i < 8; i++) free(in->x[i]);
}

static void *to_dtype(const float *x, int64_t n, nsa_dtype dt) {
    void *p = malloc(nsa_dtype_size(dt) * (size_t)(n + 1));
    for (int64_t i = 0; p && i < n; i++) {
        if (dt == NSA_DTYPE_F32) ((float *)p)[i] = x[i];
        else if (dt == NSA_DTYPE_BF16) ((uint16_t *)p)[i] = nsa_f32_to_bf16(x[i]);
        else ((uint16_t *)p)[i] = nsa_f32_to_f16(x[i]);
    }
    return p;
}

static double get(const void *p, nsa_dtype dt, int64_t i) {
    if (dt == NSA_DTYPE_F32) return ((const float *)p)[i];
    if (dt == NSA_DTYPE_BF16) return nsa_bf16_to_f32(((const uint16_t *)p)[i]);
    return nsa_f16_to_f32(((const uint16_t *)p)[i]);
}

/* What one forward produced: branch br's output (f64 copy) and the selected blocks. */
typedef struct {
    double *o;
    int32_t *blocks;
    nsa_counters counters;
    nsa_status st;
    char msg[256];
} run_out;

/* One forward of case c in dtype dt on device pd under flags: inputs copied there, branch
 * br's output and the selected blocks copied back. */
/* Tokens [t0, t0 + len) of t (dim 1). */
static nsa_tensor rows_of(nsa_tensor t, int64_t t0, int64_t len) {
    t.data = (char *)t.data + t0 * t.stride[1] * (int64_t)nsa_dtype_size(t.dtype);
    t.shape[1] = len;
    return t;
}

/* Packed documents as one plain call per document (per_doc = 1, the oracle's way), or as one
 * packed call with cu_seqlens at cu_dev (a copy of in->cu on the device). */
static nsa_status forward_docs(nsa_context *ctx, nsa_fwd_args *a, const inputs *in, int per_doc,
                               void *cu_dev, nsa_device dev) {
    if (in->ndocs == 0) return nsa_forward(ctx, a);
    if (!per_doc) {
        int64_t shape[1] = {in->ndocs + 1};
        a->cu_seqlens = nsa_tensor_make(cu_dev, NSA_DTYPE_I32, 1, shape);
        a->cu_seqlens.device = dev;
        a->max_seqlen = in->max_seqlen;
        return nsa_forward(ctx, a);
    }
    for (int64_t k = 0; k < in->ndocs; k++) {
        const int64_t t0 = in->cu[k], len = in->cu[k + 1] - t0;
        nsa_fwd_args d = *a;
        nsa_tensor *t[12] = {&d.q,     &d.k_cmp,   &d.v_cmp,   &d.k_sel,   &d.v_sel,   &d.k_win,
                             &d.v_win, &d.gates,   &d.out,     &d.out_cmp, &d.out_sel, &d.out_win};
        for (int i = 0; i < 12; i++)
            if (t[i]->data) *t[i] = rows_of(*t[i], t0, len);
        d.sel_blocks = rows_of(d.sel_blocks, t0, len);
        nsa_status st = nsa_forward(ctx, &d);
        if (st != NSA_OK) return st;
    }
    return NSA_OK;
}

static void run(const parity_device *pd, const parity_case *c, const inputs *in, nsa_dtype dt,
                nsa_branch br, const char *const (*flags)[2], int nflags, int per_doc,
                run_out *r) {
    memset(r, 0, sizeof *r);
    nsa_context *ctx;
    r->st = nsa_context_create(&ctx, r->msg, sizeof r->msg);
    if (r->st != NSA_OK) return;
    for (int i = 0; i < nflags && flags[i][0] && r->st == NSA_OK; i++)
        r->st = nsa_context_set_flag(ctx, flags[i][0], flags[i][1]);
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = nsa_config_default(c->Hq, c->Hkv, c->Dk, c->Dv);
    a.cfg.l = c->l, a.cfg.d = c->d, a.cfg.lp = c->lp, a.cfg.n = c->n, a.cfg.w = c->w;
    const size_t es = nsa_dtype_size(dt);
    const int64_t no = (int64_t)c->B * c->T * c->Hq * c->Dv;
    const int64_t nb = (int64_t)c->B * c->T * c->Hkv * c->n;
    /* device buffers: 8 inputs, out, the branch output, the blocks, the offsets */
    void *dbuf[12] = {0};
    nsa_tensor *t[8] = {&a.q, &a.k_cmp, &a.v_cmp, &a.k_sel, &a.v_sel, &a.k_win, &a.v_win, &a.gates};
    for (int i = 0; i < 8 && r->st == NSA_OK; i++) {
        void *host = to_dtype(in->x[i], in->n[i], dt);
        r->st = host ? pd->alloc(ctx, &dbuf[i], es * (size_t)in->n[i]) : NSA_ERR_NOMEM;
        if (r->st == NSA_OK) r->st = pd->h2d(ctx, dbuf[i], host, es * (size_t)in->n[i]);
        free(host);
        *t[i] = nsa_tensor_make(dbuf[i], dt, 4, in->shape[i]);
        t[i]->device = pd->dev;
    }
    if (r->st == NSA_OK) r->st = pd->alloc(ctx, &dbuf[8], es * (size_t)no);
    if (r->st == NSA_OK) r->st = pd->alloc(ctx, &dbuf[9], es * (size_t)no);
    if (r->st == NSA_OK) r->st = pd->alloc(ctx, &dbuf[10], sizeof(int32_t) * (size_t)nb);
    const size_t cub = sizeof(int32_t) * (size_t)(in->ndocs + 1);
    if (r->st == NSA_OK) r->st = pd->alloc(ctx, &dbuf[11], cub);
    if (r->st == NSA_OK) r->st = pd->h2d(ctx, dbuf[11], in->cu, cub);
    a.out = nsa_tensor_4d(dbuf[8], dt, c->B, c->T, c->Hq, c->Dv);
    nsa_tensor ob = nsa_tensor_4d(dbuf[9], dt, c->B, c->T, c->Hq, c->Dv);
    a.sel_blocks = nsa_tensor_4d(dbuf[10], NSA_DTYPE_I32, c->B, c->T, c->Hkv, c->n);
    a.out.device = ob.device = a.sel_blocks.device = pd->dev;
    if (br == NSA_BRANCH_CMP) a.out_cmp = ob;
    else if (br == NSA_BRANCH_SEL) a.out_sel = ob;
    else a.out_win = ob;
    if (r->st == NSA_OK) r->st = forward_docs(ctx, &a, in, per_doc, dbuf[11], pd->dev);
    if (r->st != NSA_OK && !r->msg[0])
        snprintf(r->msg, sizeof r->msg, "%s", nsa_context_message(ctx));
    void *host = malloc(es * (size_t)(no + 1));
    r->blocks = malloc(sizeof(int32_t) * (size_t)(nb + 1));
    r->o = malloc(sizeof(double) * (size_t)(no + 1));
    if (r->st == NSA_OK && (!host || !r->blocks || !r->o)) r->st = NSA_ERR_NOMEM;
    if (r->st == NSA_OK) r->st = pd->d2h(ctx, host, dbuf[9], es * (size_t)no);
    if (r->st == NSA_OK) r->st = pd->d2h(ctx, r->blocks, dbuf[10], sizeof(int32_t) * (size_t)nb);
    for (int64_t i = 0; r->st == NSA_OK && i < no; i++) r->o[i] = get(host, dt, i);
    free(host);
    nsa_context_counters(ctx, &r->counters);
    for (int i = 0; i < 12; i++)
        if (dbuf[i]) pd->release(dbuf[i]);
    nsa_context_destroy(ctx);
}

static void run_free(run_out *r) {
    free(r->o);
    free(r->blocks);
}

/* max and mean |a - b| over n; *bad counts non-finite a. */
static void errors(const double *a, const double *b, int64_t n, double *mx, double *mae,
                   int64_t *bad) {
    *mx = 0, *mae = 0, *bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) { (*bad)++; continue; }
        double e = fabs(a[i] - b[i]);
        if (e > *mx) *mx = e;
        *mae += e;
    }
    *mae /= n > 0 ? (double)n : 1.0;
}

static const char *const parity_flags[][2] = {{"NSA_FORCE_PARITY", "1"}};

/* One table row: branch br of case c in dtype dt, run under flags (the fast path) against the
 * reference; returns 1 when it passes. */
static int row(const parity_device *pd, const char *path, const char *backend,
               const parity_case *c, const inputs *in, nsa_dtype dt, nsa_branch br,
               const char *const (*flags)[2], int nflags) {
    run_out r0, rb, rf;
    /* packed documents: the oracle and the baseline run one plain call per document */
    run(&devices[0], c, in, NSA_DTYPE_F32, br, parity_flags, 1, 1, &r0); /* oracle: f32 */
    run(&devices[0], c, in, dt, br, parity_flags, 1, 1, &rb); /* CPU reference, dt inputs */
    run(pd, c, in, dt, br, flags, nflags, 0, &rf);            /* the path, dt inputs      */
    const int64_t no = (int64_t)c->B * c->T * c->Hq * c->Dv;
    const int64_t nb = (int64_t)c->B * c->T * c->Hkv * c->n;
    double mx = 0, mae = 0, bmx = 0, bmae = 0, bound;
    int64_t bad = 0, bbad = 0;
    const int ok = r0.st == NSA_OK && rb.st == NSA_OK && rf.st == NSA_OK;
    if (ok) {
        errors(rf.o, r0.o, no, &mx, &mae, &bad);
        errors(rb.o, r0.o, no, &bmx, &bmae, &bbad);
    }
    const int same = ok && !memcmp(rf.blocks, rb.blocks, sizeof(int32_t) * (size_t)nb);
    const int64_t fell = rf.counters.fallback_nonfinite + rf.counters.fallback_error +
                         rf.counters.fallback_unsupported;
    int pass;
    if (dt == NSA_DTYPE_F32) {
        bound = 1e-5;
        pass = ok && mae < bound;
    } else {
        bound = 2.0 * bmx + 1e-5;
        pass = ok && mx <= bound;
    }
    pass = pass && bad == 0 && same && fell == 0;
    printf("%-7s %-12s %-10s %-14s %-5s %-10.3g %-10.3g %-10.3g %-6lld %-5lld %-6s %s%s%s\n",
           pd->name, path, backend, c->name, nsa_dtype_name(dt), mae, mx, bound, (long long)bad,
           (long long)fell,
           same ? "same" : "DIFF", pass ? "pass" : "FAIL", ok ? "" : ": ",
           ok ? "" : (r0.st ? r0.msg : rb.st ? rb.msg : rf.msg));
    run_free(&r0);
    run_free(&rb);
    run_free(&rf);
    return pass;
}

/* Packed-document cases on device pd: the packed call as the router sends it (no flags)
 * against one plain reference call per document. Returns the rows that failed. */
static int varlen_rows(const parity_device *pd, const nsa_device_caps *caps,
                       const parity_case *cs, const inputs *in, int ncases, int *rows) {
    int failed = 0;
    for (int ci = 0; ci < ncases; ci++) {
        if (!cs[ci].docs) continue;
        const parity_case *c = &cs[ci];
        for (size_t ti = 0; ti < sizeof dtypes / sizeof dtypes[0]; ti++) {
            nsa_context *pc;
            if (nsa_context_create(&pc, NULL, 0) != NSA_OK) return failed + 1;
            nsa_route_problem p = {nsa_config_default(c->Hq, c->Hkv, c->Dk, c->Dv), 1, c->T,
                                   dtypes[ti], NSA_PASS_FORWARD, in[ci].ndocs, in[ci].max_seqlen};
            p.cfg.l = c->l, p.cfg.d = c->d, p.cfg.lp = c->lp, p.cfg.n = c->n, p.cfg.w = c->w;
            nsa_route_decision d;
            const int ok = nsa_route_explain(pc, &p, caps, &d) == NSA_OK;
            nsa_context_destroy(pc);
            (*rows)++;
            failed += !row(pd, "varlen", ok ? d.backend[NSA_BRANCH_SEL] : "?", c, &in[ci],
                           dtypes[ti], NSA_BRANCH_SEL, NULL, 0);
        }
    }
    return failed;
}

typedef struct {
    const char *docs; /* --docs: lengths of an extra packed-documents case */
} parity_args;

static int parity_run(void *opts) {
    const parity_args *pa = opts;
    parity_case cases_all[NCASES + 1];
    int ncases = NCASES;
    memcpy(cases_all, cases, sizeof cases);
    if (pa->docs) {
        int32_t cu[MAX_DOCS + 1];
        int64_t nd;
        char err[200];
        if (cli_parse_docs(pa->docs, 0, cu, MAX_DOCS + 1, &nd, err, sizeof err))
            return cli_usage_error("parity", "--docs: %s", err);
        cases_all[ncases] = cases[0];
        cases_all[ncases].name = "--docs";
        cases_all[ncases].T = cu[nd];
        cases_all[ncases].B = 1;
        cases_all[ncases].docs = pa->docs;
        ncases++;
    }
    const parity_case *cs = cases_all;
    printf("%-7s %-12s %-10s %-14s %-5s %-10s %-10s %-10s %-6s %-5s %-6s %s\n", "device",
           "path", "backend", "case", "dtype", "mae", "max_err", "bound", "nonfin", "fallb",
           "blocks", "verdict");
    int rows = 0, failed = 0;
    inputs in[NCASES + 1];
    for (int ci = 0; ci < ncases; ci++)
        if (!inputs_make(&cs[ci], &in[ci])) {
            fprintf(stderr, "nsa parity: out of memory\n");
            return 2;
        }
    for (int di = 0; di < NDEVICES; di++) {
        const parity_device *pd = &devices[di];
        nsa_context *pc;
        char msg[256];
        if (nsa_context_create(&pc, msg, sizeof msg) != NSA_OK) {
            fprintf(stderr, "nsa parity: %s\nhint: fix or unset the named variable\n", msg);
            return 2;
        }
        nsa_device_caps caps;
        if (nsa_device_caps_query(pc, pd->dev, &caps) != NSA_OK) {
            printf("%s: not run: %s\n", pd->name, nsa_context_message(pc));
            nsa_context_destroy(pc);
            continue;
        }
        nsa_context_destroy(pc);
        int fast = 0;
        for (int pi = 0; pi < NPATHS; pi++) {
            const parity_path *pp = &paths[pi];
            char name[32], absent[NSA_REASON_LEN] = "";
            snprintf(name, sizeof name, "%s/%s", pp->backend ? pp->backend : nsa_role_name(pp->role),
                     nsa_branch_name(pp->br));
            for (int ci = 0; ci < ncases; ci++)
                for (size_t ti = 0; ti < sizeof dtypes / sizeof dtypes[0]; ti++) {
                    const parity_case *c = &cs[ci];
                    if (c->docs) continue; /* packed documents: varlen_rows */
                    if (nsa_context_create(&pc, msg, sizeof msg) != NSA_OK) return 2;
                    for (int f = 0; f < 4 && pp->flags[f][0]; f++)
                        nsa_context_set_flag(pc, pp->flags[f][0], pp->flags[f][1]);
                    nsa_route_problem p = {nsa_config_default(c->Hq, c->Hkv, c->Dk, c->Dv), c->B,
                                           c->T, dtypes[ti], NSA_PASS_FORWARD, 0, 0};
                    p.cfg.l = c->l, p.cfg.d = c->d, p.cfg.lp = c->lp, p.cfg.n = c->n;
                    p.cfg.w = c->w;
                    nsa_route_decision d;
                    nsa_status st = nsa_route_explain(pc, &p, &caps, &d);
                    nsa_context_destroy(pc);
                    if (st != NSA_OK || d.role[pp->br] != pp->role ||
                        (pp->backend && strcmp(d.backend[pp->br], pp->backend))) {
                        if (!absent[0])
                            snprintf(absent, sizeof absent, "%s",
                                     st != NSA_OK ? nsa_status_name(st) : d.reason[pp->br]);
                        continue;
                    }
                    rows++;
                    fast++;
                    failed += !row(pd, name, d.backend[pp->br], c, &in[ci], dtypes[ti], pp->br,
                                   pp->flags, 4);
                }
            if (absent[0])
                printf("%s %s: not run (some or all cases): %s\n", pd->name, name, absent);
        }
        if (fast == 0) {
            /* no fast path here: the machinery still runs, the reference on both sides */
            for (int ci = 0; ci < ncases; ci++)
                for (size_t ti = 0; ti < sizeof dtypes / sizeof dtypes[0] && !cs[ci].docs;
                     ti++) {
                    rows++;
                    failed += !row(pd, "ref/sel", "ref", &cs[ci], &in[ci], dtypes[ti],
                                   NSA_BRANCH_SEL, parity_flags, 1);
                }
            printf("%s: no fast path exists in this build; the ref/sel rows run the reference "
                   "on both sides.\n", pd->name);
        }
        failed += varlen_rows(pd, &caps, cs, in, ncases, &rows);
    }
    for (int ci = 0; ci < ncases; ci++) inputs_free(&in[ci]);
    printf("\n%d rows, %d failed. Thresholds: f32 MAE < 1e-5; bf16/f16 max error <= 2 x the "
           "reference's error on inputs\nrounded to the dtype + 1e-5; no NaN/Inf; no fallback "
           "taken; selected blocks identical to the reference's.\n",
           rows, failed);
    return failed ? 1 : 0;
}

static const cli_opt table[] = {
    {"docs", CLI_STR, CLI_OPT(parity_args, docs), "L,L,...", NULL, 0, 0, NULL,
     "add a case of packed documents of these lengths (the small case's heads and config), "
     "checked against one reference call per document (docs/varlen.md)", NULL},
};

const cli_command cmd_parity = {
    "parity", "check every fast path of this build against the reference",
    "Runs every fast path of this build against the reference on the cases of\n"
    "tools/cmd_parity.c and prints one row per (path, case, dtype); exit code 1 if any row fails.",
    table, CLI_NOPTS(table), sizeof(parity_args), parity_run, NULL, NULL};
