// SPDX-License-Identifier: Apache-2.0
/* bench_decode.c — times one CUDA decode step (nsa_decode_step on a CUDA KV cache: push + the
 * three branches + gated output for every row) on the decode shape A of docs/design.md §6 (Hq=64
 * Hkv=4 Dk=192
 * Dv=128, paper config, bf16) for batch sizes and cache lengths given on the command line.
 * Rows are filled by nsa_kv_cache_append with random tokens made on the device, then each timed
 * step runs after an L2 flush (256 MB memset; --flush 0 leaves the cache warm, instructions and
 * all: a diagnosis, not a result); CUDA events around the step; median of --reps.
 * Prints CSV: kind,B,S,us,host_us (the call's own host time),budget_MB,read_MB,budget_TBps,
 * read_TBps and the measured reads. The stream is idle when each timed step starts.
 * budget bytes = B·Hkv·(Dk+Dv)·2·(num_cmp(S) + n·lp + min(w,S)) (design §6); read bytes count the
 * compressed tokens as the split-key step reads them (dtype copy, 2 bytes) and the sel/win keys
 * the step's counters report.
 * Not a test: it only checks the status and the counters against the budget.
 */
#include "bench_util.h"
#include "cuda/cuda_api.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static nsa_tensor dev4(void *p, int64_t a, int64_t b, int64_t c, int64_t d) {
    nsa_tensor t = nsa_tensor_4d(p, NSA_DTYPE_BF16, a, b, c, d);
    t.device.kind = NSA_DEVICE_CUDA;
    return t;
}

static void *dalloc(nsa_context *ctx, int64_t n, uint64_t seed) {
    void *p;
    CK(cudaMalloc(&p, (size_t)n * 2));
    NK(ctx, nsa_cuda_fill_normal(ctx, p, NSA_DTYPE_BF16, n, seed, 1.0f));
    return p;
}

static void run(int B, int64_t S, int reps, void *flush, int do_flush) {
    const nsa_config c = nsa_config_default(64, 4, 192, 128);
    nsa_context *ctx;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) exit(1);
    nsa_kv_cache_desc d;
    memset(&d, 0, sizeof d);
    d.cfg = c;
    d.dtype = NSA_DTYPE_BF16;
    d.device.kind = NSA_DEVICE_CUDA;
    d.B = B;
    d.max_len = S + reps + 8;
    nsa_kv_cache *kv;
    NK(ctx, nsa_kv_cache_create(ctx, &d, &kv));
    /* fill row by row from one random (1, S, Hkv, D) K and V (shared by the branches) */
    void *k = dalloc(ctx, S * c.Hkv * c.Dk, 7), *v = dalloc(ctx, S * c.Hkv * c.Dv, 8);
    for (int b = 0; b < B; b++) {
        nsa_kv_append_args a;
        memset(&a, 0, sizeof a);
        a.b0 = b;
        a.k_cmp = a.k_sel = a.k_win = dev4(k, 1, S, c.Hkv, c.Dk);
        a.v_cmp = a.v_sel = a.v_win = dev4(v, 1, S, c.Hkv, c.Dv);
        NK(ctx, nsa_kv_cache_append(ctx, kv, &a));
    }
    CK(cudaFree(k));
    CK(cudaFree(v));
    void *q = dalloc(ctx, (int64_t)B * c.Hq * c.Dk, 1), *g = dalloc(ctx, (int64_t)B * c.Hq * 3, 2);
    void *nk = dalloc(ctx, (int64_t)B * c.Hkv * c.Dk, 3), *nv = dalloc(ctx, (int64_t)B * c.Hkv * c.Dv, 4);
    void *o;
    CK(cudaMalloc(&o, (size_t)B * c.Hq * c.Dv * 2));
    nsa_decode_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = dev4(q, B, 1, c.Hq, c.Dk);
    a.k_cmp = a.k_sel = a.k_win = dev4(nk, B, 1, c.Hkv, c.Dk);
    a.v_cmp = a.v_sel = a.v_win = dev4(nv, B, 1, c.Hkv, c.Dv);
    a.gates = dev4(g, B, 1, c.Hq, 3);
    a.out = dev4(o, B, 1, c.Hq, c.Dv);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float *ms = malloc(sizeof(float) * (size_t)reps * 2), *hs = ms + reps;
    for (int i = 0; i < 3 + reps; i++) {
        if (do_flush) CK(cudaMemset(flush, 0x5a, 256u << 20));
        CK(cudaDeviceSynchronize());
        CK(cudaEventRecord(e0, 0));
        struct timespec h0, h1;
        clock_gettime(CLOCK_MONOTONIC, &h0);
        NK(ctx, nsa_decode_step(ctx, kv, &a));
        clock_gettime(CLOCK_MONOTONIC, &h1);
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        if (i >= 3) {
            CK(cudaEventElapsedTime(&ms[i - 3], e0, e1));
            hs[i - 3] = (float)((h1.tv_sec - h0.tv_sec) * 1e6 + (h1.tv_nsec - h0.tv_nsec) / 1e3);
        }
    }
    qsort(ms, (size_t)reps, sizeof *ms, bench_cmp_f);
    qsort(hs, (size_t)reps, sizeof *hs, bench_cmp_f);
    const double us = ms[reps / 2] * 1e3, host_us = hs[reps / 2];
    nsa_decode_reads r;
    NK(ctx, nsa_kv_cache_last_reads(ctx, kv, 0, &r));
    const double row = (double)c.Hkv * (c.Dk + c.Dv);
    const double budget = (double)B * row * 2.0 * (double)r.budget;
    const double read = (double)B * row * 2.0 * (double)(r.cmp + r.sel + r.win);
    printf("decode,%d,%lld,%.1f,%.1f,%.2f,%.2f,%.3f,%.3f,reads cmp=%lld sel=%lld win=%lld "
           "budget=%lld dense=%lld\n", B, (long long)r.dense, us, host_us, budget / 1e6, read / 1e6,
           budget / (us * 1e-6) / 1e12, read / (us * 1e-6) / 1e12, (long long)r.cmp,
           (long long)r.sel, (long long)r.win, (long long)r.budget, (long long)r.dense);
    fflush(stdout);
    free(ms);
    cudaFree(q);
    cudaFree(g);
    cudaFree(nk);
    cudaFree(nv);
    cudaFree(o);
    nsa_kv_cache_destroy(kv);
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    const char *Bs = "1,16,64", *Ss = "8192,16384,32768,65536";
    int reps = 20, do_flush = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--B")) Bs = argv[i + 1];
        else if (!strcmp(argv[i], "--S")) Ss = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--flush")) do_flush = atoi(argv[i + 1]);
    }
    void *flush;
    CK(cudaMalloc(&flush, 256u << 20));
    printf("kind,B,S,us,host_us,budget_MB,read_MB,budget_TBps,read_TBps,reads\n");
    char bl[128];
    snprintf(bl, sizeof bl, "%s", Bs);
    for (char *bp = strtok(bl, ","); bp; bp = strtok(NULL, ",")) {
        const int B = atoi(bp);
        const char *sp = Ss;
        while (*sp) {
            run(B, atoll(sp), reps, flush, do_flush);
            while (*sp && *sp != ',') sp++;
            if (*sp) sp++;
        }
    }
    cudaFree(flush);
    return 0;
}
