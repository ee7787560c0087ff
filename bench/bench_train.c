// SPDX-License-Identifier: Apache-2.0
/* bench_train.c — training throughput of the language model on the CUDA backend (issue 8): the
 * short (12 L, dim 768, 12/2 heads, seq 2048, batch 8) and long (12 L, dim 1024, 16/1 heads,
 * seq 32768, batch 1) configs, byte vocabulary, SwiGLU, NSA l=32 d=16 lp=64 n=16 w=512.
 * Per step: forward, backward, optimizer (clip + AdamW) and data, each ended by a device sync;
 * median over --steps after --warmup steps; tokens/s, MFU (6·matmul params per token over the
 * card's 989 TFLOP/s bf16 peak; attention FLOPs not counted), peak device memory; then where the
 * time goes: one layer's NSA forward and backward through the library alone, and the model's
 * GEMMs of one layer alone (the fused q/k/v/gate projection as the model runs it, and for
 * comparison the same projection as eight GEMMs) on the layer's activations.
 * Not a test: it checks only that the loss is finite.
 */
#include "gpu.h"
#include "lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static void die(const char *what, const char *err) {
    fprintf(stderr, "bench_train: %s: %s\n", what, err);
    exit(1);
}

static double peak_mib;
static void sample_mem(void) {
    double a, p, r;
    if (lm_cuda_mem_mib(&a, &p, &r) == 0 && r > peak_mib) peak_mib = r;
}

/* Median ms of fn over reps after one warm-up (device synced around each). */
#define TIME_MS(out, reps, body)                                                                   \
    do {                                                                                           \
        double v_[64];                                                                             \
        for (int r_ = -1; r_ < (reps); r_++) {                                                     \
            if (be->sync(err, sizeof err)) die("sync", err);                                       \
            const double t0_ = now();                                                              \
            body;                                                                                  \
            if (be->sync(err, sizeof err)) die("sync", err);                                       \
            if (r_ >= 0) v_[r_] = 1e3 * (now() - t0_);                                             \
        }                                                                                          \
        (out) = median(v_, (reps));                                                                \
    } while (0)

/* The GEMMs of one layer (forward, then backward) on the layer's saved activations, as lm/pass.c
 * runs them on CUDA: x in the backend's activation dtype; dy in scratch, f32 for the residual
 * gradients and att_dtype (act_lowp) for da, db and the fused projection's dy (values are
 * whatever the scratch holds: only the time is wanted). */
typedef struct {
    const lm_backend *be;
    const lm_layer_act *A;
    const lm_layer_w *W;
    lm_layer_w *dW;
    float *s1, *s2, *s3, *s4, *s5; /* (N, P), (N, C), (N, F), (N, F), (N, Hq·D) */
    int N, C, Hq, D, Hkv, F;
} gemm_set;

static int cols(const gemm_set *g) { return g->Hq * g->D + 6 * g->Hkv * g->D + 3 * g->Hq; }

/* The fused projection's dy row stride (lm/pass.c's qkv_ld). */
static int cols_ld(const gemm_set *g) {
    return g->be->act_lowp ? (cols(g) + 7) / 8 * 8 : cols(g);
}

/* matmul_backward of a dy that act_lowp keeps in att_dtype (as lm/pass.c's mmb_lo) */
static void mmb_lo(const gemm_set *g, float *dx, float *dW, const float *dy, int ldy,
                   const float *x, const float *W, int M, int K, int O, int acc) {
    if (g->be->act_lowp) g->be->matmul_backward_lo(dx, dW, dy, ldy, x, W, M, K, O, acc);
    else g->be->matmul_backward(dx, dW, dy, x, W, M, K, O, acc);
}

/* SwiGLU's a or b: att_dtype under act_lowp (as lm/pass.c) */
static void mm_ab(const gemm_set *g, float *y, const float *x, const float *W) {
    if (g->be->act_lowp) g->be->matmul_lo(y, x, W, g->N, g->C, g->F);
    else g->be->matmul(y, x, W, g->N, g->C, g->F, 0);
}

static void gemms_fwd(const gemm_set *g) {
    const lm_backend *be = g->be;
    const lm_layer_act *A = g->A;
    const lm_layer_w *W = g->W;
    const int N = g->N, C = g->C, HD = g->Hq * g->D, F = g->F;
    be->matmul(g->s1, A->ln1, W->wq, N, C, cols(g), 0);
    be->matmul(g->s2, A->att, W->wo, N, HD, C, 0);
    mm_ab(g, g->s3, A->ln2, W->w1);
    mm_ab(g, g->s4, A->ln2, W->w3);
    be->matmul(g->s2, A->h, W->w2, N, F, C, 0);
}

