// SPDX-License-Identifier: Apache-2.0
/* lm.h — the byte-level NSA language model: config, parameters, forward/backward, optimizer,
 * data, checkpoints, heartbeat and sampling, all on the public API of libnsa (include/nsa.h).
 * What it is not: a tensor framework. Every layer is a pair of plain functions (forward,
 * backward by hand, llm.c style) over contiguous fp32 arrays, called through a backend table
 * (lm_backend): the CPU's (OpenBLAS + lm/layers.c) or CUDA's (lm/gpu.h).
 * Key invariant: the same config, seed and step give bitwise the same parameters, whether the
 * run was interrupted and resumed or not (batches are a pure function of (seed, step)).
 * Shapes: B batch, T tokens, N = B·T rows, C model dim, Hq/Hkv heads, D head dim, F MLP hidden.
 */
#ifndef NSA_LM_H
#define NSA_LM_H

#include "nsa.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LM_VOCAB 256
#define LM_MAX_LAYERS 64
#define LM_MAX_TENSORS (16 + 24 * LM_MAX_LAYERS)
/* Upper bounds of the model and batch (docs/hardening.md): above the largest published widths
 * (16384) and SwiGLU hidden sizes (53248), and low enough that every size derived from them
 * fits int64 and every GEMM dimension int. */
#define LM_MAX_DIM 16384
#define LM_MAX_FFN 131072
#define LM_MAX_TOKENS (1 << 24) /* batch x seq_len */

typedef enum { LM_PHI_AVG = 0, LM_PHI_LEARNED = 1 } lm_phi_kind;
typedef enum { LM_GATE_SIGMOID = 0, LM_GATE_SOFTMAX = 1 } lm_gate_kind;

/* What fixes the shapes of the parameters and the meaning of a checkpoint. */
typedef struct {
    int n_layer, dim, n_head, n_kv_head, ffn; /* ffn: SwiGLU hidden F                 */
    int l, d, lp, n, w;                        /* NSA (n_init = 1, n_local = 2)        */
    int phi;                                   /* lm_phi_kind                          */
    int gate;                                  /* lm_gate_kind                         */
    float gate_temp;                           /* softmax temperature                  */
    float rope_base;                           /* 10000                                */
} lm_model_config;

/* Everything `nsa train` reads from defaults, a config file and flags. */
typedef struct {
    lm_model_config m;
    int seq_len, batch, steps, warmup;
    int grad_accum;      /* micro-batches of `batch` sequences per optimizer step (>= 1)   */
    float lr, lr_min_ratio, weight_decay, beta1, beta2, eps, clip;
    uint64_t seed;
    int log_every, eval_every, eval_batches, ckpt_every, threads;
    char out[512], data[512];
    char device[512];    /* "cpu" or "cuda": where the model computes (not a model field)  */
    char precision[512]; /* cuda: "bf16" (bf16 GEMMs and attention, fp32 master weights and
                            loss) or "f32"; the CPU is always f32                          */
    char documents[512]; /* packed documents (docs/varlen.md): "" off, "books" (one per book
                            of the KJV corpus), or a separator that starts each document    */
} lm_train_config;

/* ---- config (lm/config.c) */
void lm_train_config_default(lm_train_config *c);
/* Sets one key ("dim", "lr", "phi", ...; '-' and '_' alike). Returns 0, or -1 with a message
 * naming the key in err. */
int lm_config_set(lm_train_config *c, const char *key, const char *val, char *err, size_t n);
/* Reads key = value lines (# comments) from path. 0 or -1 with err naming file and line. */
int lm_config_load(lm_train_config *c, const char *path, char *err, size_t n);
/* Checks every field (the model's with lm_model_config_check); -1 with err naming the first
 * bad one. */
int lm_config_check(const lm_train_config *c, char *err, size_t n);
/* Checks every model field against its range (the one check of a model config, whether it
 * comes from the command line, a config file or a checkpoint). -1 with err naming it. */
int lm_model_config_check(const lm_model_config *m, char *err, size_t n);
/* Writes the whole config as key=value lines (the format lm_config_load reads). */
void lm_config_write(const lm_train_config *c, FILE *f);
/* The i-th key of the table (0 <= i): its name, help and default as text (into def, n bytes).
 * 0 past the last key. */
int lm_config_key(int i, const char **name, const char **help, char *def, size_t n);
/* 1 if key names a config key ('-' and '_' alike). */
int lm_config_is_key(const char *key);
/* The model config as one "k=v k=v" string (checkpoint metadata), and back (checked with
 * lm_model_config_check). */
