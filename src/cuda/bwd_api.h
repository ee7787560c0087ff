// SPDX-License-Identifier: Apache-2.0
/* bwd_api.h — what C code of libnsa may call in the CUDA backward (src/cuda/bwd_*.cu): the
 * backward on given roles (tests, benchmarks) and the one answer to "can role r run the backward
 * of branch br". Not the kernels. Plain C; in a CPU-only build these functions do not exist.
 * Invariant: supports() of the CUDA backends and nsa_cuda_backward ask the same function.
 */
#ifndef NSA_CUDA_BWD_API_H
#define NSA_CUDA_BWD_API_H

#include "../route/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether role can run the backward of branch br of p on a device granting smem_optin bytes of
 * shared memory per block (nsa_device_caps.smem_per_block); when not, *why (static) says why. */
int nsa_cuda_bwd_role_supported(const nsa_route_problem *p, nsa_branch br, nsa_role role,
                                size_t smem_optin, const char **why);

/* Gradients g of the forward fwd (both checked by nsa_args_check_fwd/_bwd; tensors on the
 * CUDA device) on ctx's stream, branch br on role[br]; gates replaced by one-hot when
 * force_branch >= 0. A tensor-core role whose operands are not 16-byte loadable
 * (nsa_call_tc_operands) is refused (NSA_ERR_UNSUPPORTED); nothing is re-decided here. Selection
 * ranges: fwd->sel_ranges when present (validated on the device: NSA_ERR_INVALID_ARG naming the
 * slot's field when malformed), else recomputed by a CUDA forward on fwd_role (what nsa_forward
 * would run: nsa_backward passes the router's forward decision). Asynchronous like nsa_cuda_forward: work buffers are
 * stream-ordered allocations (cudaMallocAsync / cudaFreeAsync); host waits: the validation of
 * a caller's sel_ranges, and with a tiled role (masked / packed) one more to size its work
 * buffers. Deterministic: bitwise the same gradients for the same inputs. */
nsa_status nsa_cuda_backward(nsa_context *ctx, const nsa_fwd_args *fwd, const nsa_bwd_args *g,
                             const nsa_shape *s, const nsa_role role[3],
                             const nsa_role fwd_role[3], int force_branch);

/* nsa_cuda_backward (no forced branch) with CUDA events between its steps: ms[0] selection
 * ranges and, for tensor-core roles, the forward recompute with its row statistics; ms[1] the
 * selection bitmap and index; ms[2] cmp, ms[3] sel, ms[4] win (query and key sides); ms[5] the
 * φ backward and the stores. Waits for the stream. For benchmarks. */
nsa_status nsa_cuda_backward_timed(nsa_context *ctx, const nsa_fwd_args *fwd,
                                   const nsa_bwd_args *g, const nsa_shape *s,
                                   const nsa_role role[3], const nsa_role fwd_role[3],
                                   float ms[6]);

#ifdef __cplusplus
}
#endif
#endif /* NSA_CUDA_BWD_API_H */
