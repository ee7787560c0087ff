// SPDX-License-Identifier: Apache-2.0
/* consumer.c — a tiny program built against an installed libnsa (tests/install/run.sh): one
 * forward on the CPU through the public header only. Exit 0 when the output is finite.
 */
#include <nsa.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    nsa_context *ctx;
    char msg[256];
    if (nsa_context_create(&ctx, msg, sizeof msg) != NSA_OK) {
        fprintf(stderr, "consumer: %s\n", msg);
        return 1;
    }
    enum { T = 6, Hq = 2, Hkv = 1, D = 4 };
    nsa_config c = nsa_config_default(Hq, Hkv, D, D);
    c.l = 2;
    c.d = 1;
    c.lp = 2;
    c.n = 2;
    c.n_init = 1;
    c.n_local = 1;
    c.w = 2;
    float q[T * Hq * D], k[T * Hkv * D], v[T * Hkv * D], g[T * Hq * 3], out[T * Hq * D];
    for (int i = 0; i < T * Hq * D; i++) q[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    for (int i = 0; i < T * Hkv * D; i++) k[i] = (float)((i * 5) % 13) / 13.0f - 0.5f;
    for (int i = 0; i < T * Hkv * D; i++) v[i] = (float)((i * 3) % 7) / 7.0f;
    for (int i = 0; i < T * Hq * 3; i++) g[i] = 0.5f;
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = c;
    a.q = nsa_tensor_4d(q, NSA_DTYPE_F32, 1, T, Hq, D);
    a.k_cmp = a.k_sel = a.k_win = nsa_tensor_4d(k, NSA_DTYPE_F32, 1, T, Hkv, D);
    a.v_cmp = a.v_sel = a.v_win = nsa_tensor_4d(v, NSA_DTYPE_F32, 1, T, Hkv, D);
    a.gates = nsa_tensor_4d(g, NSA_DTYPE_F32, 1, T, Hq, 3);
    a.out = nsa_tensor_4d(out, NSA_DTYPE_F32, 1, T, Hq, D);
    nsa_status st = nsa_forward(ctx, &a);
    if (st != NSA_OK) {
        fprintf(stderr, "consumer: forward: %s: %s\n", nsa_status_name(st), nsa_context_message(ctx));
        return 1;
    }
    double sum = 0;
    for (int i = 0; i < T * Hq * D; i++) {
        sum += fabs((double)out[i]);
        if (!isfinite(out[i])) {
            fprintf(stderr, "consumer: out[%d] = %g\n", i, (double)out[i]);
            return 1;
        }
    }
    printf("consumer: nsa %d.%d.%d forward ok, sum |out| = %.6f\n", NSA_VERSION_MAJOR,
           NSA_VERSION_MINOR, NSA_VERSION_PATCH, sum);
    nsa_context_destroy(ctx);
    return 0;
}
