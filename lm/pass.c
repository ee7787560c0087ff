/* pass.c — the passes over the model: forward (training, or prefill into KV caches), backward,
 * and one-token decode, all through one layer function so the three cannot disagree.
 * Not the layers themselves (lm/layers.c) nor the parameter table (lm/model.c).
 * Invariant: decode at position t computes exactly what the forward computes for row t; the
 * only difference is which library call runs the attention (nsa_forward, nsa_kv_cache_prefill
 * or nsa_decode_step).
 */
#include "lm.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PASS_TRAIN, PASS_PREFILL, PASS_DECODE } pass_mode;

static int fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && n) vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int lib_fail(lm_model *m, int layer, const char *what, nsa_status st, char *err,
                    size_t n) {
    return fail(err, n, "layer %d: %s: %s: %s", layer, what, nsa_status_name(st),
                nsa_context_message(m->ctx));
}

/* The library's view of layer A's attention inputs for (B, T). */
static void fwd_args(const lm_model *m, const lm_layer_act *A, int B, int T, nsa_fwd_args *a) {
    const int Hq = m->cfg.n_head, Hkv = m->cfg.n_kv_head, D = m->D;
    memset(a, 0, sizeof *a);
    a->cfg = m->nsa;
    a->q = nsa_tensor_4d(A->q, NSA_DTYPE_F32, B, T, Hq, D);
    if (m->cfg.phi == LM_PHI_LEARNED) {
        const int64_t Tc = nsa_num_cmp(&m->nsa, T);
        a->cmp_compressed = 1;
        a->k_cmp = nsa_tensor_4d(A->kc, NSA_DTYPE_F32, B, Tc, Hkv, D);
        a->v_cmp = nsa_tensor_4d(A->vc, NSA_DTYPE_F32, B, Tc, Hkv, D);
    } else {
        a->k_cmp = nsa_tensor_4d(A->k[0], NSA_DTYPE_F32, B, T, Hkv, D);
        a->v_cmp = nsa_tensor_4d(A->v[0], NSA_DTYPE_F32, B, T, Hkv, D);
    }
    a->k_sel = nsa_tensor_4d(A->k[1], NSA_DTYPE_F32, B, T, Hkv, D);
    a->v_sel = nsa_tensor_4d(A->v[1], NSA_DTYPE_F32, B, T, Hkv, D);
    a->k_win = nsa_tensor_4d(A->k[2], NSA_DTYPE_F32, B, T, Hkv, D);
    a->v_win = nsa_tensor_4d(A->v[2], NSA_DTYPE_F32, B, T, Hkv, D);
    a->gates = nsa_tensor_4d(A->g, NSA_DTYPE_F32, B, T, Hq, 3);
    a->out = nsa_tensor_4d(A->att, NSA_DTYPE_F32, B, T, Hq, D);
}

/* Decode with learned φ: when this token completes a block, run φ over the block (the cache's
 * l-1 raw tokens before it, then this one) into A->kc / A->vc (1, 1, Hkv, D). */
static int decode_phi(lm_model *m, int layer, nsa_kv_cache *cache, char *err, size_t n) {
    const lm_model_config *c = &m->cfg;
    const int Hkv = c->n_kv_head, D = m->D, l = c->l;
    lm_layer_act *A = &m->act[layer];
    const lm_layer_w *W = &m->w.layer[layer];
    const int64_t row = (int64_t)Hkv * D;
    /* blk (l, Hkv, D) raw keys, blk_v likewise, u (Hkv, l·D), h (2, Hkv, D) */
    float *blk = malloc(sizeof(float) * (size_t)(3 * l * row + 2 * row));
    if (!blk) return fail(err, n, "out of memory in decode");
    float *blk_v = blk + l * row, *u = blk + 2 * l * row, *h = u + l * row;
    nsa_tensor tk = nsa_tensor_3d(blk, NSA_DTYPE_F32, l - 1, Hkv, D);
    nsa_tensor tv = nsa_tensor_3d(blk_v, NSA_DTYPE_F32, l - 1, Hkv, D);
    nsa_status st = l > 1 ? nsa_kv_cache_raw_cmp_tail(m->ctx, cache, 0, tk, tv) : NSA_OK;
    if (st != NSA_OK) {
        free(blk);
        return lib_fail(m, layer, "nsa_kv_cache_raw_cmp_tail", st, err, n);
    }
    memcpy(blk + (l - 1) * row, A->k[0], sizeof(float) * (size_t)row);
    memcpy(blk_v + (l - 1) * row, A->v[0], sizeof(float) * (size_t)row);
    lm_phi(A->kc, u, h, blk, W->phi_pe[0], W->phi_w1[0], W->phi_w2[0], 1, l, Hkv, D, l, c->d);
    lm_phi(A->vc, u, h, blk_v, W->phi_pe[1], W->phi_w1[1], W->phi_w2[1], 1, l, Hkv, D, l, c->d);
    free(blk);
    return 0;
}

