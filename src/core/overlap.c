// SPDX-License-Identifier: Apache-2.0
/* overlap.c — do output tensors share memory? The aliasing rule of nsa_backward: two gradient
 * tensors are either the same view (data, shape, strides: they receive the sum) or share no
 * byte; and no output tensor overlaps itself.
 * Not a general solver: a view must "nest" (its dims, sorted by stride, each step past the span
 * of the smaller ones), which every view made by slicing, permuting or padding a buffer does.
 * Invariant: exact for nesting views: interleaved but disjoint views (dK and dV packed in one
 * buffer) pass; a byte shared by two different views always fails, naming both.
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>

typedef struct {
    int64_t lo; /* first byte */
    int nd;
    int64_t shape[NSA_MAX_DIMS], stride[NSA_MAX_DIMS]; /* strides in bytes */
    int64_t esz;
} view;

/* One past the last byte. */
static int64_t view_hi(const view *v) {
    int64_t hi = v->lo + v->esz;
    for (int i = 0; i < v->nd; i++) hi += (v->shape[i] - 1) * v->stride[i];
    return hi;
}

static int64_t view_numel(const view *v) {
    int64_t n = 1;
    for (int i = 0; i < v->nd; i++) n *= v->shape[i];
    return n;
}

/* A nesting view whose extent holds exactly its elements is one contiguous interval. */
static int view_dense(const view *v) { return view_hi(v) - v->lo == view_numel(v) * v->esz; }

static int64_t floor_div(int64_t a, int64_t b) { /* b > 0 */
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* 1 if a and b share a byte (or the budget ran out: then *undecided is set). Splits the less
 * dense view along its largest stride, visiting only slices whose extent meets the other's. */
static int views_meet(const view *a, const view *b, int64_t *budget, int *undecided) {
    if (--*budget < 0) {
        *undecided = 1;
        return 1;
    }
    const int64_t ahi = view_hi(a), bhi = view_hi(b);
    if (ahi <= b->lo || bhi <= a->lo) return 0;
    const int da = view_dense(a), db = view_dense(b);
    if (da && db) return 1;
    const view *x = a, *o = b;
    if (da || (!db && bhi - b->lo > ahi - a->lo)) x = b, o = a;
    int k = -1;
    for (int i = 0; i < x->nd; i++)
        if (x->shape[i] > 1 && (k < 0 || x->stride[i] > x->stride[k])) k = i;
    if (k < 0 || x->stride[k] == 0) return 1; /* one element, or not nesting: cannot split */
    const int64_t s = x->stride[k];
    const int64_t ext = view_hi(x) - x->lo - (x->shape[k] - 1) * s; /* extent of one slice */
    const int64_t ohi = view_hi(o);
    int64_t i0 = floor_div(o->lo - ext - x->lo, s) + 1, i1 = floor_div(ohi - 1 - x->lo, s);
    if (i0 < 0) i0 = 0;
    if (i1 > x->shape[k] - 1) i1 = x->shape[k] - 1;
    view sl = *x;
    sl.shape[k] = 1;
    for (int64_t i = i0; i <= i1; i++) {
        sl.lo = x->lo + i * s;
        if (views_meet(&sl, o, budget, undecided)) return 1;
    }
    return 0;
}

static void view_of(const nsa_tensor *t, view *v) {
    memset(v, 0, sizeof *v);
    v->esz = (int64_t)nsa_dtype_size(t->dtype);
    v->lo = (int64_t)(uintptr_t)t->data;
    v->nd = t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        v->shape[i] = t->shape[i];
        /* A size-1 dim never steps, and its stride may be anything (INT64_MAX from a fuzzer,
         * PyTorch's arbitrary strides): only a dim that steps has a byte stride, which the
         * extent check already bounded. */
        v->stride[i] = t->shape[i] > 1 ? t->stride[i] * v->esz : 0;
    }
}

/* Sorted by stride, each dim of size > 1 must step past the span of the smaller ones. */
static int view_nests(const view *v) {
    int idx[NSA_MAX_DIMS], m = 0;
    for (int i = 0; i < v->nd; i++)
        if (v->shape[i] > 1) idx[m++] = i;
    for (int a = 1; a < m; a++)
        for (int b = a; b > 0 && v->stride[idx[b]] < v->stride[idx[b - 1]]; b--) {
            int tmp = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = tmp;
        }
    int64_t span = v->esz; /* bytes covered by the dims below */
    for (int a = 0; a < m; a++) {
        const int i = idx[a];
        if (v->stride[i] < span) return 0;
        span = v->stride[i] * (v->shape[i] - 1) + span;
    }
    return 1;
}

static int same_view(const nsa_tensor *x, const nsa_tensor *y) {
    if (x->data != y->data || x->dtype != y->dtype || x->ndim != y->ndim) return 0;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i] || x->stride[i] != y->stride[i]) return 0;
    return 1;
}

nsa_status nsa_check_disjoint(nsa_context *ctx, int n, const char *const *names,
                              const nsa_tensor *const *ts) {
    for (int i = 0; i < n; i++) {
        if (!nsa_present(ts[i]) || nsa_tensor_numel(ts[i]) == 0) continue;
        view vi;
        view_of(ts[i], &vi);
        if (!view_nests(&vi))
            return nsa_fail(ctx, NSA_ERR_INVALID_ARG,
                            "%s: its strides make elements overlap (an output needs distinct "
                            "elements)",
                            names[i]);
        for (int j = 0; j < i; j++) {
            if (!nsa_present(ts[j]) || nsa_tensor_numel(ts[j]) == 0 || same_view(ts[i], ts[j]))
                continue;
            view vj;
            view_of(ts[j], &vj);
            int64_t budget = (int64_t)1 << 24;
            int undecided = 0;
            if (views_meet(&vj, &vi, &budget, &undecided))
                return nsa_fail(ctx, NSA_ERR_INVALID_ARG,
                                undecided ? "%s and %s: could not prove these views disjoint; "
                                            "pass separate buffers"
                                          : "%s and %s overlap in memory (only identical views "
                                            "may alias; they receive the sum)",
                                names[j], names[i]);
        }
    }
    return NSA_OK;
}
