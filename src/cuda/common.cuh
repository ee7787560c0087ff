// SPDX-License-Identifier: Apache-2.0
/* common.cuh — what every kernel file of the CUDA backend shares: the parameter block of one
 * forward, element loads/stores for f32/bf16/f16, row mapping and launch checks.
 * Not a launcher: each .cu file owns its kernels and exposes one host function per role.
 * Invariant: every intermediate of the pipeline lives in "row space": r indexes the rows being
 * computed (r = b·T + t for a full forward, or the r-th entry of a row list), so reference and
 * fast kernels exchange the same buffers.
 */
#ifndef NSA_CUDA_COMMON_CUH
#define NSA_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "cuda_api.h"
}

/* A strided 4-d view (element strides) of a caller tensor or workspace buffer. */
typedef struct {
    const void *p;
    int64_t sb, st, sh, sd;
} nsa_cu_view;

/* The view of a 4-d caller tensor (all zero for an absent one). */
static inline nsa_cu_view nsa_cu_view4(const nsa_tensor *x) {
    nsa_cu_view v = {x ? x->data : NULL, 0, 0, 0, 0};
    if (x && x->data) {
        v.sb = x->stride[0];
        v.st = x->stride[1];
        v.sh = x->stride[2];
        v.sd = x->stride[3];
    }
    return v;
}

/* The view of a contiguous (B, Tn, H, D) workspace buffer. */
static inline nsa_cu_view nsa_cu_contig(void *p, int64_t Tn, int H, int D) {
    nsa_cu_view v = {p, Tn * H * D, (int64_t)H * D, D, 1};
    return v;
}

/* 16-byte loads (cp.async, ldmatrix) of a 2-byte-element view need D-contiguous rows on
 * 16-byte boundaries: the tensor-core roles' operand check. */
static inline int nsa_cu_aligned16(const nsa_cu_view *v, int D) {
    return nsa_rows16(v->p, v->sb, v->st, v->sh, v->sd, D); /* the router's rule (backend.h) */
}

/* Dynamic shared memory one block may opt in to on the current device (cudaDevAttr
 * MaxSharedMemoryPerBlockOptin, the value nsa_device_caps.smem_per_block reports; device.cu):
 * what every launcher compares its kernel's bytes with. */
extern "C" size_t nsa_cu_smem_optin(void);
/* What the approximate checks (the reference and tiled kernels' supports() and launchers) allow
 * a block: the device's opt-in limit, at most 200 KB — the margin below the H100's 227 KB they
 * were written with. */
static inline size_t nsa_cu_smem_budget(size_t optin) {
    return optin < 200 * 1024 ? optin : 200 * 1024;
}

/* The (Dk, Dv) pairs the tensor-core kernels (FA-2 forward and backward, fused selection
 * forward and backward) are compiled for: X(DK, DV) once per pair. The one list: supports()
 * checks it and every launcher's dispatch expands it. */
#define NSA_CU_TC_DIMS(X) X(64, 64) X(128, 128) X(192, 128)
#define NSA_CU_TC_DIMS_WHY "(Dk, Dv) not in {(64,64), (128,128), (192,128)}"
static inline int nsa_cu_tc_dims_ok(int Dk, int Dv) {
#define NSA_CU_DIMS_OK(DK, DV) if (Dk == DK && Dv == DV) return 1;
    NSA_CU_TC_DIMS(NSA_CU_DIMS_OK)
#undef NSA_CU_DIMS_OK
    return 0;
}
/* The error of a launcher asked for a pair outside the list (supports() declined it first). */
#define NSA_CU_TC_DIMS_FAIL(ctx, Dk, Dv)                                                           \
    nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg.Dk: (%d, %d): " NSA_CU_TC_DIMS_WHY, Dk, Dv)

