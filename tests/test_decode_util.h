// SPDX-License-Identifier: Apache-2.0
/* test_decode_util.h — what the decode tests share: a random sequence of NSA inputs, its
 * reference prefill, decode steps fed from it, and a byte snapshot of a cache's whole state.
 * Not assertions: the cases in test_decode*.c check; these helpers only build and copy.
 * Invariant: every token value is stored in the sequence's dtype, so a decode step and a prefill
 * read the very same values.
 */
#ifndef TEST_DECODE_UTIL_H
#define TEST_DECODE_UTIL_H

#include "harness.h"

#include <stddef.h>

/* One batch of sequences of T tokens: every input of nsa_forward, (B, T, ...) in dtype dt. */
typedef struct {
    nsa_config c;
    nsa_dtype dt;
    int B, T;
    tbuf q, kc, vc, ks, vs, kw, vw, g; /* kc/vc raw cmp keys/values */
    tbuf out;                          /* (B, T, Hq, Dv): the reference prefill of all T */
} seq;

/* The small config most cases use: l=8 d=4 lp=8 n=4 (1 initial, 2 local) w=13, Hq=4 Hkv=2
 * Dk=8 Dv=6 — several compressed and selection blocks and a window ring wrap within 80 tokens. */
nsa_config dec_cfg(void);
/* Random inputs (q, k, v ~ N(0,1), gates ~ U[0,1]) and their reference prefill into s->out. */
int seq_new(nsa_context *ctx, seq *s, nsa_config c, nsa_dtype dt, int B, int T);
void seq_free(seq *s);
/* nsa_fwd_args over tokens [0, T) of s (views, no copy) writing into out (B, T, Hq, Dv). */
nsa_fwd_args seq_fwd(const seq *s, int T, const nsa_tensor *out);
/* (B, T, ...) view of tokens [0, T) of buffer b. */
nsa_tensor seq_view(const tbuf *b, int T);

/* Inputs of one decode step: row b takes token pos[b] of s (pos[b] < 0: the row is inactive). */
typedef struct {
    tbuf q, kc, vc, ks, vs, kw, vw, g, out, kcn, vcn;
    uint8_t *active;
    nsa_decode_args a;
} step_in;
void step_new(step_in *st, const seq *s);
void step_fill(step_in *st, const seq *s, const int64_t *pos);
void step_free(step_in *st);

/* 1 when row b of the step's output equals row (b, t) of ref (B, T, Hq, Dv) bit for bit. */
int step_out_equals(const step_in *st, const tbuf *ref, int b, int64_t t);

/* A cache for s's config/dtype with B rows of max_len tokens (cmp_external as given). */
nsa_kv_cache *dec_cache(nsa_context *ctx, const seq *s, int B, int64_t max_len, int cmp_external);

/* The whole state of a cache as bytes (malloc'd, *n bytes): rows and every buffer. */
unsigned char *kv_snapshot(const nsa_kv_cache *c, size_t *n);
/* Fills every key/value buffer of c with NaN bytes (slots no valid token occupies included). */
void kv_poison(nsa_kv_cache *c);

/* Bitwise equality of element i of two buffers of one dtype. */
int same_bits(const tbuf *a, int64_t i, const tbuf *b, int64_t j);

#endif