void lm_model_config_str(const lm_model_config *m, char *buf, size_t n);
int lm_model_config_parse(lm_model_config *m, const char *s, char *err, size_t n);
/* -1 and err naming the first field where a and b differ. */
int lm_model_config_diff(const lm_model_config *a, const lm_model_config *b, char *err, size_t n);
/* The NSA config the attention layers use. */
nsa_config lm_nsa_config(const lm_model_config *m);

/* ---- parameters: one flat fp32 array, described by a table of named tensors */
typedef struct {
    char name[64];
    size_t off; /* in floats */
    int ndim;
    int64_t shape[4];
    int decay; /* 1: AdamW weight decay applies (matrices), 0: norms, biases, embeddings */
} lm_tensor_info;

typedef struct {
    float *ln1;             /* (C)                */
    float *wq;              /* (Hq·D, C)          */
    float *wk[3], *wv[3];   /* (Hkv·D, C) per branch cmp, sel, win */
    float *wg, *bg;         /* (Hq·3, C), (Hq·3)  */
    float *wo;              /* (C, Hq·D)          */
    float *ln2;             /* (C)                */
    float *w1, *w3;         /* (F, C)             */
    float *w2;              /* (C, F)             */
    float *phi_pe[2];       /* (l, D) for k, v: intra-block position embedding   (learned φ) */
    float *phi_w1[2];       /* (D, l·D) MLP over the flattened block              (learned φ) */
    float *phi_w2[2];       /* (D, D)                                             (learned φ) */
} lm_layer_w;

typedef struct {
    float *emb;       /* (256, C) */
    lm_layer_w layer[LM_MAX_LAYERS];
    float *lnf;       /* (C)      */
    float *head;      /* (256, C) */
} lm_weights;

/* Activations of one layer kept for backward (under lm_backend.act_lowp, ln1, q, k, v, att,
 * ln2, a, b and h hold att_dtype values). */
typedef struct {
    float *x;                     /* (N, C) layer input (residual)          */
    float *ln1, *rstd1;           /* (N, C), (N)                             */
    float *q;                     /* (N, Hq·D) after RoPE                    */
    float *k[3], *v[3];           /* (N, Hkv·D) k after RoPE                 */
    float *kc, *vc;               /* (B, Tc, Hkv, D) learned φ output        */
    float *phi_u[2], *phi_h[2];   /* (B·Tc·Hkv, l·D), (2, B·Tc·Hkv, D)       */
    float *z, *g;                 /* (N, Hq·3) gate logits, gates            */
    float *att;                   /* (N, Hq·D) NSA output                    */
    float *xm;                    /* (N, C) after attention residual         */
    float *ln2, *rstd2;           /* (N, C), (N)                             */
    float *a, *b, *h;             /* (N, F) w1 branch, w3 branch, silu(a)·b  */
} lm_layer_act;

typedef struct lm_model lm_model;

/* The backend the model computes through: where params, grads and activations live, and the
 * layer operations over them (same signatures as the CPU layers below). Pointers given to
 * these functions are backend memory, except tokens/targets (host bytes). The CPU backend is
 * lm_cpu_backend (OpenBLAS + lm/layers.c); the CUDA one comes from lm_cuda_backend (lm/gpu.h).
 * Reductions that return to the host (cross_entropy, clip_grads, gate_stats) wait for the
 * device; everything else may be asynchronous. */
