// SPDX-License-Identifier: Apache-2.0
/* ref.h — the reference NSA: exact semantics of docs/design.md §1 on the CPU, accumulating in
 * double.
 * It is the oracle of every test and the fallback of every fast path. Not fast: it is plain
 * loops parallelised over independent rows with OpenMP.
 * Invariant: results do not depend on the number of threads (each output element is computed
 * by one thread in a fixed order), so the reference is bitwise deterministic.
 */
#ifndef NSA_REF_H
#define NSA_REF_H

#include "../core/internal.h"
#include "../core/nsa_index.h"

/* ---- row-level primitives shared by forward, backward and decode (src/ref/select.c) ---- */

/* Selection of one query at position t for one KV group. p (G rows of nc probabilities, row
 * stride p_stride) are the group's compressed-attention probabilities, nc = num_cmp(t+1).
 * Writes blocks[0..n) (ascending, -1 padded) and ranges[0..2n) ([start, end) pairs, end
 * clipped to t+1, unused pairs [0, 0)); returns the number of ranges. score (at least
 * t/lp + 1 floats) and order (as many ints) are scratch. given: NULL, or the caller's n blocks
 * (block_indices, validated), which are used instead of scoring. */
int nsa_ref_select(const nsa_config *c, int64_t t, const double *p, int G, int64_t p_stride,
                   int64_t nc, const int32_t *given, int32_t *blocks, int64_t *ranges,
                   float *score, int32_t *order);
/* The caller's blocks of (b, t, group g) copied into buf[0..n), or NULL when a->block_indices
 * is absent (selection computed). */
const int32_t *nsa_ref_given(const nsa_fwd_args *a, int64_t b, int64_t t, int g, int32_t *buf);

/* Softmax attention of one query q (Dk) over the keys at the listed ranges of K (row stride
 * ks) and V (row stride vs). Writes out (Dv) and, when p is not NULL, the probability of each
 * key in range order. Returns the log-sum-exp of the scaled scores; -inf (and out = 0) when the
 * ranges hold no key. s is scratch of at least as many doubles as keys. */
double nsa_ref_attend(const double *q, const double *K, int64_t ks, const double *V, int64_t vs,
                      int Dk, int Dv, const int64_t *ranges, int nr, double scale, double *out,
                      double *p, double *s);

/* Backward of nsa_ref_attend for the same query and ranges, given its output o (Dv), its lse
 * and the gradient dO (Dv) of o. With p_j = exp(scale·q·k_j − lse) and
 * ds_j = p_j·(dO·v_j − dO·o) it adds scale·Σ_j ds_j·k_j to dq (Dk), scale·ds_j·q to row j of dK
 * (row stride dks) and p_j·dO to row j of dV (row stride dvs); rows are indexed like K and V.
 * Any of dq, dK, dV may be NULL (not wanted). Keys are visited in range order, so the order of
 * every accumulation is fixed. No key (nr ranges hold none) adds nothing. */
void nsa_ref_attend_bwd(const double *q, const double *K, int64_t ks, const double *V, int64_t vs,
                        int Dk, int Dv, const int64_t *ranges, int nr, double scale,
                        const double *o, double lse, const double *dO, double *dq, double *dK,
                        int64_t dks, double *dV, int64_t dvs);

/* Keys in a list of ranges. */
int64_t nsa_ref_range_len(const int64_t *ranges, int nr);

/* Mean of l rows (row stride rs) of D values into out: summed in ascending row order in double,
 * then divided by l. The one definition of φ = avg (prefill and decode both call it). */
void nsa_ref_compress_block(const double *rows, int64_t rs, int l, int D, double *out);

/* Keys and values of one branch for one batch row, as double arrays: key of position p, head
 * hk starts at K + (p - base)·ks + hk·khs (likewise V). For cmp, "position" is the block index. */
typedef struct {
    const double *K, *V;
    int64_t ks, vs, khs, vhs;
    int64_t base;
} nsa_ref_kv;

/* Per-thread scratch of nsa_ref_row, sized for queries up to position t_max. */
typedef struct {
    double *p;     /* (Hq, num_cmp(t_max+1)) compressed probabilities  */
    double *s;     /* (t_max + 1) scores of one attend                 */
    float *score;  /* (t_max/lp + 1) selection scores                  */
    int32_t *order;/* (t_max/lp + 1) candidates                        */
    int64_t nc_cap;
} nsa_ref_scratch;
nsa_status nsa_ref_scratch_init(nsa_ref_scratch *w, const nsa_config *c, int64_t t_max);
void nsa_ref_scratch_free(nsa_ref_scratch *w);

/* What one query row produces. Arrays are caller-owned: o (3, Hq, Dv) per-branch outputs,
 * lse (3, Hq), out (Hq, Dv) gated sum, blocks (Hkv, n), ranges (Hkv, n, 2) and nr (Hkv). */
typedef struct {
    double *o, *lse, *out;
    int32_t *blocks;
    int64_t *ranges;
    int *nr;
    int64_t reads[3]; /* keys read per branch (set by nsa_ref_row): cmp, sel, win */
    const int32_t *given; /* input: NULL, or (Hkv, n) caller-supplied blocks (block_indices) */
} nsa_ref_row_out;

/* The whole NSA of one query at position t, all heads: q (Hq, Dk), gates (Hq, 3); kv[3] the
 * branches' keys/values (cmp compressed, with nc = num_cmp(t+1) blocks visible; base must be 0
 * for cmp and sel, and at most max(0, t-w+1) for win, whose rows are in position order). The single
 * code path of both prefill and decode on the reference. */
void nsa_ref_row(const nsa_config *c, double scale, int64_t t, const double *q,
                 const double *gates, const nsa_ref_kv kv[3], nsa_ref_scratch *w,
                 nsa_ref_row_out *r);

/* The inputs of one call as contiguous double arrays (src/ref/inputs.c). A tensor passed for
 * several branches is converted once and shared. */
typedef struct {
    double *q;          /* (B, T, Hq, Dk)                     */
    double *kc, *vc;    /* (B, Tc, Hkv, Dk|Dv) compressed     */
    double *ks, *vs;    /* (B, T, Hkv, Dk|Dv)                 */
    double *kw, *vw;    /* (B, T, Hkv, Dk|Dv); NULL when w=0 and absent */
    double *gates;      /* (B, T, Hq, 3)                      */
    double *owned[12];
    int nowned;
} nsa_ref_inputs;
nsa_status nsa_ref_load(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                        nsa_ref_inputs *in);
void nsa_ref_unload(nsa_ref_inputs *in);
/* kv[3] of batch row b over in. */
void nsa_ref_kv_of(const nsa_ref_inputs *in, const nsa_shape *s, int64_t b, nsa_ref_kv kv[3]);

/* ---- whole calls ---- */

/* The reference forward of a (already checked; s from nsa_args_check_fwd). */
nsa_status nsa_ref_forward(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s);
/* The reference backward (already checked). */
nsa_status nsa_ref_backward(nsa_context *ctx, const nsa_fwd_args *a, const nsa_bwd_args *g,
                            const nsa_shape *s);

/* OpenMP threads the reference uses on ctx: ctx->threads, or the OpenMP default when it is 0.
 * Every `omp parallel` of src/ref passes it as num_threads. */
int nsa_ref_threads(const nsa_context *ctx);

/* Copies tensor t (4-d, any strides, any float dtype) into a new contiguous double array of
 * its numel; NULL on allocation failure. */
double *nsa_ref_gather(const nsa_tensor *t);

#endif /* NSA_REF_H */
