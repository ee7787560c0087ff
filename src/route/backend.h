// SPDX-License-Identifier: Apache-2.0
/* backend.h — the backend table: what a backend is, how a forward runs as a pipeline of branch
 * steps, and how a device (CPU, CUDA) plugs its steps and backends in.
 * Not the routing policy (router.c decides from flags and profiles) nor any kernel.
 * Invariant: every backend answers supports() before it runs; the dispatcher never calls a
 * backend's fwd for a (problem, branch, device) it declined, and every fast step has the
 * reference role of the same device as its fallback. Interface is stable: additive changes only.
 *
 * ---- How a forward runs (src/route/dispatch.c) ---------------------------------------------
 *   route     nsa_route_plan: one backend per branch (cmp, sel, win) with a reason
 *   begin     pipeline->begin: allocate the work buffers, compress k_cmp/v_cmp (φ = avg,
 *             or take them as given when cmp_compressed)
 *   cmp       backend[cmp]->fwd(CMP): o[cmp], lse[cmp]
 *   select    backend[sel]->select, or pipeline->select when NULL: scores from q·kc and
 *             lse[cmp] (docs/design.md §1.2), top-k, blocks and ranges
 *   strict    NSA_STRICT_ASSERTS=1: every range / window / compressed block ends at ≤ t+1
 *   sel, win  backend[br]->fwd(br): o[br], lse[br]
 *   each fast step: error → reference step (counted, logged once per tag); output not finite
 *             (pipeline->finite) → reference step (counted, logged once); unsupported shape
 *             never reaches a backend: the router already chose another one and said why
 *   finish    pipeline->finish: out = Σ_b gates·o[b]; optional outputs (out_*, lse_*, blocks,
 *             ranges) copied to the caller's tensors
 *   end       pipeline->end: free
 *
 * ---- The CPU ------------------------------------------------------------------------------
 * Every role aliases the reference on the CPU: the CPU table has the reference backend for all
 * branches (masked/packed route to it, by name "ref"), and when every branch is the reference the
 * dispatcher calls nsa_ref_forward directly (one pass over rows, bitwise the reference). The CPU
 * pipeline (src/route/cpu_pipeline.c) exists so that fake fast backends in tests (and any future
 * CPU fast path) run through exactly the steps and fallbacks a CUDA backend does.
 *
 * ---- How a CUDA backend plugs in ----------------------------------------------------------
 * 1. src/cuda/device.cu defines every function declared at the end of this file (the CPU build
 *    defines them in src/route/device_cpu.c; CMake drops that file when src/cuda/device.cu
 *    exists): device count and caps, the toolchain, the CUDA pipeline, the CUDA backend list.
 * 2. The CUDA pipeline fills nsa_fwd_work with device buffers: its element type for o/lse is its
 *    own choice (documented in src/cuda), ranges and blocks are i32 device arrays. It must offer
 *    a reference role for every branch (the fallback): a backend with role NSA_ROLE_REF whose
 *    supports() accepts every problem (e.g. masked SDPA, or a host round trip through nsa_ref_*).
 * 3. A backend is one row: `const nsa_backend nsa_cuda_backend_fa2 = {...}` with supports()
 *    (which owns the whole "can this call run" question: dtype, Dk/Dv, pass, the operands of
 *    nsa_call, the device's shared memory — whatever its launcher would refuse), fwd() per
 *    branch it serves and/or decode() for decode steps; then one line in the list
 *    nsa_device_cuda_backends() returns. The router picks by role and order: the first backend
 *    of the wanted role, device kind and branch, with an entry for the pass, whose supports()
 *    accepts wins. supports() must be cheap and pure (no launches). The device's KV-cache
 *    operations (nsa_kv_ops) hang on its pipeline (docs/routing.md, "Adding a backend").
 * 4. A new fast path is off by default until its profile says parity_accepted (profiles/smNN.yaml,
 *    after `nsa parity` passes on that card); flags opt in earlier (docs/routing.md).
 */
