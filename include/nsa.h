// SPDX-License-Identifier: Apache-2.0
/* nsa.h — the whole public API of libnsa: Native Sparse Attention (DeepSeek, arXiv 2502.11089).
 *
 * What it is: an opaque context, plain tensor descriptors, the NSA config, forward, backward,
 * decode with KV caches, and the execution router, all returning nsa_status.
 * What it is not: a model. RoPE, projections and a learnable φ live in the caller (see lm/).
 * Key invariant: the library never prints except through the context's rate-limited logger,
 * never exits, and never writes outside the tensors the caller hands it.
 *
 * Notation (docs/design.md §1): B batch, T tokens in a prefill, S tokens in a cache, t the 0-based
 * position of a query, Hq query heads, Hkv KV heads, G = Hq/Hkv, head h belongs to group h/G,
 * Dk/Dv head dims; config l, d, lp, n, n_init, n_local, w, scale.
 *
 * Ownership: the caller owns every tensor it passes; the library only reads inputs and writes
 * outputs during the call. Every object made by a `_create` is freed by its `_destroy`, which
 * accepts NULL.
 */
#ifndef NSA_H
#define NSA_H

#include <stddef.h>
#include <stdint.h>

/* NSA_API marks the public functions. libnsa is compiled with hidden visibility, so the shared
 * library exports exactly these (docs/decisions.md, "Exported symbols"). */
#if defined(__GNUC__) || defined(__clang__)
#define NSA_API __attribute__((visibility("default")))
#else
#define NSA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version */

/* The version of this header. The library's own version (nsa_version) comes from the build's
 * project(VERSION) in CMakeLists.txt, the one place to change it; configure fails when these
 * lines disagree with it. A program that wants to know it runs against the library its header
 * came from compares nsa_version() with NSA_VERSION. */
#define NSA_VERSION_MAJOR 0
#define NSA_VERSION_MINOR 1
#define NSA_VERSION_PATCH 0
#define NSA_VERSION (NSA_VERSION_MAJOR * 10000 + NSA_VERSION_MINOR * 100 + NSA_VERSION_PATCH)

/* The library's version as one int: 10000·major + 100·minor + patch (0.1.0 → 100; minor and
 * patch stay below 100). */
NSA_API int nsa_version(void);
/* The library's version as text, "0.1.0". Static storage. */
NSA_API const char *nsa_version_string(void);
/* The git commit the build was configured from: 12 hex digits, "-dirty" appended when tracked
 * files differed from it, or "unknown" outside a git checkout. Read at configure time: commits
 * made since the last `cmake` run do not show. Static storage. */
NSA_API const char *nsa_version_commit(void);

/* ---------------------------------------------------------------- status */

typedef enum {
    NSA_OK = 0,
    NSA_ERR_INVALID_ARG = 1, /* NULL pointer or a value out of its domain          */
    NSA_ERR_CONFIG = 2,      /* an nsa_config field is invalid                      */
    NSA_ERR_SHAPE = 3,       /* a tensor's ndim/shape/stride does not fit           */
    NSA_ERR_DTYPE = 4,       /* a tensor's dtype is not allowed or does not match   */
    NSA_ERR_DEVICE = 5,      /* a tensor lives on a device this call cannot use     */
    NSA_ERR_OVERFLOW = 6,    /* a size computation overflows                        */
    NSA_ERR_NOMEM = 7,       /* an allocation failed                                */
    NSA_ERR_UNSUPPORTED = 8, /* valid, but not supported by this build or device    */
    NSA_ERR_CAUSALITY = 9,   /* NSA_STRICT_ASSERTS found a key past t               */
    NSA_ERR_CACHE = 10,      /* KV cache full, wrong config, or wrong batch row     */
    NSA_ERR_FLAG = 11,       /* an NSA_* flag has a malformed value                 */
    NSA_ERR_PROFILE = 12,    /* a device profile file is malformed                  */
    NSA_ERR_CUDA = 13,       /* a CUDA runtime/library call failed                  */
    NSA_ERR_IO = 14,         /* a file could not be read or written                 */
    NSA_ERR_INTERNAL = 15    /* a bug: please report it with the message            */
} nsa_status;

/* Static name of a status ("NSA_ERR_SHAPE"); never NULL. */
NSA_API const char *nsa_status_name(nsa_status s);

/* ---------------------------------------------------------------- tensors */

typedef enum {
    NSA_DTYPE_F32 = 0,
    NSA_DTYPE_BF16 = 1,
    NSA_DTYPE_F16 = 2,
    NSA_DTYPE_I32 = 3 /* only for index outputs (selected blocks, ranges) */
} nsa_dtype;

