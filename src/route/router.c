// SPDX-License-Identifier: Apache-2.0
/* router.c — the one place a branch is given a backend: policy (flags over the device profile,
 * length cutoffs) picks the wanted role, then binding finds a backend of this build that
 * supports the problem, stepping down fast → masked/packed → reference.
 * Not execution (dispatch.c) and not the flags' parsing (flags.c).
 * Invariant: pure — the decision depends only on (problem, device caps, flags, profiles,
 * backend table), and every decision carries the reason for it.
 */
#include "route.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Appends printf text to a reason buffer (truncating). */
static void say(char *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void say(char *r, const char *fmt, ...) {
    size_t n = strlen(r);
    if (n + 1 >= NSA_REASON_LEN) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r + n, NSA_REASON_LEN - n, fmt, ap);
    va_end(ap);
}

static const char *flag_mask_name(nsa_branch br) {
    return br == NSA_BRANCH_WIN ? "NSA_USE_WIN_MASK" : br == NSA_BRANCH_CMP ? "NSA_USE_CMP_MASK"
                                                                            : "NSA_USE_SEL_PACK";
}

/* Keys one query reads at most in branch br: the length the cutoffs compare. */
static int64_t keys_per_query(const nsa_route_problem *p, nsa_branch br) {
    const nsa_config *c = &p->cfg;
    const int64_t T = p->n_docs > 0 ? p->max_seqlen : p->T; /* varlen: the longest document */
    switch (br) {
    case NSA_BRANCH_CMP: return nsa_num_cmp(c, T);
    case NSA_BRANCH_SEL: {
        int64_t k = (int64_t)c->n * c->lp;
        return k < T ? k : T;
    }
    case NSA_BRANCH_WIN: return c->w < T ? c->w : T;
    }
    return 0;
}

/* The role the reference side of branch br runs as: masked/packed unless its flag is off. */
static nsa_role base_role(const nsa_flags *f, nsa_branch br) {
    if (br == NSA_BRANCH_SEL) return f->use_sel_pack ? NSA_ROLE_PACKED : NSA_ROLE_REF;
    int on = br == NSA_BRANCH_WIN ? f->use_win_mask : f->use_cmp_mask;
    return on ? NSA_ROLE_MASKED : NSA_ROLE_REF;
}

/* Policy for cmp and win: FA-2 or the base role. */
static nsa_role policy_fa2(const nsa_flags *f, const nsa_profile *prof, const char *devname,
                           const nsa_route_problem *p, nsa_branch br, char *r) {
    const nsa_role base = base_role(f, br);
    const int win = br == NSA_BRANCH_WIN;
    const int bflag = win ? f->use_fa2_win : f->use_fa2_cmp;
    const char *bname = win ? "NSA_USE_FA2_WIN" : "NSA_USE_FA2_CMP";
    const int64_t cut_flag = win ? f->fa2_min_len_win : f->fa2_min_len_cmp;
    const char *cname = win ? "NSA_FA2_MIN_LEN_WIN" : "NSA_FA2_MIN_LEN_CMP";
    const int64_t len = keys_per_query(p, br);
    say(r, "%s (%s=%d)", nsa_role_name(base), flag_mask_name(br), base == NSA_ROLE_MASKED);
    if (win && p->cfg.w == 0) {
        say(r, "; window branch off (w=0): nothing to accelerate");
        return base;
    }
    if (!win && len == 0) {
        say(r, "; no complete compressed block (T < l): nothing to accelerate");
        return base;
    }
    int want = bflag >= 0 ? bflag : f->use_fa2;
    const char *who = bflag >= 0 ? bname : "NSA_USE_FA2";
    if (want == 0) {
        say(r, "; FA-2 off (%s=0)", who);
        return base;
    }
    int64_t cut = cut_flag >= 0 ? cut_flag : prof ? (win ? prof->fa2_min_len_win
                                                         : prof->fa2_min_len_cmp) : 0;
    const char *cwho = cut_flag >= 0 ? cname : prof ? "profile" : "no profile";
    if (want < 0) {
        if (!prof) {
            say(r, "; FA-2 off by default: no profile for %s", devname);
            return base;
        }
        if (!prof->fa2_parity_accepted) {
            say(r, "; FA-2 opt-in on sm%d: parity not accepted (NSA_USE_FA2=1 enables it "
                   "from %lld keys/query; this shape: %lld)",
                prof->sm, (long long)cut, (long long)len);
            return base;
        }
        who = "parity accepted on this arch";
    }
    if (len < cut) {
        say(r, "; FA-2 (%s) but %lld keys/query < cutoff %lld (%s)", who, (long long)len,
            (long long)cut, cwho);
        return base;
    }
    say(r, "; FA-2 (%s), %lld keys/query >= cutoff %lld (%s)", who, (long long)len,
        (long long)cut, cwho);
    return NSA_ROLE_FA2;
}

