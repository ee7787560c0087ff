// SPDX-License-Identifier: Apache-2.0
/* ref_util.c — see ref_util.h. */
#include "ref_util.h"

#include "ref/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const pgrad_names[8] = {"dq",     "dk_cmp", "dv_cmp", "dk_sel",
                                    "dv_sel", "dk_win", "dv_win", "dgates"};

void prob_init(prob *p, nsa_config c, nsa_dtype dt, int B, int T, unsigned flags) {
    memset(p, 0, sizeof *p);
    p->c = c;
    p->B = B;
    p->T = T;
    p->dt = dt;
    p->flags = flags;
    const int64_t Tc = nsa_num_cmp(&c, T), Tk = (flags & P_CMP_COMPRESSED) ? Tc : T;
    p->q = tb_new4(dt, B, T, c.Hq, c.Dk, 1.0);
    p->ks = tb_new4(dt, B, T, c.Hkv, c.Dk, 1.0);
    p->vs = tb_new4(dt, B, T, c.Hkv, c.Dv, 1.0);
    p->g = tb_new4(dt, B, T, c.Hq, 3, 1.0);
    tb_uniform(&p->g, 0.0, 1.0);
    p->out = tb_new4(dt, B, T, c.Hq, c.Dv, 0.0);
    nsa_fwd_args *a = &p->a;
    a->cfg = c;
    a->q = p->q.t;
    a->k_sel = p->ks.t;
    a->v_sel = p->vs.t;
    a->gates = p->g.t;
    a->out = p->out.t;
    a->cmp_compressed = (flags & P_CMP_COMPRESSED) != 0;
    if ((flags & P_SHARED) && !(flags & P_CMP_COMPRESSED)) {
        a->k_cmp = a->k_win = p->ks.t;
        a->v_cmp = a->v_win = p->vs.t;
    } else {
        p->kc = tb_new4(dt, B, Tk, c.Hkv, c.Dk, 1.0);
        p->vc = tb_new4(dt, B, Tk, c.Hkv, c.Dv, 1.0);
        a->k_cmp = p->kc.t;
        a->v_cmp = p->vc.t;
        if (flags & P_SHARED) {
            a->k_win = p->ks.t;
            a->v_win = p->vs.t;
        } else {
            p->kw = tb_new4(dt, B, T, c.Hkv, c.Dk, 1.0);
            p->vw = tb_new4(dt, B, T, c.Hkv, c.Dv, 1.0);
            a->k_win = p->kw.t;
            a->v_win = p->vw.t;
        }
    }
    if (flags & P_EXTRAS) {
        nsa_tensor *ob[3] = {&a->out_cmp, &a->out_sel, &a->out_win};
        nsa_tensor *lb[3] = {&a->lse_cmp, &a->lse_sel, &a->lse_win};
        int64_t ls[3] = {B, T, c.Hq};
        for (int br = 0; br < 3; br++) {
            p->ob[br] = tb_new4(dt, B, T, c.Hq, c.Dv, 0.0);
            p->lse[br] = tb_new(NSA_DTYPE_F32, 3, ls, 0.0);
            *ob[br] = p->ob[br].t;
            *lb[br] = p->lse[br].t;
        }
        int64_t rs[5] = {B, T, c.Hkv, c.n, 2};
        p->blocks = tb_new4(NSA_DTYPE_I32, B, T, c.Hkv, c.n, 0.0);
        p->ranges = tb_new(NSA_DTYPE_I32, 5, rs, 0.0);
        a->sel_blocks = p->blocks.t;
        a->sel_ranges = p->ranges.t;
    }
}

static void each_buf(prob *p, void (*fn)(tbuf *)) {
    tbuf *all[] = {&p->q,      &p->kc,     &p->vc,     &p->ks,     &p->vs,     &p->kw,
                   &p->vw,     &p->g,      &p->out,    &p->ob[0],  &p->ob[1],  &p->ob[2],
                   &p->lse[0], &p->lse[1], &p->lse[2], &p->blocks, &p->ranges};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->base) fn(all[i]);
}

