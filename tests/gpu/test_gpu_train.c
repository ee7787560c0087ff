// SPDX-License-Identifier: Apache-2.0
/* test_gpu_train.c — the language model on the CUDA backend against the CPU trainer, on a tiny
 * config where selection covers every block (n·lp ≥ T, so no top-n choice can differ): loss and
 * gradients of one step (f32 tightly, bf16 within the bf16 bound), a few AdamW steps, bitwise
 * determinism, checkpoints read by the other device, `nsa train --device cuda` end to end, and
 * greedy generation through the GPU KV caches, a bitwise resume on the GPU, and the bf16 weight
 * mirrors following AdamW and uploads.
 * Not a benchmark (bench/bench_train.c). Every case skips (77) where no CUDA device exists.
 * Tolerances (relative L2 over each tensor, docs/design.md §5 style): f32 runs differ only by
 * summation order (u = 2^-24 amplified by depth): 1e-4 on the loss, 1e-3 on gradients. bf16
 * rounds every GEMM operand and the attention tensors (u = 2^-8 ≈ 3.9e-3): the loss within 2u,
 * each gradient tensor within 16u (bf16 errors compound through the backward's GEMM chain).
 * On the GPU the q/k/v/gate projection is one fused GEMM (qkv_split / qkv_gather) and, in bf16,
 * the GEMM inputs are stored bf16 by the kernels that make them: the CPU's eight GEMMs, RoPE,
 * bias and gates are the reference for both.
 */
#include "gpu.h"
#include "harness.h"
#include "lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define U_BF16 (1.0 / 256.0)

static lm_model_config tiny(void) {
    lm_model_config c = {.n_layer = 2, .dim = 64, .n_head = 4, .n_kv_head = 2, .ffn = 128,
                         .l = 16, .d = 8, .lp = 16, .n = 4, .w = 32, .phi = LM_PHI_AVG,
                         .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
    return c;
}
enum { TB = 2, TT = 64 }; /* n·lp = 64 ≥ T */

static const lm_backend *gpu_or_skip(int f32) {
    char err[256];
    const lm_backend *be = lm_cuda_backend(f32, err, sizeof err);
    if (!be) nsa_test_skip(err);
    return be;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static void tokens(uint8_t *x, uint8_t *y, int n) {
    for (int i = 0; i < n; i++) x[i] = (uint8_t)nsa_rng_int(0, 255), y[i] = (uint8_t)nsa_rng_int(0, 255);
}

/* Worst per-tensor relative L2 of g (host copy of the GPU grads) against the CPU model's. */
static double worst_tensor(const lm_model *cpu, const float *g, char *name, size_t nn) {
    double worst = 0;
    for (int i = 0; i < cpu->ntensors; i++) {
        const lm_tensor_info *t = &cpu->tensors[i];
        const double e = rel_l2(g + t->off, cpu->grads + t->off, (size_t)(t->shape[0] * t->shape[1]));
        if (!(e <= worst)) {
            worst = e;
            snprintf(name, nn, "%s", t->name);
        }
    }
    return worst;
}

/* One forward + backward on the CPU and on the GPU (precision f32 or bf16) from the same init. */
static void one_step(int f32, double tol_loss, double tol_grad) {
    const lm_backend *be = gpu_or_skip(f32);
    if (!be) return;
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    char err[512];
    lm_model mc, mg;
    const lm_model_config c = tiny();
    const uint64_t seed = nsa_rng_u64();
    CHECK(lm_model_create(&mc, &c, ctx, seed, err, sizeof err) == 0, "%s", err);
    CHECK(lm_model_create_on(&mg, &c, ctx, be, seed, err, sizeof err) == 0, "%s", err);
    uint8_t x[TB * TT], y[TB * TT];
    tokens(x, y, TB * TT);
    float lc, lg;
    CHECK(lm_forward(&mc, x, y, TB, TT, NULL, &lc, err, sizeof err) == 0, "%s", err);
    CHECK(lm_backward(&mc, x, err, sizeof err) == 0, "%s", err);
    CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &lg, err, sizeof err) == 0, "%s", err);
    CHECK(lm_backward(&mg, x, err, sizeof err) == 0, "%s", err);
    float *g = malloc(sizeof(float) * mg.nparams);
    CHECK(g != NULL);
    be->download(g, mg.grads, sizeof(float) * mg.nparams);
    CHECK(be->sync(err, sizeof err) == 0, "%s", err);
    char name[64] = "";
    const double el = fabs((double)lg - lc) / fabs((double)lc);
    const double eg = rel_l2(g, mc.grads, mg.nparams), et = worst_tensor(&mc, g, name, sizeof name);
    printf("%s: loss cpu %.6f gpu %.6f (rel %.2e)  grads rel %.2e, worst tensor %s %.2e\n",
           be->name, lc, lg, el, eg, name, et);
    CHECK(isfinite(lg) && el <= tol_loss, "loss rel err %.3e > %.3e", el, tol_loss);
    CHECK(et <= tol_grad, "grad of %s rel err %.3e > %.3e", name, et, tol_grad);
    free(g);
    lm_model_destroy(&mc);
    lm_model_destroy(&mg);
    nsa_context_destroy(ctx);
}