/* Bytes of one element of dtype (4, 2, 2, 4); 0 for an unknown dtype. */
NSA_API size_t nsa_dtype_size(nsa_dtype dt);
/* Static name ("f32", "bf16", "f16", "i32"); "?" for an unknown dtype. */
NSA_API const char *nsa_dtype_name(nsa_dtype dt);

typedef enum { NSA_DEVICE_CPU = 0, NSA_DEVICE_CUDA = 1 } nsa_device_kind;

typedef struct {
    nsa_device_kind kind;
    int index; /* CUDA ordinal; 0 for the CPU */
} nsa_device;

#define NSA_MAX_DIMS 5

/* A plain descriptor; the caller owns `data`. Strides are in elements, not bytes, and may be any
 * non-negative values (non-contiguous views work); a zero stride broadcasts. An optional tensor
 * is "absent" when data == NULL. */
typedef struct {
    void *data;
    nsa_dtype dtype;
    nsa_device device;
    int ndim;
    int64_t shape[NSA_MAX_DIMS];
    int64_t stride[NSA_MAX_DIMS];
} nsa_tensor;

/* A contiguous (row-major) CPU tensor over data with ndim dims taken from shape[0..ndim). The
 * descriptor only points at data (not copied, not owned); ndim outside 0..NSA_MAX_DIMS or a NULL
 * shape gives an ndim of 0, which every entry point rejects. A stride that int64 cannot hold
 * is INT64_MAX, which every entry point rejects with NSA_ERR_OVERFLOW. */
NSA_API nsa_tensor nsa_tensor_make(void *data, nsa_dtype dt, int ndim, const int64_t *shape);
/* Shorthands for contiguous CPU tensors of 3, 4 and 5 dims. */
NSA_API nsa_tensor nsa_tensor_3d(void *data, nsa_dtype dt, int64_t a, int64_t b, int64_t c);
NSA_API nsa_tensor nsa_tensor_4d(void *data, nsa_dtype dt, int64_t a, int64_t b, int64_t c,
                                 int64_t d);
NSA_API nsa_tensor nsa_tensor_5d(void *data, nsa_dtype dt, int64_t a, int64_t b, int64_t c,
                                 int64_t d, int64_t e);
/* Number of elements (product of shape); 0 for an absent tensor; -1 when a dim is negative or
 * the product overflows int64. */
NSA_API int64_t nsa_tensor_numel(const nsa_tensor *t);

/* bf16/f16 <-> f32 conversion for callers that fill tensors: to 16 bits rounds to nearest, ties
 * to even, subnormals included; values past the largest finite one become inf; NaN stays NaN
 * (quiet, sign kept). To f32 is exact. */
NSA_API uint16_t nsa_f32_to_bf16(float x);
NSA_API float nsa_bf16_to_f32(uint16_t x);
NSA_API uint16_t nsa_f32_to_f16(float x);
NSA_API float nsa_f16_to_f32(uint16_t x);

/* ---------------------------------------------------------------- config */

/* Upper bounds of the config fields (docs/hardening.md): far above any published model (the
 * paper: l 32, lp 64, n 16, Dk 192; head counts ≤ 128) and low enough that every size derived
 * from them in int64 cannot overflow before the tensor extents are checked. */
#define NSA_MAX_BLOCK 65536    /* l, d, lp                 */
#define NSA_MAX_SELECTED 65536 /* n (and n_init, n_local)  */
#define NSA_MAX_HEADS 4096     /* Hq, Hkv                  */
#define NSA_MAX_HEAD_DIM 4096  /* Dk, Dv                   */

/* The NSA configuration of docs/design.md §1. Validity: 1 ≤ l, d, lp ≤ NSA_MAX_BLOCK, d | l, d | lp,
 * n_init, n_local ≥ 0, n_init + n_local ≤ n ≤ NSA_MAX_SELECTED, w ≥ 0 (0 turns the window
 * branch off), 1 ≤ Hq, Hkv ≤ NSA_MAX_HEADS, Hq % Hkv == 0, 1 ≤ Dk, Dv ≤ NSA_MAX_HEAD_DIM, scale
 * finite and > 0 (0 means 1/sqrt(Dk)). */
typedef struct {
    int l;       /* compression block length                                  */
    int d;       /* compression stride                                        */
    int lp;      /* selection block length (l' in the paper)                  */
    int n;       /* selected blocks per query, forced ones included           */
    int n_init;  /* forced initial blocks 0..n_init-1 (paper: 1)               */
    int n_local; /* forced local blocks c, c-1, .., c-n_local+1, c = t/lp (2)  */
    int w;       /* sliding window; 0 = window branch off                     */
    float scale; /* softmax scale; 0 = 1/sqrt(Dk)                             */
    int Hq, Hkv, Dk, Dv;
} nsa_config;

