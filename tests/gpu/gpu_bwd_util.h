// SPDX-License-Identifier: Apache-2.0
/* gpu_bwd_util.h — one CUDA backward problem against the CPU reference backward, shared by
 * tests/gpu/test_gpu_bwd.c (reference role) and test_gpu_bwd_fast.c (tiled roles): random inputs,
 * gradients poisoned and guarded, nsa_backward on host and device, the element-wise tolerance
 * |gpu − ref| ≤ 2·u·|ref| + rms_floor·rms(ref) + 1e-7 (u: 2^-8 bf16, 2^-11 f16, 2^-24 f32)
 * or, for the tensor-core roles, twice the error of a low-precision run (gpu_bwd_lowp.c),
 * optional bitwise repeatability and malformed ranges.
 */
#ifndef NSA_GPU_BWD_UTIL_H
#define NSA_GPU_BWD_UTIL_H

#include "gpu_util.h"

/* mode bits of gb_run_one; SAVED (with RANGES_GIVEN): a device nsa_forward first, whose
 * per-branch outputs, lse and selection the backward reuses */
enum { RANGES_GIVEN = 1, TWICE = 2, BAD_RANGES = 4, SAVED = 8 };

/* A config with the given heads, dims and blocks (n_init = 1, n_local = 2, scale default). */
nsa_config gb_cfg(int Hq, int Hkv, int Dk, int Dv, int l, int d, int lp, int n, int w);
/* How nsa_backward routes c at (B, T, dt) on cuda:0; 0 (and the message printed) when the
 * router refuses the problem. */
int gb_route_backward(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt,
                      nsa_route_decision *d);
/* One problem; prints a line starting with label; 1 when it passed. rms_floor < 0: compare
 * with the low-precision run instead (gb_lowp_backward; tensor-core roles). */
int gb_run_one(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt, int shared, int mode,
               double rms_floor, const char *label);

/* gpu_bwd_lowp.c: the backward of host args a as an eager framework computes it in a's dtype
 * (every matmul output and elementwise intermediate rounded), the selection from ranges
 * (B, T, Hkv, n, 2); gr[0..7] (malloc'd, caller frees) in field order dq, dk_cmp, dv_cmp,
 * dk_sel, dv_sel, dk_win, dv_win, dgates; alias: one K/V for every branch (fields 1/3/5 and
 * 2/4/6 hold the sums). 0 on allocation failure. gb_lowp_force: NSA_FORCE_BRANCH (-1: off). */
extern int gb_lowp_force;
int gb_lowp_backward(const nsa_fwd_args *a, const nsa_tensor *dout, const nsa_tensor *ranges,
                     int alias, double *gr[8]);

#endif