static void f32_step_matches_cpu(void) { one_step(1, 1e-4, 1e-3); }
static void bf16_step_matches_cpu(void) { one_step(0, 2 * U_BF16, 16 * U_BF16); }

/* Three optimizer steps (clip + AdamW) on both: losses and final parameters agree (f32). */
static void f32_steps_match_cpu(void) {
    const lm_backend *be = gpu_or_skip(1);
    if (!be) return;
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    char err[512];
    lm_model mc, mg;
    const lm_model_config c = tiny();
    const uint64_t seed = nsa_rng_u64();
    CHECK(lm_model_create(&mc, &c, ctx, seed, err, sizeof err) == 0, "%s", err);
    CHECK(lm_model_create_on(&mg, &c, ctx, be, seed, err, sizeof err) == 0, "%s", err);
    lm_train_config tc;
    lm_train_config_default(&tc);
    tc.steps = 3;
    tc.warmup = 1;
    tc.lr = 1e-3f;
    float *mo = calloc(mc.nparams, sizeof(float)), *ve = calloc(mc.nparams, sizeof(float));
    float *gmo = be->alloc(sizeof(float) * mc.nparams), *gve = be->alloc(sizeof(float) * mc.nparams);
    CHECK(mo && ve && gmo && gve);
    for (int s = 0; s < 3; s++) {
        uint8_t x[TB * TT], y[TB * TT];
        tokens(x, y, TB * TT);
        float lc, lg;
        CHECK(lm_forward(&mc, x, y, TB, TT, NULL, &lc, err, sizeof err) == 0, "%s", err);
        CHECK(lm_backward(&mc, x, err, sizeof err) == 0, "%s", err);
        CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &lg, err, sizeof err) == 0, "%s", err);
        CHECK(lm_backward(&mg, x, err, sizeof err) == 0, "%s", err);
        const float nc = lm_clip_grads(mc.grads, mc.nparams, 0.5f);
        const float ng = be->clip_grads(mg.grads, mg.nparams, 0.5f);
        CHECK(fabs((double)lg - lc) <= 1e-4 * fabs((double)lc), "step %d loss %g vs %g", s, lg, lc);
        CHECK(fabs((double)ng - nc) <= 1e-3 * nc, "step %d grad norm %g vs %g", s, ng, nc);
        lm_adamw(&mc, mo, ve, s + 1, lm_lr_at(&tc, s), &tc);
        lm_adamw(&mg, gmo, gve, s + 1, lm_lr_at(&tc, s), &tc);
    }
    lm_model_pull(&mg);
    CHECK(be->sync(err, sizeof err) == 0, "%s", err);
    const double ep = rel_l2(mg.hparams, mc.params, mc.nparams);
    printf("params after 3 steps: rel %.2e\n", ep);
    CHECK(ep <= 1e-5, "params rel err %.3e", ep);
    be->release(gmo);
    be->release(gve);
    free(mo);
    free(ve);
    lm_model_destroy(&mc);
    lm_model_destroy(&mg);
    nsa_context_destroy(ctx);
}