/* Paper defaults (l=32, d=16, lp=64, n=16, n_init=1, n_local=2, w=512, scale=0) for the given
 * head layout. */
NSA_API nsa_config nsa_config_default(int Hq, int Hkv, int Dk, int Dv);
/* Number of compressed blocks complete after T tokens: T < l ? 0 : (T - l)/d + 1; 0 for a NULL
 * cfg or one with l < 1 or d < 1. */
NSA_API int64_t nsa_num_cmp(const nsa_config *cfg, int64_t T);
/* The softmax scale in force (cfg->scale, or 1/sqrt(Dk) when it is 0). */
NSA_API float nsa_config_scale(const nsa_config *cfg);

/* ---------------------------------------------------------------- context */

typedef struct nsa_context nsa_context;

/* Creates a context: reads the NSA_* environment flags once (a malformed one fails creation with
 * NSA_ERR_FLAG and, when msg is not NULL, a message naming the flag copied into msg[msg_len]),
 * queries the devices, and loads the compiled-in device profiles. *out is NULL on failure. */
NSA_API nsa_status nsa_context_create(nsa_context **out, char *msg, size_t msg_len);
/* Frees the context; NULL is a no-op. */
NSA_API void nsa_context_destroy(nsa_context *ctx);
/* The message of the last failed call on ctx ("" after success); it names the offending field.
 * The pointer stays valid until the next call on ctx. */
NSA_API const char *nsa_context_message(const nsa_context *ctx);
/* Sets a CUDA stream (cudaStream_t cast to void*) for later calls; NULL = the default stream. */
NSA_API nsa_status nsa_context_set_stream(nsa_context *ctx, void *stream);
/* OpenMP threads the CPU paths use (0 = the OpenMP default); NSA_ERR_INVALID_ARG if negative.
 * Results do not depend on it: the CPU reference is bitwise deterministic for any count. */
NSA_API nsa_status nsa_context_set_threads(nsa_context *ctx, int threads);

/* ---------------------------------------------------------------- forward */

/* Inputs and outputs of one NSA attention call (prefill / training forward).
 * Positions are 0..T-1 for every batch row, unless cu_seqlens packs documents (below). Every
 * tensor has the dims written beside it;
 * dtypes: q, k*, v*, gates, out* share one dtype (f32, bf16 or f16); lse* are f32; the index
 * outputs are i32. The same tensor may be passed for several branches. */
