// SPDX-License-Identifier: Apache-2.0
/* model.c — the byte-level NSA transformer: parameter table, initialisation, forward and
 * backward of the whole model, and one-token decode. Pre-norm blocks: x += NSA(RMSNorm(x)),
 * x += SwiGLU(RMSNorm(x)); final RMSNorm; LM head. Attention goes through the public API only
 * (nsa_forward / nsa_backward, nsa_kv_cache_prefill / nsa_decode_step).
 * Not an autograd: backward replays the forward's saved activations in reverse by hand.
 * Invariant: q and every raw key are rotated by the same RoPE table at absolute positions.
 */
#include "checked.h"
#include "lm.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int lm_fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && n) vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ------------------------------------------------------------------ parameter table */

typedef struct {
    lm_model *m;
    float *base; /* NULL: build the table; else bind views into base */
    lm_weights *w;
    int i;
    const char *overflow; /* the first tensor whose size overflowed int64, or NULL */
} layout_state;

static void put(layout_state *s, float **slot, const char *name, int ndim, int64_t a, int64_t b,
                int decay) {
    lm_model *m = s->m;
    if (!s->base) {
        lm_tensor_info *t = &m->tensors[m->ntensors++];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->off = m->nparams;
        t->ndim = ndim;
        t->shape[0] = a;
        t->shape[1] = ndim > 1 ? b : 1;
        t->decay = decay;
        int64_t cnt, total;
        if (!nsa_mul_ok(a, ndim > 1 ? b : 1, &cnt) || !nsa_add_ok((int64_t)m->nparams, cnt, &total))
            s->overflow = s->overflow ? s->overflow : name;
        else
            m->nparams = (size_t)total;
    } else {
        *slot = s->base + m->tensors[s->i++].off;
    }
}

/* Returns the first tensor whose size overflowed (only when counting), or NULL. */
static const char *layout(lm_model *m, float *base, lm_weights *w) {
    layout_state s = {m, base, w, 0, NULL};
    const lm_model_config *c = &m->cfg;
    const int C = c->dim, D = m->D, Hq = c->n_head, Hkv = c->n_kv_head, F = c->ffn;
    static const char *br[3] = {"cmp", "sel", "win"}, *kv[2] = {"k", "v"};
    char nm[64];
    put(&s, &w->emb, "emb", 2, LM_VOCAB, C, 0);
    for (int l = 0; l < c->n_layer; l++) {
        lm_layer_w *L = &w->layer[l];
#define P(field, suffix, ...)                                                                      \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "layers.%d.%s", l, suffix);                                       \
        put(&s, &L->field, nm, __VA_ARGS__);                                                       \
    } while (0)
        P(ln1, "ln1", 1, C, 0, 0);
        P(wq, "attn.wq", 2, (int64_t)Hq * D, C, 1);
        for (int b = 0; b < 3; b++) {
            char k1[24], v1[24];
            snprintf(k1, sizeof k1, "attn.wk_%s", br[b]);
            snprintf(v1, sizeof v1, "attn.wv_%s", br[b]);
            P(wk[b], k1, 2, (int64_t)Hkv * D, C, 1);
            P(wv[b], v1, 2, (int64_t)Hkv * D, C, 1);
        }
        P(wg, "attn.wg", 2, (int64_t)Hq * 3, C, 1);
        P(bg, "attn.bg", 1, (int64_t)Hq * 3, 0, 0);
        P(wo, "attn.wo", 2, C, (int64_t)Hq * D, 1);
        P(ln2, "ln2", 1, C, 0, 0);
        P(w1, "mlp.w1", 2, F, C, 1);
        P(w3, "mlp.w3", 2, F, C, 1);
        P(w2, "mlp.w2", 2, C, F, 1);
        if (c->phi == LM_PHI_LEARNED)
            for (int j = 0; j < 2; j++) {
                char a1[24], a2[24], a3[24];
                snprintf(a1, sizeof a1, "attn.phi_%s.pe", kv[j]);
                snprintf(a2, sizeof a2, "attn.phi_%s.w1", kv[j]);
                snprintf(a3, sizeof a3, "attn.phi_%s.w2", kv[j]);
                P(phi_pe[j], a1, 2, c->l, D, 0);
                P(phi_w1[j], a2, 2, D, (int64_t)c->l * D, 1);
                P(phi_w2[j], a3, 2, D, D, 1);
            }
#undef P
    }
    put(&s, &w->lnf, "lnf", 1, C, 0, 0);
    put(&s, &w->head, "head", 2, LM_VOCAB, C, 1);
    return s.overflow;
}