typedef struct lm_backend {
    const char *name;       /* "cpu", "cuda-bf16", "cuda-f32"                        */
    nsa_device_kind device; /* where every float* below lives                        */
    nsa_dtype att_dtype;    /* dtype of the NSA layer's tensors (f32, or bf16 on GPU) */
    /* 1: the activations that only feed GEMMs or the NSA layer hold att_dtype values: ln1,
     * ln2, xf (rmsnorm's y), h (swiglu's h), att (written by the NSA layer itself), q, k[b],
     * v[b] (written by qkv_split) and SwiGLU's a, b (written by matmul_lo, read by swiglu and
     * its backward); matmul and matmul_backward read x in att_dtype (y, dx stay f32). So do
     * the gradients that only feed GEMMs: swiglu_backward's da, db, qkv_gather's dy and
     * cross_entropy_backward's dlogits, read by matmul_backward_lo. 0: all f32. Set only
     * together with qkv_split, matmul_lo and matmul_backward_lo. */
    int act_lowp;
    void *(*alloc)(size_t bytes); /* zeroed; NULL when out of memory                  */
    void (*release)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);   /* host -> backend    */
    void (*download)(void *dst, const void *src, size_t bytes); /* backend -> host    */
    void (*zero)(float *p, size_t n);
    void (*copy)(float *dst, const float *src, size_t n);
    /* f32 (n) <-> att_dtype (n); unused when att_dtype is f32 */
    void (*to_att)(void *dst, const float *src, size_t n);
    void (*from_att)(float *dst, const void *src, size_t n);
    void (*matmul)(float *y, const float *x, const float *W, int M, int K, int O, int acc);
    void (*matmul_backward)(float *dx, float *dW, const float *dy, const float *x,
                            const float *W, int M, int K, int O, int acc_dx);
    /* act_lowp only (else NULL): matmul with y (M, O) written in att_dtype, and matmul_backward
     * with dy in att_dtype, its rows ldy >= O elements apart. */
    void (*matmul_lo)(void *y, const float *x, const float *W, int M, int K, int O);
    void (*matmul_backward_lo)(float *dx, float *dW, const void *dy, int ldy, const float *x,
                               const float *W, int M, int K, int O, int acc_dx);
    /* Optional fused q/k/v/gate projection (NULL: one matmul per weight, then rope, bias,
     * gates). y (N, P) is ln1 · [wq; wk_cmp; wv_cmp; wk_sel; wv_sel; wk_win; wv_win; wg]^T,
     * P = Hq·D + 6·Hkv·D + 3·Hq (the eight weights are adjacent in the parameter table):
     * qkv_split writes A->q and A->k[b] (RoPE at pos0 + t), A->v[b], A->z = y_g + bg and
     * A->g = gates(z); qkv_gather is its backward before the GEMM: dy (N, P; rows ldy >= P
     * apart) from dq, dk[b] (rotated back), dv[b] (NULL dk/dv[b] = zero) and dz (f32); dy, dq,
     * dk, dv are att_dtype when act_lowp, else f32. */
    void (*qkv_split)(lm_layer_act *A, const float *y, const float *bg, const float *cos_t,
                      const float *sin_t, int B, int T, int Hq, int Hkv, int D, int64_t pos0,
                      int gate, float temp);
    void (*qkv_gather)(float *dy, int ldy, const void *dq, const void *const dk[3],
                       const void *const dv[3], const float *dz, const float *cos_t,
                       const float *sin_t, int B, int T, int Hq, int Hkv, int D);
    void (*rmsnorm)(float *y, float *rstd, const float *x, const float *w, int M, int C);
    void (*rmsnorm_backward)(float *dx, float *dw, const float *dy, const float *x,
                             const float *w, const float *rstd, int M, int C);
    void (*rope)(float *x, const float *cos_t, const float *sin_t, int B, int T, int H, int D,
                 int64_t pos0, int inverse);
    void (*swiglu)(float *h, const float *a, const float *b, int64_t n);
    void (*swiglu_backward)(float *da, float *db, const float *dh, const float *a,
                            const float *b, int64_t n);
    void (*gates)(float *g, const float *z, int64_t MH, int kind, float temp);
    void (*gates_backward)(float *dz, const float *dg, const float *g, int64_t MH, int kind,
                           float temp);
    /* mask (M) host bytes or NULL (every row): rows with mask 0 have no loss and no gradient
     * (a document's last byte, whose target is the next document's first), and the mean is
     * over the others; the backward's rows > 0 divides by rows instead (a micro-batch of a
     * global batch of `rows` loss rows, lm_cross_entropy_backward) */
    float (*cross_entropy)(float *probs, const float *logits, const uint8_t *targets,
                           const uint8_t *mask, int M, int V);
    void (*cross_entropy_backward)(float *dlogits, const float *probs, const uint8_t *targets,
                                   const uint8_t *mask, int M, int V, int64_t rows);
    /* x (N, C) = emb[tokens];  demb (256, C) += Σ rows of dx by token */
    void (*embed)(float *x, const float *emb, const uint8_t *tokens, int N, int C);
    void (*embed_backward)(float *demb, const float *dx, const uint8_t *tokens, int N, int C);
    /* z (N, O) += b;  db (O) += Σ_rows dz */
    void (*bias_add)(float *z, const float *b, int N, int O);
    void (*bias_backward)(float *db, const float *dz, int N, int O);
    /* lm_gate_stats over the gates of `layers` layers (each (MH, 3)): sums into out */
    void (*gate_stats)(float *const *g, int layers, int64_t MH, double *entropy_sum,
                       double *collapse_sum, double share_sum[3]);
    float (*clip_grads)(float *grads, size_t n, float clip);
    /* AdamW over n params; decay (n bytes, backend memory): 1 where weight decay applies */
    void (*adamw)(float *p, const float *g, float *mom, float *vel, const uint8_t *decay,
                  size_t n, int t, float lr, float beta1, float beta2, float eps, float wd);
    /* Waits for queued work: 0, or -1 with err naming the device error. */
    int (*sync)(char *err, size_t n);
} lm_backend;

