// SPDX-License-Identifier: Apache-2.0
/* bwd_pipeline.cu — the CUDA backward: the order of its steps (selection ranges, φ = avg, per
 * branch query side then key side, φ backward, stores summing aliased gradients) and the device
 * hook nsa_device_cuda_backward that nsa_backward calls for tensors on a CUDA device.
 * Not a kernel file (bwd_ref.cu) and not routing policy (the router picks the roles).
 * Invariant: every buffer is a stream-ordered allocation on ctx's stream, freed on every path;
 * gradients are deterministic (bwd_common.cuh) and written only after every argument passed.
 */
#include "bwd_common.cuh"
#include "bwd_tc.cuh"
#include "bwd_tiled.cuh"

extern "C" {
#include "bwd_api.h"
}

#include <string.h>

extern "C" int nsa_cuda_bwd_role_supported(const nsa_route_problem *p, nsa_branch br,
                                           nsa_role role, size_t smem_optin, const char **why) {
    const size_t budget = nsa_cu_smem_budget(smem_optin);
    if (p->pass != NSA_PASS_BACKWARD) { *why = "not a backward problem"; return 0; }
    if (p->cfg.n > 256) { *why = "n > 256 (GPU top-n)"; return 0; }
    if ((size_t)(2 * p->cfg.Dk + 2 * p->cfg.Dv + 256) * 8 > budget) {
        *why = "Dk + Dv too large for the reference backward's shared memory";
        return 0;
    }
    if (role == NSA_ROLE_REF) return 1;
    if (role == NSA_ROLE_FA2 || role == NSA_ROLE_FUSED_SEL) {
        const nsa_shape s = nsa_cu_shape_of(p);
        if (role == NSA_ROLE_FA2) {
            if (br == NSA_BRANCH_SEL) { *why = "FA-2 serves cmp and win"; return 0; }
            return nsa_cu_bwd_fa2_supported(&s, br, why);
        }
        if (br != NSA_BRANCH_SEL) { *why = "the fused kernel serves sel"; return 0; }
        return nsa_cu_bwd_selfused_supported(&s, why);
    }
    if ((role == NSA_ROLE_MASKED && br != NSA_BRANCH_SEL) ||
        (role == NSA_ROLE_PACKED && br == NSA_BRANCH_SEL)) {
        if (nsa_cu_bwd_tiled_smem(p->cfg.Dk, p->cfg.Dv) > budget) {
            *why = "Dk + Dv too large for the tiled backward's shared memory";
            return 0;
        }
        return 1;
    }
    *why = "role does not serve this branch";
    return 0;
}

/* Stream-ordered allocations of one backward, freed together. */
typedef struct {
    void *p[40];
    int n;
    cudaStream_t st;
    cudaEvent_t *ev; /* nsa_cuda_backward_timed: 7 events between the steps; else NULL */
} bwd_mem;

static nsa_status mem_get(nsa_context *ctx, bwd_mem *m, size_t bytes, void **out) {
    *out = NULL;
    cudaError_t e = cudaMallocAsync(out, bytes ? bytes : 1, m->st);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *out = NULL;
        return nsa_fail(ctx, NSA_ERR_NOMEM, "CUDA backward: %zu bytes: %s", bytes,
                        cudaGetErrorString(e));
    }
    m->p[m->n++] = *out;
    return NSA_OK;
}

static void mem_free(bwd_mem *m) {
    for (int i = 0; i < m->n; i++) cudaFreeAsync(m->p[i], m->st);
    m->n = 0;
}

static int same_view(const nsa_tensor *x, const nsa_tensor *y) {
    if (x->data != y->data || x->ndim != y->ndim) return 0;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i] || x->stride[i] != y->stride[i]) return 0;
    return 1;
}