#ifndef NSA_ROUTE_BACKEND_H
#define NSA_ROUTE_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../ref/ref.h"
#include "../core/kv_cache.h"

#define NSA_BRANCH_BIT(b) (1u << (unsigned)(b))
#define NSA_BRANCHES_ALL (NSA_BRANCH_BIT(NSA_BRANCH_CMP) | NSA_BRANCH_BIT(NSA_BRANCH_SEL) | \
                          NSA_BRANCH_BIT(NSA_BRANCH_WIN))
/* In nsa_backend.branches: an opt-in row (the Hopper kernels, until their parity is accepted on
 * the card). The router tries it, before the other rows of its role, only with NSA_USE_HOPPER=1;
 * otherwise it is never considered. */
#define NSA_BACKEND_OPT_IN (1u << 31)

/* The state of one forward call as it flows through the pipeline. Buffers belong to the
 * pipeline (allocated in begin, freed in end), are contiguous and live on the call's device. */
typedef struct nsa_fwd_work {
    /* the call, already validated */
    const nsa_fwd_args *a;
    const nsa_shape *s;
    const nsa_route_problem *p;
    void *stream;        /* the context's CUDA stream (NULL: default stream / CPU)          */
    /* compressed keys/values: (B, Tc, Hkv, Dk) and (B, Tc, Hkv, Dv), element type acc       */
    void *kc, *vc;
    /* per-branch results: o[b] (B, T, Hq, Dv) and lse[b] (B, T, Hq), element type acc;
     * lse is the natural log-sum-exp of the scaled scores, -inf where a query has no key    */
    void *o[3];
    void *lse[3];
    int32_t *blocks;     /* (B, T, Hkv, n) selected blocks ascending, -1 padded              */
    int32_t *ranges;     /* (B, T, Hkv, n, 2) [start, end) token ranges, unused [0, 0)        */
    size_t acc_size;     /* bytes of one acc element: 8 (double) on the CPU pipeline          */
    void *impl;          /* the pipeline's private state (CPU: inputs converted to double)   */
    int force_branch;    /* NSA_FORCE_BRANCH: -1, or the branch finish gives gate 1 (others 0) */
} nsa_fwd_work;

/* The steps of a forward on one device kind that are not routed per branch. */
typedef struct nsa_pipeline {
    const char *name;      /* "cpu", "cuda"                                                  */
    nsa_device_kind device;
    /* allocates w's buffers and compresses cmp keys/values (φ = avg) into kc, vc */
    nsa_status (*begin)(nsa_context *ctx, nsa_fwd_work *w);
    /* default selection step: scores from q, kc and lse[cmp]; writes blocks and ranges */
    nsa_status (*select)(nsa_context *ctx, nsa_fwd_work *w);
    /* *finite = 1 when every element of o[br] is finite (lse may be -inf) */
    nsa_status (*finite)(nsa_context *ctx, const nsa_fwd_work *w, nsa_branch br, int *finite);
    /* copies bytes from a work buffer to host memory dst (strict asserts read ranges) */
    nsa_status (*to_host)(nsa_context *ctx, const nsa_fwd_work *w, const void *src, void *dst,
                          size_t bytes);
    /* out = Σ_b gates[..,b]·o[b], then the caller's optional outputs */
    nsa_status (*finish)(nsa_context *ctx, nsa_fwd_work *w);
    /* frees everything begin allocated; safe after a failed or partial begin */
    void (*end)(nsa_fwd_work *w);
    /* the device's KV-cache operations (src/core/kv_cache.h) */
    const nsa_kv_ops *kv;
} nsa_pipeline;

/* Operands a tensor-core kernel loads 16 bytes at a time (bits of nsa_call.aligned). */
enum {
    NSA_OPND_Q = 1,    /* q                                            */
    NSA_OPND_CMP = 2,  /* k_cmp, v_cmp as given (read when cmp_given)  */
    NSA_OPND_SEL = 4,  /* k_sel, v_sel                                 */
    NSA_OPND_WIN = 8,  /* k_win, v_win                                 */
    NSA_OPND_DOUT = 16 /* dout (backward)                              */
};
#define NSA_OPND_ALL 31u