void prob_free(prob *p) { each_buf(p, tb_free); }

static bool guards_all;
static void guard_one(tbuf *b) { guards_all = guards_all && tb_guard_ok(b); }

bool prob_guards_ok(const prob *p) {
    guards_all = true;
    each_buf((prob *)p, guard_one);
    return guards_all;
}

void prob_inputs(prob *p, tbuf *in[8]) {
    const bool sh = (p->flags & P_SHARED) != 0, comp = (p->flags & P_CMP_COMPRESSED) != 0;
    in[0] = &p->q;
    in[1] = sh && !comp ? &p->ks : &p->kc;
    in[2] = sh && !comp ? &p->vs : &p->vc;
    in[3] = &p->ks;
    in[4] = &p->vs;
    in[5] = sh ? &p->ks : &p->kw;
    in[6] = sh ? &p->vs : &p->vw;
    in[7] = &p->g;
}

void pgrad_init(pgrad *g, const prob *p) {
    memset(g, 0, sizeof *g);
    const nsa_tensor *like[8] = {&p->a.q,     &p->a.k_cmp, &p->a.v_cmp, &p->a.k_sel,
                                 &p->a.v_sel, &p->a.k_win, &p->a.v_win, &p->a.gates};
    nsa_tensor *dst[8] = {&g->g.dq,     &g->g.dk_cmp, &g->g.dv_cmp, &g->g.dk_sel,
                          &g->g.dv_sel, &g->g.dk_win, &g->g.dv_win, &g->g.dgates};
    g->dout = tb_new4(p->dt, p->B, p->T, p->c.Hq, p->c.Dv, 1.0);
    g->g.dout = g->dout.t;
    for (int i = 0; i < 8; i++) {
        if (!like[i]->data) continue;
        g->d[i] = tb_new(p->dt, 4, like[i]->shape, 0.0);
        *dst[i] = g->d[i].t;
    }
}

void pgrad_free(pgrad *g) {
    tb_free(&g->dout);
    for (int i = 0; i < 8; i++)
        if (g->d[i].base) tb_free(&g->d[i]);
}

bool pgrad_guards_ok(const pgrad *g) {
    if (!tb_guard_ok(&g->dout)) return false;
    for (int i = 0; i < 8; i++)
        if (g->d[i].base && !tb_guard_ok(&g->d[i])) return false;
    return true;
}

double *ut_doubles(const tbuf *b) {
    int64_t n = tb_numel(b);
    double *x = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = tb_get(b, i);
    return x;
}

bool ut_same_bytes(const tbuf *a, const tbuf *b) {
    return a->bytes == b->bytes && memcmp(a->base, b->base, a->bytes) == 0;
}

double ut_attend(const double *q, const double *K, int64_t ks, const double *V, int64_t vs,
                 const unsigned char *mask, int64_t nk, int Dk, int Dv, double scale,
                 double *out) {
    double mx = -INFINITY;
    for (int e = 0; e < Dv; e++) out[e] = 0.0;
    for (int64_t j = 0; j < nk; j++) {
        if (!mask[j]) continue;
        double s = 0;
        for (int e = 0; e < Dk; e++) s += q[e] * K[j * ks + e];
        mx = fmax(mx, s * scale);
    }
    if (mx == -INFINITY) return -INFINITY;
    double z = 0;
    for (int64_t j = 0; j < nk; j++) {
        if (!mask[j]) continue;
        double s = 0;
        for (int e = 0; e < Dk; e++) s += q[e] * K[j * ks + e];
        double w = exp(s * scale - mx);
        z += w;
        for (int e = 0; e < Dv; e++) out[e] += w * V[j * vs + e];
    }
    for (int e = 0; e < Dv; e++) out[e] /= z;
    return mx + log(z);
}

