// SPDX-License-Identifier: Apache-2.0
/* pipeline.cu — the CUDA pipeline of src/route/backend.h: work buffers in the context's device
 * workspace, φ = avg compression, the default selection step (reference scores unless the cmp
 * step already produced them, then top-n and ranges), the finite check, the gated sum; plus
 * nsa_cuda_forward / nsa_cuda_forward_rows, which drive the same steps without the router.
 * Not a kernel file and not routing policy.
 * Invariant: o[b] and lse[b] are f32 (acc_size 4) in row space; nothing in a forward waits for
 * the host except the finite check and to_host, which the dispatcher asks for explicitly.
 */
#include "common.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t up256(size_t x) { return (x + 255) & ~(size_t)255; }

/* Carves the workspace for rows R and fills st; compresses cmp K/V. */
static nsa_status begin_rows(nsa_context *ctx, nsa_fwd_work *w, const int32_t *rows, int64_t R) {
    const nsa_fwd_args *a = w->a;
    const nsa_shape *s = w->s;
    nsa_cu_fwd *st = (nsa_cu_fwd *)nsa_calloc(1, sizeof *st);
    if (!st) return nsa_fail(ctx, NSA_ERR_NOMEM, "CUDA pipeline: out of host memory");
    w->impl = st;
    w->acc_size = 4;
    w->stream = ctx->stream;
    nsa_cu_params *P = &st->P;
    const nsa_config *c = &a->cfg;
    P->B = (int)s->B; P->T = (int)s->T; P->Tc = (int)s->Tc;
    P->Hq = s->Hq; P->Hkv = s->Hkv; P->G = s->G; P->Dk = s->Dk; P->Dv = s->Dv;
    P->l = c->l; P->d = c->d; P->lp = c->lp; P->n = c->n; P->n_init = c->n_init;
    P->n_local = c->n_local; P->w = c->w;
    P->nsel_max = s->nsel_max;
    P->scale = (float)s->scale;
    P->rows = rows;
    P->R = R;
    P->q = nsa_cu_view4(&a->q); P->ks = nsa_cu_view4(&a->k_sel); P->vs = nsa_cu_view4(&a->v_sel);
    P->kw = nsa_cu_view4(&a->k_win);
    P->vw = nsa_cu_view4(&a->v_win);
    P->gates = nsa_cu_view4(&a->gates);
    st->dt = s->dt;

    const size_t esz = nsa_dtype_size(s->dt);
    const int own_kc = !a->cmp_compressed && s->Tc > 0;
    const size_t nk = (size_t)(s->B * s->Tc) * s->Hkv * s->Dk, nv = (size_t)(s->B * s->Tc) * s->Hkv * s->Dv;
    size_t off[12], total = 0, sz[12] = {
        own_kc ? nk * 4 : 0, own_kc ? nv * 4 : 0,                                   /* kc32 vc32 */
        own_kc && s->dt != NSA_DTYPE_F32 ? nk * esz : 0,                             /* kcT */
        own_kc && s->dt != NSA_DTYPE_F32 ? nv * esz : 0,                             /* vcT */
        (size_t)R * s->Hq * s->Dv * 4, (size_t)R * s->Hq * s->Dv * 4,
        (size_t)R * s->Hq * s->Dv * 4,                                              /* o[3] */
        (size_t)R * s->Hq * 4 * 3,                                                  /* lse  */
        (size_t)R * s->Hkv * (size_t)(s->Tc > 0 ? s->Tc : 1) * 4,                   /* P    */
        (size_t)R * s->Hkv * c->n * 4, (size_t)R * s->Hkv * c->n * 8,               /* idx  */
        256};                                                                       /* flag */
    for (int i = 0; i < 12; i++) {
        off[i] = total;
        total += up256(sz[i]);
    }
    char *ws;
    NSA_TRY(nsa_cu_workspace(ctx, total, (void **)&ws));
    cudaStream_t cs = (cudaStream_t)ctx->stream;
    if (own_kc) {
        P->kc = nsa_cu_contig(ws + off[0], s->Tc, s->Hkv, s->Dk);
        P->vc = nsa_cu_contig(ws + off[1], s->Tc, s->Hkv, s->Dv);
        st->kc_dt = NSA_DTYPE_F32;
        nsa_cu_view rk = nsa_cu_view4(&a->k_cmp), rv = nsa_cu_view4(&a->v_cmp);
        NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, NSA_DTYPE_F32, &rk, P->B, P->T, P->Tc, P->Hkv,
                                P->Dk, P->l, P->d, ws + off[0]));
        NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, NSA_DTYPE_F32, &rv, P->B, P->T, P->Tc, P->Hkv,
                                P->Dv, P->l, P->d, ws + off[1]));
        if (s->dt != NSA_DTYPE_F32) {
            st->kcT = nsa_cu_contig(ws + off[2], s->Tc, s->Hkv, s->Dk);
            st->vcT = nsa_cu_contig(ws + off[3], s->Tc, s->Hkv, s->Dv);
            NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, s->dt, &rk, P->B, P->T, P->Tc, P->Hkv, P->Dk,
                                    P->l, P->d, ws + off[2]));
            NSA_TRY(nsa_cu_compress(ctx, cs, s->dt, s->dt, &rv, P->B, P->T, P->Tc, P->Hkv, P->Dv,
                                    P->l, P->d, ws + off[3]));
        } else {
            st->kcT = P->kc;
            st->vcT = P->vc;
        }
    } else {
        P->kc = nsa_cu_view4(&a->k_cmp);
        P->vc = nsa_cu_view4(&a->v_cmp);
        st->kc_dt = s->dt;
        st->kcT = P->kc;
        st->vcT = P->vc;
    }
    for (int b = 0; b < 3; b++) {
        P->o[b] = (float *)(ws + off[4 + b]);
        P->lse[b] = (float *)(ws + off[7]) + (size_t)b * R * s->Hq;
        w->o[b] = P->o[b];
        w->lse[b] = P->lse[b];
    }
    P->P = (float *)(ws + off[8]);
    P->blocks = (int32_t *)(ws + off[9]);
    P->ranges = (int32_t *)(ws + off[10]);
    st->flag = (int *)(ws + off[11]);
    w->kc = (void *)P->kc.p;
    w->vc = (void *)P->vc.p;
    w->blocks = P->blocks;
    w->ranges = P->ranges;
    return NSA_OK;
}