/* Policy for a decode step (all branches at once): the split-key step, role fa2, where the
 * device's profile accepted its parity; else the reference step. */
static nsa_role policy_decode(const nsa_flags *f, const nsa_profile *prof,
                              const nsa_device_caps *dev, char *r) {
    if (dev->kind == NSA_DEVICE_CPU) {
        say(r, "reference step (the CPU decodes on the reference)");
        return NSA_ROLE_REF;
    }
    if (f->force_parity) {
        say(r, "reference step (NSA_FORCE_PARITY=1)");
        return NSA_ROLE_REF;
    }
    if (!prof) {
        say(r, "reference step: no profile for sm%d", dev->sm);
        return NSA_ROLE_REF;
    }
    if (!prof->decode_fast_parity_accepted) {
        say(r, "reference step: split-key parity not accepted on sm%d (%s)", dev->sm,
            prof->source);
        return NSA_ROLE_REF;
    }
    say(r, "split-key step: parity accepted on sm%d (%s)", dev->sm, prof->source);
    return NSA_ROLE_FA2;
}

/* Policy for sel: fused selection ("triton") or the base role. */
static nsa_role policy_sel(const nsa_flags *f, const nsa_profile *prof, const char *devname,
                           const nsa_route_problem *p, char *r) {
    const nsa_role base = base_role(f, NSA_BRANCH_SEL);
    const int64_t len = keys_per_query(p, NSA_BRANCH_SEL);
    say(r, "%s (NSA_USE_SEL_PACK=%d)", nsa_role_name(base), base == NSA_ROLE_PACKED);
    if (f->triton_sel_force) {
        say(r, "; fused selection forced (NSA_TRITON_SEL_FORCE=1: experiments and parity "
               "tests; device policy, parity and cutoff ignored)");
        return NSA_ROLE_FUSED_SEL;
    }
    if (f->use_triton_sel == 0) {
        say(r, "; fused selection off (NSA_USE_TRITON_SEL=0)");
        return base;
    }
    if (prof && !prof->triton_sel_allowed) {
        say(r, "; fused selection disabled on sm%d by device policy%s (NSA_TRITON_SEL_FORCE=1 "
               "only for parity tests)",
            prof->sm, f->use_triton_sel == 1 ? ", NSA_USE_TRITON_SEL=1 ignored" : "");
        return base;
    }
    const char *who = "NSA_USE_TRITON_SEL=1";
    int64_t cut = prof ? prof->triton_sel_min_len : 0;
    if (f->use_triton_sel < 0) {
        if (!prof) {
            say(r, "; fused selection off by default: no profile for %s", devname);
            return base;
        }
        if (!prof->triton_sel_parity_accepted) {
            say(r, "; fused selection off until parity is accepted on sm%d "
                   "(NSA_USE_TRITON_SEL=1 opts in from %lld keys/query; this shape: %lld)",
                prof->sm, (long long)cut, (long long)len);
            return base;
        }
        who = "parity accepted on this arch";
    }
    if (len < cut) {
        say(r, "; fused selection (%s) but %lld keys/query < cutoff %lld (profile)", who,
            (long long)len, (long long)cut);
        return base;
    }
    say(r, "; fused selection (%s), %lld keys/query >= cutoff %lld (%s)", who, (long long)len,
        (long long)cut, prof ? "profile" : "no profile");
    return NSA_ROLE_FUSED_SEL;
}

/* The first backend of role for (c, br, dev) with an entry for c's pass whose supports()
 * accepts; appends why others declined. *existed = 1 when some such backend exists. Opt-in
 * rows count only with NSA_USE_HOPPER=1. */
