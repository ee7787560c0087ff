// SPDX-License-Identifier: Apache-2.0
/* bench_bwd.c — times the CUDA forward (routed by nsa_forward, selection ranges kept and, with
 * --keep 1 (default), the per-branch outputs and lse) and the CUDA backward (nsa_backward
 * reusing what was kept, every gradient wanted) on shape A of docs/design.md §6
 * (Hq=64 Hkv=4 Dk=192 Dv=128, separate K/V per branch, paper config) or, with --shape B, shape B
 * (Dk=Dv=128, one K/V for every branch, gradients summed), B=1, bf16, for the
 * lengths given. CUDA events, one warm-up, L2 flushed (256 MB memset) before each run, median
 * of --reps; peak device memory from cudaMemGetInfo around the calls. Prints CSV:
 * kind,shape,S,fwd_ms,bwd_ms,fwd_bwd_ms,peak_MB, then "# bwd step" rows (nsa_cuda_backward_timed).
 * Not a test: it checks only the statuses.
 */
#include "bench_util.h"
#include "cuda/bwd_api.h"
#include "cuda/cuda_api.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nsa_tensor dt4(nsa_context *ctx, int64_t a, int64_t b, int64_t c, int64_t d, uint64_t seed,
                      nsa_dtype dt) {
    void *p;
    CK(cudaMalloc(&p, (size_t)(a * b * c * d) * nsa_dtype_size(dt)));
    if (seed) NK(ctx, nsa_cuda_fill_normal(ctx, p, dt, a * b * c * d, seed, 1.0f));
    nsa_tensor t = nsa_tensor_4d(p, dt, a, b, c, d);
    t.device.kind = NSA_DEVICE_CUDA;
    return t;
}

static size_t used(void) {
    size_t fr, tot;
    CK(cudaMemGetInfo(&fr, &tot));
    return tot - fr;
}