extern const lm_backend lm_cpu_backend;

struct lm_model {
    lm_model_config cfg;
    nsa_config nsa;
    const lm_backend *be;                 /* lm_cpu_backend unless created on another   */
    float *hparams;                       /* host copy of params (== params on the CPU):
                                             checkpoints and init read and write it      */
    uint8_t *decay;                       /* (nparams) backend: 1 where AdamW decays     */
    void *att_mem;                        /* att_dtype copies of the NSA tensors (GPU)   */
    int32_t *ranges_mem;                  /* (layers, N, Hkv, n, 2) backend: each layer's
                                             selection ranges, written by the training
                                             forward and reused by its backward          */
    void *keep_mem;                       /* att_dtype other than f32 only: per layer the
                                             training forward's branch outputs (3, N, Hq,
                                             D) att_dtype, then all layers' lse (3, N,
                                             Hq) f32; the backward reads them instead of
                                             recomputing the forward                     */
    int D;                                /* head dim C / Hq                    */
    lm_tensor_info tensors[LM_MAX_TENSORS];
    int ntensors;
    size_t nparams;
    float *params, *grads;                /* (nparams) each                     */
    lm_weights w, dw;                     /* views into params / grads          */
    nsa_context *ctx;
    /* activations for (B, T) up to the capacity they were allocated for */
    int B, T, cap_N;
    float *act_mem;
    size_t act_floats;
    lm_layer_act act[LM_MAX_LAYERS];
    float *xL;                            /* (N, C) output of the last layer    */
    float *xf, *rstdf;                    /* (N, C), (N) final norm             */
    float *logits;                        /* (N, 256)                           */
    float *probs;                         /* (N, 256) softmax (backward input)  */
    float *scratch;                       /* backward work space                */
    float *rope_cos, *rope_sin;           /* (rope_len, D/2)                    */
    int rope_len;
    const uint8_t *targets;               /* (N) of the last forward, or NULL   */
    /* packed documents of the batch (lm_model_set_docs; docs/varlen.md): doc_n documents
     * over the N = B·T rows, host arrays; doc_n = 0: every row one sequence               */
    int doc_n, doc_max, doc_cap;
    int32_t *doc_cu;                      /* (doc_n + 1) offsets in rows          */
    uint8_t *doc_mask;                    /* (N) 0: no loss (a document's last byte) */
    /* gate statistics of the last forward, over layers, rows and heads */
    double gate_entropy_mean, gate_collapse_frac, gate_share[3];
};

/* ---- model (lm/model.c) */
/* Builds the model and its parameter table; params are N(0, 0.02) from seed (output
 * projections scaled by 1/sqrt(2·layers), norms 1, gate biases 0, φ's last layer 0).
 * Returns 0 or -1 with err. ctx is borrowed and must outlive the model. */
int lm_model_create(lm_model *m, const lm_model_config *cfg, nsa_context *ctx, uint64_t seed,
                    char *err, size_t n);
/* The same on backend be (params, grads and activations in its memory). */
int lm_model_create_on(lm_model *m, const lm_model_config *cfg, nsa_context *ctx,
                       const lm_backend *be, uint64_t seed, char *err, size_t n);
/* params -> hparams (before a checkpoint is written) and hparams -> params (after one is
 * loaded); no-ops on the CPU. */
void lm_model_pull(lm_model *m);
void lm_model_push(lm_model *m);
void lm_model_destroy(lm_model *m);
/* Forward over tokens (B, T). With targets (B, T) returns the mean cross-entropy in nats,
 * else 0; logits (B·T, 256) stay in m->logits. caches (one per layer) or NULL: when given,
 * every attention call is an nsa_kv_cache_prefill into them. -1 on a library error (err). */
int lm_forward(lm_model *m, const uint8_t *tokens, const uint8_t *targets, int B, int T,
               nsa_kv_cache **caches, float *loss, char *err, size_t n);