typedef struct {
    nsa_config cfg;

    nsa_tensor q;     /* (B, T, Hq, Dk)                                                     */
    /* cmp branch: raw keys/values, compressed inside with φ = avg ...                      */
    nsa_tensor k_cmp; /* (B, T, Hkv, Dk) raw;  or (B, num_cmp(T), Hkv, Dk) if cmp_compressed */
    nsa_tensor v_cmp; /* (B, T, Hkv, Dv) raw;  or (B, num_cmp(T), Hkv, Dv) if cmp_compressed */
    int cmp_compressed; /* 1: k_cmp/v_cmp are already compressed (a learnable φ)          */
    nsa_tensor k_sel; /* (B, T, Hkv, Dk) */
    nsa_tensor v_sel; /* (B, T, Hkv, Dv) */
    nsa_tensor k_win; /* (B, T, Hkv, Dk); may be absent when w == 0 */
    nsa_tensor v_win; /* (B, T, Hkv, Dv); may be absent when w == 0 */
    nsa_tensor gates; /* (B, T, Hq, 3), order cmp, sel, win; values used as given          */

    nsa_tensor out; /* (B, T, Hq, Dv) = Σ_b gates[..,b] · out_b                          */

    /* Optional outputs (absent = not requested). */
    nsa_tensor out_cmp, out_sel, out_win; /* (B, T, Hq, Dv) per-branch attention outputs   */
    nsa_tensor lse_cmp, lse_sel, lse_win; /* (B, T, Hq) f32, natural log; -inf: no key     */
    nsa_tensor sel_blocks; /* (B, T, Hkv, n) i32: selected block indices ascending, -1 pad */
    nsa_tensor sel_ranges; /* (B, T, Hkv, n, 2) i32: merged [start, end) token ranges,
                              ascending, end clipped to t+1; unused slots are [0, 0)      */

    /* Packed documents ("varlen", docs/varlen.md); absent cu_seqlens = off. With it, B = 1 and
     * the T tokens hold n_docs documents back to back: document i is tokens
     * [cu_seqlens[i], cu_seqlens[i+1]), and it is its own causal NSA sequence, exactly as if it
     * were passed alone (bitwise on the reference): positions, compressed blocks, selection
     * blocks, forced initial/local blocks and the window all start again at its first token,
     * and nothing reads across a boundary (NSA_STRICT_ASSERTS checks it). Empty documents are
     * allowed. Layouts in varlen:
     *   q, k_sel, v_sel, k_win, v_win, gates, out*, lse*   (1, T, ...) packed like the tokens
     *   k_cmp, v_cmp raw                                   (1, T, Hkv, D*) likewise
     *   k_cmp, v_cmp with cmp_compressed                   (1, Σ_i num_cmp(len_i), Hkv, D*):
     *       document i's blocks are rows [Σ_{j<i} num_cmp(len_j), ...) (nsa_num_cmp_docs)
     *   sel_blocks, sel_ranges                             (1, T, Hkv, n[, 2]) whose block
     *       indices and token positions count from the document's first token
     * Any fault of cu_seqlens or max_seqlen (dtype other than i32, another device than q's,
     * ndim != 1, B != 1, cu_seqlens[0] != 0, descending, cu_seqlens[n_docs] != T, a document
     * longer than max_seqlen) is NSA_ERR_SHAPE naming the field; nothing is written. */
    nsa_tensor cu_seqlens; /* (n_docs + 1) i32, on the tensors' device                     */
    int64_t max_seqlen;    /* ≥ the longest document; the router's length cutoffs use it   */

    /* Caller-supplied selection (fla's block_indices); absent = selection computed. When
     * present, scoring and top-n are skipped and these blocks are attended as given (forced
     * blocks are then the caller's business); sel_blocks, if requested, echoes them. Per
     * (b, t, g): block indices ascending without duplicates, each 0 <= j <= t/lp (causal: the
     * block starts at or before t; its end is clipped to t+1 as usual), -1 padding only after
     * the last block (all -1: the sel branch sees no key). A fault is NSA_ERR_INVALID_ARG
     * naming the element. The backward uses them as the forward does. This build runs them on
     * the CPU only (CUDA: NSA_ERR_UNSUPPORTED). With cu_seqlens, (1, T, Hkv, n) and t, j count
     * from the document's first token, like sel_blocks. */
    nsa_tensor block_indices; /* (B, T, Hkv, n) i32 input */
} nsa_fwd_args;

/* Compressed blocks of packed documents: Σ_i num_cmp(cu_seqlens[i+1] - cu_seqlens[i]) over a
 * host array of n_docs + 1 offsets (the row count of a varlen cmp_compressed k_cmp); when
 * offsets is not NULL it receives the n_docs + 1 running sums (document i's first block).
 * -1 if an argument is NULL, n_docs < 0 or the offsets descend. */
NSA_API int64_t nsa_num_cmp_docs(const nsa_config *cfg, const int32_t *cu_seqlens,
                                 int64_t n_docs, int64_t *offsets);

/* Computes the NSA forward (docs/design.md §1) on the device the tensors live on, through the
 * router.
 * Returns NSA_OK or an error naming the field; on error no output is partially meaningful.
 * A fast path that fails or produces NaN/Inf is recomputed on the reference path, counted
 * (nsa_context_counters) and logged once; NSA_STRICT_ASSERTS=1 turns a key past t into
 * NSA_ERR_CAUSALITY (docs/routing.md). */
NSA_API nsa_status nsa_forward(nsa_context *ctx, const nsa_fwd_args *a);

/* Gradients of one NSA call (packed documents too: every gradient has its input's packed
 * layout). Inputs are those of `fwd` (its optional outputs, if present, must
 * hold what nsa_forward wrote and may be reused instead of recomputed; the reference reuses
 * sel_ranges — checked to be ascending ranges within [0, t+1) — and recomputes the rest in
 * double). Every gradient is
 * optional (absent = not wanted) and has the shape and dtype of its input (dk_cmp/dv_cmp: the
 * raw cmp shape, gradients flowing through φ = avg, or the compressed shape when
 * cmp_compressed). Gradients are overwritten, not accumulated; two gradient tensors with the
 * same data pointer, shape and strides receive the sum of their gradients (pass one dK for the
 * branches that share one K); any other byte shared by two gradient tensors is
 * NSA_ERR_INVALID_ARG naming both fields, and so is a gradient whose own elements overlap (a
 * zero stride; or strides that do not nest: sorted by stride, each dim must step past the span
 * of the smaller ones). Views that interleave without sharing a byte (dK and dV packed in one
 * buffer) are fine. Selection indices are constants. dgates[.., b] = dout · out_b.
 * Deterministic: the same inputs give bitwise the same gradients, for any thread count. */