static nsa_status cu_begin(nsa_context *ctx, nsa_fwd_work *w) {
    return begin_rows(ctx, w, NULL, w->s->B * w->s->T);
}

static nsa_status cu_select(nsa_context *ctx, nsa_fwd_work *w) {
    nsa_cu_fwd *st = nsa_cu_state(w);
    cudaStream_t cs = (cudaStream_t)w->stream;
    if (!st->P_valid) NSA_TRY(nsa_cu_ref_score(ctx, cs, st->dt, st->kc_dt, &st->P));
    return nsa_cu_select(ctx, cs, &st->P, w->a);
}

/* Grid: one thread per element of o[br] (R·Hq·Dv), 256 per block; clears *flag's bit when an
 * element is not finite. Shared memory: none. */
__global__ void finite_kernel(const float *o, int64_t n, int *flag) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && !isfinite(o[i])) *flag = 0;
}

static nsa_status cu_finite(nsa_context *ctx, const nsa_fwd_work *w, nsa_branch br, int *finite) {
    nsa_cu_fwd *st = nsa_cu_state(w);
    cudaStream_t cs = (cudaStream_t)w->stream;
    int64_t n = st->P.R * st->P.Hq * st->P.Dv;
    int one = 1;
    NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(st->flag, &one, 4, cudaMemcpyHostToDevice, cs),
                         "finite flag"));
    if (n > 0) {
        finite_kernel<<<nsa_cu_blocks(n, 256), 256, 0, cs>>>(st->P.o[br], n, st->flag);
        NSA_CU_LAUNCHED(ctx, "finite check");
    }
    NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(finite, st->flag, 4, cudaMemcpyDeviceToHost, cs),
                         "finite flag"));
    return nsa_cu_check(ctx, cudaStreamSynchronize(cs), "finite check");
}

static nsa_status cu_to_host(nsa_context *ctx, const nsa_fwd_work *w, const void *src, void *dst,
                             size_t bytes) {
    cudaStream_t cs = (cudaStream_t)w->stream;
    NSA_TRY(nsa_cu_check(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cs),
                         "to_host"));
    return nsa_cu_check(ctx, cudaStreamSynchronize(cs), "to_host");
}