/* Packs the next forward/backward's batch (B, T) into documents: bound (B, T) host bytes, 1
 * where the target y[b][t] is the first byte of a new document (lm_batch's bound). Each row
 * starts a document; a document never spans rows; positions (RoPE) and attention restart per
 * document, and a bound row has no loss. bound NULL: plain rows. The CPU backend only (the
 * CUDA trainer does not pack yet). -1 with err. */
int lm_model_set_docs(lm_model *m, const uint8_t *bound, int B, int T, char *err, size_t n);
/* Gradients of the last forward's loss into m->grads (overwritten). -1 on error. */
int lm_backward(lm_model *m, const uint8_t *tokens, char *err, size_t n);
/* The same for one micro-batch of a global batch (gradient accumulation): the loss is the sum
 * over this batch's loss rows divided by rows (the global batch's loss rows; 0: this batch's,
 * as lm_backward), and accumulate = 1 adds to m->grads instead of overwriting them, so that
 * micro-batches taken in order give the global batch's gradient up to summation order. */
int lm_backward_acc(lm_model *m, const uint8_t *tokens, int64_t rows, int accumulate, char *err,
                    size_t n);
/* One decode token at position pos (= cache length) for batch row 0: logits (256). */
int lm_decode(lm_model *m, nsa_kv_cache **caches, uint8_t token, int64_t pos, float *logits,
              char *err, size_t n);
/* One decode step of rows 0 .. B-1 together: tokens[b] at position pos[b] (= row b's cache
 * length; rows may differ); logits (B, 256) on the host. */
int lm_decode_rows(lm_model *m, nsa_kv_cache **caches, const uint8_t *tokens, const int64_t *pos,
                   int B, float *logits, char *err, size_t n);
/* A prefill of tokens (T) into cache row b (empty) of every layer; logits (T, 256) stay in
 * m->logits. */
int lm_prefill_row(lm_model *m, const uint8_t *tokens, int T, int b, nsa_kv_cache **caches,
                   char *err, size_t n);

/* Writes the message (printf-style) into err[n] when err is not NULL; returns -1, the lm
 * functions' failure value. */
int lm_fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* (Re)allocates activations and backward scratch for (B, T); the RoPE table for positions
 * < P. Used by the forward/backward/decode passes (lm/pass.c). */
int lm_model_ensure_act(lm_model *m, int B, int T, char *err, size_t n);
int lm_model_ensure_rope(lm_model *m, int64_t P, char *err, size_t n);

/* ---- layers (lm/layers.c): each forward has its backward; d-arrays accumulate (+=) where
 * noted, and overwrite otherwise. */
/* Threads the CPU GEMMs use (n ≤ 0: OpenMP's default, all cores); any count gives the same
 * bits (fixed output tiles, lm/layers.c). */
void lm_blas_threads(int n);
/* y (M, O) = x (M, K) · W (O, K)^T (+ y if acc). */
void lm_matmul(float *y, const float *x, const float *W, int M, int K, int O, int acc);
/* dx (M, K) (+)= dy (M, O) · W (O, K);  dW (O, K) += dy^T · x. Either output may be NULL. */
void lm_matmul_backward(float *dx, float *dW, const float *dy, const float *x, const float *W,
                        int M, int K, int O, int acc_dx);
/* y (M, C) = x / rms(x) · w; rstd (M). */
void lm_rmsnorm(float *y, float *rstd, const float *x, const float *w, int M, int C);
/* dx (M, C) += ..., dw (C) += ... */
void lm_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         const float *rstd, int M, int C);
/* The RoPE table: cos/sin (P, D/2) of pos·base^(-2i/D). The one table q and k both use. */
void lm_rope_table(float *cos_t, float *sin_t, int P, int D, float base);
/* In place on x (B, T, H, D) at absolute positions pos0 + t (inverse = 1: rotate back,
 * which is the backward of the rotation). */
void lm_rope(float *x, const float *cos_t, const float *sin_t, int B, int T, int H, int D,
             int64_t pos0, int inverse);
/* h (M, F) = silu(a) · b;  backward: da, db (M, F) overwrite. */
void lm_swiglu(float *h, const float *a, const float *b, int64_t n);
void lm_swiglu_backward(float *da, float *db, const float *dh, const float *a, const float *b,
                        int64_t n);
/* Gates g (M, H, 3) from logits z: sigmoid(z), or softmax(z / temp) over the 3 branches. */
void lm_gates(float *g, const float *z, int64_t MH, int kind, float temp);
void lm_gates_backward(float *dz, const float *dg, const float *g, int64_t MH, int kind,
                       float temp);