/* Layer `layer` over A->x (B, T) at positions pos0.., output into xout (N, C). */
static int layer_forward(lm_model *m, int layer, int B, int T, int64_t pos0, pass_mode mode,
                         nsa_kv_cache *cache, float *xout, char *err, size_t n) {
    const lm_model_config *c = &m->cfg;
    const int N = B * T, C = c->dim, D = m->D, Hq = c->n_head, Hkv = c->n_kv_head, F = c->ffn;
    lm_layer_act *A = &m->act[layer];
    const lm_layer_w *W = &m->w.layer[layer];

    lm_rmsnorm(A->ln1, A->rstd1, A->x, W->ln1, N, C);
    lm_matmul(A->q, A->ln1, W->wq, N, C, Hq * D, 0);
    lm_rope(A->q, m->rope_cos, m->rope_sin, B, T, Hq, D, pos0, 0);
    for (int b = 0; b < 3; b++) {
        lm_matmul(A->k[b], A->ln1, W->wk[b], N, C, Hkv * D, 0);
        lm_rope(A->k[b], m->rope_cos, m->rope_sin, B, T, Hkv, D, pos0, 0);
        lm_matmul(A->v[b], A->ln1, W->wv[b], N, C, Hkv * D, 0);
    }
    lm_matmul(A->z, A->ln1, W->wg, N, C, Hq * 3, 0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < Hq * 3; j++) A->z[(int64_t)i * Hq * 3 + j] += W->bg[j];
    lm_gates(A->g, A->z, (int64_t)N * Hq, c->gate, c->gate_temp);

    nsa_status st;
    if (mode == PASS_DECODE) {
        const int emits = c->phi == LM_PHI_LEARNED && nsa_kv_cache_emits_next(cache, 0) == 1;
        if (emits && decode_phi(m, layer, cache, err, n)) return -1;
        nsa_decode_args a;
        memset(&a, 0, sizeof a);
        a.cfg = m->nsa;
        a.q = nsa_tensor_4d(A->q, NSA_DTYPE_F32, 1, 1, Hq, D);
        a.k_cmp = nsa_tensor_4d(A->k[0], NSA_DTYPE_F32, 1, 1, Hkv, D);
        a.v_cmp = nsa_tensor_4d(A->v[0], NSA_DTYPE_F32, 1, 1, Hkv, D);
        a.k_sel = nsa_tensor_4d(A->k[1], NSA_DTYPE_F32, 1, 1, Hkv, D);
        a.v_sel = nsa_tensor_4d(A->v[1], NSA_DTYPE_F32, 1, 1, Hkv, D);
        a.k_win = nsa_tensor_4d(A->k[2], NSA_DTYPE_F32, 1, 1, Hkv, D);
        a.v_win = nsa_tensor_4d(A->v[2], NSA_DTYPE_F32, 1, 1, Hkv, D);
        if (emits) {
            a.kc_new = nsa_tensor_4d(A->kc, NSA_DTYPE_F32, 1, 1, Hkv, D);
            a.vc_new = nsa_tensor_4d(A->vc, NSA_DTYPE_F32, 1, 1, Hkv, D);
        }
        a.gates = nsa_tensor_4d(A->g, NSA_DTYPE_F32, 1, 1, Hq, 3);
        a.out = nsa_tensor_4d(A->att, NSA_DTYPE_F32, 1, 1, Hq, D);
        st = nsa_decode_step(m->ctx, cache, &a);
        if (st != NSA_OK) return lib_fail(m, layer, "nsa_decode_step", st, err, n);
    } else {
        if (c->phi == LM_PHI_LEARNED)
            for (int j = 0; j < 2; j++)
                lm_phi(j ? A->vc : A->kc, A->phi_u[j], A->phi_h[j], j ? A->v[0] : A->k[0],
                       W->phi_pe[j], W->phi_w1[j], W->phi_w2[j], B, T, Hkv, D, c->l, c->d);
        nsa_fwd_args a;
        fwd_args(m, A, B, T, &a);
        if (mode == PASS_PREFILL) {
            nsa_prefill_extra ex;
            memset(&ex, 0, sizeof ex);
            if (c->phi == LM_PHI_LEARNED) {
                ex.raw_k_cmp = nsa_tensor_4d(A->k[0], NSA_DTYPE_F32, B, T, Hkv, D);
                ex.raw_v_cmp = nsa_tensor_4d(A->v[0], NSA_DTYPE_F32, B, T, Hkv, D);
            }
            st = nsa_kv_cache_prefill(m->ctx, cache, &a, &ex);
            if (st != NSA_OK) return lib_fail(m, layer, "nsa_kv_cache_prefill", st, err, n);
        } else {
            st = nsa_forward(m->ctx, &a);
            if (st != NSA_OK) return lib_fail(m, layer, "nsa_forward", st, err, n);
        }
    }

    /* xm = x + att·Wo^T;  xout = xm + SwiGLU(RMSNorm(xm)) */
    memcpy(A->xm, A->x, sizeof(float) * (size_t)N * C);
    lm_matmul(A->xm, A->att, W->wo, N, Hq * D, C, 1);
    lm_rmsnorm(A->ln2, A->rstd2, A->xm, W->ln2, N, C);
    lm_matmul(A->a, A->ln2, W->w1, N, C, F, 0);
    lm_matmul(A->b, A->ln2, W->w3, N, C, F, 0);
    lm_swiglu(A->h, A->a, A->b, (int64_t)N * F);
    memcpy(xout, A->xm, sizeof(float) * (size_t)N * C);
    lm_matmul(xout, A->h, W->w2, N, F, C, 1);
    return 0;
}