/* W->F.ranges from the caller's sel_ranges (validated) or from a CUDA forward on fwd_role. */
static nsa_status ranges_step(nsa_context *ctx, bwd_mem *m, const nsa_fwd_args *fwd,
                              const nsa_shape *s, const nsa_role fwd_role[3], nsa_cu_bwd *W) {
    cudaStream_t cs = m->st;
    if (nsa_present(&fwd->sel_ranges)) {
        int ok = 0;
        NSA_TRY(nsa_cu_check(ctx, cudaMemsetAsync(W->flag, 1, sizeof(int), cs), "flag"));
        NSA_TRY(nsa_cu_bwd_load_ranges(ctx, cs, W, &fwd->sel_ranges));
        NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(&ok, W->flag, sizeof ok, cudaMemcpyDeviceToHost,
                                                  cs), "flag"));
        NSA_TRY(nsa_cu_check(ctx, cudaStreamSynchronize(cs), "backward: sel_ranges"));
        if (!ok)
            return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "sel_ranges: a slot is not an ascending "
                            "range within [0, t+1)");
        return NSA_OK;
    }
    void *out;
    NSA_TRY(mem_get(ctx, m, (size_t)(s->B * s->T) * s->Hq * s->Dv * nsa_dtype_size(s->dt), &out));
    nsa_fwd_args a = *fwd;
    a.out = nsa_tensor_4d(out, s->dt, s->B, s->T, s->Hq, s->Dv);
    a.out.device = fwd->q.device;
    nsa_tensor none;
    memset(&none, 0, sizeof none);
    a.out_cmp = a.out_sel = a.out_win = a.lse_cmp = a.lse_sel = a.lse_win = a.sel_blocks = none;
    int64_t shape[5] = {s->B, s->T, s->Hkv, fwd->cfg.n, 2};
    a.sel_ranges = nsa_tensor_make(W->F.ranges, NSA_DTYPE_I32, 5, shape);
    a.sel_ranges.device = fwd->q.device;
    return nsa_cuda_forward(ctx, &a, s, fwd_role);
}

static int is_tc(nsa_role r) { return r == NSA_ROLE_FA2 || r == NSA_ROLE_FUSED_SEL; }

/* What the forward hook hands the tensor-core roles. */
typedef struct {
    const nsa_cu_bwd *W;
    nsa_dtype dt;
    int tcmask;                   /* bit b: branch b runs a tensor-core role            */
    float *lse, *delta, *gate;    /* (3, R, Hq) each                                    */
    int saved;                    /* 1: o_b and lse_b from the caller's forward outputs */
    nsa_cu_view o[3], l[3];       /* saved: out_b (dtype), lse_b (f32, sd unused)       */
} tc_stats;

/* Grid: one warp per (row, head), 8 per block. For each tensor-core branch b: lse, gate and
 * delta = gate·dout·o_b (o_b, lse_b from the recomputed forward F, or the caller's saved
 * outputs), and dgates[.., b] += dout·o_b. */
template <typename T>
__global__ void __launch_bounds__(256) tc_stats_kernel(nsa_cu_params F, nsa_cu_bwd W,
                                                       tc_stats S) {
    const int64_t x = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (x >= F.R * F.Hq) return;
    const int h = (int)(x % F.Hq);
    const int64_t r = x / F.Hq, b = r / F.T, t = r % F.T;
    for (int br = 0; br < 3; br++) {
        if (!(S.tcmask >> br & 1)) continue;
        const float *o = S.saved ? NULL : F.o[br] + x * F.Dv;
        float dot = 0.f;
        for (int e = lane; e < F.Dv; e += 32)
            dot += nsa_cu_ld<T>(W.dout, b, t, h, e) * (o ? o[e] : nsa_cu_ld<T>(S.o[br], b, t, h, e));
        for (int k = 16; k; k >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, k);
        if (lane) continue;
        const float gt = W.force_branch >= 0 ? (W.force_branch == br ? 1.f : 0.f)
                                             : nsa_cu_ld<T>(F.gates, b, t, h, br);
        const int64_t y = br * F.R * F.Hq + x;
        S.lse[y] = S.saved ? ((const float *)S.l[br].p)[b * S.l[br].sb + t * S.l[br].st + h * S.l[br].sh]
                           : F.lse[br][x];
        S.gate[y] = gt;
        S.delta[y] = gt * dot;
        if (W.acc[NSA_GG]) W.acc[NSA_GG][x * 3 + br] += (double)dot;
    }
}

