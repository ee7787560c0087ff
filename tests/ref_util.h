// SPDX-License-Identifier: Apache-2.0
/* ref_util.h — what the reference tests share: a problem (config, guarded input/output buffers
 * and the nsa_fwd_args / nsa_bwd_args over them), independent dense attention in double, and a
 * double-precision loss for finite differences.
 * Not an oracle of NSA semantics: every check builds its expected values from these plain
 * pieces (masks, dense softmax), never from the library's row code — except ut_loss, which
 * must run the library's own forward so the backward is checked against what it differentiates.
 */
#ifndef NSA_REF_UTIL_H
#define NSA_REF_UTIL_H

#include "harness.h"

enum {
    P_SHARED = 1,         /* one K and one V tensor for every branch (raw cmp)        */
    P_CMP_COMPRESSED = 2, /* k_cmp/v_cmp are compressed (B, num_cmp(T), Hkv, D)       */
    P_EXTRAS = 4,         /* request out_*, lse_*, sel_blocks, sel_ranges             */
};

typedef struct {
    nsa_config c;
    int B, T;
    nsa_dtype dt;
    unsigned flags;
    tbuf q, kc, vc, ks, vs, kw, vw, g; /* inputs; with P_SHARED only ks, vs are allocated     */
    tbuf out, ob[3], lse[3], blocks, ranges; /* outputs; ob/lse/blocks/ranges with P_EXTRAS */
    nsa_fwd_args a;
} prob;

/* Random inputs N(0,1) (gates uniform in [0, 1]) rounded to dt; outputs poisoned. */
void prob_init(prob *p, nsa_config c, nsa_dtype dt, int B, int T, unsigned flags);
void prob_free(prob *p);
/* Every input and output buffer's guard bytes intact. */
bool prob_guards_ok(const prob *p);
/* The input buffers, in the order q, kc, vc, ks, vs, kw, vw, g (shared ones repeat). */
void prob_inputs(prob *p, tbuf *in[8]);

/* Gradients for p: dout random N(0,1), every gradient its own poisoned buffer. */
typedef struct {
    tbuf dout, d[8]; /* d: dq, dk_cmp, dv_cmp, dk_sel, dv_sel, dk_win, dv_win, dgates */
    nsa_bwd_args g;
} pgrad;
void pgrad_init(pgrad *g, const prob *p);
void pgrad_free(pgrad *g);
bool pgrad_guards_ok(const pgrad *g);
extern const char *const pgrad_names[8];

/* A new double array with b's elements in row-major order. */
double *ut_doubles(const tbuf *b);
/* 1 if a and b hold the same bytes. */
bool ut_same_bytes(const tbuf *a, const tbuf *b);

/* Softmax attention in double of q (Dk) over the keys j in [0, nk) with mask[j] set, rows
 * K + j·ks and V + j·vs; writes out (Dv) and returns the log-sum-exp (-inf and out = 0 when no
 * key is set). Independent of src/ref. */
double ut_attend(const double *q, const double *K, int64_t ks, const double *V, int64_t vs,
                 const unsigned char *mask, int64_t nk, int Dk, int Dv, double scale,
                 double *out);

/* Brute-force Eq. 9 weight: stride-d sub-blocks [u·d, (u+1)·d) inside both the compressed
 * block [i·d, i·d + l) and the selection block [j·lp, (j+1)·lp), counted one by one. */
int ut_overlap(int l, int d, int lp, int64_t i, int64_t j);

/* Σ R·out of the reference forward (the library's row code, in double) over double inputs
 * laid out like p's tensors (kc/vc raw unless P_CMP_COMPRESSED; kw/vw may be NULL when w=0).
 * blocks (B, T, Hkv, n) receives the selection. */
double ut_loss(const prob *p, const double *q, const double *kc, const double *vc,
               const double *ks, const double *vs, const double *kw, const double *vw,
               const double *gates, const double *R, int32_t *blocks);

#endif
