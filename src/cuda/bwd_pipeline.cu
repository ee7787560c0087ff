/* bwd_pipeline.cu — the CUDA backward: the order of its steps (selection ranges, φ = avg, per
 * branch query side then key side, φ backward, stores summing aliased gradients) and the device
 * hook nsa_device_cuda_backward that nsa_backward calls for tensors on a CUDA device.
 * Not a kernel file (bwd_ref.cu) and not routing policy (the router picks the roles).
 * Invariant: every buffer is a stream-ordered allocation on ctx's stream, freed on every path;
 * gradients are deterministic (bwd_common.cuh) and written only after every argument passed.
 */
#include "bwd_common.cuh"
#include "bwd_tiled.cuh"

extern "C" {
#include "../route/route.h"
#include "bwd_api.h"
}

#include <string.h>

extern "C" int nsa_cuda_bwd_role_supported(const nsa_route_problem *p, nsa_branch br,
                                           nsa_role role, const char **why) {
    if (p->pass != NSA_PASS_BACKWARD) { *why = "not a backward problem"; return 0; }
    if (p->cfg.n > 256) { *why = "n > 256 (GPU top-n)"; return 0; }
    if ((size_t)(2 * p->cfg.Dk + 2 * p->cfg.Dv + 256) * 8 > 200 * 1024) {
        *why = "Dk + Dv too large for the reference backward's shared memory";
        return 0;
    }
    if (role == NSA_ROLE_REF) return 1;
    if ((role == NSA_ROLE_MASKED && br != NSA_BRANCH_SEL) ||
        (role == NSA_ROLE_PACKED && br == NSA_BRANCH_SEL)) {
        if (nsa_cu_bwd_tiled_smem(p->cfg.Dk, p->cfg.Dv) > 200 * 1024) {
            *why = "Dk + Dv too large for the tiled backward's shared memory";
            return 0;
        }
        return 1;
    }
    *why = "backward: the reference and tiled (masked/packed) roles are built";
    return 0;
}

/* Stream-ordered allocations of one backward, freed together. */
typedef struct {
    void *p[40];
    int n;
    cudaStream_t st;
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

/* The roles a forward of this call would be routed to (to recompute the selection). */
static nsa_status forward_roles(nsa_context *ctx, const nsa_fwd_args *fwd, const nsa_shape *s,
                                nsa_role roles[3]) {
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = fwd->cfg;
    p.B = s->B;
    p.T = s->T;
    p.dtype = s->dt;
    p.pass = NSA_PASS_FORWARD;
    nsa_device_caps caps;
    NSA_TRY(nsa_device_caps_of(ctx, fwd->q.device, &caps));
    nsa_route_plan_t plan;
    NSA_TRY(nsa_route_plan(ctx, &p, &caps, &plan));
    for (int b = 0; b < 3; b++) roles[b] = plan.be[b] ? plan.be[b]->role : NSA_ROLE_REF;
    return NSA_OK;
}

/* W->F.ranges from the caller's sel_ranges (validated) or from a routed CUDA forward. */
static nsa_status ranges_step(nsa_context *ctx, bwd_mem *m, const nsa_fwd_args *fwd,
                              const nsa_shape *s, nsa_cu_bwd *W) {
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
    nsa_role roles[3];
    NSA_TRY(forward_roles(ctx, fwd, s, roles));
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
    return nsa_cuda_forward(ctx, &a, s, roles);
}

static nsa_status run(nsa_context *ctx, bwd_mem *m, const nsa_fwd_args *fwd,
                      const nsa_bwd_args *g, const nsa_shape *s, const nsa_role role[3],
                      int force_branch) {
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
    NSA_TRY(mem_get(ctx, m, sizeof(int), &p));
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
        void *kc, *vc;
        NSA_TRY(mem_get(ctx, m, nk * 4, &kc));
        NSA_TRY(mem_get(ctx, m, nv * 4, &vc));
        nsa_cu_view rk = nsa_cu_view4(&fwd->k_cmp), rv = nsa_cu_view4(&fwd->v_cmp);
        NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, NSA_DTYPE_F32, &rk, P->B, P->T, P->Tc, P->Hkv,
                                P->Dk, P->l, P->d, kc));
        NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, NSA_DTYPE_F32, &rv, P->B, P->T, P->Tc, P->Hkv,
                                P->Dv, P->l, P->d, vc));
        P->kc = nsa_cu_contig(kc, Tc, s->Hkv, s->Dk);
        P->vc = nsa_cu_contig(vc, Tc, s->Hkv, s->Dv);
        kc_dt = NSA_DTYPE_F32;
    }
    NSA_TRY(mem_get(ctx, m, (size_t)s->B * s->Hkv * s->nsel_max * W.tw * 4, &p));
    W.selbits = (uint32_t *)p;

    NSA_TRY(ranges_step(ctx, m, fwd, s, &W));
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
        if (b == NSA_BRANCH_SEL) {
            NSA_TRY(mem_get(ctx, m, (size_t)(nrows + 1) * 4, &p));
            off = (int *)p;
            NSA_TRY(nsa_cu_bwd_sel_count(ctx, cs, &W, off));
            NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(&tot[3], off + nrows, sizeof(int),
                                                      cudaMemcpyDeviceToHost, cs), "index"));
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
    for (int b = 0; b < 3; b++) {
        const nsa_branch br = (nsa_branch)b;
        const int fast = role[b] != NSA_ROLE_REF;
        if (fast) NSA_TRY(nsa_cu_bwd_tiled_query(ctx, cs, s->dt, kc_dt, &W, br));
        else NSA_TRY(nsa_cu_bwd_query(ctx, cs, s->dt, kc_dt, &W, br));
        if (!W.acc[kgrad[b][0]] && !W.acc[kgrad[b][1]]) continue;
        if (fast) NSA_TRY(nsa_cu_bwd_tiled_keys(ctx, cs, s->dt, kc_dt, &W, br, &ka[b]));
        else NSA_TRY(nsa_cu_bwd_keys(ctx, cs, s->dt, kc_dt, &W, br));
    }
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
    return NSA_OK;
}

extern "C" nsa_status nsa_cuda_backward(nsa_context *ctx, const nsa_fwd_args *fwd,
                                        const nsa_bwd_args *g, const nsa_shape *s,
                                        const nsa_role role[3], int force_branch) {
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = fwd->cfg;
    p.B = s->B;
    p.T = s->T;
    p.dtype = s->dt;
    p.pass = NSA_PASS_BACKWARD;
    for (int b = 0; b < 3; b++) {
        const char *why = "";
        if (!nsa_cuda_bwd_role_supported(&p, (nsa_branch)b, role[b], &why))
            return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "%s: role %s: %s",
                            nsa_branch_name((nsa_branch)b), nsa_role_name(role[b]), why);
    }
    if (s->B * s->T == 0) return NSA_OK;
    bwd_mem m;
    memset(&m, 0, sizeof m);
    m.st = (cudaStream_t)ctx->stream;
    nsa_status st = run(ctx, &m, fwd, g, s, role, force_branch);
    mem_free(&m);
    return st;
}

extern "C" nsa_status nsa_device_cuda_backward(nsa_context *ctx, const nsa_fwd_args *fwd,
                                               const nsa_bwd_args *g, const nsa_shape *s,
                                               const nsa_role role[3], int force_branch) {
    return nsa_cuda_backward(ctx, fwd, g, s, role, force_branch);
}
