// SPDX-License-Identifier: Apache-2.0
/* gpu_util.h — helpers of the GPU parity tests: device tensors mirrored by host tbufs, one NSA
 * problem (inputs, outputs, run on a set of CUDA roles, run on the CPU reference) and its
 * comparison with the docs/design.md §5 tolerance and the near-tie rule for selected blocks.
 * Not a test by itself; tests/gpu/test_gpu_parity.c holds the cases.
 */
#ifndef NSA_GPU_UTIL_H
#define NSA_GPU_UTIL_H

#include "harness.h"
#include "cuda/cuda_api.h"

/* A tensor in device memory with a host mirror; guard bytes after the device data. */
typedef struct {
    tbuf h;      /* host mirror (inputs: the values; outputs: filled by dget)          */
    void *d;     /* device data (bytes of h) + NSA_GUARD_BYTES guard                  */
    nsa_tensor t; /* the device tensor                                                 */
} dbuf;

/* One forward problem: its config, sizes, inputs (host + device), device outputs and the
 * reference outputs (CPU). */
typedef struct {
    nsa_config c;
    int B, T, compressed;
    nsa_dtype dt;
    dbuf q, kc, vc, ks, vs, kw, vw, g;                 /* inputs (kc/vc raw or compressed) */
    dbuf out, ob[3], lse[3], blocks, ranges;         /* device outputs                   */
    tbuf rout, rob[3], rlse[3], rblocks, rranges;    /* reference outputs                */
    /* the reference run with the compressed keys/values rounded to dt ("naive", bf16/f16):
     * the error a dtype-rounded cmp branch is allowed twice over (docs/design.md §5) */
    tbuf nob0, nlse0;
    int kc_rounded; /* the GPU cmp step used dtype-rounded compressed keys (tensor cores) */
} gprob;

/* Random problem (inputs N(0,1)); shared = 1: one K/V for all branches. Returns 0 on an
 * allocation failure (reported through CHECK by the caller). */
int gp_make(nsa_context *ctx, gprob *p, nsa_config c, int B, int T, nsa_dtype dt, int shared);
/* Poisons the device outputs (NaN for floats, 0x7f7f7f7f for ints) and their guards. */
int gp_poison(nsa_context *ctx, gprob *p);
/* Forward args over the device (dev = 1) or host reference (dev = 0) tensors. */
nsa_fwd_args gp_args(gprob *p, int dev);
/* Runs the CPU reference into p->r*. */
nsa_status gp_reference(nsa_context *ctx, gprob *p);
/* Copies device outputs to their host mirrors; 0 if a guard was overwritten. */
int gp_fetch(nsa_context *ctx, gprob *p);
/* Copies the fetched device outputs into the reference mirrors (the on-device reference of
 * long-T checks becomes the oracle). */
void gp_keep_as_reference(gprob *p);
/* Compressed (B, Tc, Hkv, D) of raw host tensor x (φ = avg), each mean rounded to x's dtype. */
tbuf gp_compress_rounded(const gprob *p, const tbuf *x, int D);
void gp_free(gprob *p);

/* Comparison report. */
typedef struct {
    int64_t rows_tied;      /* (b, t, g) whose blocks differ by an exact near-tie          */
    int64_t rows_mismatch;  /* (b, t, g) whose blocks differ beyond a near-tie             */
    int64_t unwritten;      /* NaN / poison left in an output                              */
    int64_t bad;            /* elements over tolerance                                     */
    double worst;           /* max |err| / tol over compared elements                      */
    char first[256];        /* first failure, for the message                              */
} gp_report;
/* Compares device outputs with the reference (rows with tied selections skip sel/out). When
 * rows (host array of b·T + t) is not NULL, only those nrows rows are compared. */
void gp_compare(gprob *p, const int32_t *rows, int64_t nrows, gp_report *r);

/* "fa2/ref/fa2": the roles of a run, for messages (one static buffer). */
const char *gp_roles_name(const nsa_role r[3]);
/* One random problem on roles[] (nsa_cuda_forward) vs the CPU reference; prints one line and
 * returns 1 when it passed. max_tied: selections differing by a near-tie allowed in that
 * fraction of the (b, t, g) rows. */
int gp_run(nsa_context *ctx, nsa_config c, int B, int T, nsa_dtype dt, int shared,
           const nsa_role roles[3], double max_tied);

/* q = 0 on roles[] (G 16, n 6, T 900, bf16): every compressed probability of a row is equal, so
 * block scores tie exactly and the tie rule alone decides; CHECKs that the GPU picks exactly
 * the reference's blocks (no near-tie allowance) and matches its outputs. */
void gp_check_ties_exact(nsa_context *ctx, const nsa_role roles[3]);

/* 1 when a CUDA device exists; else the case is skipped. */
int gp_have_gpu(void);
/* A context for a GPU case, or NULL after nsa_test_skip when there is no CUDA device (a failed
 * create leaves the case without checks, which the harness reports). */
nsa_context *gp_context(void);

#endif