typedef struct {
    nsa_tensor dout;                    /* (B, T, Hq, Dv)  */
    nsa_tensor dq;                      /* (B, T, Hq, Dk)  */
    nsa_tensor dk_cmp, dv_cmp;          /* like k_cmp, v_cmp */
    nsa_tensor dk_sel, dv_sel;          /* (B, T, Hkv, D*) */
    nsa_tensor dk_win, dv_win;          /* (B, T, Hkv, D*) */
    nsa_tensor dgates;                  /* (B, T, Hq, 3)   */
} nsa_bwd_args;

/* Computes the gradients g of the NSA forward described by fwd (its `out` is not read). Every
 * argument is validated (fwd as by nsa_forward, then g) before any gradient is written; on error
 * the message names the field. */
NSA_API nsa_status nsa_backward(nsa_context *ctx, const nsa_fwd_args *fwd, const nsa_bwd_args *g);

/* ---------------------------------------------------------------- decode (docs/design.md §1.6) */

/* A KV cache holds, per batch row of one attention layer, everything a decode step reads: the
 * whole history of the sel keys/values, a ring of the last w window keys/values, a ring of the
 * last l raw cmp keys/values (what the next compressed block still needs) and every compressed
 * key/value emitted so far. Rows have their own lengths, so sequences at different positions
 * decode together. Prefill, append and decode all leave a row in the same state for the same
 * tokens, so decode continues a prefill exactly (bitwise on the reference).
 *
 * Memory (bytes, exactly what nsa_kv_cache_bytes returns), with e = nsa_dtype_size(dtype),
 * R = Hkv·(Dk + Dv), W = min(w, max_len), L = min(l, max_len), C = max(num_cmp(max_len), 1):
 *     B · R · (e · (max_len + W + L) + 8 · C)        keys/values
 *   + B · 64                                         per-row length and read counters
 *   + 8 · l · Hkv · max(Dk, Dv) + 256                φ scratch and the object itself (rounded up)
 * Compressed keys/values are kept in double, as the reference computes them, so a step uses
 * exactly the values a prefill uses. A reference decode step also allocates, for its duration,
 * 8 · (S·R + W·R + the scratch of one reference row) bytes. A cache on a CUDA device keeps the
 * same buffers in device memory plus a dtype copy of the compressed tokens, step scratch and
 * counters there (docs/cuda_backward.md gives the bytes); its decode step never waits for the
 * host. A CPU-only build returns NSA_ERR_UNSUPPORTED for it. */
typedef struct nsa_kv_cache nsa_kv_cache;

/* What a KV cache is built for. */
typedef struct {
    nsa_config cfg;
    nsa_dtype dtype;     /* element type of the stored keys/values (f32, bf16, f16)          */
    nsa_device device;   /* where the cache lives: CPU or CUDA (tensors then on that device) */
    int B;               /* batch rows, >= 1                                                 */
    int64_t max_len;     /* most tokens one row may hold, 1 .. INT32_MAX                     */
    int cmp_external;    /* 1: the caller supplies compressed tokens (learnable φ); 0: avg   */
} nsa_kv_cache_desc;

/* Token reads of the last decode step of one batch row, measured from what the step touched
 * (keys read per KV head; keys and values of one token count once). All zero before the row's
 * first step and after a reset. */
typedef struct {
    int64_t cmp;    /* compressed tokens read: the visible blocks, num_cmp(S)                */
    int64_t sel;    /* raw tokens read by selection: Σ range lengths (≤ n·lp)                */
    int64_t win;    /* window tokens read: min(w, S)                                        */
    int64_t total;  /* cmp + sel + win                                                      */
    int64_t budget; /* paper budget num_cmp(S) + n·lp + min(w, S)                           */
    int64_t dense;  /* what dense attention reads: S                                        */
} nsa_decode_reads;

/* Bytes a cache for desc takes (the formula above); 0 if desc is NULL, invalid or overflows. */
NSA_API size_t nsa_kv_cache_bytes(const nsa_kv_cache_desc *desc);
/* Creates an empty cache; *out is NULL on failure (the message names the desc field). */
NSA_API nsa_status nsa_kv_cache_create(nsa_context *ctx, const nsa_kv_cache_desc *desc,
                                       nsa_kv_cache **out);
