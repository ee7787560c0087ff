// SPDX-License-Identifier: Apache-2.0
/* ref_forward.c — the reference forward: every (b, t) row through nsa_ref_row, results stored in
 * the caller's tensors. Rows are independent, so they run in parallel (OpenMP) without changing
 * any bit of the result.
 * Not a fast path: O(T·(num_cmp + n·lp + w)) per head in double.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void store_row(const nsa_fwd_args *a, const nsa_shape *s, int64_t b, int64_t t,
                      const nsa_ref_row_out *r) {
    const int Hq = s->Hq, Dv = s->Dv, n = a->cfg.n;
    const nsa_tensor *ob[3] = {&a->out_cmp, &a->out_sel, &a->out_win};
    const nsa_tensor *lb[3] = {&a->lse_cmp, &a->lse_sel, &a->lse_win};
    for (int h = 0; h < Hq; h++)
        for (int e = 0; e < Dv; e++)
            nsa_store(&a->out, nsa_off4(&a->out, b, t, h, e), r->out[(int64_t)h * Dv + e]);
    for (int br = 0; br < 3; br++) {
        if (nsa_present(ob[br]))
            for (int h = 0; h < Hq; h++)
                for (int e = 0; e < Dv; e++)
                    nsa_store(ob[br], nsa_off4(ob[br], b, t, h, e),
                              r->o[((int64_t)br * Hq + h) * Dv + e]);
        if (nsa_present(lb[br]))
            for (int h = 0; h < Hq; h++) {
                const nsa_tensor *L = lb[br];
                ((float *)L->data)[b * L->stride[0] + t * L->stride[1] + h * L->stride[2]] =
                    (float)r->lse[br * Hq + h];
            }
    }
    if (nsa_present(&a->sel_blocks)) {
        const nsa_tensor *S = &a->sel_blocks;
        for (int g = 0; g < s->Hkv; g++)
            for (int k = 0; k < n; k++)
                ((int32_t *)S->data)[nsa_off4(S, b, t, g, k)] = r->blocks[g * n + k];
    }
    if (nsa_present(&a->sel_ranges)) {
        const nsa_tensor *R = &a->sel_ranges;
        for (int g = 0; g < s->Hkv; g++)
            for (int k = 0; k < n; k++)
                for (int e = 0; e < 2; e++)
                    ((int32_t *)R->data)[nsa_off4(R, b, t, g, k) + e * R->stride[4]] =
                        (int32_t)r->ranges[((int64_t)g * n + k) * 2 + e];
    }
}

nsa_status nsa_ref_forward(nsa_context *ctx, const nsa_fwd_args *a, const nsa_shape *s) {
    if (s->B == 0 || s->T == 0) return NSA_OK;
    nsa_ref_inputs in;
    NSA_TRY(nsa_ref_load(ctx, a, s, &in));
    const nsa_config *c = &a->cfg;
    const int64_t rows = s->B * s->T;
    int failed = 0;
    const int nt = nsa_ref_threads(ctx);
#pragma omp parallel if (rows > 1) num_threads(nt)
    {
        nsa_ref_scratch w;
        const int Hq = s->Hq, Dv = s->Dv;
        double *o = nsa_malloc(sizeof(double) * (size_t)(3 * Hq * Dv + 3 * Hq + Hq * Dv));
        /* blocks: (Hkv, n) selected, then (Hkv, n) for the caller's block_indices */
        int32_t *blocks = nsa_malloc(sizeof(int32_t) * 2 * (size_t)s->Hkv * (size_t)c->n);
        int64_t *ranges = nsa_malloc(sizeof(int64_t) * (size_t)s->Hkv * (size_t)c->n * 2);
        int *nr = nsa_malloc(sizeof(int) * (size_t)s->Hkv);
        int ok = o && blocks && ranges && nr && nsa_ref_scratch_init(&w, c, s->T - 1) == NSA_OK;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t row = 0; row < rows; row++) {
            if (!ok) continue;
            int64_t b = row / s->T, t = row % s->T;
            nsa_ref_kv kv[3];
            nsa_ref_kv_of(&in, s, b, kv);
            nsa_ref_row_out r = {o, o + 3 * Hq * Dv, o + 3 * Hq * Dv + 3 * Hq, blocks, ranges, nr,
                                 {0, 0, 0}, NULL};
            if (nsa_present(&a->block_indices)) {
                int32_t *given = blocks + s->Hkv * c->n;
                for (int g = 0; g < s->Hkv; g++) nsa_ref_given(a, b, t, g, given + g * c->n);
                r.given = given;
            }
            nsa_ref_row(c, s->scale, t, in.q + row * Hq * s->Dk, in.gates + row * Hq * 3, kv, &w,
                        &r);
            store_row(a, s, b, t, &r);
        }
        if (ok) nsa_ref_scratch_free(&w);
        free(o);
        free(blocks);
        free(ranges);
        free(nr);
    }
    nsa_ref_unload(&in);
    if (failed) return nsa_fail(ctx, NSA_ERR_NOMEM, "reference: out of memory for row scratch");
    return NSA_OK;
}
