// SPDX-License-Identifier: Apache-2.0
/* cuda_api.h — what C code of libnsa may call in the CUDA backend (the .cu files of src/cuda).
 * Not the kernels: those stay behind nsa_cuda_forward; this header is plain C and compiles in a
 * CPU-only build too (the functions then simply do not exist and must not be called).
 * Invariant: every function returns a status and sets ctx's message; none prints or exits.
 */
#ifndef NSA_CUDA_API_H
#define NSA_CUDA_API_H

#include "../route/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether `role` can run branch `br` of problem p (dtype, head dims, G, shared memory on a
 * device granting smem_optin bytes per block); when not, *why (static string) says why. The
 * backends' supports() and the launchers call this same function, so "supported?" and
 * "launched" cannot disagree. */
int nsa_cuda_role_supported(const nsa_route_problem *p, nsa_branch br, nsa_role role,
                            size_t smem_optin, const char **why);

/* The NSA forward of a (checked; tensors on the CUDA device) on ctx's stream, each branch on
 * the given role, through the CUDA pipeline's steps without the router (tests, benchmarks).
 * An unsupported role fails with NSA_ERR_UNSUPPORTED naming the branch; nothing falls back.
 * Asynchronous: returns after enqueueing; device workspace comes from ctx, grown as needed. */
nsa_status nsa_cuda_forward(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                            const nsa_role role[3]);

/* The same forward on the reference role for a subset of rows only: rows (device array of
 * nrows values b·T + t). Outputs are written only at those rows. For checking fast paths at
 * long T against the on-device reference. */
nsa_status nsa_cuda_forward_rows(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                                 const int32_t *rows, int64_t nrows);

/* Frees ctx's device workspace (called by nsa_context_destroy). */
void nsa_cuda_workspace_free(nsa_context *ctx);

/* Small device-memory helpers for tools and tests (status + message on failure). */
nsa_status nsa_cuda_malloc(nsa_context *ctx, void **p, size_t bytes);
void nsa_cuda_free(void *p);
nsa_status nsa_cuda_memcpy_h2d(nsa_context *ctx, void *dst, const void *src, size_t bytes);
nsa_status nsa_cuda_memcpy_d2h(nsa_context *ctx, void *dst, const void *src, size_t bytes);
nsa_status nsa_cuda_memset(nsa_context *ctx, void *p, int byte, size_t bytes);
nsa_status nsa_cuda_sync(nsa_context *ctx);
/* Fills n elements of dt at device p with N(0, 1)·scale from a counter hash of seed (inputs of
 * long-T checks and benchmarks, made on the device). */
nsa_status nsa_cuda_fill_normal(nsa_context *ctx, void *p, nsa_dtype dt, int64_t n, uint64_t seed,
                                float scale);

/* Sets one kernel tile choice for this process ("sel_stages": 1 or 2, 0 = by head dim;
 * "sel_union": 1 = the union-walk selection kernel for every G, 2 = the split-key one for every
 * G <= 16, 0 = by G; "bwd_dq_stages": 1 or 2 K/V stages of the FA-2 backward's dq kernel,
 * 0 = the default; "hopper": 1 = the FA-2 role of nsa_cuda_forward runs the Hopper kernels
 * (sm90/fa3.cu; an sm_90 device only), 0 = the sm80 ones), for benchmarks and tests that measure
 * the alternatives.
 * NSA_ERR_INVALID_ARG for an unknown key or value. Not thread-safe; call between calls. */
nsa_status nsa_cuda_tune(const char *key, int value);

/* nsa_cuda_forward with CUDA events between its steps: ms[0] begin (compression), ms[1] cmp,
 * ms[2] selection (scores, top-n, ranges), ms[3] sel, ms[4] win, ms[5] gated sum. Waits for the
 * stream. For benchmarks. */
nsa_status nsa_cuda_forward_timed(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                                  const nsa_role role[3], float ms[6]);

#ifdef __cplusplus
}
#endif
#endif /* NSA_CUDA_API_H */