static void init_params(lm_model *m, uint64_t seed) {
    uint64_t st = seed ^ 0x5eedf00dULL;
    const float proj_scale = 1.0f / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->ntensors; i++) {
        const lm_tensor_info *t = &m->tensors[i];
        float *p = m->hparams + t->off;
        const size_t n = (size_t)(t->shape[0] * t->shape[1]);
        const char *nm = t->name;
        const size_t len = strlen(nm);
        int ones = (len >= 3 && (!strcmp(nm + len - 3, "ln1") || !strcmp(nm + len - 3, "ln2"))) ||
                   !strcmp(nm, "lnf");
        int zero = strstr(nm, ".bg") || (strstr(nm, "phi_") && strstr(nm, ".w2"));
        float sd = 0.02f;
        if (strstr(nm, "attn.wo") || strstr(nm, "mlp.w2")) sd *= proj_scale;
        for (size_t k = 0; k < n; k++) {
            float r = lm_rng_normal(&st); /* drawn for every tensor: the stream stays aligned */
            p[k] = ones ? 1.0f : zero ? 0.0f : sd * r;
        }
    }
}

/* ------------------------------------------------------------------ activations */

static void free_act(lm_model *m) {
    if (m->act_mem) m->be->release(m->act_mem);
    if (m->att_mem) m->be->release(m->att_mem);
    if (m->ranges_mem) m->be->release(m->ranges_mem);
    if (m->keep_mem) m->be->release(m->keep_mem);
    m->act_mem = NULL;
    m->att_mem = NULL;
    m->ranges_mem = NULL;
    m->keep_mem = NULL;
    m->act_floats = 0;
    m->B = m->T = m->cap_N = 0;
}

/* Carves the activations of (B, T) out of base (NULL: only counts) and returns the floats they
 * take, the backward scratch last. With act_lowp, the buffers that hold att_dtype (2 bytes) take
 * half the floats. On a device every buffer starts on 16 bytes (the tensor-core attention roles
 * want q/k/v rows there, also when B·T is odd, as in a prefill). */
static size_t carve(lm_model *m, float *base, int B, int T) {
    const lm_model_config *c = &m->cfg;
    const int64_t N = (int64_t)B * T, C = c->dim, D = m->D, Hq = c->n_head, Hkv = c->n_kv_head;
    const int64_t F = c->ffn, L = c->n_layer;
    int64_t Tc = nsa_num_cmp(&m->nsa, T);
    const int64_t Mc = (int64_t)B * (Tc > 0 ? Tc : 1) * Hkv; /* φ rows (≥ 1 block for decode) */
    const int learned = c->phi == LM_PHI_LEARNED, lowp = m->be->act_lowp;
    const int dev = m->be->device != NSA_DEVICE_CPU;
    size_t off = 0;
#define TAKE(ptr, cnt)                                                                             \
    ((ptr) = base ? base + off : NULL, off += dev ? ((size_t)(cnt) + 3) / 4 * 4 : (size_t)(cnt))
#define TAKE_LO(ptr, cnt) TAKE(ptr, lowp ? ((size_t)(cnt) + 1) / 2 : (size_t)(cnt))
    for (int l = 0; l < L; l++) {
        lm_layer_act *A = &m->act[l];
        if (base) memset(A, 0, sizeof *A);
        TAKE(A->x, N * C);
        TAKE_LO(A->ln1, N * C);
        TAKE(A->rstd1, N);
        TAKE_LO(A->q, N * Hq * D);
        for (int b = 0; b < 3; b++) {
            TAKE_LO(A->k[b], N * Hkv * D);
            TAKE_LO(A->v[b], N * Hkv * D);
        }
        TAKE(A->z, N * Hq * 3);
        TAKE(A->g, N * Hq * 3);
        TAKE_LO(A->att, N * Hq * D);
        TAKE(A->xm, N * C);
        TAKE_LO(A->ln2, N * C);
        TAKE(A->rstd2, N);
        TAKE_LO(A->a, N * F);
        TAKE_LO(A->b, N * F);
        TAKE_LO(A->h, N * F);
        if (learned) {
            TAKE(A->kc, Mc * D);
            TAKE(A->vc, Mc * D);
            for (int j = 0; j < 2; j++) {
                TAKE(A->phi_u[j], Mc * c->l * D);
                TAKE(A->phi_h[j], Mc * 2 * D);
            }
        }
    }
    TAKE(m->xL, N * C);
    TAKE_LO(m->xf, N * C);
    TAKE(m->rstdf, N);
    TAKE(m->logits, N * LM_VOCAB);
    TAKE(m->probs, N * LM_VOCAB);
    /* backward scratch (lm/pass.c carves it), then the fused projection's (N, P) rows, P
     * rounded up to 8 (16-byte rows in bf16) */
    TAKE(m->scratch, N * C * 2 + N * F * 3 + N * Hq * D * 2 + N * Hkv * D * 6 + N * Hq * 6 +
                         N * LM_VOCAB + (learned ? Mc * D * 2 + Mc * (c->l * D + 2 * D) : 0) +
                         (m->be->qkv_split ? N * ((Hq * D + 6 * Hkv * D + 3 * Hq + 7) / 8 * 8)
                                           : 0));
#undef TAKE_LO
#undef TAKE
    return off;
}