/* The shape a routing problem describes (scale left 0: supports() checks need no scale). */
static inline nsa_shape nsa_cu_shape_of(const nsa_route_problem *p) {
    nsa_shape s;
    memset(&s, 0, sizeof s);
    s.B = p->B;
    s.T = p->T;
    s.Tc = nsa_num_cmp(&p->cfg, p->T);
    s.Hq = p->cfg.Hq;
    s.Hkv = p->cfg.Hkv;
    s.G = p->cfg.Hkv > 0 ? p->cfg.Hq / p->cfg.Hkv : 0;
    s.Dk = p->cfg.Dk;
    s.Dv = p->cfg.Dv;
    s.dt = p->dtype;
    s.dev = NSA_DEVICE_CUDA;
    s.nsel_max = p->cfg.lp > 0 ? (int)((p->T + p->cfg.lp - 1) / p->cfg.lp) : 0;
    return s;
}

/* Everything one forward's kernels read. Passed by value (well under the 4 KB limit). */
typedef struct {
    int B, T, Tc, Hq, Hkv, G, Dk, Dv;
    int l, d, lp, n, n_init, n_local, w;
    int nsel_max;          /* ceil(T / lp) */
    float scale;
    const int32_t *rows;   /* NULL: r = b·T + t for r < R; else rows[r] = b·T + t */
    int64_t R;
    nsa_cu_view q, kc, vc, ks, vs, kw, vw, gates; /* kc/vc: compressed (B, Tc, Hkv, D) */
    /* row-space workspace */
    float *o[3];      /* (R, Hq, Dv) per-branch outputs, f32: out is rounded once from
                         them (bf16 branch outputs measured 1.5x over the parity bound of out,
                         2026-11-26 H100, where branches cancel)                          */
    float *lse[3];    /* (R, Hq)                                                       */
    float *P;         /* (R, Hkv, Tc) cmp probabilities summed over the group's heads  */
    int32_t *blocks;  /* (R, Hkv, n) selected blocks ascending, -1 padded              */
    int32_t *ranges;  /* (R, Hkv, n, 2) merged [start, end), unused [0, 0)             */
} nsa_cu_params;

/* ---- elements ---- */
template <typename T> __device__ __forceinline__ float nsa_cu_f(T x);
template <> __device__ __forceinline__ float nsa_cu_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float nsa_cu_f<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
template <> __device__ __forceinline__ float nsa_cu_f<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T nsa_cu_to(float x);
template <> __device__ __forceinline__ float nsa_cu_to<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 nsa_cu_to<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half nsa_cu_to<__half>(float x) {
    return __float2half_rn(x);
}

/* Element (b, t, h, e) of view v, element type T, as float. */
template <typename T>
__device__ __forceinline__ float nsa_cu_ld(const nsa_cu_view &v, int64_t b, int64_t t, int64_t h,
                                           int64_t e) {
    return nsa_cu_f<T>(((const T *)v.p)[b * v.sb + t * v.st + h * v.sh + e * v.sd]);
}

/* Row r -> (b, t). */
__device__ __forceinline__ void nsa_cu_row(const nsa_cu_params &P, int64_t r, int64_t *b,
                                           int64_t *t) {
    int64_t bt = P.rows ? (int64_t)P.rows[r] : r;
    *b = bt / P.T;
    *t = bt % P.T;
}

__device__ __forceinline__ int64_t nsa_cu_num_cmp(const nsa_cu_params &P, int64_t T) {
    return nsa_ix_num_cmp(P.l, P.d, T);
}

/* The block lists of queries t0 .. t0+qpb-1 of (row b, KV head g) into blk (qpb·n entries, -1
 * for a query past T) and their union, ascending, into ulist, by a bitmap over blocks (the
 * nsel_max/32 words after ulist). Block-wide, NT threads; thread 0 writes the union's size into
 * the bitmap's first word, which it returns: read it after the caller's next __syncthreads. */
