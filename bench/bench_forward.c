// SPDX-License-Identifier: Apache-2.0
/* bench_forward.c — times our CUDA forward per step and end to end on the shapes of
 * docs/design.md §6 (A: Hq=64 Hkv=4 Dk=192 Dv=128, separate K/V per branch; B: Dk=Dv=128, one
 * K/V shared by all branches; paper config), B=1, and S = issue 8's short training config (Hq=12
 * Hkv=2 Dk=Dv=64, separate K/V, B=8), bf16, plus a cuBLAS bf16 GEMM peak measured in
 * the same process. CUDA events, warm-up, L2 flushed (256 MB memset) before every run, median
 * of --reps runs. Prints CSV rows: kind,shape,S,roles,step,ms,tflop,tflops,pct_peak.
 * --roles hopper: the fast roles with cmp and win on the sm90 kernels (src/cuda/sm90/fa3.cu).
 * Not a test: it checks only that the forward ran (status, finite output sample).
 */
#include "bench_util.h"
#include "cuda/cuda_api.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *flush_buf;
static void l2_flush(void) { CK(cudaMemset(flush_buf, 0x5a, 256u << 20)); }

/* bf16 GEMM 8192^3 through cuBLAS: median TFLOP/s of 10 after warm-up. */
static double gemm_peak(void) {
    const int N = 8192;
    void *A, *B, *C;
    CK(cudaMalloc(&A, (size_t)N * N * 2));
    CK(cudaMalloc(&B, (size_t)N * N * 2));
    CK(cudaMalloc(&C, (size_t)N * N * 2));
    nsa_context *ctx;
    nsa_context_create(&ctx, NULL, 0);
    nsa_cuda_fill_normal(ctx, A, NSA_DTYPE_BF16, (int64_t)N * N, 1, 1.0f);
    nsa_cuda_fill_normal(ctx, B, NSA_DTYPE_BF16, (int64_t)N * N, 2, 1.0f);
    cublasHandle_t h;
    cublasCreate(&h);
    float one = 1.f, zero = 0.f, ms[10];
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < 13; i++) {
        cudaEventRecord(e0, 0);
        cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A, CUDA_R_16BF, N, B,
                                         CUDA_R_16BF, N, &zero, C, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT);
        cudaEventRecord(e1, 0);
        CK(cudaEventSynchronize(e1));
        if (st != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "bench: cublasGemmEx failed (%d)\n", (int)st);
            exit(1);
        }
        if (i >= 3) cudaEventElapsedTime(&ms[i - 3], e0, e1);
    }
    float m = bench_median(ms, 10);
    cublasDestroy(h);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    nsa_context_destroy(ctx);
    return 2.0 * N * N * (double)N / (m * 1e-3) / 1e12;
}

/* FLOPs (TFLOP) per step, forward, from the key counts of docs/design.md §1 and §6. */
static void flops(const nsa_config *c, int64_t S, int B, double f[6]) {
    double cmp_pairs = 0, sel_keys = 0, win_keys = 0;
    for (int64_t t = 0; t < S; t++) {
        cmp_pairs += (double)nsa_num_cmp(c, t + 1);
        int64_t nl = (int64_t)c->n * c->lp;
        sel_keys += (double)(t + 1 < nl ? t + 1 : nl);
        win_keys += (double)(t + 1 < c->w ? t + 1 : c->w);
    }
    cmp_pairs *= B;
    sel_keys *= B;
    win_keys *= B;
    const double hd = (double)c->Hq * (c->Dk + c->Dv) * 2.0;
    f[0] = 0;                                              /* compression: memory only    */
    f[1] = (cmp_pairs * hd + cmp_pairs * c->Hq * c->Dk * 2.0) / 1e12; /* cmp + scoring QK */
    f[2] = 0;                                              /* top-n: no tensor work       */
    f[3] = sel_keys * hd / 1e12;
    f[4] = win_keys * hd / 1e12;
    f[5] = 0;
}

static const char *step_name[7] = {"compress", "cmp+score", "topn", "sel", "win", "combine", "total"};

static int opt_hq, opt_hkv, opt_b; /* --heads Hq,Hkv and --batch B override the shape's */