/* Mean cross-entropy (nats) of logits (M, V) against targets over the rows whose mask byte is
 * set (mask NULL: all); probs (M, V) = softmax of every row. */
float lm_cross_entropy(float *probs, const float *logits, const uint8_t *targets,
                       const uint8_t *mask, int M, int V);
/* dlogits (M, V) = (probs - onehot) / count on rows in the mask, 0 on the others; count is
 * the rows in the mask, or rows when rows > 0 (a micro-batch's share of a global batch's mean:
 * the same 1/rows as the global batch's own backward, so its rows match bit for bit). */
void lm_cross_entropy_backward(float *dlogits, const float *probs, const uint8_t *targets,
                               const uint8_t *mask, int M, int V, int64_t rows);
/* Learnable φ over raw (B, T, Hkv, D) → (B, Tc, Hkv, D): out = mean(block) + W2·silu(W1·u),
 * u = flatten(block + pe). Saves u (B·Tc·Hkv, l·D) and hpre (2, B·Tc·Hkv, D): the hidden
 * pre-activation, then its silu. */
void lm_phi(float *out, float *u, float *hpre, const float *raw, const float *pe, const float *W1,
            const float *W2, int B, int T, int Hkv, int D, int l, int d);
/* draw (B, T, Hkv, D) += ..., dpe, dW1, dW2 += ...; work: (B·Tc·Hkv, l·D + 2D) floats. */
void lm_phi_backward(float *draw, float *dpe, float *dW1, float *dW2, const float *dout,
                     const float *u, const float *hpre, const float *W1, const float *W2, int B,
                     int T, int Hkv, int D, int l, int d, float *work);
/* Gate statistics over g (M, H, 3) (docs/design.md §4): accumulates into sums. */
void lm_gate_stats(const float *g, int64_t MH, double *entropy_sum, double *collapse_sum,
                   double share_sum[3]);

/* ---- optimizer (lm/optim.c) */
/* Learning rate at step (0-based): linear warm-up to lr, then cosine to lr·lr_min_ratio. */
float lm_lr_at(const lm_train_config *c, int step);
/* Scales grads (host) so their global L2 norm is at most clip (clip ≤ 0: no clipping); returns
 * the norm before clipping. A model's backend has its own (be->clip_grads). */
float lm_clip_grads(float *grads, size_t n, float clip);
/* One AdamW step t (1-based) over the table through m's backend; mom, vel (nparams, backend
 * memory) are the moments. */
void lm_adamw(const lm_model *m, float *mom, float *vel, int t, float lr,
              const lm_train_config *c);

/* ---- data (lm/data.c) */
typedef struct {
    uint8_t *bytes;
    size_t len;
    size_t train_len;   /* train = [0, train_len), val = [train_len, len) */
    uint64_t hash;      /* FNV-1a of the whole file: checkpoints record it */
    uint8_t *starts;    /* (len) 1 where a document starts (lm_corpus_documents); NULL: none */
    int64_t ndocs;
} lm_corpus;
/* Splits the corpus into documents (docs/varlen.md): spec "books" starts one at each line whose
 * verse reference is chapter 1 verse 1 ("Ge1:1 ", "Exo1:1 ": the KJV's books); any other spec
 * is a separator (\n, \t and \\ escapes) whose every occurrence starts a document. Byte 0
 * always starts one. -1 with err (empty spec, out of memory). */
int lm_corpus_documents(lm_corpus *c, const char *spec, char *err, size_t n);
/* Reads path whole; the last 10% is validation. -1 with err (missing, empty, too short for
 * seq_len + 1 in either split). */
int lm_corpus_load(lm_corpus *c, const char *path, int seq_len, char *err, size_t n);
void lm_corpus_free(lm_corpus *c);
/* The built-in corpus: the installed copy beside the running program (<bin>/../share/nsa), then
 * the build tree's, then the configured install prefix's; NULL if none. Not thread-safe. */
const char *lm_default_corpus(void);
/* Batch of step (a pure function of seed and step): x, y (B, T) from the train split; bound
 * (B, T) when not NULL: 1 where y[b][t] starts a document (lm_model_set_docs reads it; all 0
 * without documents). */
void lm_batch(const lm_corpus *c, uint64_t seed, int64_t step, int B, int T, uint8_t *x,
              uint8_t *y, uint8_t *bound);
/* Validation batch k of a fixed evenly spaced set (bound as lm_batch's). */
void lm_val_batch(const lm_corpus *c, int k, int nbatches, int B, int T, uint8_t *x, uint8_t *y,
                  uint8_t *bound);