static nsa_status cu_finish(nsa_context *ctx, nsa_fwd_work *w) {
    nsa_cu_fwd *st = nsa_cu_state(w);
    return nsa_cu_combine(ctx, (cudaStream_t)w->stream, st->dt, &st->P, w->a, w->force_branch);
}

static void cu_end(nsa_fwd_work *w) {
    free(w->impl);
    w->impl = NULL;
}

extern "C" const nsa_pipeline nsa_cuda_pipeline = {
    "cuda", NSA_DEVICE_CUDA, cu_begin, cu_select, cu_finite, cu_to_host, cu_finish, cu_end,
    &nsa_cuda_kv_ops};

extern "C" const nsa_pipeline *nsa_device_cuda_pipeline(void) { return &nsa_cuda_pipeline; }

/* ---- driving the steps without the router ---- */

/* The first CUDA backend of role `role` serving br (backends.cu's list; forward rows only);
 * opt-in rows (the Hopper kernels) only when tuned in (nsa_cuda_tune("hopper", 1)). */
static const nsa_backend *backend_of(nsa_role role, nsa_branch br) {
    int n = 0;
    const nsa_backend *const *list = nsa_device_cuda_backends(&n);
    for (int i = 0; i < n; i++)
        if (list[i]->fwd && list[i]->role == role && (list[i]->branches & NSA_BRANCH_BIT(br)) &&
            (!(list[i]->branches & NSA_BACKEND_OPT_IN) || nsa_cu_tuning.hopper))
            return list[i];
    return NULL;
}

/* ev (optional, 7 events): recorded before begin's successor steps and after each. */
static nsa_status run_steps(nsa_context *ctx, nsa_fwd_work *w, const nsa_backend *be[3],
                            cudaEvent_t *ev) {
    cudaStream_t cs = (cudaStream_t)w->stream;
#define NSA_CU_MARK(i) if (ev) cudaEventRecord(ev[i], cs)
    NSA_CU_MARK(1);
    NSA_TRY(be[NSA_BRANCH_CMP]->fwd(ctx, be[NSA_BRANCH_CMP], NSA_BRANCH_CMP, w));
    NSA_CU_MARK(2);
    if (be[NSA_BRANCH_SEL]->select) NSA_TRY(be[NSA_BRANCH_SEL]->select(ctx, be[NSA_BRANCH_SEL], w));
    else NSA_TRY(cu_select(ctx, w));
    NSA_CU_MARK(3);
    NSA_TRY(be[NSA_BRANCH_SEL]->fwd(ctx, be[NSA_BRANCH_SEL], NSA_BRANCH_SEL, w));
    NSA_CU_MARK(4);
    NSA_TRY(be[NSA_BRANCH_WIN]->fwd(ctx, be[NSA_BRANCH_WIN], NSA_BRANCH_WIN, w));
    NSA_CU_MARK(5);
    NSA_TRY(cu_finish(ctx, w));
    NSA_CU_MARK(6);
#undef NSA_CU_MARK
    return NSA_OK;
}

/* The pipeline state of one forward of a (no forced branch). */
static nsa_fwd_work work_of(const nsa_fwd_args *a, const nsa_shape *s, const nsa_route_problem *p) {
    nsa_fwd_work w;
    memset(&w, 0, sizeof w);
    w.a = a;
    w.s = s;
    w.p = p;
    w.force_branch = -1;
    return w;
}

/* be[br] = the CUDA backend of role[br] for each branch, when it can run problem p. */
static nsa_status bind_roles(nsa_context *ctx, const nsa_route_problem *p, const nsa_role role[3],
                             const nsa_backend *be[3]) {
    for (int br = 0; br < 3; br++) {
        const char *why = "no CUDA backend of this role";
        be[br] = backend_of(role[br], (nsa_branch)br);
        if (!be[br] ||
            !nsa_cuda_role_supported(p, (nsa_branch)br, role[br], nsa_cu_smem_optin(), &why))
            return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "%s: role %s: %s",
                            nsa_branch_name((nsa_branch)br), nsa_role_name(role[br]), why);
    }
    return NSA_OK;
}

static nsa_status forward_impl(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                               const nsa_role role[3], cudaEvent_t *ev) {
    nsa_route_problem p = nsa_route_problem_of(a, s, NSA_PASS_FORWARD);
    const nsa_backend *be[3];
    NSA_TRY(bind_roles(ctx, &p, role, be));
    nsa_fwd_work w = work_of(a, s, &p);
    if (ev) cudaEventRecord(ev[0], (cudaStream_t)ctx->stream);
    nsa_status st = cu_begin(ctx, &w);
    if (st == NSA_OK) st = run_steps(ctx, &w, be, ev);
    cu_end(&w);
    return st;
}