/* The call the router and every supports() see: the problem plus what only the call's tensors
 * tell (a kernel's launcher refuses what the problem alone cannot show). nsa_route_explain,
 * which has no tensors, describes contiguous aligned operands. */
typedef struct {
    nsa_route_problem p;
    unsigned aligned; /* NSA_OPND_* bits: present, D-contiguous rows on 16-byte boundaries     */
    int cmp_given;    /* 1: k_cmp/v_cmp hold compressed tokens (nsa_fwd_args.cmp_compressed)  */
} nsa_call;

/* The rule of 16-byte operand loads, shared by the router (nsa_call_of) and the CUDA launchers:
 * a non-NULL base on a 16-byte boundary, unit stride along D, and the other strides and D
 * multiples of 8 elements. */
static inline int nsa_rows16(const void *p, int64_t s0, int64_t s1, int64_t s2, int64_t sd,
                             int64_t D) {
    return p && sd == 1 && ((uintptr_t)p % 16) == 0 && s0 % 8 == 0 && s1 % 8 == 0 &&
           s2 % 8 == 0 && D % 8 == 0;
}

/* Whether the operands branch br of c reads on a tensor-core role meet nsa_rows16 (q, that
 * branch's keys and values, dout for the backward); else 0 with *why (static). */
int nsa_call_tc_operands(const nsa_call *c, nsa_branch br, const char **why);

typedef struct nsa_backend nsa_backend;
struct nsa_backend {
    const char *name;        /* shown by `nsa route` and log lines: "ref", "cuda.fa2", ...    */
    nsa_role role;
    unsigned branches;       /* NSA_BRANCH_BIT of each branch it serves, | NSA_BACKEND_OPT_IN  */
    nsa_device_kind device;
    /* 1 when it can run branch br of call c on dev; else 0 with why (a short phrase, no
     * period), e.g. "Dk=192 > 128". It sees what the launcher will see (strides, alignment,
     * empty tensors), so a launcher never refuses a call the router gave it. Cheap and pure:
     * the router calls it for every decision. */
    int (*supports)(const nsa_backend *self, const nsa_call *c, nsa_branch br,
                    const nsa_device_caps *dev, char *why, size_t why_len);
    /* forward of branch br: writes w->o[br] and w->lse[br] (sel reads w->ranges). A kernel
     * failure returns its status (NSA_ERR_CUDA, ...) with the context message set. */
    nsa_status (*fwd)(nsa_context *ctx, const nsa_backend *self, nsa_branch br,
                      nsa_fwd_work *w);
    /* optional (sel role only): its own scoring / top-k writing w->blocks and w->ranges;
     * NULL: the pipeline's select step */
    nsa_status (*select)(nsa_context *ctx, const nsa_backend *self, nsa_fwd_work *w);
    /* optional: raw-token span [*lo, *hi) branch br (cmp or win) reads for query t of w; for cmp
     * *hi is the end of the last compressed block it attends. Strict asserts check hi ≤ t+1.
     * NULL: the span of docs/design.md §1.1/§1.3 */
    void (*span)(const nsa_backend *self, nsa_branch br, const nsa_fwd_work *w, int64_t t,
                 int64_t *lo, int64_t *hi);
    const void *impl;        /* backend private constants                                     */
    /* optional: one decode step of every active row of cache c (a validated by
     * nsa_decode_check, the step routed here as NSA_PASS_DECODE: this backend serves all three
     * branches of the step). NULL: the backend does not decode. */
    nsa_status (*decode)(nsa_context *ctx, const nsa_backend *self, nsa_kv_cache *c,
                         const nsa_decode_args *a);
};

/* ---- the router and the table (src/route/router.c, src/route/backends.c) ---- */