/* A loader thread that prefetches the batches of steps step0, step0+1, ...; NULL when it
 * cannot start (no memory or thread, or step0 < 0, B < 1, T < 1). */
typedef struct lm_loader lm_loader;
lm_loader *lm_loader_start(const lm_corpus *c, uint64_t seed, int64_t step0, int B, int T);
/* Copies the next batch into x, y and (when not NULL) bound; returns the seconds waited. */
double lm_loader_next(lm_loader *L, uint8_t *x, uint8_t *y, uint8_t *bound);
void lm_loader_stop(lm_loader *L);

/* ---- checkpoints (lm/ckpt.c): safetensors with params, "adam.m.*", "adam.v.*" and metadata */
typedef struct {
    int64_t step;          /* optimizer steps done */
    uint64_t seed;
    uint64_t data_hash;
    char config[1024];     /* lm_model_config_str */
    int weights_only;      /* read: no optimizer state, step or seed (plain safetensors, or an
                              nsa file saved without moments): sampling or fine-tuning only */
    char note[512];        /* read: what the file lacks or how it was read, for the user; "" */
} lm_ckpt_meta;
/* Writes path atomically (temp file, fsync, rename, fsync of the directory) from m->hparams
 * (call lm_model_pull first for a model on a device); mom/vel (host) may be NULL (model only).
 * -1 with err; the old file at path is untouched on failure. */
int lm_ckpt_save(const char *path, const lm_model *m, const float *mom, const float *vel,
                 const lm_ckpt_meta *meta, char *err, size_t n);
/* Reads only the metadata (to build the model before loading); the whole file is still
 * checked. A plain safetensors file without a model config gets one inferred from its shapes
 * (layers, dim, heads, kv_heads, ffn, phi; the rest defaults), said in meta->note. */
int lm_ckpt_read_meta(const char *path, lm_ckpt_meta *meta, char *err, size_t n);
/* Loads params (and host mom/vel when not NULL) into m (hparams, then pushed to the model's
 * device); every parameter must be present with its exact shape and no other tensor may be.
 * A weights-only file (plain safetensors, F32/BF16/F16, or an nsa file saved without moments)
 * loads its weights, sets mom/vel to zero and meta->step to 0, and says so in meta->note.
 * -1 with err naming the field; m is unchanged on failure. */
int lm_ckpt_load(const char *path, lm_model *m, float *mom, float *vel, lm_ckpt_meta *meta,
                 char *err, size_t n);
/* Writes the parameters alone as a plain bf16 safetensors file (metadata: the model config)
 * that Python's safetensors and lm_ckpt_load read; atomically like lm_ckpt_save. */
int lm_ckpt_export(const char *path, const lm_model *m, char *err, size_t n);

/* ---- safetensors files (lm/safetensors.c): strict reading of nsa checkpoints and of plain
 * safetensors files (docs/hardening.md has the format and what is checked) */
typedef enum { LM_ST_F32 = 0, LM_ST_BF16 = 1, LM_ST_F16 = 2 } lm_st_dtype;
typedef struct {
    char name[80];
    int dtype;        /* lm_st_dtype                                      */
    int ndim;         /* 1..4                                             */
    int64_t shape[4];
    uint64_t o0, o1;  /* byte range in the data section                   */
} lm_st_tensor;
typedef struct {
    uint8_t *file;          /* the whole file (owned)                     */
    size_t size;
    const uint8_t *data;    /* the data section, data_len bytes           */
    size_t data_len;
    lm_st_tensor *t;        /* (nt) in header order                       */
    int nt;
    int nsa;                /* 0: plain safetensors; 1: nsa-lm-1; 2: nsa-lm-2 */
    int has_optimizer;      /* nsa with optimizer "adamw"                 */
    int has_config;         /* meta.config came from the metadata         */
    lm_ckpt_meta meta;      /* nsa: all of it; plain: config if present   */
} lm_st_file;
#define LM_FNV0 1469598103934665603ULL
/* FNV-1a 64 of p[0..n) continuing from h (LM_FNV0 to start). */
uint64_t lm_fnv(uint64_t h, const void *p, size_t n);
/* Parses buf[0..size) (taken over: lm_st_free frees it, also after a failure). 0, or -1 with
 * err naming path and the field. */
int lm_st_parse(lm_st_file *f, uint8_t *buf, size_t size, const char *path, char *err, size_t n);
/* Reads path whole, then lm_st_parse. */
int lm_st_read(lm_st_file *f, const char *path, char *err, size_t n);
void lm_st_free(lm_st_file *f);
/* The tensor of that name, or NULL. */
const lm_st_tensor *lm_st_find(const lm_st_file *f, const char *name);

