// SPDX-License-Identifier: Apache-2.0
/* pass.c — the passes over the model: forward (training, or prefill into KV caches), backward,
 * and one-token decode, all through one layer function so the three cannot disagree, every
 * layer op through the model's backend (m->be: CPU or CUDA, the same code for both).
 * Not the layers themselves (lm/layers.c, lm/cuda_ops.cu) nor the parameter table (lm/model.c).
 * Invariant: decode at position t computes exactly what the forward computes for row t; the
 * only difference is which library call runs the attention (nsa_forward, nsa_kv_cache_prefill
 * or nsa_decode_step).
 */
#include "lm.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PASS_TRAIN, PASS_PREFILL, PASS_DECODE } pass_mode;

/* Where a pass's rows sit: token t of row b at position pos0 + t, or, when pos is not NULL (a
 * decode of T = 1), at pos[b]; a prefill fills cache rows b0 .. b0 + B - 1. */
typedef struct {
    int64_t pos0;
    const int64_t *pos;
    int b0;
} pass_at;


static int lib_fail(lm_model *m, int layer, const char *what, nsa_status st, char *err,
                    size_t n) {
    return lm_fail(err, n, "layer %d: %s: %s: %s", layer, what, nsa_status_name(st),
                nsa_context_message(m->ctx));
}

/* A contiguous tensor in the backend's memory: att_dtype for the NSA layer's tensors, or f32. */
static nsa_tensor tens(const lm_model *m, void *p, nsa_dtype dt, int64_t a, int64_t b, int64_t c,
                       int64_t d) {
    nsa_tensor t = nsa_tensor_4d(p, dt, a, b, c, d);
    t.device.kind = m->be->device;
    return t;
}

/* Where the NSA tensors of one call live: the f32 activations themselves, or (att_dtype other
 * than f32) copies in m->att_mem: the forward half (q, k, v, gates, out), then the backward
 * half (dout, dq, dk, dv, dgates) of the same sizes. */
typedef struct {
    void *q, *k[3], *v[3], *g, *out;
} att_set;

static int att_cast(const lm_model *m) { return m->be->att_dtype != NSA_DTYPE_F32; }

static void att_layout(const lm_model *m, int N, int half, att_set *s) {
    const int64_t Hq = m->cfg.n_head, Hkv = m->cfg.n_kv_head, D = m->D;
    const size_t e = nsa_dtype_size(m->be->att_dtype);
    const int64_t per = N * Hq * D * 2 + N * Hkv * D * 6 + N * Hq * 3;
    char *p = (char *)m->att_mem + (size_t)(half * per) * e;
#define TAKE(ptr, cnt) (ptr = p, p += (size_t)(cnt) * e)
    TAKE(s->q, N * Hq * D);
    TAKE(s->out, N * Hq * D);
    for (int b = 0; b < 3; b++) {
        TAKE(s->k[b], N * Hkv * D);
        TAKE(s->v[b], N * Hkv * D);
    }
    TAKE(s->g, N * Hq * 3); /* last: the (N, Hq, 3) rows need not keep 16-byte alignment */
#undef TAKE
}

/* Packed documents (lm_model_set_docs): the (B, T, ...) tensors ts[0..nt) of one call as one
 * row (1, B·T, ...) — the same contiguous memory — for a call that reads the documents'
 * offsets. */
static void one_row(nsa_tensor *const *ts, int nt) {
    for (int i = 0; i < nt; i++) {
        if (!ts[i]->data) continue;
        ts[i]->shape[1] *= ts[i]->shape[0];
        ts[i]->shape[0] = 1;
    }
}

/* The documents' offsets for a call over one row of B·T tokens. */
static void docs_args(const lm_model *m, nsa_fwd_args *a) {
    nsa_tensor *ts[17] = {&a->q,       &a->k_cmp,   &a->v_cmp,   &a->k_sel,   &a->v_sel,
                          &a->k_win,   &a->v_win,   &a->gates,   &a->out,     &a->out_cmp,
                          &a->out_sel, &a->out_win, &a->lse_cmp, &a->lse_sel, &a->lse_win,
                          &a->sel_blocks, &a->sel_ranges};
    one_row(ts, 17);
    const int64_t shape[1] = {m->doc_n + 1};
    a->cu_seqlens = nsa_tensor_make(m->doc_cu, NSA_DTYPE_I32, 1, shape);
    a->max_seqlen = m->doc_max;
}