static void run(char shape, int64_t S, int reps, int keep, void *flush) {
    const int shared = shape == 'B'; /* B: Dk = Dv = 128, one K/V for every branch */
    const nsa_config c = nsa_config_default(64, 4, shared ? 128 : 192, 128);
    const nsa_dtype bf = NSA_DTYPE_BF16;
    nsa_context *ctx;
    if (nsa_context_create(&ctx, NULL, 0) != NSA_OK) exit(1);
    const size_t base = used();
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = dt4(ctx, 1, S, c.Hq, c.Dk, 1, bf);
    a.k_cmp = dt4(ctx, 1, S, c.Hkv, c.Dk, 2, bf);
    a.v_cmp = dt4(ctx, 1, S, c.Hkv, c.Dv, 3, bf);
    a.k_sel = shared ? a.k_cmp : dt4(ctx, 1, S, c.Hkv, c.Dk, 4, bf);
    a.v_sel = shared ? a.v_cmp : dt4(ctx, 1, S, c.Hkv, c.Dv, 5, bf);
    a.k_win = shared ? a.k_cmp : dt4(ctx, 1, S, c.Hkv, c.Dk, 6, bf);
    a.v_win = shared ? a.v_cmp : dt4(ctx, 1, S, c.Hkv, c.Dv, 7, bf);
    a.gates = dt4(ctx, 1, S, c.Hq, 3, 8, bf);
    a.out = dt4(ctx, 1, S, c.Hq, c.Dv, 0, bf);
    int64_t rs[5] = {1, S, c.Hkv, c.n, 2};
    void *rp;
    CK(cudaMalloc(&rp, (size_t)(S * c.Hkv * c.n * 2 * 4)));
    a.sel_ranges = nsa_tensor_make(rp, NSA_DTYPE_I32, 5, rs);
    a.sel_ranges.device.kind = NSA_DEVICE_CUDA;
    if (keep) { /* the forward keeps per-branch outputs and lse for the backward */
        nsa_tensor *ob[3] = {&a.out_cmp, &a.out_sel, &a.out_win};
        nsa_tensor *lb[3] = {&a.lse_cmp, &a.lse_sel, &a.lse_win};
        int64_t ls[3] = {1, S, c.Hq};
        for (int i = 0; i < 3; i++) {
            *ob[i] = dt4(ctx, 1, S, c.Hq, c.Dv, 0, bf);
            void *lp;
            CK(cudaMalloc(&lp, (size_t)S * c.Hq * 4));
            *lb[i] = nsa_tensor_make(lp, NSA_DTYPE_F32, 3, ls);
            lb[i]->device.kind = NSA_DEVICE_CUDA;
        }
    }
    nsa_bwd_args g;
    memset(&g, 0, sizeof g);
    g.dout = dt4(ctx, 1, S, c.Hq, c.Dv, 9, bf);
    g.dq = dt4(ctx, 1, S, c.Hq, c.Dk, 0, bf);
    g.dk_cmp = dt4(ctx, 1, S, c.Hkv, c.Dk, 0, bf);
    g.dv_cmp = dt4(ctx, 1, S, c.Hkv, c.Dv, 0, bf);
    g.dk_sel = shared ? g.dk_cmp : dt4(ctx, 1, S, c.Hkv, c.Dk, 0, bf); /* aliased: summed */
    g.dv_sel = shared ? g.dv_cmp : dt4(ctx, 1, S, c.Hkv, c.Dv, 0, bf);
    g.dk_win = shared ? g.dk_cmp : dt4(ctx, 1, S, c.Hkv, c.Dk, 0, bf);
    g.dv_win = shared ? g.dv_cmp : dt4(ctx, 1, S, c.Hkv, c.Dv, 0, bf);
    g.dgates = dt4(ctx, 1, S, c.Hq, 3, 0, bf);
    cudaEvent_t e[3];
    for (int i = 0; i < 3; i++) CK(cudaEventCreate(&e[i]));
    float *f = malloc(sizeof(float) * 2 * (size_t)reps), *bw = f + reps;
    size_t peak = 0;
    for (int i = 0; i < 1 + reps; i++) {
        CK(cudaMemset(flush, 0x5a, 256u << 20));
        CK(cudaDeviceSynchronize());
        CK(cudaEventRecord(e[0], 0));
        NK(ctx, nsa_forward(ctx, &a));
        CK(cudaEventRecord(e[1], 0));
        NK(ctx, nsa_backward(ctx, &a, &g));
        CK(cudaEventRecord(e[2], 0));
        const size_t u = used();
        if (u > peak) peak = u;
        CK(cudaEventSynchronize(e[2]));
        if (i >= 1) {
            CK(cudaEventElapsedTime(&f[i - 1], e[0], e[1]));
            CK(cudaEventElapsedTime(&bw[i - 1], e[1], e[2]));
        }
    }
    qsort(f, (size_t)reps, sizeof *f, bench_cmp_f);
    qsort(bw, (size_t)reps, sizeof *bw, bench_cmp_f);
    const float fm = f[reps / 2], bm = bw[reps / 2];
    printf("nsa_routed%s,%c,%lld,%.2f,%.2f,%.2f,%.0f\n", keep ? "_kept" : "", shape, (long long)S,
           fm, bm, fm + bm, (double)(peak - base) / 1e6);
    /* the backward's steps on the router's roles (median of reps, L2 flushed) */
    nsa_shape sh;
    NK(ctx, nsa_args_check_fwd(ctx, &a, &sh));
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = c;
    p.B = 1;
    p.T = S;
    p.dtype = bf;
    p.pass = NSA_PASS_BACKWARD;
    nsa_device_caps caps;
    nsa_route_decision d;
    NK(ctx, nsa_device_caps_query(ctx, a.q.device, &caps));
    NK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    nsa_route_decision fd; /* the forward the backward recomputes (what nsa_forward runs) */
    p.pass = NSA_PASS_FORWARD;
    NK(ctx, nsa_route_explain(ctx, &p, &caps, &fd));
    float *st = malloc(sizeof(float) * 6 * (size_t)reps), ms[6];
    for (int i = 0; i < reps; i++) {
        CK(cudaMemset(flush, 0x5a, 256u << 20));
        CK(cudaDeviceSynchronize());
        NK(ctx, nsa_cuda_backward_timed(ctx, &a, &g, &sh, d.role, fd.role, ms));
        for (int k = 0; k < 6; k++) st[k * reps + i] = ms[k];
    }
    static const char *step[6] = {"forward+stats", "index", "cmp", "sel", "win", "store"};
    for (int k = 0; k < 6; k++) {
        qsort(st + k * reps, (size_t)reps, sizeof *st, bench_cmp_f);
        printf("# bwd step,%c,%lld,%s,%s,%.2f\n", shape, (long long)S, step[k],
               k >= 2 && k <= 4 ? d.backend[k - 2] : "-", st[k * reps + reps / 2]);
    }
    free(st);
    fflush(stdout);
    free(f);
    const nsa_tensor *all[] = {&a.q, &a.k_cmp, &a.v_cmp, &a.k_sel, &a.v_sel, &a.k_win, &a.v_win,
                               &a.gates, &a.out, &a.sel_ranges, &g.dout, &g.dq, &g.dk_cmp,
                               &g.dv_cmp, &g.dk_sel, &g.dv_sel, &g.dk_win, &g.dv_win, &g.dgates,
                               &a.out_cmp, &a.out_sel, &a.out_win, &a.lse_cmp, &a.lse_sel,
                               &a.lse_win};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        int seen = 0; /* shape B aliases K/V and their gradients */
        for (size_t j = 0; j < i; j++) seen |= all[j]->data == all[i]->data;
        if (all[i]->data && !seen) CK(cudaFree(all[i]->data));
    }
    for (int i = 0; i < 3; i++) CK(cudaEventDestroy(e[i]));
    nsa_context_destroy(ctx);
}

int main(int argc, char **argv) {
    const char *Ss = "2048,8192";
    int reps = 3, keep = 1;
    char shape = 'A';
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--S")) Ss = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--keep")) keep = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--shape")) shape = argv[i + 1][0] == 'B' ? 'B' : 'A';
        else if (!strcmp(argv[i], "--tune")) { /* key=value, a tile choice (nsa_cuda_tune) */
            char key[64];
            int val;
            if (sscanf(argv[i + 1], "%63[^=]=%d", key, &val) != 2 || nsa_cuda_tune(key, val) != NSA_OK) {
                fprintf(stderr, "bench_bwd: bad --tune %s\n", argv[i + 1]);
                return 2;
            }
        }
    }
    void *flush;
    CK(cudaMalloc(&flush, 256u << 20));
    printf("kind,shape,S,fwd_ms,bwd_ms,fwd_bwd_ms,peak_MB\n");
    for (const char *sp = Ss; *sp;) {
        run(shape, atoll(sp), reps, keep, flush);
        while (*sp && *sp != ',') sp++;
        if (*sp) sp++;
    }
    return 0;
}