static const nsa_backend *find(const nsa_flags *f, const nsa_call *c, nsa_branch br,
                               const nsa_device_caps *dev, nsa_role role, char *r, int *existed) {
    *existed = 0;
    const nsa_backend *be;
    for (int i = 0; (be = nsa_backend_nth(i)) != NULL; i++) {
        if (be->role != role || be->device != dev->kind || !(be->branches & NSA_BRANCH_BIT(br)) ||
            ((be->branches & NSA_BACKEND_OPT_IN) && !f->use_hopper))
            continue;
        if (c->p.pass == NSA_PASS_DECODE ? !be->decode : !be->fwd) continue; /* no such entry */
        *existed = 1;
        char why[NSA_REASON_LEN] = "";
        if (be->supports(be, c, br, dev, why, sizeof why)) return be;
        say(r, "; %s declines: %s", be->name, why[0] ? why : "unsupported");
    }
    return NULL;
}

/* Binds branch br: wanted role, else base role, else the reference. */
static void bind(const nsa_flags *f, const nsa_toolchain *tc, const nsa_call *c,
                 nsa_branch br, const nsa_device_caps *dev, nsa_role wanted,
                 nsa_route_plan_t *out) {
    char *r = out->d.reason[br];
    nsa_role chain[3] = {wanted, base_role(f, br), NSA_ROLE_REF};
    out->declined[br] = 0;
    if (dev->kind == NSA_DEVICE_CUDA && !dev->compiled) {
        if (tc->cuda_built) {
            say(r, "; no code for sm%d in this build (archs:", dev->sm);
            for (int i = 0; i < tc->narchs; i++) say(r, " sm%d", tc->archs[i]);
            say(r, ") → reference");
        } else {
            say(r, "; no code for sm%d in this build (%s) → reference", dev->sm, tc->note);
        }
        chain[0] = chain[1] = NSA_ROLE_REF;
    }
    for (int k = 0; k < 3; k++) {
        if (k > 0 && chain[k] == chain[k - 1]) continue;
        int existed = 0;
        const nsa_backend *be = find(f, c, br, dev, chain[k], r, &existed);
        if (be) {
            out->be[br] = be;
            out->d.backend[br] = be->name;
            out->d.role[br] = be->role;
            if (chain[k] != wanted) say(r, " → %s", be->name);
            return;
        }
        if (existed) {
            if (chain[k] == NSA_ROLE_FA2 || chain[k] == NSA_ROLE_FUSED_SEL) out->declined[br] = 1;
        } else if (dev->kind == NSA_DEVICE_CPU &&
                   (chain[k] == NSA_ROLE_MASKED || chain[k] == NSA_ROLE_PACKED)) {
            say(r, "; on the CPU the %s role is the reference", nsa_role_name(chain[k]));
        } else if (dev->compiled) {
            say(r, "; no %s backend for %s in this build", nsa_role_name(chain[k]),
                dev->kind == NSA_DEVICE_CPU ? "cpu" : "cuda");
        }
    }
    out->be[br] = NULL;
    out->d.backend[br] = "ref";
    out->d.role[br] = NSA_ROLE_REF;
}

/* Where a failed step of bound backend `bound` reruns: the base role's backend, else the
 * reference's, whichever is not `bound` itself (quiet: no reason text). NULL or `bound` when
 * there is nothing safer. */
static const nsa_backend *fallback_of(const nsa_flags *f, const nsa_call *c,
                                      nsa_branch br, const nsa_device_caps *dev,
                                      const nsa_backend *bound) {
    char scratch[NSA_REASON_LEN] = "";
    int existed;
    const nsa_backend *be = NULL;
    nsa_role base = base_role(f, br);
    if (base != NSA_ROLE_REF && dev->compiled) be = find(f, c, br, dev, base, scratch, &existed);
    if (!be || be == bound) be = find(f, c, br, dev, NSA_ROLE_REF, scratch, &existed);
    return be ? be : bound;
}