/* RoPE over x (B, T, H, D): at positions pos0 + t, at pos[b] for row b of a decode (pos not
 * NULL, T = 1), or, with packed documents, at each document's own positions 0, 1, ...
 * (inverse = 1: rotate back). */
static void rope_rows(const lm_model *m, float *x, int B, int T, int H, int64_t pos0,
                      const int64_t *pos, int inverse) {
    const int D = m->D;
    if (pos) {
        for (int b = 0; b < B; b++)
            m->be->rope(x + (int64_t)b * H * D, m->rope_cos, m->rope_sin, 1, 1, H, D, pos[b],
                        inverse);
        return;
    }
    if (!m->doc_n) {
        m->be->rope(x, m->rope_cos, m->rope_sin, B, T, H, D, pos0, inverse);
        return;
    }
    for (int i = 0; i < m->doc_n; i++) {
        const int len = m->doc_cu[i + 1] - m->doc_cu[i];
        if (len > 0)
            m->be->rope(x + (int64_t)m->doc_cu[i] * H * D, m->rope_cos, m->rope_sin, 1, len, H,
                        D, 0, inverse);
    }
}

/* The library's view of layer A's attention inputs for (B, T); in a cast backend the inputs
 * are converted into att_mem here, and a->out points there (see att_out). layer >= 0: the
 * layer's selection ranges ride along (written by the training forward, reused by backward),
 * and with keep_mem the branch outputs and lse too. */
static void fwd_args(const lm_model *m, int layer, const lm_layer_act *A, int B, int T,
                     nsa_fwd_args *a) {
    const int Hq = m->cfg.n_head, Hkv = m->cfg.n_kv_head, D = m->D, N = B * T;
    const nsa_dtype dt = m->be->att_dtype;
    att_set s = {A->q, {A->k[0], A->k[1], A->k[2]}, {A->v[0], A->v[1], A->v[2]}, A->g, A->att};
    if (att_cast(m)) {
        att_set c;
        att_layout(m, N, 0, &c);
        if (!m->be->act_lowp) { /* else q, k, v and att already hold att_dtype */
            s = c;
            m->be->to_att(s.q, A->q, (size_t)N * Hq * D);
            for (int b = 0; b < 3; b++) {
                m->be->to_att(s.k[b], A->k[b], (size_t)N * Hkv * D);
                m->be->to_att(s.v[b], A->v[b], (size_t)N * Hkv * D);
            }
        }
        s.g = c.g;
        m->be->to_att(s.g, A->g, (size_t)N * Hq * 3);
    }
    memset(a, 0, sizeof *a);
    a->cfg = m->nsa;
    a->q = tens(m, s.q, dt, B, T, Hq, D);
    if (m->cfg.phi == LM_PHI_LEARNED) { /* CPU only (lm_model_create_on) */
        const int64_t Tc = nsa_num_cmp(&m->nsa, T);
        a->cmp_compressed = 1;
        a->k_cmp = tens(m, A->kc, dt, B, Tc, Hkv, D);
        a->v_cmp = tens(m, A->vc, dt, B, Tc, Hkv, D);
    } else {
        a->k_cmp = tens(m, s.k[0], dt, B, T, Hkv, D);
        a->v_cmp = tens(m, s.v[0], dt, B, T, Hkv, D);
    }
    a->k_sel = tens(m, s.k[1], dt, B, T, Hkv, D);
    a->v_sel = tens(m, s.v[1], dt, B, T, Hkv, D);
    a->k_win = tens(m, s.k[2], dt, B, T, Hkv, D);
    a->v_win = tens(m, s.v[2], dt, B, T, Hkv, D);
    a->gates = tens(m, s.g, dt, B, T, Hq, 3);
    a->out = tens(m, s.out, dt, B, T, Hq, D);
    if (layer >= 0) {
        const int64_t per = (int64_t)N * Hkv * m->nsa.n * 2;
        const int64_t shape[5] = {B, T, Hkv, m->nsa.n, 2};
        a->sel_ranges = nsa_tensor_make(m->ranges_mem + layer * per, NSA_DTYPE_I32, 5, shape);
        a->sel_ranges.device.kind = m->be->device;
    }
    if (layer >= 0 && m->keep_mem) { /* kept for the backward (lm.h) */
        const int64_t L = m->cfg.n_layer, no = (int64_t)N * Hq * D, nl = (int64_t)N * Hq;
        char *ob = (char *)m->keep_mem + (size_t)(layer * 3 * no) * nsa_dtype_size(dt);
        float *lb = (float *)((char *)m->keep_mem + (size_t)(L * 3 * no) * nsa_dtype_size(dt)) +
                    layer * 3 * nl;
        nsa_tensor *o[3] = {&a->out_cmp, &a->out_sel, &a->out_win};
        nsa_tensor *l[3] = {&a->lse_cmp, &a->lse_sel, &a->lse_win};
        const int64_t ls[3] = {B, T, Hq};
        for (int b = 0; b < 3; b++) {
            *o[b] = tens(m, ob + (size_t)(b * no) * nsa_dtype_size(dt), dt, B, T, Hq, D);
            *l[b] = nsa_tensor_make(lb + b * nl, NSA_DTYPE_F32, 3, ls);
            l[b]->device.kind = m->be->device;
        }
    }
    if (m->doc_n) docs_args(m, a);
}