/* Frees the cache; NULL is a no-op. */
NSA_API void nsa_kv_cache_destroy(nsa_kv_cache *cache);
/* Empties row b (b = -1: every row). NSA_ERR_CACHE if b is out of range. */
NSA_API nsa_status nsa_kv_cache_reset(nsa_context *ctx, nsa_kv_cache *cache, int b);
/* Tokens held by row b; -1 if b is out of range or cache is NULL. */
NSA_API int64_t nsa_kv_cache_len(const nsa_kv_cache *cache, int b);

/* Every call below validates all of its arguments before it changes anything: on any error the
 * cache is exactly as it was and the next valid call works. Wrong batch row, full row, non-empty
 * row for a prefill, or a config / cmp mode other than the cache's: NSA_ERR_CACHE; a tensor of
 * another dtype than the cache's: NSA_ERR_DTYPE; NULL cache: NSA_ERR_INVALID_ARG. */

/* Prefill: an nsa_forward over rows b0 .. b0+B'-1 of the cache (each must be empty; T ≤
 * max_len), whose tensors have batch dim B', that also fills every part of the cache.
 * fwd->cfg must equal the cache's config and its dtype the cache's dtype. With cmp_external,
 * fwd carries compressed k_cmp/v_cmp (cmp_compressed = 1) and raw_k_cmp/raw_v_cmp carry the raw
 * tokens (the cache keeps the last min(T, l): what the next blocks need); without it they are
 * absent. extra may be NULL (b0 = 0).
 * Packed documents (fwd->cu_seqlens): document i fills row b0 + i (n_docs rows, each empty,
 * each document ≤ max_len; an empty document leaves its row empty); raw_k_cmp/raw_v_cmp are
 * then (1, T, Hkv, D*) packed like the tokens. Decode then continues each document exactly. */
typedef struct {
    int b0;
    nsa_tensor raw_k_cmp; /* (B', T, Hkv, Dk): only with cmp_external */
    nsa_tensor raw_v_cmp; /* (B', T, Hkv, Dv): only with cmp_external */
} nsa_prefill_extra;
NSA_API nsa_status nsa_kv_cache_prefill(nsa_context *ctx, nsa_kv_cache *cache,
                                        const nsa_fwd_args *fwd, const nsa_prefill_extra *extra);

/* Append: adds T tokens to rows b0 .. b0+B'-1 without computing attention — to restore a
 * cache from keys/values kept elsewhere, or to fill one cheaply. The rows must hold the same
 * number of tokens S0 and have room for T more. The cache ends in the same state as a prefill
 * (or decode) of the same tokens. Tensors are in the cache dtype, on the cache's device. */
typedef struct {
    int b0;
    nsa_tensor k_cmp, v_cmp; /* (B', T, Hkv, D*) raw cmp keys/values                        */
    nsa_tensor k_sel, v_sel; /* (B', T, Hkv, D*)                                              */
    nsa_tensor k_win, v_win; /* (B', T, Hkv, D*); may be absent when w == 0                   */
    nsa_tensor kc, vc;       /* cmp_external only: (B', num_cmp(S0+T) - num_cmp(S0), Hkv, D*)
                                the compressed tokens the appended tokens emit, in order;
                                may be absent when that count is 0                          */
} nsa_kv_append_args;
NSA_API nsa_status nsa_kv_cache_append(nsa_context *ctx, nsa_kv_cache *cache,
                                       const nsa_kv_append_args *a);

/* One decode step: appends one token to every active row and returns its attention output.
 * Row b's new token sits at position t = nsa_kv_cache_len(cache, b), S = t + 1 afterwards.
 * cfg must equal the cache's config (a cache of another layer is refused, NSA_ERR_CACHE).
 * Rows that are not active are neither read, written nor grown; their rows of out are left
 * untouched. Measured reads are kept per row (nsa_kv_cache_last_reads) and logged under the
 * tag `decode.reads` (at most NSA_LOG_LIMIT lines). */
typedef struct {
    nsa_config cfg;
    nsa_tensor q;                    /* (B, 1, Hq, Dk)  */
    nsa_tensor k_cmp, v_cmp;         /* (B, 1, Hkv, D*) raw cmp key/value of the new token   */
    nsa_tensor k_sel, v_sel;         /* (B, 1, Hkv, D*) */
    nsa_tensor k_win, v_win;         /* (B, 1, Hkv, D*); may be absent when w == 0           */
    nsa_tensor kc_new, vc_new;       /* (B, 1, Hkv, D*) cmp_external only: the compressed token
                                        emitted by this step, read for rows that emit one
                                        (nsa_kv_cache_emits_next); absent when none emits   */
    nsa_tensor gates;                /* (B, 1, Hq, 3)   */
    nsa_tensor out;                  /* (B, 1, Hq, Dv)  */
    const uint8_t *active;           /* host array of B flags; NULL = every row             */
    nsa_tensor sel_blocks;           /* optional output (B, 1, Hkv, n) i32: the blocks the step
                                        selected, ascending, -1 padded (like nsa_fwd_args'
                                        sel_blocks); rows not active are left untouched. CPU
                                        caches only in this build (CUDA: NSA_ERR_UNSUPPORTED) */
} nsa_decode_args;
NSA_API nsa_status nsa_decode_step(nsa_context *ctx, nsa_kv_cache *cache, const nsa_decode_args *a);