static nsa_status tc_stats_hook(nsa_context *ctx, const nsa_cu_params *P, void *arg) {
    const tc_stats *S = (const tc_stats *)arg;
    cudaStream_t cs = (cudaStream_t)ctx->stream;
    const unsigned nb = nsa_cu_blocks(P->R * P->Hq, 8);
    if (S->dt == NSA_DTYPE_BF16) tc_stats_kernel<__nv_bfloat16><<<nb, 256, 0, cs>>>(*P, *S->W, *S);
    else tc_stats_kernel<__half><<<nb, 256, 0, cs>>>(*P, *S->W, *S);
    NSA_CU_LAUNCHED(ctx, "backward: row statistics");
    return NSA_OK;
}

/* The caller kept nsa_forward's per-branch outputs and lse (and its selection): the backward
 * reads them instead of recomputing the forward. */
static int have_saved(const nsa_fwd_args *f) {
    return nsa_present(&f->out_cmp) && nsa_present(&f->out_sel) && nsa_present(&f->out_win) &&
           nsa_present(&f->lse_cmp) && nsa_present(&f->lse_sel) && nsa_present(&f->lse_win) &&
           nsa_present(&f->sel_ranges);
}

/* The tensor-core roles' step 1: lse, gate and delta per branch — from the caller's saved
 * forward outputs, or from a forward on fwd_role (selection recomputed into W->F.ranges, or the
 * caller's validated ranges and blocks) whose hook keeps them. */
static nsa_status tc_forward(nsa_context *ctx, bwd_mem *m, const nsa_fwd_args *fwd,
                             const nsa_shape *s, const nsa_role fwd_role[3], nsa_cu_bwd *W,
                             int given, tc_stats *S) {
    void *p;
    const size_t n = (size_t)3 * s->B * s->T * s->Hq;
    NSA_TRY(mem_get(ctx, m, n * 12, &p));
    S->lse = (float *)p;
    S->delta = S->lse + n;
    S->gate = S->delta + n;
    if (S->saved) {
        const nsa_tensor *o[3] = {&fwd->out_cmp, &fwd->out_sel, &fwd->out_win};
        const nsa_tensor *l[3] = {&fwd->lse_cmp, &fwd->lse_sel, &fwd->lse_win};
        for (int b = 0; b < 3; b++) {
            S->o[b] = nsa_cu_view4(o[b]);
            const nsa_cu_view v = {l[b]->data, l[b]->stride[0], l[b]->stride[1], l[b]->stride[2], 0};
            S->l[b] = v;
        }
        return tc_stats_hook(ctx, &W->F, S);
    }
    nsa_fwd_args a = *fwd;
    nsa_tensor none;
    memset(&none, 0, sizeof none);
    a.out = a.out_cmp = a.out_sel = a.out_win = none;
    a.lse_cmp = a.lse_sel = a.lse_win = a.sel_blocks = a.sel_ranges = none;
    if (!given) {
        int64_t shape[5] = {s->B, s->T, s->Hkv, fwd->cfg.n, 2};
        a.sel_ranges = nsa_tensor_make(W->F.ranges, NSA_DTYPE_I32, 5, shape);
        a.sel_ranges.device = fwd->q.device;
    }
    return nsa_cu_forward_hook(ctx, &a, s, fwd_role, given ? W->F.ranges : NULL,
                               given ? W->F.blocks : NULL, tc_stats_hook, S);
}

