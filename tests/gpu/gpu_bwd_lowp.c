// SPDX-License-Identifier: Apache-2.0
/* gpu_bwd_lowp.c — the NSA backward as an eager framework computes it in bf16/f16 (the "naive
 * low-precision run" of docs/design.md §5 for the tensor-core backward): every matmul output and
 * every elementwise intermediate (compressed K/V, scores, scaled scores, P, o_b, gate·dout, dP,
 * dS, each branch's dq, dK, dV, the φ backward, the sums of aliased gradients) rounded to the
 * dtype; softmax and its backward inside in double, as a fused framework kernel would.
 * Not the reference (that is the CPU library, in double); only a yardstick for the error that
 * computing in the dtype costs. Sequential and deterministic; test sizes only.
 */
#include "gpu_bwd_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int gb_lowp_force = -1;

static double rnd(double x, nsa_dtype dt) {
    const float f = (float)x;
    if (dt == NSA_DTYPE_BF16) return nsa_bf16_to_f32(nsa_f32_to_bf16(f));
    if (dt == NSA_DTYPE_F16) return nsa_f16_to_f32(nsa_f32_to_f16(f));
    return f;
}

/* Element i of a contiguous host tensor. */
static double tget(const nsa_tensor *t, int64_t i) {
    switch (t->dtype) {
    case NSA_DTYPE_BF16: return nsa_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case NSA_DTYPE_F16: return nsa_f16_to_f32(((const uint16_t *)t->data)[i]);
    case NSA_DTYPE_F32: return ((const float *)t->data)[i];
    default: return ((const int32_t *)t->data)[i];
    }
}