/* After the attention call: the output back into A->att (f32) when it was cast. */
static void att_out(const lm_model *m, lm_layer_act *A, const nsa_fwd_args *a) {
    if (att_cast(m) && !m->be->act_lowp)
        m->be->from_att(A->att, a->out.data, (size_t)nsa_tensor_numel(&a->out));
}

/* Decode with learned φ: when row b's token completes a block, run φ over the block (the
 * cache's l-1 raw tokens of row b before it, then this one) into row b of A->kc / A->vc
 * (B, 1, Hkv, D). */
static int decode_phi(lm_model *m, int layer, nsa_kv_cache *cache, int b, char *err, size_t n) {
    const lm_model_config *c = &m->cfg;
    const int Hkv = c->n_kv_head, D = m->D, l = c->l;
    lm_layer_act *A = &m->act[layer];
    const lm_layer_w *W = &m->w.layer[layer];
    const int64_t row = (int64_t)Hkv * D;
    /* blk (l, Hkv, D) raw keys, blk_v likewise, u (Hkv, l·D), h (2, Hkv, D) */
    float *blk = malloc(sizeof(float) * (size_t)(3 * l * row + 2 * row));
    if (!blk) return lm_fail(err, n, "out of memory in decode");
    float *blk_v = blk + l * row, *u = blk + 2 * l * row, *h = u + l * row;
    nsa_tensor tk = nsa_tensor_3d(blk, NSA_DTYPE_F32, l - 1, Hkv, D);
    nsa_tensor tv = nsa_tensor_3d(blk_v, NSA_DTYPE_F32, l - 1, Hkv, D);
    nsa_status st = l > 1 ? nsa_kv_cache_raw_cmp_tail(m->ctx, cache, b, tk, tv) : NSA_OK;
    if (st != NSA_OK) {
        free(blk);
        return lib_fail(m, layer, "nsa_kv_cache_raw_cmp_tail", st, err, n);
    }
    memcpy(blk + (l - 1) * row, A->k[0] + b * row, sizeof(float) * (size_t)row);
    memcpy(blk_v + (l - 1) * row, A->v[0] + b * row, sizeof(float) * (size_t)row);
    lm_phi(A->kc + b * row, u, h, blk, W->phi_pe[0], W->phi_w1[0], W->phi_w2[0], 1, l, Hkv, D,
           l, c->d);
    lm_phi(A->vc + b * row, u, h, blk_v, W->phi_pe[1], W->phi_w1[1], W->phi_w2[1], 1, l, Hkv, D,
           l, c->d);
    free(blk);
    return 0;
}

/* matmul_backward for a dy that swiglu_backward, qkv_gather or cross_entropy_backward wrote:
 * att_dtype under act_lowp, rows ldy apart (else ldy = O). */
static void mmb_lo(const lm_model *m, float *dx, float *dW, const float *dy, int ldy,
                   const float *x, const float *W, int M, int K, int O, int acc) {
    if (m->be->act_lowp) m->be->matmul_backward_lo(dx, dW, dy, ldy, x, W, M, K, O, acc);
    else m->be->matmul_backward(dx, dW, dy, x, W, M, K, O, acc);
}