/* 1 when appending a token to row b emits a compressed block (t+1 ≥ l, (t+1-l) % d == 0 with
 * t = nsa_kv_cache_len), 0 when not, -1 if cache is NULL or b is out of range. */
NSA_API int nsa_kv_cache_emits_next(const nsa_kv_cache *cache, int b);
/* With cmp_external: copies the l-1 raw cmp tokens before the next position of row b (the
 * block the next step completes, less its last token) into k (l-1, Hkv, Dk) / v (l-1, Hkv, Dv),
 * in the cache dtype, so the caller can run its φ. NSA_ERR_CACHE if the row holds fewer than
 * l-1 tokens. With l == 1 there is nothing to copy and k, v may be absent. */
NSA_API nsa_status nsa_kv_cache_raw_cmp_tail(nsa_context *ctx, const nsa_kv_cache *cache, int b,
                                             nsa_tensor k, nsa_tensor v);
/* Reads of row b's last decode step. */
NSA_API nsa_status nsa_kv_cache_last_reads(nsa_context *ctx, const nsa_kv_cache *cache, int b,
                                           nsa_decode_reads *out);

/* ---------------------------------------------------------------- routing (docs/contract.md) */

typedef enum { NSA_BRANCH_CMP = 0, NSA_BRANCH_SEL = 1, NSA_BRANCH_WIN = 2 } nsa_branch;

/* Sets one NSA_* flag on ctx as if it came from the environment ("NSA_USE_FA2", "1").
 * NSA_ERR_FLAG with a message naming the flag if the name is unknown or the value malformed. */
NSA_API nsa_status nsa_context_set_flag(nsa_context *ctx, const char *name, const char *value);

/* Log sink: tag ("decode.reads", "fa2.fallback", ...) and one line without newline. Default:
 * stderr. Lines per tag are capped by NSA_LOG_LIMIT. */
typedef void (*nsa_log_fn)(void *user, const char *tag, const char *line);
/* Sends ctx's log lines to fn(user, ...) from now on; fn = NULL restores stderr. NULL ctx: no-op. */
NSA_API void nsa_context_set_log_callback(nsa_context *ctx, nsa_log_fn fn, void *user);

/* Counters since the context was created. */
typedef struct {
    int64_t calls;                 /* forward/backward/decode calls routed       */
    int64_t fallback_nonfinite;    /* fast path output not finite → reference    */
    int64_t fallback_error;        /* fast path failed → reference               */
    int64_t fallback_unsupported;  /* fast path cannot run the shape → reference */
    int64_t causality_violations;  /* found by NSA_STRICT_ASSERTS                */
} nsa_counters;
/* Copies ctx's counters into *out; NSA_ERR_INVALID_ARG if either is NULL. */
NSA_API nsa_status nsa_context_counters(const nsa_context *ctx, nsa_counters *out);

/* Static branch name ("cmp", "sel", "win"); "?" otherwise. */
NSA_API const char *nsa_branch_name(nsa_branch b);

/* Backend roles (docs/design.md §3). The seed's names survive in flags and log tags: "SDPA" is the
 * reference role, "Triton selection" is NSA_ROLE_FUSED_SEL (a CUDA C kernel, named "triton"). */
typedef enum {
    NSA_ROLE_REF = 0,      /* the reference: every branch, every device, every dtype          */
    NSA_ROLE_MASKED = 1,   /* masked SDPA: batched variant of the reference role (cmp, win)    */
    NSA_ROLE_PACKED = 2,   /* packed selection: batched variant of the reference role (sel)   */
    NSA_ROLE_FA2 = 3,      /* FA-2 tiled online-softmax kernels (cmp, win)                    */
    NSA_ROLE_FUSED_SEL = 4 /* fused group-centric selection kernel, "triton" (sel)            */
} nsa_role;
#define NSA_ROLE_COUNT 5
/* Static role name ("ref", "masked", "packed", "fa2", "triton"); "?" otherwise. */
NSA_API const char *nsa_role_name(nsa_role r);

typedef enum { NSA_PASS_FORWARD = 0, NSA_PASS_BACKWARD = 1, NSA_PASS_DECODE = 2 } nsa_pass;