/* One branch's keys for a row: values (nk × D) copied out, and where their gradients go. */
int gb_lowp_backward(const nsa_fwd_args *a, const nsa_tensor *dout, const nsa_tensor *ranges,
                     int alias, double *gr[8]) {
    const nsa_config *c = &a->cfg;
    const nsa_dtype dt = a->q.dtype;
    const int B = (int)a->q.shape[0], T = (int)a->q.shape[1], Hq = c->Hq, Hkv = c->Hkv;
    const int G = Hq / Hkv, Dk = c->Dk, Dv = c->Dv;
    const int64_t Tc = nsa_num_cmp(c, T);
    const double scale = nsa_config_scale(c);
    const int64_t nq = (int64_t)B * T * Hq, nkr = (int64_t)B * T * Hkv;
    const int64_t nc = (int64_t)B * (Tc > 0 ? Tc : 1) * Hkv;
    double *kc = calloc((size_t)nc * Dk, 8), *vc = calloc((size_t)nc * Dv, 8);
    double *dkb[3], *dvb[3], *dqb = calloc((size_t)nq * Dk, 8);
    double *s = malloc(sizeof(double) * (size_t)(T + 2)), *p = malloc(sizeof(double) * (size_t)(T + 2));
    double *ds = malloc(sizeof(double) * (size_t)(T + 2)), *o = malloc(sizeof(double) * (size_t)Dv);
    double *dob = malloc(sizeof(double) * (size_t)Dv);
    int64_t *at = malloc(sizeof(int64_t) * (size_t)(T + 2));
    int ok = kc && vc && dqb && s && p && ds && o && dob && at;
    for (int i = 0; i < 3; i++) {
        dkb[i] = calloc((size_t)(i ? nkr : nc) * Dk, 8);
        dvb[i] = calloc((size_t)(i ? nkr : nc) * Dv, 8);
        ok = ok && dkb[i] && dvb[i];
    }
    for (int i = 0; i < 8; i++) gr[i] = NULL;
    const int64_t numel[8] = {nq * Dk, nkr * Dk, nkr * Dv, nkr * Dk, nkr * Dv, nkr * Dk, nkr * Dv, nq * 3};
    for (int i = 0; i < 8 && ok; i++) ok = (gr[i] = calloc((size_t)numel[i], 8)) != NULL;
    if (!ok) goto done;
    /* φ = avg, each mean rounded */
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < Tc; i++)
            for (int g = 0; g < Hkv; g++) {
                const int64_t r = ((int64_t)b * Tc + i) * Hkv + g;
                for (int e = 0; e < Dk; e++) {
                    double x = 0.0;
                    for (int u = 0; u < c->l; u++)
                        x += tget(&a->k_cmp, (((int64_t)b * T + i * c->d + u) * Hkv + g) * Dk + e);
                    kc[r * Dk + e] = rnd(x / c->l, dt);
                }
                for (int e = 0; e < Dv; e++) {
                    double x = 0.0;
                    for (int u = 0; u < c->l; u++)
                        x += tget(&a->v_cmp, (((int64_t)b * T + i * c->d + u) * Hkv + g) * Dv + e);
                    vc[r * Dv + e] = rnd(x / c->l, dt);
                }
            }
    for (int br = 0; br < 3; br++) {
        const nsa_tensor *K = br == 1 ? &a->k_sel : &a->k_win, *V = br == 1 ? &a->v_sel : &a->v_win;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int g = 0; g < Hkv; g++) {
                    int nk = 0; /* the row's keys: rows of kc/vc (cmp) or of K/V */
                    if (br == 0) {
                        for (int64_t i = 0; i < nsa_num_cmp(c, t + 1); i++)
                            at[nk++] = ((int64_t)b * Tc + i) * Hkv + g;
                    } else if (br == 1) {
                        const int64_t r0 = (((int64_t)b * T + t) * Hkv + g) * c->n * 2;
                        for (int q = 0; q < c->n; q++)
                            for (int64_t j = (int64_t)tget(ranges, r0 + 2 * q);
                                 j < (int64_t)tget(ranges, r0 + 2 * q + 1); j++)
                                at[nk++] = ((int64_t)b * T + j) * Hkv + g;
                    } else {
                        for (int j = t - c->w + 1 > 0 ? t - c->w + 1 : 0; j <= t && c->w > 0; j++)
                            at[nk++] = ((int64_t)b * T + j) * Hkv + g;
                    }
                    for (int hh = 0; hh < G; hh++) {
                        const int h = g * G + hh;
                        const int64_t x = ((int64_t)b * T + t) * Hq + h;
#define KV(arr, tens, j, e, D) (br == 0 ? arr[at[j] * (D) + (e)] : tget(tens, at[j] * (D) + (e)))
                        double mx = -INFINITY, sum = 0.0;
                        for (int j = 0; j < nk; j++) {
                            double d = 0.0;
                            for (int e = 0; e < Dk; e++) d += tget(&a->q, x * Dk + e) * KV(kc, K, j, e, Dk);
                            s[j] = rnd(rnd(d, dt) * scale, dt);
                            mx = s[j] > mx ? s[j] : mx;
                        }
                        for (int j = 0; j < nk; j++) sum += exp(s[j] - mx);
                        for (int j = 0; j < nk; j++) p[j] = rnd(exp(s[j] - mx) / sum, dt);
                        const double gate = gb_lowp_force >= 0 ? (gb_lowp_force == br)
                                                               : tget(&a->gates, x * 3 + br);
                        double dg = 0.0;
                        for (int e = 0; e < Dv; e++) {
                            double y = 0.0;
                            for (int j = 0; j < nk; j++) y += p[j] * KV(vc, V, j, e, Dv);
                            o[e] = rnd(y, dt);
                            dg += tget(dout, x * Dv + e) * o[e];
                            dob[e] = rnd(gate * tget(dout, x * Dv + e), dt);
                        }
                        gr[7][x * 3 + br] = rnd(dg, dt);
                        double delta = 0.0;
                        for (int j = 0; j < nk; j++) {
                            double y = 0.0;
                            for (int e = 0; e < Dv; e++) y += dob[e] * KV(vc, V, j, e, Dv);
                            ds[j] = rnd(y, dt); /* dP */
                            delta += p[j] * ds[j];
                        }
                        for (int j = 0; j < nk; j++) ds[j] = rnd(p[j] * (ds[j] - delta), dt);
                        for (int e = 0; e < Dk; e++) {
                            double y = 0.0;
                            for (int j = 0; j < nk; j++) y += ds[j] * KV(kc, K, j, e, Dk);
                            dqb[x * Dk + e] = rnd(rnd(y, dt) * scale, dt);
                        }
                        for (int j = 0; j < nk; j++) {
                            for (int e = 0; e < Dk; e++)
                                dkb[br][at[j] * Dk + e] += ds[j] * tget(&a->q, x * Dk + e);
                            for (int e = 0; e < Dv; e++) dvb[br][at[j] * Dv + e] += p[j] * dob[e];
                        }
#undef KV
                    }
                }
        /* this branch's dq joins the sum (autograd order cmp, sel, win), rounded */
        for (int64_t i = 0; i < nq * Dk; i++) gr[0][i] = rnd(gr[0][i] + dqb[i], dt);
        const int64_t nr = br == 0 ? nc : nkr;
        for (int64_t i = 0; i < nr * Dk; i++) dkb[br][i] = rnd(rnd(dkb[br][i], dt) * scale, dt);
        for (int64_t i = 0; i < nr * Dv; i++) dvb[br][i] = rnd(dvb[br][i], dt);
    }
    /* φ backward: raw position u of block i gets dkc_i / l */
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < Tc; i++)
            for (int u = 0; u < c->l; u++)
                for (int g = 0; g < Hkv; g++) {
                    const int64_t r = ((int64_t)b * Tc + i) * Hkv + g;
                    const int64_t y = (((int64_t)b * T + i * c->d + u) * Hkv + g);
                    for (int e = 0; e < Dk; e++)
                        gr[1][y * Dk + e] = rnd(gr[1][y * Dk + e] + rnd(dkb[0][r * Dk + e] / c->l, dt), dt);
                    for (int e = 0; e < Dv; e++)
                        gr[2][y * Dv + e] = rnd(gr[2][y * Dv + e] + rnd(dvb[0][r * Dv + e] / c->l, dt), dt);
                }
    memcpy(gr[3], dkb[1], (size_t)nkr * Dk * 8);
    memcpy(gr[4], dvb[1], (size_t)nkr * Dv * 8);
    memcpy(gr[5], dkb[2], (size_t)nkr * Dk * 8);
    memcpy(gr[6], dvb[2], (size_t)nkr * Dv * 8);
    if (alias) /* one dK, one dV: the sum in field order, rounded per addition */
        for (int f = 1; f <= 2; f++) {
            const int64_t n = f == 1 ? nkr * Dk : nkr * Dv;
            for (int64_t i = 0; i < n; i++) {
                const double v = rnd(rnd(gr[f][i] + gr[f + 2][i], dt) + gr[f + 4][i], dt);
                gr[f][i] = gr[f + 2][i] = gr[f + 4][i] = v;
            }
        }
done:
    free(kc); free(vc); free(dqb);
    free(s); free(p); free(ds); free(o); free(dob); free(at);
    for (int i = 0; i < 3; i++) { free(dkb[i]); free(dvb[i]); }
    if (!ok)
        for (int i = 0; i < 8; i++) { free(gr[i]); gr[i] = NULL; }
    return ok;
}