static nsa_status run(nsa_context *ctx, bwd_mem *m, const nsa_fwd_args *fwd,
                      const nsa_bwd_args *g, const nsa_shape *s, const nsa_role role_in[3],
                      const nsa_role fwd_role[3], int force_branch) {
    const nsa_config *c = &fwd->cfg;
    cudaStream_t cs = m->st;
    nsa_cu_bwd W;
    memset(&W, 0, sizeof W);
    nsa_cu_params *P = &W.F;
    P->B = (int)s->B; P->T = (int)s->T; P->Tc = (int)s->Tc;
    P->Hq = s->Hq; P->Hkv = s->Hkv; P->G = s->G; P->Dk = s->Dk; P->Dv = s->Dv;
    P->l = c->l; P->d = c->d; P->lp = c->lp; P->n = c->n; P->n_init = c->n_init;
    P->n_local = c->n_local; P->w = c->w;
    P->nsel_max = s->nsel_max;
    P->scale = (float)s->scale;
    P->R = s->B * s->T;
    P->q = nsa_cu_view4(&fwd->q);
    P->ks = nsa_cu_view4(&fwd->k_sel);
    P->vs = nsa_cu_view4(&fwd->v_sel);
    P->kw = nsa_cu_view4(&fwd->k_win);
    P->vw = nsa_cu_view4(&fwd->v_win);
    P->gates = nsa_cu_view4(&fwd->gates);
    W.dout = nsa_cu_view4(&g->dout);
    W.scale = s->scale;
    W.force_branch = force_branch;
    W.tw = (int)((s->T + 31) / 32);

    const int64_t R = s->B * s->T, Tc = s->Tc;
    const nsa_tensor *const gt[NSA_NGRAD] = {&g->dq,     &g->dk_cmp, &g->dv_cmp, &g->dk_sel,
                                             &g->dv_sel, &g->dk_win, &g->dv_win, &g->dgates};
    void *p;
    NSA_TRY(mem_get(ctx, m, (size_t)R * s->Hkv * c->n * 2 * 4, &p));
    P->ranges = (int32_t *)p;
    NSA_TRY(mem_get(ctx, m, 2 * sizeof(int), &p));
    W.flag = (int *)p;
    NSA_TRY(mem_get(ctx, m, (size_t)R * s->Hq * 6 * 8, &p));
    W.lse = (double *)p;
    W.delta = W.lse + 3 * R * s->Hq;
    for (int i = 0; i < NSA_NGRAD; i++) {
        if (!nsa_present(gt[i])) continue;
        const size_t bytes = (size_t)nsa_tensor_numel(gt[i]) * 8;
        NSA_TRY(mem_get(ctx, m, bytes, &p));
        W.acc[i] = (double *)p;
        NSA_TRY(nsa_cu_check(ctx, cudaMemsetAsync(p, 0, bytes, cs), "backward: zero"));
    }
    /* the roles as given: the router already stepped unaligned operands down to the tiled
       roles (nsa_call_tc_operands); backward_impl refused any that slipped through */
    nsa_role role[3];
    int tcmask = 0;
    for (int b = 0; b < 3; b++) {
        role[b] = role_in[b];
        if (is_tc(role[b])) tcmask |= 1 << b;
    }
    nsa_dtype kc_dt = s->dt;
    if (fwd->cmp_compressed) {
        W.dkc = W.acc[NSA_GKC];
        W.dvc = W.acc[NSA_GVC];
        P->kc = nsa_cu_view4(&fwd->k_cmp);
        P->vc = nsa_cu_view4(&fwd->v_cmp);
    } else if (Tc > 0) {
        const size_t nk = (size_t)(s->B * Tc) * s->Hkv * s->Dk, nv = (size_t)(s->B * Tc) * s->Hkv * s->Dv;
        if (W.acc[NSA_GKC]) NSA_TRY(mem_get(ctx, m, nk * 8, (void **)&W.dkc));
        if (W.acc[NSA_GVC]) NSA_TRY(mem_get(ctx, m, nv * 8, (void **)&W.dvc));
        /* φ = avg as the forward computes it: f32, or the dtype for tensor cores */
        kc_dt = tcmask & 1 ? s->dt : NSA_DTYPE_F32;
        const size_t es = nsa_dtype_size(kc_dt);
        void *kc, *vc;
        NSA_TRY(mem_get(ctx, m, nk * es, &kc));
        NSA_TRY(mem_get(ctx, m, nv * es, &vc));
        nsa_cu_view rk = nsa_cu_view4(&fwd->k_cmp), rv = nsa_cu_view4(&fwd->v_cmp);
        NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, kc_dt, &rk, P->B, P->T, P->Tc, P->Hkv, P->Dk,
                                P->l, P->d, kc));
        NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, kc_dt, &rv, P->B, P->T, P->Tc, P->Hkv, P->Dv,
                                P->l, P->d, vc));
        P->kc = nsa_cu_contig(kc, Tc, s->Hkv, s->Dk);
        P->vc = nsa_cu_contig(vc, Tc, s->Hkv, s->Dv);
    }
    NSA_TRY(mem_get(ctx, m, (size_t)s->B * s->Hkv * s->nsel_max * W.tw * 4, &p));
    W.selbits = (uint32_t *)p;