static void run_shape(char shape, int64_t S, const nsa_role roles[3], const char *rname, int reps,
                      double peak) {
    nsa_config c = nsa_config_default(64, 4, 192, 128);
    if (shape == 'B') c.Dk = 128;
    if (shape == 'S') c = nsa_config_default(12, 2, 64, 64);
    if (opt_hq > 0) {
        c.Hq = opt_hq;
        c.Hkv = opt_hkv;
    }
    const int B = opt_b > 0 ? opt_b : shape == 'S' ? 8 : 1;
    nsa_context *ctx;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) exit(1);
    const int shared = shape == 'B';
    const int nkv = shared ? 1 : 3;
    void *q, *k[3], *v[3], *g, *o;
    const int64_t nq = B * S * c.Hq * c.Dk, nk = B * S * c.Hkv * c.Dk, nv = B * S * c.Hkv * c.Dv;
    CK(cudaMalloc(&q, (size_t)nq * 2));
    for (int i = 0; i < nkv; i++) {
        CK(cudaMalloc(&k[i], (size_t)nk * 2));
        CK(cudaMalloc(&v[i], (size_t)nv * 2));
        nsa_cuda_fill_normal(ctx, k[i], NSA_DTYPE_BF16, nk, 10 + (uint64_t)i, 1.0f);
        nsa_cuda_fill_normal(ctx, v[i], NSA_DTYPE_BF16, nv, 20 + (uint64_t)i, 1.0f);
    }
    CK(cudaMalloc(&g, (size_t)B * S * c.Hq * 3 * 2));
    CK(cudaMalloc(&o, (size_t)B * S * c.Hq * c.Dv * 2));
    nsa_cuda_fill_normal(ctx, q, NSA_DTYPE_BF16, nq, 1, 1.0f);
    nsa_cuda_fill_normal(ctx, g, NSA_DTYPE_BF16, B * S * c.Hq * 3, 2, 1.0f);
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    int64_t qs[4] = {B, S, c.Hq, c.Dk}, ks[4] = {B, S, c.Hkv, c.Dk}, vs[4] = {B, S, c.Hkv, c.Dv};
    int64_t gs[4] = {B, S, c.Hq, 3}, os[4] = {B, S, c.Hq, c.Dv};
    a.q = nsa_tensor_make(q, NSA_DTYPE_BF16, 4, qs);
    nsa_tensor *kt[3] = {&a.k_cmp, &a.k_sel, &a.k_win}, *vt[3] = {&a.v_cmp, &a.v_sel, &a.v_win};
    for (int i = 0; i < 3; i++) {
        *kt[i] = nsa_tensor_make(k[shared ? 0 : i], NSA_DTYPE_BF16, 4, ks);
        *vt[i] = nsa_tensor_make(v[shared ? 0 : i], NSA_DTYPE_BF16, 4, vs);
    }
    a.gates = nsa_tensor_make(g, NSA_DTYPE_BF16, 4, gs);
    a.out = nsa_tensor_make(o, NSA_DTYPE_BF16, 4, os);
    nsa_tensor *all[] = {&a.q, &a.k_cmp, &a.k_sel, &a.k_win, &a.v_cmp, &a.v_sel, &a.v_win, &a.gates, &a.out};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) all[i]->device.kind = NSA_DEVICE_CUDA;
    nsa_shape s;
    if (nsa_args_check_fwd(ctx, &a, &s) != NSA_OK) {
        fprintf(stderr, "bench: %s\n", nsa_context_message(ctx));
        exit(1);
    }
    float *ms = malloc(sizeof(float) * 7 * (size_t)reps), step[6], col[256];
    for (int i = 0; i < 3 + reps; i++) {
        l2_flush();
        CK(cudaDeviceSynchronize());
        nsa_status st = nsa_cuda_forward_timed(ctx, &a, &s, roles, step);
        if (st != NSA_OK) {
            fprintf(stderr, "bench: shape %c S=%lld %s: %s\n", shape, (long long)S, rname,
                    nsa_context_message(ctx));
            exit(1);
        }
        if (i < 3) continue;
        float tot = 0;
        for (int j = 0; j < 6; j++) {
            ms[(i - 3) * 7 + j] = step[j];
            tot += step[j];
        }
        ms[(i - 3) * 7 + 6] = tot;
    }
    uint16_t sample[64];
    CK(cudaMemcpy(sample, (char *)o + (size_t)(B * S - 1) * c.Hq * c.Dv * 2, sizeof sample,
                  cudaMemcpyDeviceToHost));
    for (int i = 0; i < 64; i++)
        if (!isfinite(nsa_bf16_to_f32(sample[i]))) {
            fprintf(stderr, "bench: non-finite output\n");
            exit(1);
        }
    double f[6], ftot = 0;
    flops(&c, S, B, f);
    for (int j = 0; j < 6; j++) ftot += f[j];
    for (int j = 0; j < 7; j++) {
        for (int i = 0; i < reps; i++) col[i] = ms[i * 7 + j];
        float m = bench_median(col, reps);
        double fl = j < 6 ? f[j] : ftot, tf = fl > 0 ? fl / (m * 1e-3) : 0;
        printf("nsa,%c,%lld,%s,%s,%.3f,%.3f,%.1f,%.1f\n", shape, (long long)S, rname, step_name[j], m, fl,
               tf, peak > 0 ? 100.0 * tf / peak : 0);
    }
    fflush(stdout);
    free(ms);
    cudaFree(q);
    for (int i = 0; i < nkv; i++) {
        cudaFree(k[i]);
        cudaFree(v[i]);
    }
    cudaFree(g);
    cudaFree(o);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    const char *shapes = "AB", *sizes = "8192,16384,32768,65536", *roles = "fast", *tuned = "";
    int reps = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
        else if (!strcmp(argv[i], "--S")) sizes = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--roles")) roles = argv[i + 1];
        else if (!strcmp(argv[i], "--heads")) {
            if (sscanf(argv[i + 1], "%d,%d", &opt_hq, &opt_hkv) != 2 || opt_hkv < 1 || opt_hq % opt_hkv) {
                fprintf(stderr, "bench: bad --heads %s (Hq,Hkv)\n", argv[i + 1]);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--batch")) opt_b = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tune")) { /* key=value, a tile choice (nsa_cuda_tune) */
            char key[64];
            int val;
            if (sscanf(argv[i + 1], "%63[^=]=%d", key, &val) != 2 || nsa_cuda_tune(key, val) != NSA_OK) {
                fprintf(stderr, "bench: bad --tune %s\n", argv[i + 1]);
                return 2;
            }
            tuned = argv[i + 1];
        }
        else {
            fprintf(stderr, "usage: bench_forward [--shapes ABS] [--S 8192,...] [--reps 20] "
                            "[--heads Hq,Hkv] [--batch B] "
                            "[--roles fast|hopper|fa2ref|tiled|ref] [--tune key=value ...]\n");
            return 2;
        }
    }
    if (nsa_device_cuda_count() == 0) {
        fprintf(stderr, "bench: no CUDA device\n");
        return 77;
    }
    CK(cudaMalloc(&flush_buf, 256u << 20));
    double peak = gemm_peak();
    printf("kind,shape,S,roles,step,ms,tflop,tflops,pct_peak\n");
    printf("gemm,-,8192,cublas_bf16,gemm,0,0,%.1f,100.0\n", peak);
    nsa_role r[3] = {NSA_ROLE_FA2, NSA_ROLE_FUSED_SEL, NSA_ROLE_FA2};
    if (!strcmp(roles, "ref")) r[0] = r[1] = r[2] = NSA_ROLE_REF;
    if (!strcmp(roles, "fa2ref")) r[1] = NSA_ROLE_REF;
    if (!strcmp(roles, "hopper") && nsa_cuda_tune("hopper", 1) != NSA_OK) return 2;
    if (!strcmp(roles, "tiled")) {
        r[0] = r[2] = NSA_ROLE_MASKED;
        r[1] = NSA_ROLE_PACKED;
    }
    char rname[96];
    snprintf(rname, sizeof rname, "%s%s%s", roles, *tuned ? ";" : "", tuned);
    for (const char *sh = shapes; *sh; sh++) {
        char *copy = strdup(sizes), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
            run_shape(*sh, atoll(tok), r, rname, reps, peak);
        free(copy);
    }
    cudaFree(flush_buf);
    return 0;
}