/* bf16 compute is still deterministic: two runs give bitwise the same gradients. */
static void bf16_deterministic(void) {
    const lm_backend *be = gpu_or_skip(0);
    if (!be) return;
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    char err[512];
    lm_model mg;
    const lm_model_config c = tiny();
    CHECK(lm_model_create_on(&mg, &c, ctx, be, nsa_rng_u64(), err, sizeof err) == 0, "%s", err);
    uint8_t x[TB * TT], y[TB * TT];
    tokens(x, y, TB * TT);
    float *g[2];
    float l[2];
    for (int r = 0; r < 2; r++) {
        g[r] = malloc(sizeof(float) * mg.nparams);
        CHECK(g[r] != NULL);
        CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &l[r], err, sizeof err) == 0, "%s", err);
        CHECK(lm_backward(&mg, x, err, sizeof err) == 0, "%s", err);
        be->download(g[r], mg.grads, sizeof(float) * mg.nparams);
    }
    CHECK(be->sync(err, sizeof err) == 0, "%s", err);
    CHECK(l[0] == l[1] && !memcmp(g[0], g[1], sizeof(float) * mg.nparams), "runs differ");
    free(g[0]);
    free(g[1]);
    lm_model_destroy(&mg);
    nsa_context_destroy(ctx);
}