/* Columns of the fused q/k/v/gate projection (lm_backend.qkv_split), and the row stride of its
 * dy: under act_lowp rounded up to 8 (bf16 rows on 16 bytes, as cuBLAS's fast kernels want). */
static int qkv_cols(const lm_model *m) {
    const int Hq = m->cfg.n_head, Hkv = m->cfg.n_kv_head, D = m->D;
    return Hq * D + 6 * Hkv * D + 3 * Hq;
}
static int qkv_ld(const lm_model *m) {
    return m->be->act_lowp ? (qkv_cols(m) + 7) / 8 * 8 : qkv_cols(m);
}

/* The fused projection applies when the backend has it and the eight weights of W are adjacent
 * in its parameter table (they are, by lm/model.c's layout: the check keeps it honest). */
static int qkv_fused(const lm_model *m, const lm_layer_w *W) {
    const int64_t C = m->cfg.dim, HD = (int64_t)m->cfg.n_head * m->D;
    const int64_t KD = (int64_t)m->cfg.n_kv_head * m->D;
    if (!m->be->qkv_split || m->doc_n) return 0; /* its RoPE runs at pos0 + t */
    const float *p = W->wq + HD * C;
    for (int b = 0; b < 3; b++) {
        if (W->wk[b] != p || W->wv[b] != p + KD * C) return 0;
        p += 2 * KD * C;
    }
    return W->wg == p;
}

/* The fused projection's split for a decode whose rows sit at their own positions: row by row,
 * each at pos[b] (the activations' rows are att_dtype under act_lowp, else f32). */
static void split_rows(const lm_model *m, lm_layer_act *A, const lm_layer_w *W, int B,
                       const int64_t *pos) {
    const lm_model_config *c = &m->cfg;
    const int Hq = c->n_head, Hkv = c->n_kv_head, D = m->D;
    const size_t e = m->be->act_lowp ? nsa_dtype_size(m->be->att_dtype) : sizeof(float);
    for (int b = 0; b < B; b++) {
        lm_layer_act r = *A;
        r.q = (float *)((char *)A->q + (size_t)b * Hq * D * e);
        for (int j = 0; j < 3; j++) {
            r.k[j] = (float *)((char *)A->k[j] + (size_t)b * Hkv * D * e);
            r.v[j] = (float *)((char *)A->v[j] + (size_t)b * Hkv * D * e);
        }
        r.z = A->z + (int64_t)b * Hq * 3;
        r.g = A->g + (int64_t)b * Hq * 3;
        m->be->qkv_split(&r, m->scratch + (int64_t)b * qkv_cols(m), W->bg, m->rope_cos,
                         m->rope_sin, 1, 1, Hq, Hkv, D, pos[b], c->gate, c->gate_temp);
    }
}