/* ---- JSON writer (lm/json.c): one object per line, non-finite numbers as null */
typedef struct {
    char *buf;
    size_t len, cap;
    int first;
    int oom;
} lm_json;
void lm_json_begin(lm_json *j);
void lm_json_str(lm_json *j, const char *key, const char *val);
void lm_json_num(lm_json *j, const char *key, double val);
void lm_json_int(lm_json *j, const char *key, int64_t val);
void lm_json_nums(lm_json *j, const char *key, const double *v, int n);
/* key: {"names[0]": v[0], ...} */
void lm_json_obj(lm_json *j, const char *key, const char *const *names, const double *v, int n);
/* Closes the object and appends '\n'; returns the line (owned by j) or NULL on OOM. */
const char *lm_json_end(lm_json *j);
void lm_json_free(lm_json *j);

/* ---- model FLOPs (lm/flops.c), for the MFU of the progress line */
/* Weights that multiply every token: every 2-D weight but the embedding and φ. */
double lm_matmul_params(const lm_model_config *m);
/* Keys one query head reads per layer, averaged over the positions of a T-token sequence: the
 * budget num_cmp(t+1) + min(n·lp, t+1) + min(w, t+1) (paper, Table 4). */
double lm_attn_reads(const lm_model_config *m, int T);
/* Training FLOPs per token: 3 × (2·lm_matmul_params + 4·D·Hq·lm_attn_reads per layer + φ). */
double lm_flops_per_token(const lm_model_config *m, int T);

/* ---- training (lm/train.c) */
typedef struct {
    const char *resume;           /* checkpoint to resume from, or NULL                      */
    int quiet;                    /* no progress output on stderr                            */
    volatile sig_atomic_t *stop;  /* set by a signal handler: save a checkpoint and stop     */
    int stop_after;               /* > 0: stop (with a checkpoint) after this many steps, as
                                     an interruption would; tests use it                     */
} lm_train_opts;
/* Trains per c; writes c->out/{model.safetensors, heartbeat.jsonl, config.txt}; a new run (not
 * resume) first removes c->out/model.safetensors and starts a new heartbeat. Returns 0 on
 * success (or a clean stop), 1 on error (message printed to stderr, heartbeat stop record). */
int lm_train(const lm_train_config *c, const lm_train_opts *o);

/* ---- sampling (lm/sample.c) */
/* What a generation took (wall clock, monotonic): prefill_s from the start (KV caches created,
 * every prompt prefilled) to the first token of every row; decode_s the decode steps after it,
 * which produced decode_tokens tokens (rows · (n − 1)). */
typedef struct {
    int rows;
    int64_t prompt_tokens, decode_tokens;
    double prefill_s, decode_s;
} lm_sample_stats;
typedef struct {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: all    */
    uint64_t seed;
    nsa_decode_reads *reads; /* not NULL: the token reads of layer 0's last decode step */
    float top_p;             /* nucleus mass in (0, 1); 0 or >= 1: no nucleus filter      */
    lm_sample_stats *stats;  /* not NULL: filled after a successful generation             */
} lm_sample_opts;
/* One token from logits (256) with o's temperature, top-k, then top-p; rng advances by one
 * draw unless greedy. */
uint8_t lm_sample_pick(const float *logits, const lm_sample_opts *o, uint64_t *rng);
/* Generates n tokens after prompt (len ≥ 1) through the KV-cache decode; out (n). */
int lm_generate(lm_model *m, const uint8_t *prompt, int len, int n, const lm_sample_opts *o,
                uint8_t *out, char *err, size_t errn);
/* The same for B prompts (1 ≤ B ≤ LM_MAX_ROWS) at once: KV caches of B rows, each prompt
 * prefilled alone, then one decode step for all rows per token; out (B, n). Row b draws with
 * seed + b, so it gives exactly what lm_generate gives prompt b with that seed (on the CPU). */
#define LM_MAX_ROWS 1024
int lm_generate_rows(lm_model *m, const uint8_t *const *prompts, const int *lens, int B, int n,
                     const lm_sample_opts *o, uint8_t *out, char *err, size_t errn);

/* splitmix64, the one RNG of the model code */
uint64_t lm_rng_next(uint64_t *state);
float lm_rng_normal(uint64_t *state);
double lm_rng_uniform(uint64_t *state);

#endif /* NSA_LM_H */