/* What the router decides for: one call's config, size, dtype and pass. */
typedef struct {
    nsa_config cfg;
    int64_t B;       /* batch rows                                                        */
    int64_t T;       /* tokens per row (forward/backward); decode: tokens after the step  */
    nsa_dtype dtype; /* dtype of q, k*, v*, out                                           */
    nsa_pass pass;
    int64_t n_docs;     /* packed documents in the row (varlen, B = 1); 0: not varlen      */
    int64_t max_seqlen; /* varlen: the longest document, the length the cutoffs compare   */
} nsa_route_problem;

/* What the router knows about a device: real (nsa_device_caps_query) or named
 * (nsa_device_caps_named, for `nsa route --device sm89` and tests). */
typedef struct {
    nsa_device_kind kind;
    int index;            /* CUDA ordinal; 0 for the CPU                                 */
    int sm;               /* 10*major + minor (80, 89, 90); 0 for the CPU                */
    int compiled;         /* 1: this build holds code for this device (the CPU: always)  */
    int multiprocessors;  /* 0 when unknown                                              */
    int64_t memory_bytes; /* 0 when unknown                                              */
    char name[64];        /* "cpu", "sm89 (named)", or the CUDA device name              */
    int64_t smem_per_block; /* dynamic shared memory one block may opt in to, bytes (227 KB
                               on sm90, 163 KB on sm80, 99 KB on sm86/sm89); 0 for the CPU;
                               0 on CUDA: unknown, the router assumes 48 KB */
} nsa_device_caps;

/* Caps of a named device: "cpu" or "smNN" (sm80, sm89, sm90, ...). `compiled` says whether this
 * build holds code for that architecture. NSA_ERR_INVALID_ARG for another name. */
NSA_API nsa_status nsa_device_caps_named(const char *name, nsa_device_caps *out);
/* Caps of a real device of this machine. NSA_ERR_DEVICE if it does not exist. */
NSA_API nsa_status nsa_device_caps_query(nsa_context *ctx, nsa_device dev, nsa_device_caps *out);

/* The toolchain check of the contract: what this build and machine offer, read at context
 * creation. A device whose architecture is not in archs gets the reference, with that reason. */
typedef struct {
    int cuda_built;      /* 1: built with CUDA                                         */
    int runtime_version; /* CUDA runtime (12040 = 12.4); 0 without CUDA                */
    int driver_version;  /* CUDA driver; 0 without a driver                            */
    int narchs;
    int archs[8];        /* architectures compiled in, as sm numbers (80, 90)          */
    char note[128];      /* "CPU-only build", "driver 12.2 older than runtime 12.4", "" */
} nsa_toolchain;
/* Copies what ctx found at creation into *out; NSA_ERR_INVALID_ARG if either is NULL. */
NSA_API nsa_status nsa_context_toolchain(const nsa_context *ctx, nsa_toolchain *out);

#define NSA_REASON_LEN 256

/* One routing decision: per branch (index nsa_branch), the backend chosen and why. */
typedef struct {
    const char *backend[3];         /* static backend name ("ref", "cuda.fa2", ...)          */
    nsa_role role[3];               /* role of that backend                                  */
    nsa_role wanted[3];             /* role the flags and profile asked for                  */
    char reason[3][NSA_REASON_LEN]; /* why: flags, profile, cutoff, support, toolchain       */
    int force_branch;               /* NSA_FORCE_BRANCH: -1, or the branch whose gate is 1   */
    char profile[NSA_REASON_LEN];   /* profile in force ("sm90 (compiled-in)", "none: ...") */
} nsa_route_decision;

/* The router's decision for problem p on device dev under ctx's flags and profiles. Pure: the
 * same inputs give the same decision; it runs nothing. */
NSA_API nsa_status nsa_route_explain(nsa_context *ctx, const nsa_route_problem *p,
                                     const nsa_device_caps *dev, nsa_route_decision *out);

/* Loads device profiles (sm80.yaml, sm89.yaml, ... : `key: value` lines) from dir, replacing
 * those in force. Atomic: on error (NSA_ERR_PROFILE, the message names file and line) the
 * context keeps its previous profiles. At creation the context loads the compiled-in defaults,
 * then the files of $NSA_PROFILE_DIR or else of the installed profile directory, if present. */
NSA_API nsa_status nsa_context_load_profiles(nsa_context *ctx, const char *dir);

/* Writes every NSA_* flag in force, one "NAME=value (default|set)" line each, into buf[len]
 * (truncated, always NUL-terminated). */
NSA_API nsa_status nsa_context_flags_format(const nsa_context *ctx, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* NSA_H */