/* Layer `layer` over A->x (B, T) at the positions of at, output into xout (N, C). */
static int layer_forward(lm_model *m, int layer, int B, int T, const pass_at *at, pass_mode mode,
                         nsa_kv_cache *cache, float *xout, char *err, size_t n) {
    const int64_t pos0 = at->pos0, *pos = at->pos;
    const lm_model_config *c = &m->cfg;
    const int N = B * T, C = c->dim, D = m->D, Hq = c->n_head, Hkv = c->n_kv_head, F = c->ffn;
    lm_layer_act *A = &m->act[layer];
    const lm_layer_w *W = &m->w.layer[layer];

    m->be->rmsnorm(A->ln1, A->rstd1, A->x, W->ln1, N, C);
    if (qkv_fused(m, W)) { /* one GEMM into the scratch (free during a forward), then split */
        m->be->matmul(m->scratch, A->ln1, W->wq, N, C, qkv_cols(m), 0);
        if (pos) split_rows(m, A, W, B, pos);
        else m->be->qkv_split(A, m->scratch, W->bg, m->rope_cos, m->rope_sin, B, T, Hq, Hkv, D,
                              pos0, c->gate, c->gate_temp);
    } else if (m->be->act_lowp) {
        return lm_fail(err, n, "layer %d: %s: the q/k/v/gate weights are not adjacent", layer,
                    m->be->name);
    } else {
        m->be->matmul(A->q, A->ln1, W->wq, N, C, Hq * D, 0);
        rope_rows(m, A->q, B, T, Hq, pos0, pos, 0);
        for (int b = 0; b < 3; b++) {
            m->be->matmul(A->k[b], A->ln1, W->wk[b], N, C, Hkv * D, 0);
            rope_rows(m, A->k[b], B, T, Hkv, pos0, pos, 0);
            m->be->matmul(A->v[b], A->ln1, W->wv[b], N, C, Hkv * D, 0);
        }
        m->be->matmul(A->z, A->ln1, W->wg, N, C, Hq * 3, 0);
        m->be->bias_add(A->z, W->bg, N, Hq * 3);
        m->be->gates(A->g, A->z, (int64_t)N * Hq, c->gate, c->gate_temp);
    }

    nsa_status st;
    if (mode == PASS_DECODE) {
        int emits = 0;
        for (int b = 0; b < B && c->phi == LM_PHI_LEARNED; b++) {
            if (nsa_kv_cache_emits_next(cache, b) != 1) continue;
            if (decode_phi(m, layer, cache, b, err, n)) return -1;
            emits = 1;
        }
        nsa_fwd_args fa;
        fwd_args(m, -1, A, B, 1, &fa);
        nsa_decode_args a;
        memset(&a, 0, sizeof a);
        a.cfg = m->nsa;
        a.q = fa.q;
        a.k_cmp = tens(m, A->k[0], NSA_DTYPE_F32, B, 1, Hkv, D);
        a.v_cmp = tens(m, A->v[0], NSA_DTYPE_F32, B, 1, Hkv, D);
        if (att_cast(m)) { /* raw cmp keys: the cast copies (learned φ is CPU only) */
            a.k_cmp.data = fa.k_cmp.data;
            a.v_cmp.data = fa.v_cmp.data;
            a.k_cmp.dtype = a.v_cmp.dtype = m->be->att_dtype;
        }
        a.k_sel = fa.k_sel;
        a.v_sel = fa.v_sel;
        a.k_win = fa.k_win;
        a.v_win = fa.v_win;
        if (emits) {
            a.kc_new = tens(m, A->kc, NSA_DTYPE_F32, B, 1, Hkv, D);
            a.vc_new = tens(m, A->vc, NSA_DTYPE_F32, B, 1, Hkv, D);
        }
        a.gates = fa.gates;
        a.out = fa.out;
        st = nsa_decode_step(m->ctx, cache, &a);
        if (st != NSA_OK) return lib_fail(m, layer, "nsa_decode_step", st, err, n);
        att_out(m, A, &fa);
    } else {
        if (c->phi == LM_PHI_LEARNED)
            for (int j = 0; j < 2; j++)
                lm_phi(j ? A->vc : A->kc, A->phi_u[j], A->phi_h[j], j ? A->v[0] : A->k[0],
                       W->phi_pe[j], W->phi_w1[j], W->phi_w2[j], B, T, Hkv, D, c->l, c->d);
        nsa_fwd_args a;
        fwd_args(m, mode == PASS_TRAIN ? layer : -1, A, B, T, &a);
        if (mode == PASS_PREFILL) {
            nsa_prefill_extra ex;
            memset(&ex, 0, sizeof ex);
            ex.b0 = at->b0;
            if (c->phi == LM_PHI_LEARNED) {
                ex.raw_k_cmp = tens(m, A->k[0], NSA_DTYPE_F32, B, T, Hkv, D);
                ex.raw_v_cmp = tens(m, A->v[0], NSA_DTYPE_F32, B, T, Hkv, D);
            }
            st = nsa_kv_cache_prefill(m->ctx, cache, &a, &ex);
            if (st != NSA_OK) return lib_fail(m, layer, "nsa_kv_cache_prefill", st, err, n);
        } else {
            st = nsa_forward(m->ctx, &a);
            if (st != NSA_OK) return lib_fail(m, layer, "nsa_forward", st, err, n);
        }
        att_out(m, A, &a);
    }

    /* xm = x + att·Wo^T;  xout = xm + SwiGLU(RMSNorm(xm)) */
    m->be->copy(A->xm, A->x, (size_t)N * C);
    m->be->matmul(A->xm, A->att, W->wo, N, Hq * D, C, 1);
    m->be->rmsnorm(A->ln2, A->rstd2, A->xm, W->ln2, N, C);
    if (m->be->act_lowp) {
        m->be->matmul_lo(A->a, A->ln2, W->w1, N, C, F);
        m->be->matmul_lo(A->b, A->ln2, W->w3, N, C, F);
    } else {
        m->be->matmul(A->a, A->ln2, W->w1, N, C, F, 0);
        m->be->matmul(A->b, A->ln2, W->w3, N, C, F, 0);
    }
    m->be->swiglu(A->h, A->a, A->b, (int64_t)N * F);
    m->be->copy(xout, A->xm, (size_t)N * C);
    m->be->matmul(xout, A->h, W->w2, N, F, C, 1);
    return 0;
}