extern "C" nsa_status nsa_cuda_forward(nsa_context *ctx, const nsa_fwd_args *a,
                                       const nsa_shape *s, const nsa_role role[3]) {
    if (s->B * s->T == 0) return NSA_OK;
    return forward_impl(ctx, a, s, role, NULL);
}

extern "C" nsa_status nsa_cuda_forward_timed(nsa_context *ctx, const nsa_fwd_args *a,
                                             const nsa_shape *s, const nsa_role role[3],
                                             float ms[6]) {
    cudaEvent_t ev[7];
    for (int i = 0; i < 7; i++) cudaEventCreate(&ev[i]);
    nsa_status st = forward_impl(ctx, a, s, role, ev);
    if (st == NSA_OK) st = nsa_cu_check(ctx, cudaEventSynchronize(ev[6]), "timed forward");
    for (int i = 0; i < 6; i++) {
        ms[i] = 0.f;
        if (st == NSA_OK) cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]);
    }
    for (int i = 0; i < 7; i++) cudaEventDestroy(ev[i]);
    return st;
}

nsa_status nsa_cu_forward_hook(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                               const nsa_role role[3], const int32_t *ranges,
                               const int32_t *blocks, nsa_cu_fwd_hook hook, void *arg) {
    if (s->B * s->T == 0) return NSA_OK;
    nsa_route_problem p = nsa_route_problem_of(a, s, NSA_PASS_FORWARD);
    const nsa_backend *be[3];
    NSA_TRY(bind_roles(ctx, &p, role, be));
    nsa_fwd_work w = work_of(a, s, &p);
    cudaStream_t cs = (cudaStream_t)ctx->stream;
    nsa_status st = cu_begin(ctx, &w);
    if (st == NSA_OK) st = be[NSA_BRANCH_CMP]->fwd(ctx, be[NSA_BRANCH_CMP], NSA_BRANCH_CMP, &w);
    if (st == NSA_OK && ranges) { /* the caller's selection: ranges and the blocks they touch */
        const nsa_cu_params *P = &nsa_cu_state(&w)->P;
        const size_t nr = (size_t)P->R * P->Hkv * P->n;
        st = nsa_cu_check(ctx, cudaMemcpyAsync(P->ranges, ranges, nr * 8,
                                               cudaMemcpyDeviceToDevice, cs), "ranges");
        if (st == NSA_OK)
            st = nsa_cu_check(ctx, cudaMemcpyAsync(P->blocks, blocks, nr * 4,
                                                   cudaMemcpyDeviceToDevice, cs), "blocks");
    } else if (st == NSA_OK) {
        st = be[NSA_BRANCH_SEL]->select ? be[NSA_BRANCH_SEL]->select(ctx, be[NSA_BRANCH_SEL], &w)
                                        : cu_select(ctx, &w);
    }
    if (st == NSA_OK) st = be[NSA_BRANCH_SEL]->fwd(ctx, be[NSA_BRANCH_SEL], NSA_BRANCH_SEL, &w);
    if (st == NSA_OK) st = be[NSA_BRANCH_WIN]->fwd(ctx, be[NSA_BRANCH_WIN], NSA_BRANCH_WIN, &w);
    if (st == NSA_OK) st = hook(ctx, &nsa_cu_state(&w)->P, arg);
    cu_end(&w);
    return st;
}

extern "C" nsa_status nsa_cuda_forward_rows(nsa_context *ctx, const nsa_fwd_args *a,
                                            const nsa_shape *s, const int32_t *rows,
                                            int64_t nrows) {
    if (nrows == 0) return NSA_OK;
    nsa_route_problem p = nsa_route_problem_of(a, s, NSA_PASS_FORWARD);
    const nsa_backend *be[3];
    for (int br = 0; br < 3; br++) be[br] = backend_of(NSA_ROLE_REF, (nsa_branch)br);
    nsa_fwd_work w = work_of(a, s, &p);
    nsa_status st = begin_rows(ctx, &w, rows, nrows);
    if (st == NSA_OK) st = run_steps(ctx, &w, be, NULL);
    cu_end(&w);
    return st;
}
