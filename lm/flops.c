// SPDX-License-Identifier: Apache-2.0
/* flops.c — the model FLOPs of one training token, counted from the model config, for the MFU
 * of the progress line (docs/training.md, "MFU").
 * Not a profile: it counts what the model must compute (multiply-adds × 2), not what a kernel
 * does — no recomputation, no padding, no elementwise work.
 * Invariant: the matmul term covers exactly the 2-D weights of lm/model.c's layout except the
 * embedding (a lookup) and φ (counted per compressed block); test_lm_report checks it so.
 */
#include "lm.h"

double lm_matmul_params(const lm_model_config *m) {
    const double C = m->dim, F = m->ffn, Hq = m->n_head, Hkv = m->n_kv_head;
    const double D = m->n_head > 0 ? (double)(m->dim / m->n_head) : 0.0;
    /* wq, wk/wv of three branches, the gate projection wg (3 per head), wo; SwiGLU w1 w3 w2 */
    const double layer = C * Hq * D + 6.0 * C * Hkv * D + C * 3.0 * Hq + Hq * D * C + 3.0 * C * F;
    return m->n_layer * layer + (double)LM_VOCAB * C; /* + the output head */
}

double lm_attn_reads(const lm_model_config *m, int T) {
    const nsa_config c = lm_nsa_config(m);
    double sum = 0.0;
    for (int64_t s = 1; s <= T; s++) { /* query at position s-1 sees s tokens */
        const double sel = (double)c.n * c.lp < (double)s ? (double)c.n * c.lp : (double)s;
        const double win = (double)c.w < (double)s ? (double)c.w : (double)s;
        sum += (double)nsa_num_cmp(&c, s) + sel + win;
    }
    return T > 0 ? sum / T : 0.0;
}

double lm_flops_per_token(const lm_model_config *m, int T) {
    const double D = m->n_head > 0 ? (double)(m->dim / m->n_head) : 0.0;
    /* forward: 2 per multiply-add; QKᵀ and PV are 2·(Dk + Dv) per (query head, key read) */
    double fwd = 2.0 * lm_matmul_params(m);
    fwd += m->n_layer * m->n_head * 2.0 * (D + D) * lm_attn_reads(m, T);
    if (m->phi == LM_PHI_LEARNED) { /* φ's MLP (l·D → D → D) on k and v per KV head, per d tokens */
        const double mlp = 2.0 * (m->l * D * D + D * D);
        fwd += m->n_layer * 2.0 * m->n_kv_head * mlp / (m->d > 0 ? m->d : 1);
    }
    return 3.0 * fwd; /* the backward computes two products of each forward one */
}