static int run_forward(lm_model *m, const uint8_t *tokens, const uint8_t *targets, int B, int T,
                       const pass_at *at, pass_mode mode, nsa_kv_cache **caches, float *loss,
                       char *err, size_t n) {
    if (B < 1 || T < 1) return lm_fail(err, n, "forward: B=%d, T=%d, expected >= 1", B, T);
    if (m->doc_n && (mode != PASS_TRAIN || m->doc_cu[m->doc_n] != B * T))
        return lm_fail(err, n, "forward: packed documents of %d rows set for a %s of %d rows "
                       "(lm_model_set_docs(m, NULL, ...) clears them)", m->doc_cu[m->doc_n],
                       mode == PASS_TRAIN ? "forward" : "prefill or decode", B * T);
    int64_t end = at->pos0 + T; /* positions < end get a RoPE row */
    for (int b = 0; at->pos && b < B; b++) end = at->pos[b] + 1 > end ? at->pos[b] + 1 : end;
    if (lm_model_ensure_act(m, B, T, err, n) || lm_model_ensure_rope(m, end, err, n)) return -1;
    const lm_model_config *c = &m->cfg;
    const int N = B * T, C = c->dim, L = c->n_layer;
    m->be->embed(m->act[0].x, m->w.emb, tokens, N, C);
    double ent = 0, col = 0, sh[3] = {0, 0, 0};
    for (int l = 0; l < L; l++) {
        float *xout = l + 1 < L ? m->act[l + 1].x : m->xL;
        if (layer_forward(m, l, B, T, at, mode, caches ? caches[l] : NULL, xout, err, n))
            return -1;
    }
    float *gs[LM_MAX_LAYERS];
    for (int l = 0; l < L; l++) gs[l] = m->act[l].g;
    m->be->gate_stats(gs, L, (int64_t)N * c->n_head, &ent, &col, sh);
    const double cnt = (double)N * c->n_head * L;
    m->gate_entropy_mean = ent / cnt;
    m->gate_collapse_frac = col / cnt;
    for (int b = 0; b < 3; b++) m->gate_share[b] = sh[b] / cnt;
    m->be->rmsnorm(m->xf, m->rstdf, m->xL, m->w.lnf, N, C);
    m->be->matmul(m->logits, m->xf, m->w.head, N, C, LM_VOCAB, 0);
    float ce = m->be->cross_entropy(m->probs, m->logits, targets, m->doc_n ? m->doc_mask : NULL,
                                    N, LM_VOCAB);
    m->targets = targets;
    if (loss) *loss = ce;
    return m->be->sync(err, n);
}

int lm_forward(lm_model *m, const uint8_t *tokens, const uint8_t *targets, int B, int T,
               nsa_kv_cache **caches, float *loss, char *err, size_t n) {
    const pass_at at = {0, NULL, 0};
    return run_forward(m, tokens, targets, B, T, &at, caches ? PASS_PREFILL : PASS_TRAIN, caches,
                       loss, err, n);
}

int lm_prefill_row(lm_model *m, const uint8_t *tokens, int T, int b, nsa_kv_cache **caches,
                   char *err, size_t n) {
    const pass_at at = {0, NULL, b};
    return run_forward(m, tokens, NULL, 1, T, &at, PASS_PREFILL, caches, NULL, err, n);
}

int lm_decode_rows(lm_model *m, nsa_kv_cache **caches, const uint8_t *tokens, const int64_t *pos,
                   int B, float *logits, char *err, size_t n) {
    const pass_at at = {pos[0], B > 1 ? pos : NULL, 0}; /* one row: the plain path */
    if (run_forward(m, tokens, NULL, B, 1, &at, PASS_DECODE, caches, NULL, err, n)) return -1;
    m->be->download(logits, m->logits, sizeof(float) * LM_VOCAB * (size_t)B);
    return 0;
}