/* A checkpoint written from the GPU loads on the CPU and gives the GPU's loss (f32), and back. */
static void ckpt_interchange(void) {
    const lm_backend *be = gpu_or_skip(1);
    if (!be) return;
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    char err[512], path[64];
    snprintf(path, sizeof path, "/tmp/nsa_gpu_ckpt_%ld.safetensors", (long)getpid());
    lm_model mc, mg;
    const lm_model_config c = tiny();
    CHECK(lm_model_create_on(&mg, &c, ctx, be, nsa_rng_u64(), err, sizeof err) == 0, "%s", err);
    CHECK(lm_model_create(&mc, &c, ctx, nsa_rng_u64(), err, sizeof err) == 0, "%s", err);
    uint8_t x[TB * TT], y[TB * TT];
    tokens(x, y, TB * TT);
    float lg, lc, lg2;
    CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &lg, err, sizeof err) == 0, "%s", err);
    lm_ckpt_meta meta = {5, 1, 2, "", 0, ""};
    lm_model_config_str(&c, meta.config, sizeof meta.config);
    lm_model_pull(&mg);
    CHECK(lm_ckpt_save(path, &mg, NULL, NULL, &meta, err, sizeof err) == 0, "%s", err);
    CHECK(lm_ckpt_load(path, &mc, NULL, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(lm_forward(&mc, x, y, TB, TT, NULL, &lc, err, sizeof err) == 0, "%s", err);
    CHECK(fabs((double)lg - lc) <= 1e-4 * fabs((double)lc), "gpu %g cpu %g", lg, lc);
    /* and back: perturb the CPU params, save, load on the GPU */
    for (size_t i = 0; i < mc.nparams; i += 7) mc.params[i] *= 1.01f;
    CHECK(lm_forward(&mc, x, y, TB, TT, NULL, &lc, err, sizeof err) == 0, "%s", err);
    CHECK(lm_ckpt_save(path, &mc, NULL, NULL, &meta, err, sizeof err) == 0, "%s", err);
    CHECK(lm_ckpt_load(path, &mg, NULL, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &lg2, err, sizeof err) == 0, "%s", err);
    CHECK(lg2 != lg && fabs((double)lg2 - lc) <= 1e-4 * fabs((double)lc), "gpu %g cpu %g", lg2, lc);
    unlink(path);
    lm_model_destroy(&mc);
    lm_model_destroy(&mg);
    nsa_context_destroy(ctx);
}

/* lm_train with device = cuda: finishes, the heartbeat has the GPU memory fields, and the loss
 * on a repetitive text falls. */
static void train_cuda(void) {
    if (!gpu_or_skip(0)) return;
    char dir[64], data[96], hb[96];
    snprintf(dir, sizeof dir, "/tmp/nsa_gpu_train_%ld", (long)getpid());
    snprintf(data, sizeof data, "%s.txt", dir);
    snprintf(hb, sizeof hb, "%s/heartbeat.jsonl", dir);
    FILE *f = fopen(data, "w");
    CHECK(f != NULL);
    for (int i = 0; i < 400; i++) fputs("in the beginning was the word. ", f);
    fclose(f);
    lm_train_config c;
    lm_train_config_default(&c);
    c.m = tiny();
    c.seq_len = TT;
    c.batch = 4;
    c.steps = 30;
    c.warmup = 5;
    c.eval_every = 30;
    c.eval_batches = 2;
    c.log_every = 10;
    snprintf(c.out, sizeof c.out, "%s", dir);
    snprintf(c.data, sizeof c.data, "%s", data);
    snprintf(c.device, sizeof c.device, "cuda");
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    f = fopen(hb, "r");
    CHECK(f != NULL);
    char line[4096];
    int gpu_fields = 0, done = 0;
    double first = NAN, last = NAN;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "\"gpu_mem_alloc\"") && strstr(line, "\"gpu_mem_reserved\"")) gpu_fields++;
        if (strstr(line, "\"msg\":\"progress\"")) { /* MFU: a share of the device's peak */
            const char *mfu = strstr(line, "\"mfu\":");
            CHECK(mfu && atof(mfu + 6) > 0 && atof(mfu + 6) < 1,
                  "a progress record without an mfu in (0, 1)");
        }
        if (strstr(line, "\"reason\":\"done\"")) done = 1;
        const char *p = strstr(line, "\"val_loss\":");
        if (p) {
            last = atof(p + 11);
            if (isnan(first)) first = last;
        }
    }
    fclose(f);
    CHECK(gpu_fields >= 3 && done, "gpu fields in %d records, done %d", gpu_fields, done);
    CHECK(last < 0.5 * first, "val loss %g -> %g", first, last);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, data);
    CHECK(system(cmd) == 0);
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        const int x = fgetc(fa), y = fgetc(fb);
        if (x != y) same = 0;
        if (x == EOF || y == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* On the GPU too, a run stopped after 5 steps and resumed ends bitwise equal to an
 * uninterrupted one (deterministic kernels, moments and params round-trip through the host). */
static void resume_bitwise_gpu(void) {
    if (!gpu_or_skip(0)) return;
    char dir[64], data[96], ca[128], cb[128], cmd[192];
    snprintf(dir, sizeof dir, "/tmp/nsa_gpu_resume_%ld", (long)getpid());
    snprintf(data, sizeof data, "%s.txt", dir);
    FILE *f = fopen(data, "w");
    CHECK(f != NULL);
    for (int i = 0; i < 300; i++) fprintf(f, "And the light was good %d. ", i);
    fclose(f);
    lm_train_config c;
    lm_train_config_default(&c);
    c.m = tiny();
    c.seq_len = TT, c.batch = 2, c.steps = 12, c.warmup = 3;
    c.log_every = 2, c.eval_every = 4, c.eval_batches = 2, c.ckpt_every = 4;
    snprintf(c.data, sizeof c.data, "%s", data);
    snprintf(c.device, sizeof c.device, "cuda");
    snprintf(c.out, sizeof c.out, "%s/a", dir);
    lm_train_opts o = {NULL, 1, NULL, 0};
    CHECK(lm_train(&c, &o) == 0);
    snprintf(c.out, sizeof c.out, "%s/b", dir);
    o.stop_after = 5;
    CHECK(lm_train(&c, &o) == 0);
    snprintf(ca, sizeof ca, "%s/a/model.safetensors", dir);
    snprintf(cb, sizeof cb, "%s/b/model.safetensors", dir);
    CHECK(!same_file(ca, cb), "the interrupted run already equals the full one");
    o.stop_after = 0;
    o.resume = cb;
    CHECK(lm_train(&c, &o) == 0);
    CHECK(same_file(ca, cb), "resumed GPU run differs from the uninterrupted one");
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, data);
    CHECK(system(cmd) == 0);
}

/* Greedy generation through the GPU KV caches (f32): every generated byte is the argmax of the
 * CPU model's full forward over the GPU's own prefix, up to a near-tie of the logits. */
