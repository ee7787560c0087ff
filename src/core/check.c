// SPDX-License-Identifier: Apache-2.0
/* check.c — validation of configs and tensor descriptors for every public entry point.
 * Not the place for per-call shape logic (each entry point states its shapes); this file only
 * answers "does this descriptor match, and can it be addressed without overflow".
 * Invariant: a failing check names the field (cfg.<field>, or the tensor's argument name).
 */
#include "internal.h"

#include <math.h>

nsa_status nsa_check_config(nsa_context *ctx, const nsa_config *c) {
    if (!c) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "cfg: NULL pointer");
#define BAD(field, ...) return nsa_fail(ctx, NSA_ERR_CONFIG, "cfg." field ": " __VA_ARGS__)
    if (c->l < 1 || c->l > NSA_MAX_BLOCK) BAD("l", "%d, expected 1..%d", c->l, NSA_MAX_BLOCK);
    if (c->d < 1 || c->d > NSA_MAX_BLOCK) BAD("d", "%d, expected 1..%d", c->d, NSA_MAX_BLOCK);
    if (c->lp < 1 || c->lp > NSA_MAX_BLOCK) BAD("lp", "%d, expected 1..%d", c->lp, NSA_MAX_BLOCK);
    if (c->l % c->d != 0) BAD("d", "%d does not divide l=%d", c->d, c->l);
    if (c->lp % c->d != 0) BAD("d", "%d does not divide lp=%d", c->d, c->lp);
    if (c->n_init < 0 || c->n_init > NSA_MAX_SELECTED)
        BAD("n_init", "%d, expected 0..%d", c->n_init, NSA_MAX_SELECTED);
    if (c->n_local < 0 || c->n_local > NSA_MAX_SELECTED)
        BAD("n_local", "%d, expected 0..%d", c->n_local, NSA_MAX_SELECTED);
    if (c->n < 1 || c->n > NSA_MAX_SELECTED) BAD("n", "%d, expected 1..%d", c->n, NSA_MAX_SELECTED);
    if (c->n < c->n_init + c->n_local) /* both ≤ NSA_MAX_SELECTED: the sum fits int */
        BAD("n", "%d must be >= n_init + n_local = %d", c->n, c->n_init + c->n_local);
    if (c->w < 0) BAD("w", "%d must be >= 0 (0 turns the window off)", c->w);
    if (c->Hq < 1 || c->Hq > NSA_MAX_HEADS) BAD("Hq", "%d, expected 1..%d", c->Hq, NSA_MAX_HEADS);
    if (c->Hkv < 1 || c->Hkv > NSA_MAX_HEADS)
        BAD("Hkv", "%d, expected 1..%d", c->Hkv, NSA_MAX_HEADS);
    if (c->Hq % c->Hkv != 0) BAD("Hkv", "%d does not divide Hq=%d", c->Hkv, c->Hq);
    if (c->Dk < 1 || c->Dk > NSA_MAX_HEAD_DIM)
        BAD("Dk", "%d, expected 1..%d", c->Dk, NSA_MAX_HEAD_DIM);
    if (c->Dv < 1 || c->Dv > NSA_MAX_HEAD_DIM)
        BAD("Dv", "%d, expected 1..%d", c->Dv, NSA_MAX_HEAD_DIM);
    if (!(isfinite(c->scale) && c->scale >= 0.0f))
        BAD("scale", "%g must be finite and >= 0 (0 = 1/sqrt(Dk))", (double)c->scale);
#undef BAD
    return NSA_OK;
}

static nsa_status check_common(nsa_context *ctx, const char *name, const nsa_tensor *t,
                               nsa_dtype dt, nsa_device_kind dev, int ndim, const int64_t *shape) {
    if (t->dtype != dt)
        return nsa_fail(ctx, NSA_ERR_DTYPE, "%s: dtype %s, expected %s", name,
                        nsa_dtype_name(t->dtype), nsa_dtype_name(dt));
    if (t->device.kind != dev)
        return nsa_fail(ctx, NSA_ERR_DEVICE, "%s: on %s, expected %s", name,
                        t->device.kind == NSA_DEVICE_CUDA ? "cuda" : "cpu",
                        dev == NSA_DEVICE_CUDA ? "cuda" : "cpu");
    if (t->ndim != ndim)
        return nsa_fail(ctx, NSA_ERR_SHAPE, "%s: ndim %d, expected %d", name, t->ndim, ndim);
    int64_t maxoff = 0;
    for (int i = 0; i < ndim; i++) {
        if (t->shape[i] < 0)
            return nsa_fail(ctx, NSA_ERR_SHAPE, "%s: shape[%d] = %lld is negative", name, i,
                            (long long)t->shape[i]);
        if (shape && shape[i] >= 0 && t->shape[i] != shape[i])
            return nsa_fail(ctx, NSA_ERR_SHAPE, "%s: shape[%d] = %lld, expected %lld", name, i,
                            (long long)t->shape[i], (long long)shape[i]);
        if (t->stride[i] < 0)
            return nsa_fail(ctx, NSA_ERR_SHAPE, "%s: stride[%d] = %lld is negative", name, i,
                            (long long)t->stride[i]);
        int64_t span;
        if (t->shape[i] > 0) {
            if (!nsa_mul_ok(t->shape[i] - 1, t->stride[i], &span) || maxoff > INT64_MAX - span)
                return nsa_fail(ctx, NSA_ERR_OVERFLOW, "%s: shape x stride overflows int64", name);
            maxoff += span;
        }
    }
    int64_t elems, bytes;
    if (!nsa_add_ok(maxoff, 1, &elems) || !nsa_mul_ok(elems, (int64_t)nsa_dtype_size(dt), &bytes))
        return nsa_fail(ctx, NSA_ERR_OVERFLOW, "%s: byte extent overflows int64", name);
    return NSA_OK;
}

nsa_status nsa_check_tensor(nsa_context *ctx, const char *name, const nsa_tensor *t, nsa_dtype dt,
                            nsa_device_kind dev, int ndim, const int64_t *shape) {
    if (!t || !t->data) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "%s: NULL data", name);
    return check_common(ctx, name, t, dt, dev, ndim, shape);
}

nsa_status nsa_check_opt_tensor(nsa_context *ctx, const char *name, const nsa_tensor *t,
                                nsa_dtype dt, nsa_device_kind dev, int ndim,
                                const int64_t *shape) {
    if (!t || !t->data) return NSA_OK;
    return check_common(ctx, name, t, dt, dev, ndim, shape);
}
