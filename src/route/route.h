// SPDX-License-Identifier: Apache-2.0
/* route.h — internals of the router shared by src/route/, the context and the tools: device
 * profiles, flag formatting, strict causality checks.
 * Not the backend interface (backend.h) nor policy (router.c).
 * Invariant: a profile set is only ever replaced whole, so a failed load changes nothing.
 */
#ifndef NSA_ROUTE_ROUTE_H
#define NSA_ROUTE_ROUTE_H

#include "backend.h"

/* One device profile: profiles/smNN.yaml, or its compiled-in default. */
typedef struct {
    int sm;                         /* arch: sm80 -> 80                                       */
    char name[64];                  /* name: "A100"                                           */
    int fa2_parity_accepted;        /* fa2.parity_accepted: FA-2 on by default above cutoffs */
    int64_t fa2_min_len_win;        /* fa2.min_len_win: window keys per query, min(w, T)     */
    int64_t fa2_min_len_cmp;        /* fa2.min_len_cmp: compressed keys, num_cmp(T)          */
    int triton_sel_allowed;         /* sel.triton.allowed: 0 = off unless NSA_TRITON_SEL_FORCE */
    int triton_sel_parity_accepted; /* sel.triton.parity_accepted                            */
    int64_t triton_sel_min_len;     /* sel.triton.min_len: selected keys, min(n·lp, T)        */
    int decode_fast_parity_accepted; /* decode.fast.parity_accepted: split-key decode step    */
    char cutoffs[128];              /* cutoffs.measured: card and date, or why not yet        */
    char source[200];               /* "compiled-in" or the file it came from                 */
} nsa_profile;

#define NSA_PROFILE_MAX 16
typedef struct nsa_profile_set {
    int n;
    nsa_profile p[NSA_PROFILE_MAX];
} nsa_profile_set;

/* The compiled-in defaults (equal to the shipped profiles/ files; a test checks it). */
void nsa_profiles_builtin(nsa_profile_set *out);
/* Parses one profile file; NSA_ERR_PROFILE naming path and line, NSA_ERR_IO if unreadable. */
nsa_status nsa_profile_parse_file(nsa_context *ctx, const char *path, nsa_profile *out);
/* Loads every smNN.yaml of dir over a copy of base into *out (base untouched on error). */
nsa_status nsa_profiles_load_dir(nsa_context *ctx, const char *dir, const nsa_profile_set *base,
                                 nsa_profile_set *out);
/* The profile of architecture sm, or NULL. */
const nsa_profile *nsa_profiles_find(const nsa_profile_set *set, int sm);
/* Context creation: builtin, then $NSA_PROFILE_DIR (must load) or the installed directory (if
 * it exists). Allocates ctx->profiles. */
nsa_status nsa_profiles_init(nsa_context *ctx);
/* Writes a profile as the `key: value` lines of its file. */
void nsa_profile_format(const nsa_profile *p, char *buf, size_t len);

/* ---- flags (flags.c) ---- */
void nsa_flags_default(nsa_flags *f);
nsa_status nsa_flags_from_env(nsa_context *ctx, nsa_flags *out);

/* ---- strict causality (strict.c) ---- */

/* Checks host ranges (B, T, Hkv, n, 2) of a forward over T positions: 0 ≤ start ≤ end ≤ t+1.
 * NSA_ERR_CAUSALITY naming the first offending slot; counted and logged (warn.causality). */
nsa_status nsa_strict_ranges(nsa_context *ctx, const int32_t *ranges, int64_t B, int64_t T,
                             int Hkv, int n, int64_t t0);
/* Checks the spans branch br (cmp, win) of backend be (NULL: the definition) reads for every
 * query of w: hi ≤ t+1 and lo ≥ 0. */
nsa_status nsa_strict_spans(nsa_context *ctx, const nsa_backend *be, nsa_branch br,
                            const nsa_fwd_work *w);

/* ---- backends and device caps (backends.c) ---- */

/* Backend i of nsa_backends_all's order without building the list (thread-safe); NULL past
 * the end. */
const nsa_backend *nsa_backend_nth(int i);

/* Caps of the device a call's tensors live on (CPU, or CUDA device index). */
nsa_status nsa_device_caps_of(nsa_context *ctx, nsa_device dev, nsa_device_caps *out);

/* The KV-cache operations of the device cache c lives on (NSA_ERR_UNSUPPORTED naming
 * desc.device when this build has none: a CUDA cache in a CPU build). */
nsa_status nsa_kv_ops_of(nsa_context *ctx, const nsa_kv_cache *c, const nsa_kv_ops **out);

#endif /* NSA_ROUTE_ROUTE_H */