template <int NT>
__device__ __forceinline__ unsigned *nsa_cu_block_union(const nsa_cu_params &P, int b, int g,
                                                        int t0, int qpb, int *blk, int *ulist) {
    const int tid = threadIdx.x;
    unsigned *bits = (unsigned *)(ulist + P.nsel_max);
    const int words = (P.nsel_max + 31) / 32;
    for (int i = tid; i < words; i += NT) bits[i] = 0u;
    __syncthreads();
    for (int i = tid; i < qpb * P.n; i += NT) {
        int t = t0 + i / P.n;
        int j = t < P.T ? P.blocks[(((int64_t)b * P.T + t) * P.Hkv + g) * P.n + i % P.n] : -1;
        blk[i] = j;
        if (j >= 0) atomicOr(&bits[j / 32], 1u << (j % 32));
    }
    __syncthreads();
    if (tid == 0) bits[0] = (unsigned)nsa_ix_bits_list(bits, words, ulist);
    return bits;
}

/* ---- host side ---- */
/* Sets ctx's message from a CUDA error and returns NSA_ERR_CUDA (NSA_OK when e is success). */
nsa_status nsa_cu_check(nsa_context *ctx, cudaError_t e, const char *what);
/* The launch check after every kernel launch: cudaGetLastError. */
#define NSA_CU_LAUNCHED(ctx, what) NSA_TRY(nsa_cu_check((ctx), cudaGetLastError(), (what)))

static inline unsigned nsa_cu_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

/* Tile choices of the kernels (the one place they live; device.cu holds the measured defaults,
 * nsa_cuda_tune changes them for benchmarks). */
typedef struct {
    int sel_stages;           /* fused selection K/V stages: 1, 2; 0 = by Dk */
    int sel_union;            /* fused selection: 0 = by G (split-key kernel of sel_fused.cu
                                 for G | 16, fa2.cu's union walk otherwise), 1 = union walk,
                                 2 = split-key kernel for every G <= 16                  */
    int bwd_dq_stages;        /* FA-2 backward dq kernel K/V stages: 1, 2; 0 = default (1) */
    int hopper;               /* 1: nsa_cuda_forward's FA-2 role runs the sm90 kernels     */
} nsa_cu_tuning_t;
extern nsa_cu_tuning_t nsa_cu_tuning;

/* device.cu: ctx's device workspace, at least bytes (grown, never shrunk). */
nsa_status nsa_cu_workspace(nsa_context *ctx, size_t bytes, void **p);

/* The CUDA pipeline's private state of one forward (nsa_fwd_work.impl). */
typedef struct {
    nsa_cu_params P;    /* P.kc/P.vc: compressed K/V in f32 (or the caller's, when given)   */
    nsa_dtype dt;       /* dtype of q, k*, v*, gates, out                                   */
    nsa_dtype kc_dt;    /* dtype of P.kc / P.vc                                             */
    nsa_cu_view kcT, vcT; /* compressed K/V in dt (tensor-core roles); == P.kc when dt f32  */
    int P_valid;        /* the cmp step also wrote P.P (FA-2 does; the reference does not)  */
    int *flag;          /* one device int (finite check)                                   */
} nsa_cu_fwd;

static inline nsa_cu_fwd *nsa_cu_state(const nsa_fwd_work *w) { return (nsa_cu_fwd *)w->impl; }

/* One decode step of the active rows of CUDA cache c (a validated), no host wait: fast = 1 the
 * split-key step (f32, decode_fast.cu), 0 the reference step (double, decode_step.cu). The
 * backends.cu rows cuda.decode and cuda.ref call it; the router picks the row
 * (decode_cache.cu). */
nsa_status nsa_cu_decode_step(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a,
                              int fast);
/* The CUDA KV-cache operations (decode_cache.cu), the CUDA pipeline's kv row. */
extern "C" const nsa_kv_ops nsa_cuda_kv_ops;

