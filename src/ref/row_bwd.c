// SPDX-License-Identifier: Apache-2.0
/* row_bwd.c — the backward of one softmax attention of one query over a list of key ranges
 * (the counterpart of nsa_ref_attend), and the thread count every reference loop uses.
 * Not a whole backward: ref_backward.c decides which rows, branches and accumulators.
 * Invariant: keys are visited in range order and every sum runs in that fixed order, so a
 * caller that owns its accumulators gets bitwise reproducible gradients.
 */
#include "ref.h"

#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int nsa_ref_threads(const nsa_context *ctx) {
    if (ctx && ctx->threads > 0) return ctx->threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void nsa_ref_attend_bwd(const double *q, const double *K, int64_t ks, const double *V, int64_t vs,
                        int Dk, int Dv, const int64_t *ranges, int nr, double scale,
                        const double *o, double lse, const double *dO, double *dq, double *dK,
                        int64_t dks, double *dV, int64_t dvs) {
    if (nr == 0 || lse == -INFINITY) return;
    double dOo = 0.0; /* dO·o = Σ_j p_j (dO·v_j): the softmax Jacobian's shared term */
    for (int e = 0; e < Dv; e++) dOo += dO[e] * o[e];
    for (int r = 0; r < nr; r++) {
        for (int64_t j = ranges[2 * r]; j < ranges[2 * r + 1]; j++) {
            const double *kj = K + j * ks, *vj = V + j * vs;
            double dot = 0.0, dp = 0.0;
            for (int e = 0; e < Dk; e++) dot += q[e] * kj[e];
            for (int e = 0; e < Dv; e++) dp += dO[e] * vj[e];
            const double p = exp(dot * scale - lse);
            const double ds = p * (dp - dOo) * scale;
            if (dq)
                for (int e = 0; e < Dk; e++) dq[e] += ds * kj[e];
            if (dK)
                for (int e = 0; e < Dk; e++) dK[j * dks + e] += ds * q[e];
            if (dV)
                for (int e = 0; e < Dv; e++) dV[j * dvs + e] += p * dO[e];
        }
    }
}
