// SPDX-License-Identifier: Apache-2.0
/* bwd_common.cuh — the state of one CUDA backward (docs/design.md §1.5) shared by its kernel files:
 * the forward's parameter block, the gradient of the output, per-(row, head, branch) lse and
 * delta = dO_b·o_b, one double accumulator per gradient field and the selection bitmap.
 * Not a launcher: bwd_ref.cu holds the kernels, bwd_pipeline.cu the order of the steps.
 * Invariant: every accumulator element is written by exactly one thread block in a fixed key
 * order (no floating-point atomics), so gradients are bitwise reproducible run after run.
 */
#ifndef NSA_CUDA_BWD_COMMON_CUH
#define NSA_CUDA_BWD_COMMON_CUH

#include "common.cuh"

/* Gradient fields in nsa_bwd_args order (their accumulators are summed in this order when two
 * fields share one tensor). */
enum { NSA_GQ, NSA_GKC, NSA_GVC, NSA_GKS, NSA_GVS, NSA_GKW, NSA_GVW, NSA_GG, NSA_NGRAD };

typedef struct {
    nsa_cu_params F;      /* the forward: dims, input views, F.ranges (B·T, Hkv, n, 2) i32     */
    nsa_cu_view dout;     /* (B, T, Hq, Dv) gradient of out, dtype of the call                  */
    double scale;         /* softmax scale in double (the reference's)                          */
    int force_branch;     /* NSA_FORCE_BRANCH: -1, or the branch whose gate is 1                */
    double *lse, *delta;  /* (3, B·T, Hq): lse of branch b; delta = Σ_e g_b·dout_e·o_b,e        */
    double *acc[NSA_NGRAD]; /* accumulators in the gradient's logical row-major shape; NULL =
                               unwanted. GKC/GVC: the raw (B, T, Hkv, D) or compressed shape */
    double *dkc, *dvc;    /* (B, Tc, Hkv, D) compressed gradients (== acc[GKC|GVC] when the
                             caller passes compressed k/v); NULL when unwanted                 */
    uint32_t *selbits;    /* (B, Hkv, nsel_max, tw): bit t of block j set when a range of (t, g)
                             touches selection block j                                         */
    int tw;               /* 32-bit words per bitmap row: ceil(T / 32)                          */
    int *flag;            /* two device ints: [0] 0 after a malformed caller sel_ranges; [1] 1
                             when a row's ranges touch more than n blocks (F.blocks, when not
                             NULL, then holds only the first n)                             */
} nsa_cu_bwd;

/* One block of 1024 threads, part[t] holding thread t's count: part[0..1023] become their
 * exclusive prefix and part[1024] the total (a serial pass by thread 0: a fixed order). Has a
 * barrier before and after. */
__device__ __forceinline__ void nsa_cu_scan1024(int *part) {
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (int k = 0; k < 1024; k++) {
            const int v = part[k];
            part[k] = run;
            run += v;
        }
        part[1024] = run;
    }
    __syncthreads();
}

/* bwd_ref.cu: the reference role's steps (each enqueued on st). */
/* Copies the caller's sel_ranges (strided, B·T·Hkv·n·2) into W->F.ranges (packed) and clears
 * W->flag[0] when a slot is not an ascending range within [0, t+1); with W->F.blocks, also the
 * blocks the ranges touch (ascending, -1 padded; W->flag[1] set past n). */
nsa_status nsa_cu_bwd_load_ranges(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                  const nsa_tensor *sel_ranges);
/* Builds W->selbits from W->F.ranges (bitmap zeroed first). */
nsa_status nsa_cu_bwd_selbits(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W);
/* Query side of branch br: lse, delta, dgates[.., br], and dq += this branch's share. */
nsa_status nsa_cu_bwd_query(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                            const nsa_cu_bwd *W, nsa_branch br);
/* Key side of branch br: dK and dV of every key (compressed for cmp), walking per key the
 * queries that see it in ascending t. Needs the query side of br first. */
nsa_status nsa_cu_bwd_keys(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                           const nsa_cu_bwd *W, nsa_branch br);
/* φ = avg backward: raw (B, T, Hkv, D) accumulator from the compressed one. */
nsa_status nsa_cu_bwd_phi(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                          const double *dc, double *raw, int D);
/* Stores the sum (in order) of nacc accumulators into gradient tensor t (4-d, any strides). */
nsa_status nsa_cu_bwd_store(nsa_context *ctx, nsa_cu_stream st, const nsa_tensor *t,
                            double *const *accs, int nacc);

#endif /* NSA_CUDA_BWD_COMMON_CUH */