static nsa_status check_problem(nsa_context *ctx, const nsa_route_problem *p,
                                const nsa_device_caps *dev) {
    if (!dev) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "dev: NULL pointer");
    NSA_TRY(nsa_check_config(ctx, &p->cfg));
    if (p->B < 0) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "problem.B: %lld < 0", (long long)p->B);
    if (p->T < 0) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "problem.T: %lld < 0", (long long)p->T);
    if (p->n_docs < 0 || (p->n_docs > 0 && p->B != 1))
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "problem.n_docs: %lld documents need B = 1 "
                        "(B = %lld)", (long long)p->n_docs, (long long)p->B);
    if (p->n_docs > 0 && (p->max_seqlen < 0 || p->max_seqlen > p->T))
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "problem.max_seqlen: %lld outside [0, T = %lld]",
                        (long long)p->max_seqlen, (long long)p->T);
    if (p->dtype != NSA_DTYPE_F32 && p->dtype != NSA_DTYPE_BF16 && p->dtype != NSA_DTYPE_F16)
        return nsa_fail(ctx, NSA_ERR_DTYPE, "problem.dtype: %s not allowed (f32, bf16 or f16)",
                        nsa_dtype_name(p->dtype));
    if ((unsigned)p->pass > NSA_PASS_DECODE)
        return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "problem.pass: %d unknown", (int)p->pass);
    if (dev->kind != NSA_DEVICE_CPU && dev->kind != NSA_DEVICE_CUDA)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "dev.kind: %d unknown", (int)dev->kind);
    return NSA_OK;
}

nsa_status nsa_route_plan(nsa_context *ctx, const nsa_call *c, const nsa_device_caps *dev,
                          nsa_route_plan_t *out) {
    if (!c) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "problem: NULL pointer");
    const nsa_route_problem *p = &c->p;
    NSA_TRY(check_problem(ctx, p, dev));
    memset(out, 0, sizeof *out);
    const nsa_flags *f = &ctx->flags;
    const nsa_profile *prof =
        dev->kind == NSA_DEVICE_CUDA ? nsa_profiles_find(ctx->profiles, dev->sm) : NULL;
    char devname[32];
    if (dev->kind == NSA_DEVICE_CPU)
        snprintf(devname, sizeof devname, "cpu");
    else
        snprintf(devname, sizeof devname, "sm%d", dev->sm);
    if (prof)
        say(out->d.profile, "sm%d %s (%s; cutoffs measured: %s)", prof->sm, prof->name,
            prof->source, prof->cutoffs);
    else
        say(out->d.profile, "none for %s: reference by default", devname);
    out->d.force_branch = f->force_branch;
    /* Packed documents on CUDA: no CUDA role reads cu_seqlens yet, so each document runs as
     * its own call on the reference role (docs/varlen.md). */
    const int varlen_ref = p->n_docs > 0 && dev->kind == NSA_DEVICE_CUDA;
    for (int b = 0; b < 3; b++) {
        const nsa_branch br = (nsa_branch)b;
        char *r = out->d.reason[br];
        nsa_role wanted;
        if (p->pass == NSA_PASS_DECODE) {
            wanted = policy_decode(f, prof, dev, r);
        } else if (f->force_parity) {
            say(r, "reference (NSA_FORCE_PARITY=1: every branch, fast paths bypassed)");
            wanted = NSA_ROLE_REF;
        } else if (varlen_ref) {
            say(r, "reference (varlen: %lld documents, the longest %lld; the fast and batched "
                   "roles do not read cu_seqlens yet)", (long long)p->n_docs,
                (long long)p->max_seqlen);
            wanted = NSA_ROLE_REF;
        } else if (br == NSA_BRANCH_SEL) {
            wanted = policy_sel(f, prof, devname, p, r);
        } else {
            wanted = policy_fa2(f, prof, devname, p, br, r);
        }
        out->d.wanted[br] = wanted;
        nsa_flags eff = *f; /* a decode step has no masked/packed variant: wanted, else ref */
        if (f->force_parity || varlen_ref || p->pass == NSA_PASS_DECODE)
            eff.use_win_mask = eff.use_cmp_mask = eff.use_sel_pack = 0;
        bind(&eff, &ctx->toolchain, c, br, dev, wanted, out);
        out->fallback[br] = fallback_of(&eff, c, br, dev, out->be[br]);
    }
    return NSA_OK;
}

nsa_status nsa_route_explain(nsa_context *ctx, const nsa_route_problem *p,
                             const nsa_device_caps *dev, nsa_route_decision *out) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!out) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "out: NULL pointer");
    if (!p) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "problem: NULL pointer");
    const nsa_call c = {*p, NSA_OPND_ALL, 0}; /* no tensors: contiguous, aligned operands */
    nsa_route_plan_t plan;
    NSA_TRY(nsa_route_plan(ctx, &c, dev, &plan));
    *out = plan.d;
    return NSA_OK;
}
