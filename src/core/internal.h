// SPDX-License-Identifier: Apache-2.0
/* internal.h — what every libnsa source file shares: the context struct, error reporting, tensor
 * checks and element access. Not public: nothing here is installed.
 * Invariant: every check that fails sets ctx's message naming the field and returns its status
 * (the NSA_CHECK macros), so a public entry point is a sequence of checks, then work.
 */
#ifndef NSA_INTERNAL_H
#define NSA_INTERNAL_H

#include "checked.h"
#include "nsa.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>

#define NSA_MSG_LEN 512

/* Flags of docs/contract.md, read once at context creation (src/route/flags.c). A value
 * of -1 in a tri-state means "not set: the profile decides". */
typedef struct {
    int force_parity;     /* NSA_FORCE_PARITY     0/1             */
    int use_win_mask;     /* NSA_USE_WIN_MASK     0/1 (default 1) */
    int use_cmp_mask;     /* NSA_USE_CMP_MASK     0/1 (default 1) */
    int use_sel_pack;     /* NSA_USE_SEL_PACK     0/1 (default 1) */
    int use_fa2;          /* NSA_USE_FA2          -1/0/1          */
    int use_fa2_win;      /* NSA_USE_FA2_WIN      -1/0/1          */
    int use_fa2_cmp;      /* NSA_USE_FA2_CMP      -1/0/1          */
    int64_t fa2_min_len_win; /* NSA_FA2_MIN_LEN_WIN -1 = profile  */
    int64_t fa2_min_len_cmp; /* NSA_FA2_MIN_LEN_CMP -1 = profile  */
    int use_triton_sel;   /* NSA_USE_TRITON_SEL   -1/0/1          */
    int triton_sel_force; /* NSA_TRITON_SEL_FORCE 0/1             */
    int use_hopper;       /* NSA_USE_HOPPER       0/1: opt-in backend rows (the sm90 kernels) */
    int force_branch;     /* NSA_FORCE_BRANCH     -1 or nsa_branch */
    int strict_asserts;   /* NSA_STRICT_ASSERTS   0/1             */
    int64_t log_limit;    /* NSA_LOG_LIMIT        lines per tag (default 10); 0 = silent */
} nsa_flags;

#define NSA_LOG_MAX_TAGS 64

struct nsa_context {
    char msg[NSA_MSG_LEN];
    nsa_flags flags;
    nsa_counters counters;
    int threads;
    void *stream;
    /* logger */
    nsa_log_fn log_fn;
    void *log_user;
    char log_tags[NSA_LOG_MAX_TAGS][48];
    int64_t log_counts[NSA_LOG_MAX_TAGS];
    int log_ntags;
    /* devices */
    int cuda_devices; /* usable CUDA devices found at creation (0 in a CPU-only build) */
    /* router (src/route/) */
    struct nsa_profile_set *profiles; /* device profiles in force (route.h)              */
    nsa_toolchain toolchain;          /* CUDA versions and archs, read at creation       */
    nsa_device_caps cuda_caps[8];     /* caps of CUDA devices 0..7, queried once each     */
    unsigned cuda_caps_known;         /* bit i: cuda_caps[i] is filled                    */
    void *dev_ws;        /* CUDA device workspace (src/cuda/device.cu), grown on demand */
    size_t dev_ws_bytes;
    int64_t *docs;       /* host offsets of the last varlen call (src/core/varlen.c): the
                            token and compressed-row offsets, grown on demand, never shrunk */
    size_t docs_cap;     /* int64 elements of docs                                       */
};