static int run_forward(lm_model *m, const uint8_t *tokens, const uint8_t *targets, int B, int T,
                       int64_t pos0, pass_mode mode, nsa_kv_cache **caches, float *loss,
                       char *err, size_t n) {
    if (B < 1 || T < 1) return fail(err, n, "forward: B=%d, T=%d, expected >= 1", B, T);
    if (lm_model_ensure_act(m, B, T, err, n) || lm_model_ensure_rope(m, pos0 + T, err, n))
        return -1;
    const lm_model_config *c = &m->cfg;
    const int N = B * T, C = c->dim, L = c->n_layer;
    for (int i = 0; i < N; i++)
        memcpy(m->act[0].x + (int64_t)i * C, m->w.emb + (int64_t)tokens[i] * C,
               sizeof(float) * (size_t)C);
    double ent = 0, col = 0, sh[3] = {0, 0, 0};
    for (int l = 0; l < L; l++) {
        float *xout = l + 1 < L ? m->act[l + 1].x : m->xL;
        if (layer_forward(m, l, B, T, pos0, mode, caches ? caches[l] : NULL, xout, err, n))
            return -1;
        lm_gate_stats(m->act[l].g, (int64_t)N * c->n_head, &ent, &col, sh);
    }
    const double cnt = (double)N * c->n_head * L;
    m->gate_entropy_mean = ent / cnt;
    m->gate_collapse_frac = col / cnt;
    for (int b = 0; b < 3; b++) m->gate_share[b] = sh[b] / cnt;
    lm_rmsnorm(m->xf, m->rstdf, m->xL, m->w.lnf, N, C);
    lm_matmul(m->logits, m->xf, m->w.head, N, C, LM_VOCAB, 0);
    float ce = lm_cross_entropy(m->probs, m->logits, targets, N, LM_VOCAB);
    m->targets = targets;
    if (loss) *loss = ce;
    return 0;
}

int lm_forward(lm_model *m, const uint8_t *tokens, const uint8_t *targets, int B, int T,
               nsa_kv_cache **caches, float *loss, char *err, size_t n) {
    return run_forward(m, tokens, targets, B, T, 0, caches ? PASS_PREFILL : PASS_TRAIN, caches,
                       loss, err, n);
}