int ut_overlap(int l, int d, int lp, int64_t i, int64_t j) {
    int m = 0;
    for (int64_t u = 0; u * d < (j + 1) * lp + l; u++) {
        int64_t a = u * d, b = a + d;
        if (a >= i * d && b <= i * d + l && a >= j * lp && b <= (j + 1) * lp) m++;
    }
    return m;
}

double ut_loss(const prob *p, const double *q, const double *kc, const double *vc,
               const double *ks, const double *vs, const double *kw, const double *vw,
               const double *gates, const double *R, int32_t *blocks) {
    const nsa_config *c = &p->c;
    nsa_shape s;
    memset(&s, 0, sizeof s);
    s.B = p->B;
    s.T = p->T;
    s.Tc = nsa_num_cmp(c, p->T);
    s.Hq = c->Hq;
    s.Hkv = c->Hkv;
    s.G = c->Hq / c->Hkv;
    s.Dk = c->Dk;
    s.Dv = c->Dv;
    s.scale = nsa_config_scale(c);
    nsa_ref_inputs in;
    memset(&in, 0, sizeof in);
    in.q = (double *)q;
    in.ks = (double *)ks;
    in.vs = (double *)vs;
    in.kw = (double *)kw;
    in.vw = (double *)vw;
    in.gates = (double *)gates;
    double *ckc = NULL, *cvc = NULL;
    if (p->flags & P_CMP_COMPRESSED) {
        in.kc = (double *)kc;
        in.vc = (double *)vc;
    } else {
        const int64_t n = s.B * (s.Tc > 0 ? s.Tc : 1) * s.Hkv;
        ckc = malloc(sizeof(double) * (size_t)(n * s.Dk));
        cvc = malloc(sizeof(double) * (size_t)(n * s.Dv));
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t i = 0; i < s.Tc; i++)
                for (int h = 0; h < s.Hkv; h++) {
                    nsa_ref_compress_block(kc + ((b * s.T + i * c->d) * s.Hkv + h) * s.Dk,
                                           (int64_t)s.Hkv * s.Dk, c->l, s.Dk,
                                           ckc + ((b * s.Tc + i) * s.Hkv + h) * s.Dk);
                    nsa_ref_compress_block(vc + ((b * s.T + i * c->d) * s.Hkv + h) * s.Dv,
                                           (int64_t)s.Hkv * s.Dv, c->l, s.Dv,
                                           cvc + ((b * s.Tc + i) * s.Hkv + h) * s.Dv);
                }
        in.kc = ckc;
        in.vc = cvc;
    }
    nsa_ref_scratch w;
    nsa_ref_scratch_init(&w, c, s.T - 1);
    const int Hq = s.Hq, Dv = s.Dv, n = c->n;
    double *o = malloc(sizeof(double) * (size_t)(3 * Hq * Dv + 3 * Hq + Hq * Dv));
    int64_t *ranges = malloc(sizeof(int64_t) * (size_t)(s.Hkv * n * 2));
    int *nr = malloc(sizeof(int) * (size_t)s.Hkv);
    double L = 0;
    for (int64_t b = 0; b < s.B; b++) {
        nsa_ref_kv kv[3];
        nsa_ref_kv_of(&in, &s, b, kv);
        for (int64_t t = 0; t < s.T; t++) {
            const int64_t row = b * s.T + t;
            nsa_ref_row_out r = {o,      o + 3 * Hq * Dv, o + 3 * Hq * Dv + 3 * Hq,
                                 blocks + row * s.Hkv * n, ranges, nr, {0, 0, 0}, NULL};
            nsa_ref_row(c, s.scale, t, q + row * Hq * s.Dk, gates + row * Hq * 3, kv, &w, &r);
            for (int64_t i = 0; i < (int64_t)Hq * Dv; i++) L += R[row * Hq * Dv + i] * r.out[i];
        }
    }
    nsa_ref_scratch_free(&w);
    free(o);
    free(ranges);
    free(nr);
    free(ckc);
    free(cvc);
    return L;
}