/* ---- per-file launchers (each returns a status; all on `st`) ---- */
typedef cudaStream_t nsa_cu_stream;
/* compress.cu: kc/vc (B, Tc, Hkv, D) contiguous of element dtype `out_dt` from raw k/v. */
nsa_status nsa_cu_compress(nsa_context *ctx, nsa_cu_stream st, nsa_dtype in_dt, nsa_dtype out_dt,
                           const nsa_cu_view *raw, int B, int T, int Tc, int Hkv, int D, int l,
                           int d, void *out);
/* ref_attend.cu: reference attention of branch br into P.o[br], P.lse[br]; and the reference
 * scoring P.P from P.lse[CMP]. kc_dt: dtype of the compressed K/V. */
nsa_status nsa_cu_ref_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                             const nsa_cu_params *P, nsa_branch br);
nsa_status nsa_cu_ref_score(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                            const nsa_cu_params *P);
/* select.cu: top-n with the tie rule and range building from P.P into P.blocks / P.ranges and,
 * when present, the caller's sel_blocks / sel_ranges. */
nsa_status nsa_cu_select(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_params *P,
                         const nsa_fwd_args *a);
/* pipeline.cu: the forward a backward needs — nsa_cuda_forward's steps on roles role[] without
 * the gated sum; the selection recomputed (written to a->sel_ranges / sel_blocks when present),
 * or the caller's: ranges (R, Hkv, n, 2) and the blocks they touch (R, Hkv, n), device, packed
 * and validated. hook(ctx, P, arg) runs on ctx's stream with P->o[] and P->lse[] filled, before
 * the workspace is released. */
typedef nsa_status (*nsa_cu_fwd_hook)(nsa_context *ctx, const nsa_cu_params *P, void *arg);
nsa_status nsa_cu_forward_hook(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                               const nsa_role role[3], const int32_t *ranges,
                               const int32_t *blocks, nsa_cu_fwd_hook hook, void *arg);
/* combine.cu: gated sum into a->out and the optional outputs; force_branch >= 0 replaces the
 * gates by one-hot (NSA_FORCE_BRANCH). */
nsa_status nsa_cu_combine(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                          const nsa_cu_params *P, const nsa_fwd_args *a, int force_branch);
/* tiled.cu: masked (cmp, win) and packed (sel) SIMT kernels, f32, any dtype and stride. */
int nsa_cu_tiled_supported(const nsa_shape *s, nsa_branch br, size_t smem_optin,
                           const char **why);
nsa_status nsa_cu_tiled_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                               const nsa_cu_params *P, nsa_branch br);
/* fa2.cu: tensor-core cmp (also writes P.P) and win. */
int nsa_cu_fa2_supported(const nsa_shape *s, nsa_branch br, const char **why);
nsa_status nsa_cu_fa2_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                             const nsa_cu_params *P, nsa_branch br);
/* fa2.cu: the operand check of the tensor-core roles: full rows (no row list), q/K/V rows
 * contiguous and 16-byte aligned; NSA_ERR_UNSUPPORTED naming `name` otherwise. */
nsa_status nsa_cu_tc_views(nsa_context *ctx, const nsa_cu_params *P, const nsa_cu_view *K,
                           const nsa_cu_view *V, const char *name);
/* sm90/fa3.cu (built for sm_90a only): the Hopper cmp (also writes P.P) and win kernels; the
 * same shapes as fa2.cu. Launching on another architecture fails (no kernel image): callers
 * check the device first (backends.cu). */
int nsa_cu_fa3_supported(const nsa_shape *s, nsa_branch br, const char **why);
nsa_status nsa_cu_fa3_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                             const nsa_cu_params *P, nsa_branch br);
/* sel_fused.cu: group-centric tensor-core selection. */
int nsa_cu_fused_supported(const nsa_shape *s, const char **why);
nsa_status nsa_cu_fused_sel(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                            const nsa_cu_params *P);
/* sel_fused.cu: the split-key kernel for G <= 16 (called by nsa_cu_fused_sel). */
nsa_status nsa_cu_sel16(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, const nsa_cu_params *P);

#endif /* NSA_CUDA_COMMON_CUH */
