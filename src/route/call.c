// SPDX-License-Identifier: Apache-2.0
/* call.c — what the router sees of a call: its problem (config, sizes, dtype, pass) and the
 * facts only its tensors tell (16-byte operand alignment, caller-compressed cmp keys).
 * Not policy (router.c) and not argument checking (src/core/args.c: the call is valid here).
 * Invariant: nsa_call_tc_operands applies nsa_rows16, the rule the CUDA tensor-core launchers
 * apply, to the operands that branch's kernels read — so "supported" and "launched" agree.
 */
#include "route.h"

#include <string.h>

nsa_route_problem nsa_route_problem_of(const nsa_fwd_args *a, const nsa_shape *s,
                                       nsa_pass pass) {
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = a->cfg;
    p.B = s->B;
    p.T = s->T;
    p.dtype = s->dt;
    p.pass = pass;
    p.n_docs = s->n_docs;
    p.max_seqlen = s->max_seqlen;
    return p;
}

/* A 4-d operand passes nsa_rows16 (an absent or empty one does not: nothing to load). */
static int rows16(const nsa_tensor *t) {
    if (!nsa_present(t) || t->ndim != 4) return 0;
    for (int i = 0; i < 4; i++)
        if (t->shape[i] == 0) return 0;
    return nsa_rows16(t->data, t->stride[0], t->stride[1], t->stride[2], t->stride[3],
                      t->shape[3]);
}

nsa_call nsa_call_of(const nsa_fwd_args *a, const nsa_bwd_args *g, const nsa_shape *s,
                     nsa_pass pass) {
    nsa_call c;
    memset(&c, 0, sizeof c);
    c.p = nsa_route_problem_of(a, s, pass);
    c.cmp_given = a->cmp_compressed != 0;
    if (rows16(&a->q)) c.aligned |= NSA_OPND_Q;
    if (rows16(&a->k_cmp) && rows16(&a->v_cmp)) c.aligned |= NSA_OPND_CMP;
    if (rows16(&a->k_sel) && rows16(&a->v_sel)) c.aligned |= NSA_OPND_SEL;
    if (rows16(&a->k_win) && rows16(&a->v_win)) c.aligned |= NSA_OPND_WIN;
    if (g && rows16(&g->dout)) c.aligned |= NSA_OPND_DOUT;
    return c;
}

int nsa_call_tc_operands(const nsa_call *c, nsa_branch br, const char **why) {
    const unsigned a = c->aligned;
    if (!(a & NSA_OPND_Q)) {
        *why = "q rows not contiguous and 16-byte aligned";
        return 0;
    }
    if (c->p.pass == NSA_PASS_BACKWARD && !(a & NSA_OPND_DOUT)) {
        *why = "dout rows not contiguous and 16-byte aligned";
        return 0;
    }
    switch (br) {
    case NSA_BRANCH_CMP:
        if (c->cmp_given && !(a & NSA_OPND_CMP)) {
            *why = "k_cmp/v_cmp rows not contiguous and 16-byte aligned, or empty";
            return 0;
        }
        return 1;
    case NSA_BRANCH_SEL:
        if (!(a & NSA_OPND_SEL)) {
            *why = "k_sel/v_sel rows not contiguous and 16-byte aligned";
            return 0;
        }
        return 1;
    case NSA_BRANCH_WIN:
        if (c->p.cfg.w > 0 && !(a & NSA_OPND_WIN)) {
            *why = "k_win/v_win rows not contiguous and 16-byte aligned";
            return 0;
        }
        return 1;
    }
    *why = "unknown branch";
    return 0;
}
