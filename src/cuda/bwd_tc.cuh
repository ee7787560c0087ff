// SPDX-License-Identifier: Apache-2.0
/* bwd_tc.cuh — the tensor-core roles of the CUDA backward (bf16/f16 operands through mma.sync,
 * f32 accumulation): FA-2 style for cmp and win (bwd_fa2.cu, role NSA_ROLE_FA2) and the
 * group-centric selection (bwd_sel_tc.cu, role NSA_ROLE_FUSED_SEL). Launchers only.
 * Both read the per-branch row statistics of one forward recompute (nsa_cu_tc_rows, made by
 * bwd_pipeline.cu): P = exp(scale·q·k − lse), dP = gate·(dout·v), dS = P·(dP − delta),
 * dq += scale·dS·K, dK += scale·dSᵀ·Q, dV += (gate·P)ᵀ·dout.
 * Invariant: deterministic — every double accumulator element is added to by one CTA in a
 * fixed order per launch (no floating-point atomics); P and dS are rounded to the input dtype
 * once per product, like FlashAttention (tolerance: docs/cuda_backward.md).
 */
#ifndef NSA_CUDA_BWD_TC_CUH
#define NSA_CUDA_BWD_TC_CUH

#include "bwd_common.cuh"

/* Row statistics of one branch, f32, (R, Hq) with R = B·T and r = b·T + t. */
typedef struct {
    const float *lse;   /* natural-log lse of the branch's scaled scores; -inf: no key      */
    const float *delta; /* gate · Σ_e dout_e · o_b,e (the gate folded in)                    */
    const float *gate;  /* the branch's gate as used (one-hot under NSA_FORCE_BRANCH)         */
} nsa_cu_tc_rows;

/* What the tensor-core backward of branch br can run (dtype bf16/f16, head dims, G); *why
 * (static) when not. The views' alignment is checked per call by the pipeline. */
int nsa_cu_bwd_fa2_supported(const nsa_shape *s, nsa_branch br, const char **why);
int nsa_cu_bwd_selfused_supported(const nsa_shape *s, const char **why);

/* cmp or win: dq share into W->acc[NSA_GQ] (+=, NULL: unwanted); dK, dV into W->dkc / W->dvc
 * (cmp, compressed (B, Tc, Hkv, D) rows) or W->acc[NSA_GKW] / [NSA_GVW] (win), each += and
 * NULL when unwanted. Reads W->F.q, W->F.kc/vc (cmp, dtype dt) or kw/vw, W->dout. */
nsa_status nsa_cu_bwd_fa2(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, const nsa_cu_bwd *W,
                          nsa_branch br, const nsa_cu_tc_rows *rw);

/* sel: dq share (+=) and dK, dV into W->acc[NSA_GKS] / [NSA_GVS] (+=, NULL: unwanted), the
 * key sets from W->F.ranges; off / list: the inverse selection index of bwd_tiled.cuh
 * (nsa_cu_bwd_sel_count / _fill: per (b, g, block) the queries touching it, ascending t). */
nsa_status nsa_cu_bwd_selfused(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt,
                               const nsa_cu_bwd *W, const nsa_cu_tc_rows *rw, const int *off,
                               const int *list);

#endif /* NSA_CUDA_BWD_TC_CUH */