int lm_decode(lm_model *m, nsa_kv_cache **caches, uint8_t token, int64_t pos, float *logits,
              char *err, size_t n) {
    return lm_decode_rows(m, caches, &token, &pos, 1, logits, err, n);
}

int lm_backward(lm_model *m, const uint8_t *tokens, char *err, size_t n) {
    return lm_backward_acc(m, tokens, 0, 0, err, n);
}

int lm_backward_acc(lm_model *m, const uint8_t *tokens, int64_t rows, int accumulate, char *err,
                    size_t n) {
    if (!m->targets || !m->act_mem) return lm_fail(err, n, "backward: no forward with targets");
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
    float *dqkv = p; /* (N, P rounded up to 8) of the fused projection (lm/model.c's carve) */
    p += m->be->qkv_split ? (int64_t)N * ((qkv_cols(m) + 7) / 8 * 8) : 0;
    float *dkc = NULL, *dvc = NULL, *work = NULL;
    if (learned) {
        dkc = p;                     p += Mc * D;                /* (B, Tc, Hkv, D) */
        dvc = p;                     p += Mc * D;                /* (B, Tc, Hkv, D) */
        work = p;                                                /* (Mc, l·D + 2D)  */
    }
    /* every parameter gradient below is added (+=) into m->grads: skipping the zero is the
     * whole of accumulation */
    if (!accumulate) m->be->zero(m->grads, m->nparams);

    m->be->cross_entropy_backward(dlogits, m->probs, m->targets, m->doc_n ? m->doc_mask : NULL,
                                  N, LM_VOCAB, rows);
    mmb_lo(m, dbuf, m->dw.head, dlogits, LM_VOCAB, m->xf, m->w.head, N, C, LM_VOCAB, 0);
    m->be->zero(dres, (size_t)N * C);
    m->be->rmsnorm_backward(dres, m->dw.lnf, dbuf, m->xL, m->w.lnf, m->rstdf, N, C);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        const lm_layer_act *A = &m->act[l];
        const lm_layer_w *W = &m->w.layer[l];
        lm_layer_w *dW = &m->dw.layer[l];
        /* MLP: dres is d(layer output) */
        m->be->matmul_backward(dh, dW->w2, dres, A->h, W->w2, N, F, C, 0);
        m->be->swiglu_backward(da, db, dh, A->a, A->b, (int64_t)N * F);
        mmb_lo(m, dbuf, dW->w1, da, F, A->ln2, W->w1, N, C, F, 0);
        mmb_lo(m, dbuf, dW->w3, db, F, A->ln2, W->w3, N, C, F, 1);
        m->be->rmsnorm_backward(dres, dW->ln2, dbuf, A->xm, W->ln2, A->rstd2, N, C);
        /* attention: dres is now d(xm) */
        m->be->matmul_backward(datt, dW->wo, dres, A->att, W->wo, N, Hq * D, C, 0);
        nsa_fwd_args fa;
        fwd_args(m, l, A, B, T, &fa);
        const nsa_dtype dt = m->be->att_dtype;
        att_set gs = {dq, {dk[0], dk[1], dk[2]}, {dv[0], dv[1], dv[2]}, dg, datt};
        if (att_cast(m)) {
            att_layout(m, N, 1, &gs);
            m->be->to_att(gs.out, datt, (size_t)N * Hq * D);
        }
        nsa_bwd_args ga;
        memset(&ga, 0, sizeof ga);
        ga.dout = tens(m, gs.out, dt, B, T, Hq, D);
        ga.dq = tens(m, gs.q, dt, B, T, Hq, D);
        if (learned) {
            ga.dk_cmp = tens(m, dkc, dt, B, Tc, Hkv, D);
            ga.dv_cmp = tens(m, dvc, dt, B, Tc, Hkv, D);
        } else {
            ga.dk_cmp = tens(m, gs.k[0], dt, B, T, Hkv, D);
            ga.dv_cmp = tens(m, gs.v[0], dt, B, T, Hkv, D);
        }
        ga.dk_sel = tens(m, gs.k[1], dt, B, T, Hkv, D);
        ga.dv_sel = tens(m, gs.v[1], dt, B, T, Hkv, D);
        const int nb = m->nsa.w > 0 ? 3 : 2;
        if (m->nsa.w > 0) {
            ga.dk_win = tens(m, gs.k[2], dt, B, T, Hkv, D);
            ga.dv_win = tens(m, gs.v[2], dt, B, T, Hkv, D);
        } else {
            m->be->zero(dk[2], (size_t)N * Hkv * D);
            m->be->zero(dv[2], (size_t)N * Hkv * D);
        }
        ga.dgates = tens(m, gs.g, dt, B, T, Hq, 3);
        if (m->doc_n) {
            nsa_tensor *gt[9] = {&ga.dout,   &ga.dq,     &ga.dk_cmp, &ga.dv_cmp, &ga.dk_sel,
                                 &ga.dv_sel, &ga.dk_win, &ga.dv_win, &ga.dgates};
            one_row(gt, 9);
        }
        nsa_status st = nsa_backward(m->ctx, &fa, &ga);
        if (st != NSA_OK) return lib_fail(m, l, "nsa_backward", st, err, n);
        if (att_cast(m)) {
            if (!m->be->act_lowp) { /* else qkv_gather reads dq, dk, dv in att_dtype */
                m->be->from_att(dq, gs.q, (size_t)N * Hq * D);
                for (int b = 0; b < nb; b++) {
                    m->be->from_att(dk[b], gs.k[b], (size_t)N * Hkv * D);
                    m->be->from_att(dv[b], gs.v[b], (size_t)N * Hkv * D);
                }
            }
            m->be->from_att(dg, gs.g, (size_t)N * Hq * 3);
        }
        if (learned) {
            m->be->zero(dk[0], (size_t)N * Hkv * D);
            m->be->zero(dv[0], (size_t)N * Hkv * D);
            lm_phi_backward(dk[0], dW->phi_pe[0], dW->phi_w1[0], dW->phi_w2[0], dkc, A->phi_u[0],
                            A->phi_h[0], W->phi_w1[0], W->phi_w2[0], B, T, Hkv, D, c->l, c->d,
                            work);
            lm_phi_backward(dv[0], dW->phi_pe[1], dW->phi_w1[1], dW->phi_w2[1], dvc, A->phi_u[1],
                            A->phi_h[1], W->phi_w1[1], W->phi_w2[1], B, T, Hkv, D, c->l, c->d,
                            work);
        }
        m->be->gates_backward(dz, dg, A->g, (int64_t)N * Hq, c->gate, c->gate_temp);
        m->be->bias_backward(dW->bg, dz, N, Hq * 3);
        if (qkv_fused(m, W)) { /* dy (N, P) of the fused projection, one GEMM pair */
            const int lp = m->be->act_lowp;
            const void *gk[3], *gv[3];
            for (int b = 0; b < 3; b++) {
                gk[b] = b < nb ? (lp ? gs.k[b] : (void *)dk[b]) : NULL;
                gv[b] = b < nb ? (lp ? gs.v[b] : (void *)dv[b]) : NULL;
            }
            m->be->qkv_gather(dqkv, qkv_ld(m), lp ? gs.q : (void *)dq, gk, gv, dz, m->rope_cos,
                              m->rope_sin, B, T, Hq, Hkv, D);
            mmb_lo(m, dbuf, dW->wq, dqkv, qkv_ld(m), A->ln1, W->wq, N, C, qkv_cols(m), 0);
        } else {
            m->be->matmul_backward(dbuf, dW->wg, dz, A->ln1, W->wg, N, C, Hq * 3, 0);
            rope_rows(m, dq, B, T, Hq, 0, NULL, 1);
            m->be->matmul_backward(dbuf, dW->wq, dq, A->ln1, W->wq, N, C, Hq * D, 1);
            for (int b = 0; b < 3; b++) {
                rope_rows(m, dk[b], B, T, Hkv, 0, NULL, 1);
                m->be->matmul_backward(dbuf, dW->wk[b], dk[b], A->ln1, W->wk[b], N, C, Hkv * D,
                                       1);
                m->be->matmul_backward(dbuf, dW->wv[b], dv[b], A->ln1, W->wv[b], N, C, Hkv * D,
                                       1);
            }
        }
        m->be->rmsnorm_backward(dres, dW->ln1, dbuf, A->x, W->ln1, A->rstd1, N, C);
    }
    m->be->embed_backward(m->dw.emb, dres, tokens, N, C);
    return m->be->sync(err, n);
}