/* The routing decision plus the bound backends, for the dispatcher. */
typedef struct {
    nsa_route_decision d;
    const nsa_backend *be[3];
    const nsa_backend *fallback[3]; /* where a failed step reruns: base role, else ref; == be[b]
                                       when nothing is safer (be[b] is the reference)       */
    int declined[3];                /* 1: a fast backend declined the shape (counted)          */
} nsa_route_plan_t;

/* The routing problem of call a (shape s from nsa_args_check_fwd) for pass. */
nsa_route_problem nsa_route_problem_of(const nsa_fwd_args *a, const nsa_shape *s, nsa_pass pass);
/* The call a (and g for the backward, else NULL) for pass: its problem and operand facts. */
nsa_call nsa_call_of(const nsa_fwd_args *a, const nsa_bwd_args *g, const nsa_shape *s,
                     nsa_pass pass);

/* Decides every branch of c on dev from ctx's flags and profiles (nsa_route_explain's engine). */
nsa_status nsa_route_plan(nsa_context *ctx, const nsa_call *c, const nsa_device_caps *dev,
                          nsa_route_plan_t *out);

/* Every backend known to this process: the built-in table, then the device's list, then those
 * registered at run time (tests). *count receives the number. */
const nsa_backend *const *nsa_backends_all(int *count);
/* Registers a backend at run time (tests; tried before the built-in ones of its role).
 * NSA_ERR_INVALID_ARG when full (8) or malformed. Not thread-safe: call before any context
 * work. */
nsa_status nsa_backend_register(const nsa_backend *be);
/* Removes every run-time registered backend. */
void nsa_backend_unregister_all(void);
/* Tests that stand fakes in for the device backends: on = 1 hides the device's own backends
 * (CUDA's) from the table, so a CUDA build routes exactly as a CPU build with the same fakes. */
void nsa_backend_hide_device(int on);

/* The pipeline of a device kind; NULL when this build has none (CUDA in a CPU build). */
const nsa_pipeline *nsa_pipeline_for(nsa_device_kind kind);
/* The CPU pipeline (src/route/cpu_pipeline.c). */
extern const nsa_pipeline nsa_cpu_pipeline;
/* The CPU reference backend: every branch, every dtype, every shape. */
extern const nsa_backend nsa_backend_ref_cpu;

/* ---- device hooks: src/route/device_cpu.c (CPU build) or src/cuda/device.cu (CUDA build) ---- */

/* Usable CUDA devices (0 without CUDA or without a driver). */
int nsa_device_cuda_count(void);
/* Fills caps of CUDA device index; returns 0 on success, else non-zero with why set. */
int nsa_device_cuda_caps(int index, nsa_device_caps *caps, char *why, size_t why_len);
/* The toolchain: runtime and driver versions, architectures compiled in. */
void nsa_device_toolchain(nsa_toolchain *out);
/* The CUDA pipeline; NULL in a CPU build. */
const nsa_pipeline *nsa_device_cuda_pipeline(void);
/* The CUDA backends, in preference order within a role; *count = 0 and NULL in a CPU build. */
const nsa_backend *const *nsa_device_cuda_backends(int *count);
/* The backward hook (additive): gradients g of fwd for tensors on a CUDA device (both already
 * validated; s from nsa_args_check_fwd), branch br on role[br] (the router's choice for
 * NSA_PASS_BACKWARD; backends accept that pass through nsa_cuda_bwd_role_supported), the
 * selection recomputed (when needed) by a forward on fwd_role (the router's choice for
 * NSA_PASS_FORWARD), gates replaced by one-hot when force_branch >= 0. Deterministic;
 * src/cuda/bwd_pipeline.cu defines it (docs/cuda_backward.md); NSA_ERR_UNSUPPORTED in a CPU
 * build. */
nsa_status nsa_device_cuda_backward(nsa_context *ctx, const nsa_fwd_args *fwd,
                                    const nsa_bwd_args *g, const nsa_shape *s,
                                    const nsa_role role[3], const nsa_role fwd_role[3],
                                    int force_branch);

#ifdef __cplusplus
}
#endif
#endif /* NSA_ROUTE_BACKEND_H */
