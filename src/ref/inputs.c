// SPDX-License-Identifier: Apache-2.0
/* inputs.c — converting a call's tensors (any dtype, any strides) into the contiguous double
 * arrays the reference works on, and φ = avg compression of the raw cmp keys/values.
 * Invariant: f32/bf16/f16 values convert exactly; a tensor shared by branches converts once.
 */
#include "ref.h"

#include <stdlib.h>
#include <string.h>

double *nsa_ref_gather(const nsa_tensor *t) {
    int64_t n = nsa_tensor_numel(t);
    double *x = nsa_malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!x) return NULL;
    int64_t i = 0;
    for (int64_t a = 0; a < t->shape[0]; a++)
        for (int64_t b = 0; b < t->shape[1]; b++)
            for (int64_t c = 0; c < t->shape[2]; c++)
                for (int64_t d = 0; d < t->shape[3]; d++) x[i++] = nsa_load(t, nsa_off4(t, a, b, c, d));
    return x;
}

static int same_view(const nsa_tensor *x, const nsa_tensor *y) {
    if (x->data != y->data || x->dtype != y->dtype || x->ndim != y->ndim) return 0;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i] || x->stride[i] != y->stride[i]) return 0;
    return 1;
}

/* Gathers t unless an identical view was gathered already. */
static double *gather_shared(nsa_ref_inputs *in, const nsa_tensor *t, const nsa_tensor **seen,
                             double **seen_x, int *nseen) {
    for (int i = 0; i < *nseen; i++)
        if (same_view(seen[i], t)) return seen_x[i];
    double *x = nsa_ref_gather(t);
    if (!x) return NULL;
    in->owned[in->nowned++] = x;
    seen[*nseen] = t;
    seen_x[*nseen] = x;
    (*nseen)++;
    return x;
}

/* φ = avg over raw (B, T, Hkv, D) into (B, Tc, Hkv, D). */
static void compress(const nsa_config *c, const nsa_shape *s, const double *raw, int D,
                     double *out) {
    const int64_t rs = (int64_t)s->Hkv * D;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t i = 0; i < s->Tc; i++)
            for (int hk = 0; hk < s->Hkv; hk++)
                nsa_ref_compress_block(raw + (b * s->T + i * c->d) * rs + (int64_t)hk * D, rs, c->l,
                                       D, out + (b * s->Tc + i) * rs + (int64_t)hk * D);
}

nsa_status nsa_ref_load(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s,
                        nsa_ref_inputs *in) {
    memset(in, 0, sizeof *in);
    const nsa_tensor *seen[8];
    double *seen_x[8];
    int nseen = 0;
#define G(dst, t)                                                                                  \
    do {                                                                                           \
        if (!((dst) = gather_shared(in, (t), seen, seen_x, &nseen))) goto oom;                     \
    } while (0)
    G(in->q, &a->q);
    G(in->gates, &a->gates);
    G(in->ks, &a->k_sel);
    G(in->vs, &a->v_sel);
    if (nsa_present(&a->k_win)) G(in->kw, &a->k_win);
    if (nsa_present(&a->v_win)) G(in->vw, &a->v_win);
    if (a->cmp_compressed) {
        if (s->Tc > 0) {
            G(in->kc, &a->k_cmp);
            G(in->vc, &a->v_cmp);
        }
    } else {
        double *rk, *rv;
        G(rk, &a->k_cmp);
        G(rv, &a->v_cmp);
        size_t nk = (size_t)(s->B * (s->Tc > 0 ? s->Tc : 1) * s->Hkv);
        in->kc = nsa_malloc(sizeof(double) * nk * (size_t)s->Dk);
        in->vc = nsa_malloc(sizeof(double) * nk * (size_t)s->Dv);
        if (!in->kc || !in->vc) {
            free(in->kc);
            free(in->vc);
            in->kc = in->vc = NULL;
            goto oom;
        }
        in->owned[in->nowned++] = in->kc;
        in->owned[in->nowned++] = in->vc;
        compress(&a->cfg, s, rk, s->Dk, in->kc);
        compress(&a->cfg, s, rv, s->Dv, in->vc);
    }
#undef G
    return NSA_OK;
oom:
    nsa_ref_unload(in);
    return nsa_fail(ctx, NSA_ERR_NOMEM, "reference: out of memory converting inputs");
}

void nsa_ref_unload(nsa_ref_inputs *in) {
    for (int i = 0; i < in->nowned; i++) free(in->owned[i]);
    memset(in, 0, sizeof *in);
}

void nsa_ref_kv_of(const nsa_ref_inputs *in, const nsa_shape *s, int64_t b, nsa_ref_kv kv[3]) {
    const int64_t Dk = s->Dk, Dv = s->Dv, H = s->Hkv;
    memset(kv, 0, 3 * sizeof *kv);
    /* No compressed block at all (cmp_compressed, T < l): strides 0 over a dummy, never read,
     * so that row code may still offset the pointers by a head without touching NULL. */
    static const double none[1] = {0.0};
    if (in->kc && in->vc)
        kv[NSA_BRANCH_CMP] = (nsa_ref_kv){in->kc + b * s->Tc * H * Dk, in->vc + b * s->Tc * H * Dv,
                                          H * Dk, H * Dv, Dk, Dv, 0};
    else
        kv[NSA_BRANCH_CMP] = (nsa_ref_kv){none, none, 0, 0, 0, 0, 0};
    kv[NSA_BRANCH_SEL] = (nsa_ref_kv){in->ks + b * s->T * H * Dk, in->vs + b * s->T * H * Dv,
                                      H * Dk, H * Dv, Dk, Dv, 0};
    if (in->kw && in->vw)
        kv[NSA_BRANCH_WIN] = (nsa_ref_kv){in->kw + b * s->T * H * Dk, in->vw + b * s->T * H * Dv,
                                          H * Dk, H * Dv, Dk, Dv, 0};
}