#define BWD_MARK(i) if (m->ev) cudaEventRecord(m->ev[i], cs)
    BWD_MARK(0);
    tc_stats S;
    memset(&S, 0, sizeof S);
    if (!tcmask) {
        NSA_TRY(ranges_step(ctx, m, fwd, s, fwd_role, &W));
    } else {
        const int given = nsa_present(&fwd->sel_ranges);
        S.saved = have_saved(fwd);
        if (given) {
            if (!S.saved) { /* the forward recompute's fused selection reads blocks */
                NSA_TRY(mem_get(ctx, m, (size_t)R * s->Hkv * c->n * 4, &p));
                P->blocks = (int32_t *)p;
            }
            int fl[2] = {1, 0};
            NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(W.flag, fl, sizeof fl,
                                                      cudaMemcpyHostToDevice, cs), "flag"));
            NSA_TRY(nsa_cu_bwd_load_ranges(ctx, cs, &W, &fwd->sel_ranges));
            NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(fl, W.flag, sizeof fl,
                                                      cudaMemcpyDeviceToHost, cs), "flag"));
            NSA_TRY(nsa_cu_check(ctx, cudaStreamSynchronize(cs), "backward: sel_ranges"));
            if (!fl[0])
                return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "sel_ranges: a slot is not an "
                                "ascending range within [0, t+1)");
            if (fl[1] && (tcmask & 2)) { /* more keys than the fused kernel's n blocks */
                role[NSA_BRANCH_SEL] = NSA_ROLE_PACKED;
                tcmask &= ~2;
                nsa_log_once(ctx, "bwd.tc.ranges", "sel backward: sel_ranges touch more than "
                             "n blocks; running the packed role");
            }
        }
        S.W = &W;
        S.dt = s->dt;
        S.tcmask = tcmask;
        NSA_TRY(tc_forward(ctx, m, fwd, s, fwd_role, &W, given, &S));
    }
    BWD_MARK(1);
    NSA_TRY(nsa_cu_bwd_selbits(ctx, cs, &W));
    const int kgrad[3][2] = {{NSA_GKC, NSA_GVC}, {NSA_GKS, NSA_GVS}, {NSA_GKW, NSA_GVW}};
    /* the tiled roles' key side: the inverse selection index and the split offsets, sized
     * with one host wait for every branch (bwd_tiled.cuh) */
    tl_keyargs ka[3];
    memset(ka, 0, sizeof ka);
    int tot[4] = {0, 0, 0, 0}, need = 0; /* splits of cmp, sel, win; selection list length */
    int *off = NULL;
    int64_t nt[3] = {0, 0, 0};
    const int64_t nrows = s->B * s->Hkv * s->nsel_max;
    for (int b = 0; b < 3; b++) {
        if (role[b] == NSA_ROLE_REF || (!W.acc[kgrad[b][0]] && !W.acc[kgrad[b][1]])) continue;
        if (b != NSA_BRANCH_SEL && is_tc(role[b])) continue;
        if (b == NSA_BRANCH_SEL) {
            NSA_TRY(mem_get(ctx, m, (size_t)(nrows + 1) * 4, &p));
            off = (int *)p;
            NSA_TRY(nsa_cu_bwd_sel_count(ctx, cs, &W, off));
            NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(&tot[3], off + nrows, sizeof(int),
                                                      cudaMemcpyDeviceToHost, cs), "index"));
            need = 1;
            if (is_tc(role[b])) continue; /* the index only: no split walks */
        }
        nt[b] = nsa_cu_bwd_tiled_ntiles(&W, (nsa_branch)b);
        NSA_TRY(mem_get(ctx, m, (size_t)(nt[b] + 1) * 4, &p));
        ka[b].exo = (int *)p;
        NSA_TRY(nsa_cu_bwd_tiled_splits(ctx, cs, &W, (nsa_branch)b, off, (int *)p));
        NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(&tot[b], ka[b].exo + nt[b], sizeof(int),
                                                  cudaMemcpyDeviceToHost, cs), "splits"));
        need = 1;
    }
    if (need) NSA_TRY(nsa_cu_check(ctx, cudaStreamSynchronize(cs), "backward: split sizes"));
    if (off) {
        NSA_TRY(mem_get(ctx, m, (size_t)tot[3] * 4, &p));
        NSA_TRY(nsa_cu_bwd_sel_fill(ctx, cs, &W, off, (int *)p));
        ka[NSA_BRANCH_SEL].off = off;
        ka[NSA_BRANCH_SEL].list = (int *)p;
    }
    for (int b = 0; b < 3; b++) {
        if (!tot[b]) continue;
        if (W.acc[kgrad[b][0]])
            NSA_TRY(mem_get(ctx, m, (size_t)tot[b] * nsa_cu_bwd_tiled_slot_bytes(s->Dk),
                            (void **)&ka[b].partK));
        if (W.acc[kgrad[b][1]])
            NSA_TRY(mem_get(ctx, m, (size_t)tot[b] * nsa_cu_bwd_tiled_slot_bytes(s->Dv),
                            (void **)&ka[b].partV));
    }
    BWD_MARK(2);
    for (int b = 0; b < 3; b++) {
        const nsa_branch br = (nsa_branch)b;
        if (b) BWD_MARK(2 + b);
        if (tcmask >> b & 1) {
            const int64_t y = (int64_t)b * R * s->Hq;
            const nsa_cu_tc_rows rw = {S.lse + y, S.delta + y, S.gate + y};
            if (b == NSA_BRANCH_SEL)
                NSA_TRY(nsa_cu_bwd_selfused(ctx, cs, s->dt, &W, &rw, ka[b].off, ka[b].list));
            else NSA_TRY(nsa_cu_bwd_fa2(ctx, cs, s->dt, &W, br, &rw));
            continue;
        }
        const int fast = role[b] != NSA_ROLE_REF;
        if (fast) NSA_TRY(nsa_cu_bwd_tiled_query(ctx, cs, s->dt, kc_dt, &W, br));
        else NSA_TRY(nsa_cu_bwd_query(ctx, cs, s->dt, kc_dt, &W, br));
        if (!W.acc[kgrad[b][0]] && !W.acc[kgrad[b][1]]) continue;
        if (fast) NSA_TRY(nsa_cu_bwd_tiled_keys(ctx, cs, s->dt, kc_dt, &W, br, &ka[b]));
        else NSA_TRY(nsa_cu_bwd_keys(ctx, cs, s->dt, kc_dt, &W, br));
    }
    BWD_MARK(5);
    if (!fwd->cmp_compressed && Tc > 0) {
        if (W.acc[NSA_GKC]) NSA_TRY(nsa_cu_bwd_phi(ctx, cs, &W, W.dkc, W.acc[NSA_GKC], s->Dk));
        if (W.acc[NSA_GVC]) NSA_TRY(nsa_cu_bwd_phi(ctx, cs, &W, W.dvc, W.acc[NSA_GVC], s->Dv));
    }
    /* each distinct gradient view once: the sum, in field order, of every field passed it */
    for (int i = 0; i < NSA_NGRAD; i++) {
        if (!W.acc[i]) continue;
        double *mem[NSA_NGRAD];
        int lead = 1, nm = 0;
        for (int j = 0; j < NSA_NGRAD; j++) {
            if (!W.acc[j] || !same_view(gt[i], gt[j])) continue;
            if (j < i) lead = 0;
            mem[nm++] = W.acc[j];
        }
        if (lead) NSA_TRY(nsa_cu_bwd_store(ctx, cs, gt[i], mem, nm));
    }
    BWD_MARK(6);