static void gemms_bwd(const gemm_set *g) {
    const lm_backend *be = g->be;
    const lm_layer_act *A = g->A;
    const lm_layer_w *W = g->W;
    lm_layer_w *dW = g->dW;
    const int N = g->N, C = g->C, HD = g->Hq * g->D, F = g->F;
    be->matmul_backward(g->s3, dW->w2, g->s2, A->h, W->w2, N, F, C, 0);
    mmb_lo(g, g->s2, dW->w1, g->s3, F, A->ln2, W->w1, N, C, F, 0);
    mmb_lo(g, g->s2, dW->w3, g->s4, F, A->ln2, W->w3, N, C, F, 1);
    be->matmul_backward(g->s5, dW->wo, g->s2, A->att, W->wo, N, HD, C, 0);
    mmb_lo(g, g->s2, dW->wq, g->s1, cols_ld(g), A->ln1, W->wq, N, C, cols(g), 0);
}

/* The fused q/k/v/gate projection alone, fwd + bwd. */
static void gemms_qkv_fused(const gemm_set *g) {
    const lm_layer_act *A = g->A;
    g->be->matmul(g->s1, A->ln1, g->W->wq, g->N, g->C, cols(g), 0);
    mmb_lo(g, g->s2, g->dW->wq, g->s1, cols_ld(g), A->ln1, g->W->wq, g->N, g->C, cols(g), 0);
}

/* The q/k/v/gate projection as eight GEMMs (the path before the fused split), fwd + bwd. */
static void gemms_qkv_unfused(const gemm_set *g) {
    const lm_backend *be = g->be;
    const lm_layer_act *A = g->A;
    const lm_layer_w *W = g->W;
    lm_layer_w *dW = g->dW;
    const int N = g->N, C = g->C, HD = g->Hq * g->D, KD = g->Hkv * g->D;
    be->matmul(g->s1, A->ln1, W->wq, N, C, HD, 0);
    for (int b = 0; b < 3; b++) {
        be->matmul(g->s1, A->ln1, W->wk[b], N, C, KD, 0);
        be->matmul(g->s1, A->ln1, W->wv[b], N, C, KD, 0);
    }
    be->matmul(g->s1, A->ln1, W->wg, N, C, g->Hq * 3, 0);
    be->matmul_backward(g->s2, dW->wg, g->s1, A->ln1, W->wg, N, C, g->Hq * 3, 0);
    be->matmul_backward(g->s2, dW->wq, g->s1, A->ln1, W->wq, N, C, HD, 1);
    for (int b = 0; b < 3; b++) {
        be->matmul_backward(g->s2, dW->wk[b], g->s1, A->ln1, W->wk[b], N, C, KD, 1);
        be->matmul_backward(g->s2, dW->wv[b], g->s1, A->ln1, W->wv[b], N, C, KD, 1);
    }
}