static void greedy_sample_gpu(void) {
    const lm_backend *be = gpu_or_skip(1);
    if (!be) return;
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    char err[512];
    lm_model mc, mg;
    const lm_model_config c = tiny();
    const uint64_t seed = nsa_rng_u64();
    CHECK(lm_model_create(&mc, &c, ctx, seed, err, sizeof err) == 0, "%s", err);
    CHECK(lm_model_create_on(&mg, &c, ctx, be, seed, err, sizeof err) == 0, "%s", err);
    enum { P = 5, G = 40 };
    uint8_t seq[P + G];
    for (int i = 0; i < P; i++) seq[i] = (uint8_t)nsa_rng_int(0, 255);
    lm_sample_opts o = {.temperature = 0.0f, .seed = 1};
    CHECK(lm_generate(&mg, seq, P, G, &o, seq + P, err, sizeof err) == 0, "%s", err);
    CHECK(lm_forward(&mc, seq, NULL, 1, P + G - 1, NULL, NULL, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < G; i++) {
        const float *lg = mc.logits + (size_t)(P - 1 + i) * LM_VOCAB;
        float mx = lg[0];
        for (int v = 1; v < LM_VOCAB; v++) mx = lg[v] > mx ? lg[v] : mx;
        CHECK(lg[seq[P + i]] >= mx - 1e-4f * (1.0f + fabsf(mx)), "byte %d: gpu picked %d (%g), "
              "cpu max %g", i, seq[P + i], lg[seq[P + i]], mx);
    }
    lm_model_destroy(&mc);
    lm_model_destroy(&mg);
    nsa_context_destroy(ctx);
}

/* bf16: the GEMMs read weights from bf16 mirrors, recast at their first use after AdamW or an
 * upload. After two optimizer steps the trained model's loss is bitwise the loss of a second
 * model that had built its mirrors from other weights and then got the trained ones by upload. */
static void bf16_mirror_follows_updates(void) {
    const lm_backend *be = gpu_or_skip(0);
    if (!be) return;
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    char err[512];
    lm_model mg, mf;
    const lm_model_config c = tiny();
    CHECK(lm_model_create_on(&mg, &c, ctx, be, nsa_rng_u64(), err, sizeof err) == 0, "%s", err);
    CHECK(lm_model_create_on(&mf, &c, ctx, be, nsa_rng_u64(), err, sizeof err) == 0, "%s", err);
    lm_train_config tc;
    lm_train_config_default(&tc);
    tc.lr = 1e-2f;
    float *mo = be->alloc(sizeof(float) * mg.nparams), *ve = be->alloc(sizeof(float) * mg.nparams);
    CHECK(mo && ve);
    uint8_t x[TB * TT], y[TB * TT];
    tokens(x, y, TB * TT);
    float l0, l1, l2, lf;
    CHECK(lm_forward(&mf, x, y, TB, TT, NULL, &lf, err, sizeof err) == 0, "%s", err);
    CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &l0, err, sizeof err) == 0, "%s", err);
    for (int s = 0; s < 2; s++) {
        CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &l1, err, sizeof err) == 0, "%s", err);
        CHECK(lm_backward(&mg, x, err, sizeof err) == 0, "%s", err);
        be->clip_grads(mg.grads, mg.nparams, 1.0f);
        lm_adamw(&mg, mo, ve, s + 1, tc.lr, &tc);
    }
    CHECK(lm_forward(&mg, x, y, TB, TT, NULL, &l1, err, sizeof err) == 0, "%s", err);
    lm_model_pull(&mg);
    CHECK(be->sync(err, sizeof err) == 0, "%s", err);
    memcpy(mf.hparams, mg.hparams, sizeof(float) * mg.nparams);
    lm_model_push(&mf);
    CHECK(lm_forward(&mf, x, y, TB, TT, NULL, &l2, err, sizeof err) == 0, "%s", err);
    printf("loss before %.6f, after 2 steps %.6f, same params uploaded %.6f\n", l0, l1, l2);
    CHECK(l1 != l0 && l2 != lf, "the steps or the upload changed nothing");
    CHECK(l1 == l2, "trained %.9g vs uploaded %.9g: a stale bf16 mirror", l1, l2);
    be->release(mo);
    be->release(ve);
    lm_model_destroy(&mg);
    lm_model_destroy(&mf);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"f32_step_matches_cpu", f32_step_matches_cpu},
        {"bf16_step_matches_cpu", bf16_step_matches_cpu},
        {"f32_steps_match_cpu", f32_steps_match_cpu},
        {"bf16_deterministic", bf16_deterministic},
        {"ckpt_interchange", ckpt_interchange},
        {"train_cuda", train_cuda},
        {"greedy_sample_gpu", greedy_sample_gpu},
        {"resume_bitwise_gpu", resume_bitwise_gpu},
        {"bf16_mirror_follows_updates", bf16_mirror_follows_updates},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