/* Sets ctx->msg (printf style) and returns st. ctx may be NULL. */
nsa_status nsa_fail(nsa_context *ctx, nsa_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Clears ctx->msg (start of every public call). */
void nsa_clear(nsa_context *ctx);

#define NSA_TRY(expr)                                                                              \
    do {                                                                                           \
        nsa_status nsa_try_st_ = (expr);                                                           \
        if (nsa_try_st_ != NSA_OK) return nsa_try_st_;                                             \
    } while (0)

/* Rate-limited log line under tag (src/core/log.c). */
void nsa_log(nsa_context *ctx, const char *tag, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Like nsa_log, but at most one line per tag for the context's life (fallback notices). */
void nsa_log_once(nsa_context *ctx, const char *tag, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ------------------------------------------------------------------ checks (src/core/check.c) */

/* Shapes of one forward/backward call, derived once by nsa_args_check_fwd (src/core/args.c). */
typedef struct {
    int64_t B, T, Tc; /* batch, tokens, compressed blocks num_cmp(T) */
    int Hq, Hkv, G, Dk, Dv;
    int nsel_max;     /* selection blocks a query of this T may see: ceil(T / lp) */
    nsa_dtype dt;     /* dtype of q, k*, v*, gates, out* */
    nsa_device_kind dev;
    double scale;
    /* packed documents (cu_seqlens; docs/varlen.md); n_docs = 0 when not varlen. Tc is then
     * Σ_i num_cmp(len_i) and nsel_max uses max_seqlen. cu and cc live in the context
     * (ctx->docs): valid until the next varlen call on it. */
    int64_t n_docs, max_seqlen;
    const int64_t *cu; /* (n_docs + 1) token offsets: document i is [cu[i], cu[i+1])        */
    const int64_t *cc; /* (n_docs + 1) compressed-row offsets: Σ_{j<i} num_cmp(len_j)        */
} nsa_shape;

/* Sets the per-row token counts of s for T tokens: T, Tc = num_cmp(T), nsel_max. */
static inline void nsa_shape_tokens(nsa_shape *s, const nsa_config *c, int64_t T) {
    s->T = T;
    s->Tc = nsa_num_cmp(c, T);
    /* ⌈T / lp⌉ without T + lp − 1, which overflowed for T near INT64_MAX (fuzz_api). */
    const int64_t nb = T / c->lp + (T % c->lp != 0);
    s->nsel_max = nb > INT_MAX ? INT_MAX : (int)nb;
}

/* (src/core/args.c) Validates every field of a (dtypes, devices, shapes, strides, config) and derives *s.
 * The message names the field ("k_sel: shape[1] = 7, expected 8"). */
nsa_status nsa_args_check_fwd(nsa_context *ctx, const nsa_fwd_args *a, nsa_shape *s);
/* Validates g against fwd's shapes (each gradient optional). */
nsa_status nsa_args_check_bwd(nsa_context *ctx, const nsa_fwd_args *a, const nsa_bwd_args *g,
                              const nsa_shape *s);

/* ---- packed documents (src/core/varlen.c) ---- */

/* Varlen part of nsa_args_check_fwd: checks a->cu_seqlens and a->max_seqlen against q's B and
 * T (every fault NSA_ERR_SHAPE naming the field), copies the offsets to the host (ctx->docs)
 * and fills s's varlen fields and Tc. Absent cu_seqlens: n_docs = 0, nothing else changes. */
nsa_status nsa_varlen_check(nsa_context *ctx, const nsa_fwd_args *a, int64_t B, int64_t T,
                            nsa_shape *s);
/* Document i of a varlen call as a plain call: *ai views a's tensors at the document's tokens
 * (and compressed rows), B = 1, no cu_seqlens; *si its shape. */
void nsa_varlen_doc(const nsa_fwd_args *a, const nsa_shape *s, int64_t i, nsa_fwd_args *ai,
                    nsa_shape *si);
/* The gradients of document i, viewed like nsa_varlen_doc views the inputs. */
void nsa_varlen_doc_grads(const nsa_fwd_args *a, const nsa_bwd_args *g, const nsa_shape *s,
                          int64_t i, nsa_bwd_args *gi);
/* Tokens [t0, t0 + len) of t along dim 1 (absent stays absent). */
nsa_tensor nsa_tensor_rows(const nsa_tensor *t, int64_t t0, int64_t len);


/* Validates every config field; the message names the field ("cfg.d: 3 does not divide l=32"). */
nsa_status nsa_check_config(nsa_context *ctx, const nsa_config *cfg);

/* Checks tensor `name`: present, dtype == dt, device, ndim and each shape entry (a shape entry
 * of -1 is not checked), strides non-negative, and that the largest element offset fits
 * int64. */
nsa_status nsa_check_tensor(nsa_context *ctx, const char *name, const nsa_tensor *t, nsa_dtype dt,
                            nsa_device_kind dev, int ndim, const int64_t *shape);
/* Same, for an optional tensor: absent (data == NULL) passes. */
nsa_status nsa_check_opt_tensor(nsa_context *ctx, const char *name, const nsa_tensor *t,
                                nsa_dtype dt, nsa_device_kind dev, int ndim, const int64_t *shape);

/* Output tensors ts[0..n) (names[i] names ts[i]; absent or empty ones are skipped): none may
 * overlap itself, and two may share memory only as the same view (data, shape, strides).
 * NSA_ERR_INVALID_ARG naming both fields otherwise (src/core/overlap.c). */
nsa_status nsa_check_disjoint(nsa_context *ctx, int n, const char *const *names,
                              const nsa_tensor *const *ts);

/* Copies bytes of CUDA device memory to the host and waits (src/cuda/device.cu; a CPU build
 * returns NSA_ERR_UNSUPPORTED from src/route/device_cpu.c). */
nsa_status nsa_device_cuda_read(nsa_context *ctx, void *dst, const void *src, size_t bytes);

/* ------------------------------------------------------------------ allocation (alloc.c) */

/* The library's host allocations: malloc, calloc, realloc that the test switch below can fail.
 * Free with free(). A caller that gets NULL returns NSA_ERR_NOMEM with a message. */
void *nsa_malloc(size_t bytes);
void *nsa_calloc(size_t count, size_t size);
/* realloc: on NULL (failure) p is left as it was. */
void *nsa_realloc(void *p, size_t bytes);

/* Test only (not in nsa.h): from now on, the n-th allocation through nsa_malloc/nsa_calloc
 * fails, once (n <= 0: none does); the count restarts at 0. nsa_testing_alloc_count says how
 * many allocations were made since. Process-wide: tests that use it run one at a time. */
void nsa_testing_fail_alloc_at(int64_t n);
int64_t nsa_testing_alloc_count(void);

/* ------------------------------------------------------------------ element access */

static inline int64_t nsa_off4(const nsa_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                               int64_t i3) {
    return i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
}

/* Element `off` (in elements) of a float tensor as f32; exact for bf16/f16. */
static inline float nsa_load(const nsa_tensor *t, int64_t off) {
    switch (t->dtype) {
    case NSA_DTYPE_F32: return ((const float *)t->data)[off];
    case NSA_DTYPE_BF16: return nsa_bf16_to_f32(((const uint16_t *)t->data)[off]);
    case NSA_DTYPE_F16: return nsa_f16_to_f32(((const uint16_t *)t->data)[off]);
    default: return 0.0f;
    }
}

/* Stores x (rounded to nearest even for bf16/f16) at element `off`. */
static inline void nsa_store(const nsa_tensor *t, int64_t off, double x) {
    switch (t->dtype) {
    case NSA_DTYPE_F32: ((float *)t->data)[off] = (float)x; break;
    case NSA_DTYPE_BF16: ((uint16_t *)t->data)[off] = nsa_f32_to_bf16((float)x); break;
    case NSA_DTYPE_F16: ((uint16_t *)t->data)[off] = nsa_f32_to_f16((float)x); break;
    case NSA_DTYPE_I32: ((int32_t *)t->data)[off] = (int32_t)x; break;
    }
}

static inline bool nsa_present(const nsa_tensor *t) { return t && t->data != NULL; }

#endif /* NSA_INTERNAL_H */