int main(int argc, char **argv) {
    const char *which = "short", *prec = "bf16";
    int steps = 10, warm = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config")) which = argv[i + 1];
        else if (!strcmp(argv[i], "--precision")) prec = argv[i + 1];
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warm = atoi(argv[i + 1]);
    }
    if (steps < 1 || steps > 64) steps = 10;
    lm_train_config tc;
    lm_train_config_default(&tc);
    lm_model_config *c = &tc.m;
    *c = (lm_model_config){.n_layer = 12, .dim = 768, .n_head = 12, .n_kv_head = 2, .ffn = 2048,
                           .l = 32, .d = 16, .lp = 64, .n = 16, .w = 512, .phi = LM_PHI_AVG,
                           .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
    int B = 8, T = 2048;
    if (!strcmp(which, "long")) {
        c->dim = 1024, c->n_head = 16, c->n_kv_head = 1, c->ffn = 2816;
        B = 1, T = 32768;
    } else if (!strcmp(which, "tiny")) {
        c->n_layer = 2, c->dim = 256, c->n_head = 4, c->n_kv_head = 2, c->ffn = 512;
        B = 2, T = 1024;
    }
    char err[1024];
    const lm_backend *be = lm_cuda_backend(!strcmp(prec, "f32"), err, sizeof err);
    if (!be) die("backend", err);
    nsa_context *ctx;
    if (nsa_context_create(&ctx, err, sizeof err) != NSA_OK) die("context", err);
    lm_model m;
    if (lm_model_create_on(&m, c, ctx, be, 1, err, sizeof err)) die("model", err);
    float *mom = be->alloc(m.nparams * sizeof(float)), *vel = be->alloc(m.nparams * sizeof(float));
    const int N = B * T;
    uint8_t *x = malloc((size_t)N + 1);
    if (!mom || !vel || !x) die("alloc", "out of memory");
    uint64_t rng = 42;
    /* matmul params: everything but the embedding and the norms/biases */
    const int64_t C = c->dim, D = C / c->n_head, Hq = c->n_head, Hkv = c->n_kv_head, F = c->ffn;
    const int64_t per_layer = C * Hq * D * 2 + 6 * C * Hkv * D + C * Hq * 3 + 3 * C * F;
    const double P = (double)(per_layer * c->n_layer + 256 * C);
    printf("# %s: %s, params %zu (matmul %.0f), B %d T %d, backend %s\n", which,
           "12 L byte vocab SwiGLU NSA l=32 d=16 lp=64 n=16 w=512", m.nparams, P, B, T, be->name);
    double tf[64], tb[64], to[64], td[64], ts[64];
    float loss = NAN;
    for (int s = -warm; s < steps; s++) {
        double t0 = now();
        for (int i = 0; i <= N; i++) x[i] = (uint8_t)(lm_rng_next(&rng) >> 56); /* the data step */
        const double t1 = now();
        if (lm_forward(&m, x, x + 1, B, T, NULL, &loss, err, sizeof err)) die("forward", err);
        sample_mem();
        const double t2 = now();
        if (lm_backward(&m, x, err, sizeof err)) die("backward", err);
        sample_mem();
        const double t3 = now();
        be->clip_grads(m.grads, m.nparams, 1.0f);
        lm_adamw(&m, mom, vel, s + warm + 1, 1e-4f, &tc);
        if (be->sync(err, sizeof err)) die("optimizer", err);
        const double t4 = now();
        if (s >= 0) {
            td[s] = 1e3 * (t1 - t0), tf[s] = 1e3 * (t2 - t1), tb[s] = 1e3 * (t3 - t2);
            to[s] = 1e3 * (t4 - t3), ts[s] = 1e3 * (t4 - t0);
        }
        fprintf(stderr, "step %d loss %.4f  %.1f ms\n", s, loss, 1e3 * (t4 - t0));
    }
    if (!isfinite(loss)) die("loss", "not finite");
    const double ms = median(ts, steps), tps = N / (ms * 1e-3);
    const double mfu = 6.0 * P * tps / 989e12;
    printf("config,backend,B,T,tok_per_s,step_ms,fwd_ms,bwd_ms,opt_ms,data_ms,mfu,peak_mib\n");
    printf("%s,%s,%d,%d,%.0f,%.1f,%.1f,%.1f,%.1f,%.1f,%.4f,%.0f\n", which, be->name, B, T, tps, ms,
           median(tf, steps), median(tb, steps), median(to, steps), median(td, steps), mfu,
           peak_mib);

    /* Where the time goes: one layer's NSA through the library, on the model's own tensors of
     * layer 0 (a forward just ran), then the GEMMs of one layer alone. */
    const int reps = 5;
    lm_layer_act *A = &m.act[0];
    nsa_fwd_args fa;
    memset(&fa, 0, sizeof fa);
    fa.cfg = m.nsa;
    const nsa_dtype dt = be->att_dtype;
    const size_t e = nsa_dtype_size(dt);
    void *buf = be->alloc(e * (size_t)N * (size_t)(Hq * D * 4 + Hkv * D * 12 + Hq * 6));
    if (!buf) die("alloc", "attention buffers");
    char *p = buf;
/* Carves the next (B, T, h, dd) device tensor of buf into x. */
#define DEV4(x, h, dd)                                                                             \
    do {                                                                                           \
        (x) = nsa_tensor_4d(p, dt, B, T, h, dd);                                                   \
        (x).device.kind = NSA_DEVICE_CUDA;                                                         \
        p += e * (size_t)N * (size_t)(h) * (size_t)(dd);                                          \
    } while (0)
#define T4(field, h, dd) DEV4(fa.field, h, dd)
#define G4(field, h, dd) DEV4(ga.field, h, dd)
    T4(q, Hq, D);
    T4(k_cmp, Hkv, D);
    T4(v_cmp, Hkv, D);
    T4(k_sel, Hkv, D);
    T4(v_sel, Hkv, D);
    T4(k_win, Hkv, D);
    T4(v_win, Hkv, D);
    T4(gates, Hq, 3);
    T4(out, Hq, D);
    const int64_t rshape[5] = {B, T, Hkv, m.nsa.n, 2}; /* written by the forward, reused */
    int32_t *ranges = be->alloc(sizeof(int32_t) * (size_t)(N * Hkv * m.nsa.n * 2));
    if (!ranges) die("alloc", "ranges");
    fa.sel_ranges = nsa_tensor_make(ranges, NSA_DTYPE_I32, 5, rshape);
    fa.sel_ranges.device.kind = NSA_DEVICE_CUDA;
    nsa_bwd_args ga;
    memset(&ga, 0, sizeof ga);
    G4(dout, Hq, D);
    G4(dq, Hq, D);
    G4(dk_cmp, Hkv, D);
    G4(dv_cmp, Hkv, D);
    G4(dk_sel, Hkv, D);
    G4(dv_sel, Hkv, D);
    G4(dk_win, Hkv, D);
    G4(dv_win, Hkv, D);
    G4(dgates, Hq, 3);
    /* inputs: the layer's real activations (cast), dout = the attention output itself */
    float *srcs[9] = {A->q, A->k[0], A->v[0], A->k[1], A->v[1], A->k[2], A->v[2], A->g, A->att};
    const nsa_tensor *dsts[9] = {&fa.q, &fa.k_cmp, &fa.v_cmp, &fa.k_sel, &fa.v_sel,
                                 &fa.k_win, &fa.v_win, &fa.gates, &ga.dout};
    for (int i = 0; i < 9; i++) { /* act_lowp: all but the gates hold bf16 already (n even) */
        const size_t n = (size_t)nsa_tensor_numel(dsts[i]);
        if (dt == NSA_DTYPE_F32) be->copy(dsts[i]->data, srcs[i], n);
        else if (be->act_lowp && i != 7) be->copy(dsts[i]->data, srcs[i], n / 2);
        else be->to_att(dsts[i]->data, srcs[i], n);
    }
    double af, ab;
    TIME_MS(af, reps, if (nsa_forward(ctx, &fa) != NSA_OK) die("nsa_forward", nsa_context_message(ctx)));
    TIME_MS(ab, reps,
            if (nsa_backward(ctx, &fa, &ga) != NSA_OK) die("nsa_backward", nsa_context_message(ctx)));
    double gf, gb, gq;
    /* the backward scratch (N·(2C + 3F + 2·Hq·D + ... + P) floats) is free between steps */
    const size_t Pc = (size_t)(Hq * D + 6 * Hkv * D + 3 * Hq);
    float *s1 = m.scratch, *s2 = s1 + (size_t)N * Pc, *s3 = s2 + (size_t)N * C;
    float *s4 = s3 + (size_t)N * F, *s5 = s4 + (size_t)N * F;
    const lm_layer_w *W = &m.w.layer[0];
    lm_layer_w *dW = &m.dw.layer[0];
    const gemm_set gs = {be, A, W, dW, s1, s2, s3, s4, s5,
                         N, (int)C, (int)Hq, (int)D, (int)Hkv, (int)F};
    TIME_MS(gf, reps, gemms_fwd(&gs));
    TIME_MS(gb, reps, gemms_bwd(&gs));
    TIME_MS(gq, reps, gemms_qkv_unfused(&gs));
    double gqf; /* the fused projection alone, fwd + bwd, for the comparison */
    TIME_MS(gqf, reps, gemms_qkv_fused(&gs));
    const double L = c->n_layer;
    printf("part,ms_per_layer,ms_per_step,share_of_step\n");
    printf("nsa_forward,%.2f,%.1f,%.3f\n", af, af * L, af * L / ms);
    printf("nsa_backward,%.2f,%.1f,%.3f\n", ab, ab * L, ab * L / ms);
    printf("gemm_forward,%.2f,%.1f,%.3f\n", gf, gf * L, gf * L / ms);
    printf("gemm_backward,%.2f,%.1f,%.3f\n", gb, gb * L, gb * L / ms);
    const double gemm_tflops = 2.0 * 3.0 * (double)per_layer * N / ((gf + gb) * 1e-3) / 1e12;
    printf("# layer GEMMs at %.0f TFLOP/s (fwd+bwd, %s)\n", gemm_tflops, be->name);
    printf("# q/k/v/gate projection fwd+bwd: fused %.2f ms, as eight GEMMs %.2f ms per layer\n",
           gqf, gq);
    printf("rest,%.2f,%.1f,%.3f\n", (ms - (af + ab + gf + gb) * L) / L, ms - (af + ab + gf + gb) * L,
           1.0 - (af + ab + gf + gb) * L / ms);
    be->release(buf);
    be->release(ranges);
    be->release(mom);
    be->release(vel);
    free(x);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    return 0;
}