int lm_model_ensure_act(lm_model *m, int B, int T, char *err, size_t n) {
    if (m->act_mem && m->B == B && m->T == T) return 0;
    free_act(m);
    const lm_model_config *c = &m->cfg;
    const int64_t N = (int64_t)B * T, D = m->D, Hq = c->n_head, Hkv = c->n_kv_head;
    const int64_t L = c->n_layer;
    const size_t total = carve(m, NULL, B, T);
    m->act_mem = m->be->alloc(sizeof(float) * total);
    if (!m->act_mem)
        return lm_fail(err, n, "out of %s memory for activations (%zu floats)", m->be->name, total);
    m->ranges_mem = m->be->alloc(sizeof(int32_t) * (size_t)(L * N * Hkv * c->n * 2));
    if (!m->ranges_mem) {
        free_act(m);
        return lm_fail(err, n, "out of %s memory for the selection ranges", m->be->name);
    }
    if (m->be->att_dtype != NSA_DTYPE_F32) { /* the NSA tensors and their gradients */
        const int64_t att = 2 * (N * Hq * D * 2 + N * Hkv * D * 6 + N * Hq * 3);
        m->att_mem = m->be->alloc(nsa_dtype_size(m->be->att_dtype) * (size_t)att);
        if (!m->att_mem) {
            free_act(m);
            return lm_fail(err, n, "out of %s memory for the attention tensors", m->be->name);
        }
        const size_t kb = (size_t)(L * 3 * N * Hq) * (nsa_dtype_size(m->be->att_dtype) * D + 4);
        m->keep_mem = m->be->alloc(kb);
        if (!m->keep_mem) {
            free_act(m);
            return lm_fail(err, n, "out of %s memory for the kept attention outputs", m->be->name);
        }
    }
    m->act_floats = total;
    carve(m, m->act_mem, B, T);
    m->B = B;
    m->T = T;
    m->cap_N = (int)N;
    return 0;
}

int lm_model_ensure_rope(lm_model *m, int64_t P, char *err, size_t n) {
    if (P <= m->rope_len) return 0;
    int64_t want = P < 256 ? 256 : P;
    const size_t sz = sizeof(float) * (size_t)(want * (m->D / 2));
    float *c = malloc(sz), *s = malloc(sz);
    float *dc = c && s ? m->be->alloc(sz) : NULL, *ds = dc ? m->be->alloc(sz) : NULL;
    if (!ds) {
        free(c);
        free(s);
        if (dc) m->be->release(dc);
        return lm_fail(err, n, "out of memory for the RoPE table");
    }
    lm_rope_table(c, s, (int)want, m->D, m->cfg.rope_base);
    m->be->upload(dc, c, sz);
    m->be->upload(ds, s, sz);
    free(c);
    free(s);
    if (m->rope_cos) m->be->release(m->rope_cos);
    if (m->rope_sin) m->be->release(m->rope_sin);
    m->rope_cos = dc;
    m->rope_sin = ds;
    m->rope_len = (int)want;
    return 0;
}

/* ------------------------------------------------------------------ create / destroy */

