// SPDX-License-Identifier: Apache-2.0
/* combine.cu — the gated sum out = g_cmp·o_cmp + g_sel·o_sel + g_win·o_win (docs/design.md §1.4)
 * and
 * the copy of the optional per-branch outputs and log-sum-exps into the caller's tensors.
 * Not a branch: it only reads the row-space f32 outputs every role writes.
 * Invariant: each output element is rounded once to its dtype from the f32 branch outputs
 * (out from their double sum), like the reference's store.
 */
#include "common.cuh"

typedef struct {
    nsa_cu_view out, ob[3], lse[3]; /* lse views: (B, T, Hq) with sd unused */
    int force_branch;               /* -1, or the branch whose gate is 1 (others 0)   */
} comb_out;

/* Grid: one thread per (row r, head h, 4 consecutive e < Dv), 256 per block (Dv % 4 == 0;
 * f32 branch outputs read as float4: the kernel moves 12 B in per 2 B out and is memory
 * bound). Shared memory: none. */
template <typename T>
__global__ void combine_kernel(nsa_cu_params P, comb_out U) {
    int64_t idx4 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int D4 = P.Dv / 4;
    if (idx4 >= P.R * P.Hq * D4) return;
    const int e0 = (int)(idx4 % D4) * 4;
    const int64_t rh = idx4 / D4;
    const int h = (int)(rh % P.Hq);
    const int64_t r = rh / P.Hq;
    int64_t b, t;
    nsa_cu_row(P, r, &b, &t);
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    for (int br = 0; br < 3; br++) {
        float4 o4 = *(const float4 *)(P.o[br] + rh * P.Dv + e0);
        float o[4] = {o4.x, o4.y, o4.z, o4.w};
        double gate = U.force_branch < 0 ? (double)nsa_cu_ld<T>(P.gates, b, t, h, br)
                                         : (double)(U.force_branch == br);
        for (int k = 0; k < 4; k++) acc[k] += gate * (double)o[k];
        if (U.ob[br].p)
            for (int k = 0; k < 4; k++)
                ((T *)U.ob[br].p)[b * U.ob[br].sb + t * U.ob[br].st + h * U.ob[br].sh +
                                  (e0 + k) * U.ob[br].sd] = nsa_cu_to<T>(o[k]);
        if (e0 == 0 && U.lse[br].p)
            ((float *)U.lse[br].p)[b * U.lse[br].sb + t * U.lse[br].st + h * U.lse[br].sh] =
                P.lse[br][rh];
    }
    T *dst = (T *)U.out.p + b * U.out.sb + t * U.out.st + h * U.out.sh;
    for (int k = 0; k < 4; k++) dst[(e0 + k) * U.out.sd] = nsa_cu_to<T>((float)acc[k]);
}

/* The same, one thread per element, for Dv % 4 != 0. */
template <typename T>
__global__ void combine1_kernel(nsa_cu_params P, comb_out U) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= P.R * P.Hq * P.Dv) return;
    const int e = (int)(idx % P.Dv);
    const int64_t rh = idx / P.Dv;
    const int h = (int)(rh % P.Hq);
    const int64_t r = rh / P.Hq;
    int64_t b, t;
    nsa_cu_row(P, r, &b, &t);
    double acc = 0.0;
    for (int br = 0; br < 3; br++) {
        float o = P.o[br][idx];
        double gate = U.force_branch < 0 ? (double)nsa_cu_ld<T>(P.gates, b, t, h, br)
                                         : (double)(U.force_branch == br);
        acc += gate * (double)o;
        if (U.ob[br].p)
            ((T *)U.ob[br].p)[b * U.ob[br].sb + t * U.ob[br].st + h * U.ob[br].sh +
                              e * U.ob[br].sd] = nsa_cu_to<T>(o);
        if (e == 0 && U.lse[br].p)
            ((float *)U.lse[br].p)[b * U.lse[br].sb + t * U.lse[br].st + h * U.lse[br].sh] =
                P.lse[br][rh];
    }
    ((T *)U.out.p)[b * U.out.sb + t * U.out.st + h * U.out.sh + e * U.out.sd] =
        nsa_cu_to<T>((float)acc);
}

template <typename T>
static void launch_combine(nsa_cu_stream st, const nsa_cu_params *P, const comb_out *U) {
    int64_t total = P->R * P->Hq * P->Dv;
    if (P->Dv % 4 == 0)
        combine_kernel<T><<<nsa_cu_blocks(total / 4, 256), 256, 0, st>>>(*P, *U);
    else
        combine1_kernel<T><<<nsa_cu_blocks(total, 256), 256, 0, st>>>(*P, *U);
}

static nsa_cu_view view_of(const nsa_tensor *x) {
    nsa_cu_view v = {x->data, 0, 0, 0, 0};
    if (x->data) {
        v.sb = x->stride[0];
        v.st = x->stride[1];
        v.sh = x->stride[2];
        v.sd = x->ndim > 3 ? x->stride[3] : 0;
    }
    return v;
}

nsa_status nsa_cu_combine(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                          const nsa_cu_params *P, const nsa_fwd_args *a, int force_branch) {
    int64_t total = P->R * P->Hq * P->Dv;
    if (total == 0) return NSA_OK;
    comb_out U;
    U.out = view_of(&a->out);
    U.ob[0] = view_of(&a->out_cmp);
    U.ob[1] = view_of(&a->out_sel);
    U.ob[2] = view_of(&a->out_win);
    U.lse[0] = view_of(&a->lse_cmp);
    U.lse[1] = view_of(&a->lse_sel);
    U.lse[2] = view_of(&a->lse_win);
    U.force_branch = force_branch;
    switch (dt) {
    case NSA_DTYPE_BF16: launch_combine<__nv_bfloat16>(st, P, &U); break;
    case NSA_DTYPE_F16: launch_combine<__half>(st, P, &U); break;
    default: launch_combine<float>(st, P, &U); break;
    }
    NSA_CU_LAUNCHED(ctx, "combine");
    return NSA_OK;
}
