// SPDX-License-Identifier: Apache-2.0
/* kv_cache.h (ref) — the reference's side of the KV cache (the object: src/core/kv_cache.h):
 * the one function that appends a token, the CPU cache operations, and the reference step.
 * Not public (include/nsa.h has the contract; src/route/kv_api.c the entry points); tests may
 * include this to compare states. Pure reference: no router, no device hook.
 * Invariant: a compressed token is computed by nsa_ref_compress_block over the same double rows
 * the forward uses, so decode equals prefill bitwise.
 */
#ifndef NSA_KV_CACHE_H
#define NSA_KV_CACHE_H

#include "ref.h"
#include "../core/kv_cache.h"

/* Appends token (sb, si) of src to cache row b: history, rings, and — when it completes a
 * block — the compressed token, computed by φ = avg with nsa_ref_compress_block exactly as the
 * forward does, or read from (sb, sc) of src->kc/vc with cmp_external. Cannot fail: the caller
 * has validated everything. */
void nsa_kv_push(nsa_kv_cache *c, int b, const nsa_kv_src *src, int64_t sb, int64_t si,
                 int64_t sc);

/* The cache operations of the CPU (host buffers; fill pushes token by token). */
extern const nsa_kv_ops nsa_ref_kv_ops;

/* One decode step on the reference (src/ref/decode.c) of a CPU cache, a validated by
 * nsa_decode_check: every active row pushes its token, then attends through nsa_ref_row. */
nsa_status nsa_ref_decode_step(nsa_context *ctx, nsa_kv_cache *c, const nsa_decode_args *a);

#endif /* NSA_KV_CACHE_H */