/* The library validates the NSA fields and names the bad one: ask it with a 1-token forward. */
static int probe_nsa(lm_model *m, nsa_context *ctx, char *err, size_t n) {
    const int64_t Hq = m->cfg.n_head, Hkv = m->cfg.n_kv_head, D = m->D;
    float *z = calloc((size_t)(2 * Hq * D + Hkv * D + 3 * Hq), sizeof(float)); /* ≤ 2^26 */
    if (!z) return lm_fail(err, n, "out of memory");
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = m->nsa;
    a.q = nsa_tensor_4d(z, NSA_DTYPE_F32, 1, 1, Hq, D);
    a.out = nsa_tensor_4d(z + Hq * D, NSA_DTYPE_F32, 1, 1, Hq, D);
    a.k_cmp = nsa_tensor_4d(z + 2 * Hq * D, NSA_DTYPE_F32, 1, 1, Hkv, D);
    a.k_sel = a.k_win = a.v_cmp = a.v_sel = a.v_win = a.k_cmp;
    a.gates = nsa_tensor_4d(z + 2 * Hq * D + Hkv * D, NSA_DTYPE_F32, 1, 1, Hq, 3);
    const nsa_status st = nsa_forward(ctx, &a);
    free(z);
    if (st != NSA_OK) return lm_fail(err, n, "NSA config: %s", nsa_context_message(ctx));
    return 0;
}

int lm_model_create(lm_model *m, const lm_model_config *cfg, nsa_context *ctx, uint64_t seed,
                    char *err, size_t n) {
    return lm_model_create_on(m, cfg, ctx, &lm_cpu_backend, seed, err, n);
}

int lm_model_create_on(lm_model *m, const lm_model_config *cfg, nsa_context *ctx,
                       const lm_backend *be, uint64_t seed, char *err, size_t n) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->ctx = ctx;
    m->be = be;
    const lm_model_config *c = cfg;
    if (lm_model_config_check(c, err, n)) return -1;
    m->D = c->dim / c->n_head;
    if (be->device != NSA_DEVICE_CPU && c->phi == LM_PHI_LEARNED)
        return lm_fail(err, n, "phi: learned is not supported on %s yet (use phi=avg)", be->name);
    m->nsa = lm_nsa_config(c);
    if (probe_nsa(m, ctx, err, n)) return -1;
    lm_weights table_only; /* layout() takes slot addresses even when only counting */
    const char *big = layout(m, NULL, &table_only);
    int64_t bytes;
    if (big || !nsa_mul_ok((int64_t)m->nparams, (int64_t)sizeof(float), &bytes) ||
        (uint64_t)bytes > SIZE_MAX) {
        const size_t np = m->nparams;
        memset(m, 0, sizeof *m);
        return lm_fail(err, n, "parameters: the size of %s overflows (%zu parameters before it)",
                       big ? big : "the parameter array", np);
    }
    m->params = be->alloc(m->nparams * sizeof(float));
    m->grads = be->alloc(m->nparams * sizeof(float));
    m->decay = be->alloc(m->nparams);
    m->hparams = be->device == NSA_DEVICE_CPU ? m->params : calloc(m->nparams, sizeof(float));
    uint8_t *decay = malloc(m->nparams);
    if (!m->params || !m->grads || !m->decay || !m->hparams || !decay) {
        const size_t np = m->nparams; /* lm_model_destroy clears m */
        free(decay);
        lm_model_destroy(m);
        return lm_fail(err, n, "out of memory for the %zu parameters (%.1f MiB of weights and "
                       "as much of gradients on %s)", np, (double)np * sizeof(float) / 1048576.0,
                       be->name);
    }
    layout(m, m->params, &m->w);
    layout(m, m->grads, &m->dw);
    for (int i = 0; i < m->ntensors; i++) {
        const lm_tensor_info *t = &m->tensors[i];
        memset(decay + t->off, t->decay, (size_t)(t->shape[0] * t->shape[1]));
    }
    be->upload(m->decay, decay, m->nparams);
    free(decay);
    init_params(m, seed);
    lm_model_push(m);
    return 0;
}

void lm_model_pull(lm_model *m) {
    if (m->hparams != m->params) m->be->download(m->hparams, m->params, m->nparams * sizeof(float));
}

void lm_model_push(lm_model *m) {
    if (m->hparams != m->params) m->be->upload(m->params, m->hparams, m->nparams * sizeof(float));
}

void lm_model_destroy(lm_model *m) {
    if (!m) return;
    if (m->be) {
        if (m->hparams != m->params) free(m->hparams);
        m->be->release(m->params);
        m->be->release(m->grads);
        m->be->release(m->decay);
        if (m->rope_cos) m->be->release(m->rope_cos);
        if (m->rope_sin) m->be->release(m->rope_sin);
        free_act(m);
    }
    free(m->doc_cu);
    free(m->doc_mask);
    memset(m, 0, sizeof *m);
}