int lm_decode(lm_model *m, nsa_kv_cache **caches, uint8_t token, int64_t pos, float *logits,
              char *err, size_t n) {
    uint8_t tok[1] = {token};
    if (run_forward(m, tok, NULL, 1, 1, pos, PASS_DECODE, caches, NULL, err, n)) return -1;
    memcpy(logits, m->logits, sizeof(float) * LM_VOCAB);
    return 0;
}

int lm_backward(lm_model *m, const uint8_t *tokens, char *err, size_t n) {
    if (!m->targets || !m->act_mem) return fail(err, n, "backward: no forward with targets");
    const lm_model_config *c = &m->cfg;
    const int B = m->B, T = m->T, N = B * T, C = c->dim, D = m->D, Hq = c->n_head;
    const int Hkv = c->n_kv_head, F = c->ffn, learned = c->phi == LM_PHI_LEARNED;
    const int64_t Tc = nsa_num_cmp(&m->nsa, T);
    const int64_t Mc = (int64_t)B * (Tc > 0 ? Tc : 1) * Hkv;
    float *p = m->scratch;
    float *dres = p;                 p += (int64_t)N * C;        /* (N, C)       */
    float *dbuf = p;                 p += (int64_t)N * C;        /* (N, C)       */
    float *dh = p;                   p += (int64_t)N * F;        /* (N, F)       */
    float *da = p;                   p += (int64_t)N * F;        /* (N, F)       */
    float *db = p;                   p += (int64_t)N * F;        /* (N, F)       */
    float *dq = p;                   p += (int64_t)N * Hq * D;   /* (N, Hq·D)    */
    float *datt = p;                 p += (int64_t)N * Hq * D;   /* (N, Hq·D)    */
    float *dk[3], *dv[3];
    for (int b = 0; b < 3; b++) {
        dk[b] = p;                   p += (int64_t)N * Hkv * D;  /* (N, Hkv·D)   */
        dv[b] = p;                   p += (int64_t)N * Hkv * D;  /* (N, Hkv·D)   */
    }
    float *dg = p;                   p += (int64_t)N * Hq * 3;   /* (N, Hq·3)    */
    float *dz = p;                   p += (int64_t)N * Hq * 3;   /* (N, Hq·3)    */
    float *dlogits = p;              p += (int64_t)N * LM_VOCAB; /* (N, 256)     */
    float *dkc = NULL, *dvc = NULL, *work = NULL;
    if (learned) {
        dkc = p;                     p += Mc * D;                /* (B, Tc, Hkv, D) */
        dvc = p;                     p += Mc * D;                /* (B, Tc, Hkv, D) */
        work = p;                                                /* (Mc, l·D + 2D)  */
    }
    memset(m->grads, 0, sizeof(float) * m->nparams);

    lm_cross_entropy_backward(dlogits, m->probs, m->targets, N, LM_VOCAB);
    lm_matmul_backward(dbuf, m->dw.head, dlogits, m->xf, m->w.head, N, C, LM_VOCAB, 0);
    memset(dres, 0, sizeof(float) * (size_t)N * C);
    lm_rmsnorm_backward(dres, m->dw.lnf, dbuf, m->xL, m->w.lnf, m->rstdf, N, C);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        const lm_layer_act *A = &m->act[l];
        const lm_layer_w *W = &m->w.layer[l];
        lm_layer_w *dW = &m->dw.layer[l];
        /* MLP: dres is d(layer output) */
        lm_matmul_backward(dh, dW->w2, dres, A->h, W->w2, N, F, C, 0);
        lm_swiglu_backward(da, db, dh, A->a, A->b, (int64_t)N * F);
        lm_matmul_backward(dbuf, dW->w1, da, A->ln2, W->w1, N, C, F, 0);
        lm_matmul_backward(dbuf, dW->w3, db, A->ln2, W->w3, N, C, F, 1);
        lm_rmsnorm_backward(dres, dW->ln2, dbuf, A->xm, W->ln2, A->rstd2, N, C);
        /* attention: dres is now d(xm) */
        lm_matmul_backward(datt, dW->wo, dres, A->att, W->wo, N, Hq * D, C, 0);
        nsa_fwd_args fa;
        fwd_args(m, A, B, T, &fa);
        nsa_bwd_args ga;
        memset(&ga, 0, sizeof ga);
        ga.dout = nsa_tensor_4d(datt, NSA_DTYPE_F32, B, T, Hq, D);
        ga.dq = nsa_tensor_4d(dq, NSA_DTYPE_F32, B, T, Hq, D);
        if (learned) {
            ga.dk_cmp = nsa_tensor_4d(dkc, NSA_DTYPE_F32, B, Tc, Hkv, D);
            ga.dv_cmp = nsa_tensor_4d(dvc, NSA_DTYPE_F32, B, Tc, Hkv, D);
        } else {
            ga.dk_cmp = nsa_tensor_4d(dk[0], NSA_DTYPE_F32, B, T, Hkv, D);
            ga.dv_cmp = nsa_tensor_4d(dv[0], NSA_DTYPE_F32, B, T, Hkv, D);
        }
        ga.dk_sel = nsa_tensor_4d(dk[1], NSA_DTYPE_F32, B, T, Hkv, D);
        ga.dv_sel = nsa_tensor_4d(dv[1], NSA_DTYPE_F32, B, T, Hkv, D);
        if (m->nsa.w > 0) {
            ga.dk_win = nsa_tensor_4d(dk[2], NSA_DTYPE_F32, B, T, Hkv, D);
            ga.dv_win = nsa_tensor_4d(dv[2], NSA_DTYPE_F32, B, T, Hkv, D);
        } else {
            memset(dk[2], 0, sizeof(float) * (size_t)N * Hkv * D);
            memset(dv[2], 0, sizeof(float) * (size_t)N * Hkv * D);
        }
        ga.dgates = nsa_tensor_4d(dg, NSA_DTYPE_F32, B, T, Hq, 3);
        nsa_status st = nsa_backward(m->ctx, &fa, &ga);
        if (st != NSA_OK) return lib_fail(m, l, "nsa_backward", st, err, n);
        if (learned) {
            memset(dk[0], 0, sizeof(float) * (size_t)N * Hkv * D);
            memset(dv[0], 0, sizeof(float) * (size_t)N * Hkv * D);
            lm_phi_backward(dk[0], dW->phi_pe[0], dW->phi_w1[0], dW->phi_w2[0], dkc, A->phi_u[0],
                            A->phi_h[0], W->phi_w1[0], W->phi_w2[0], B, T, Hkv, D, c->l, c->d,
                            work);
            lm_phi_backward(dv[0], dW->phi_pe[1], dW->phi_w1[1], dW->phi_w2[1], dvc, A->phi_u[1],
                            A->phi_h[1], W->phi_w1[1], W->phi_w2[1], B, T, Hkv, D, c->l, c->d,
                            work);
        }
        lm_gates_backward(dz, dg, A->g, (int64_t)N * Hq, c->gate, c->gate_temp);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < Hq * 3; j++) dW->bg[j] += dz[(int64_t)i * Hq * 3 + j];
        lm_matmul_backward(dbuf, dW->wg, dz, A->ln1, W->wg, N, C, Hq * 3, 0);
        lm_rope(dq, m->rope_cos, m->rope_sin, B, T, Hq, D, 0, 1);
        lm_matmul_backward(dbuf, dW->wq, dq, A->ln1, W->wq, N, C, Hq * D, 1);
        for (int b = 0; b < 3; b++) {
            lm_rope(dk[b], m->rope_cos, m->rope_sin, B, T, Hkv, D, 0, 1);
            lm_matmul_backward(dbuf, dW->wk[b], dk[b], A->ln1, W->wk[b], N, C, Hkv * D, 1);
            lm_matmul_backward(dbuf, dW->wv[b], dv[b], A->ln1, W->wv[b], N, C, Hkv * D, 1);
        }
        lm_rmsnorm_backward(dres, dW->ln1, dbuf, A->x, W->ln1, A->rstd1, N, C);
    }
    for (int i = 0; i < N; i++) {
        float *de = m->dw.emb + (int64_t)tokens[i] * C;
        const float *dr = dres + (int64_t)i * C;
        for (int k = 0; k < C; k++) de[k] += dr[k];
    }
    return 0;
}