#undef BWD_MARK
    return NSA_OK;
}

static nsa_status backward_impl(nsa_context *ctx, const nsa_fwd_args *fwd,
                                const nsa_bwd_args *g, const nsa_shape *s,
                                const nsa_role role[3], const nsa_role fwd_role[3],
                                int force_branch, cudaEvent_t *ev) {
    const nsa_call c = nsa_call_of(fwd, g, s, NSA_PASS_BACKWARD);
    for (int b = 0; b < 3; b++) {
        const char *why = "";
        if (!nsa_cuda_bwd_role_supported(&c.p, (nsa_branch)b, role[b], nsa_cu_smem_optin(),
                                         &why) ||
            (is_tc(role[b]) && !nsa_call_tc_operands(&c, (nsa_branch)b, &why)))
            return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "%s: role %s: %s",
                            nsa_branch_name((nsa_branch)b), nsa_role_name(role[b]), why);
    }
    if (s->B * s->T == 0) return NSA_OK;
    bwd_mem m;
    memset(&m, 0, sizeof m);
    m.st = (cudaStream_t)ctx->stream;
    m.ev = ev;
    nsa_status st = run(ctx, &m, fwd, g, s, role, fwd_role, force_branch);
    mem_free(&m);
    return st;
}

extern "C" nsa_status nsa_cuda_backward(nsa_context *ctx, const nsa_fwd_args *fwd,
                                        const nsa_bwd_args *g, const nsa_shape *s,
                                        const nsa_role role[3], const nsa_role fwd_role[3],
                                        int force_branch) {
    return backward_impl(ctx, fwd, g, s, role, fwd_role, force_branch, NULL);
}

extern "C" nsa_status nsa_cuda_backward_timed(nsa_context *ctx, const nsa_fwd_args *fwd,
                                              const nsa_bwd_args *g, const nsa_shape *s,
                                              const nsa_role role[3],
                                              const nsa_role fwd_role[3], float ms[6]) {
    cudaEvent_t ev[7];
    for (int i = 0; i < 7; i++) cudaEventCreate(&ev[i]);
    nsa_status st = backward_impl(ctx, fwd, g, s, role, fwd_role, -1, ev);
    if (st == NSA_OK) st = nsa_cu_check(ctx, cudaEventSynchronize(ev[6]), "timed backward");
    for (int i = 0; i < 6; i++) {
        ms[i] = 0.f;
        if (st == NSA_OK) cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]);
    }
    for (int i = 0; i < 7; i++) cudaEventDestroy(ev[i]);
    return st;
}

extern "C" nsa_status nsa_device_cuda_backward(nsa_context *ctx, const nsa_fwd_args *fwd,
                                               const nsa_bwd_args *g, const nsa_shape *s,
                                               const nsa_role role[3],
                                               const nsa_role fwd_role[3], int force_branch) {
    return nsa_cuda_backward(ctx, fwd, g, s, role, fwd_role, force_branch);
}
