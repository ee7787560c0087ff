// SPDX-License-Identifier: Apache-2.0
/* test_decode_util.c — see test_decode_util.h. */
#include "test_decode_util.h"

#include "ref/kv_cache.h"

#include <stdlib.h>
#include <string.h>

nsa_config dec_cfg(void) {
    nsa_config c = nsa_config_default(4, 2, 8, 6);
    c.l = 8;
    c.d = 4;
    c.lp = 8;
    c.n = 4;
    c.w = 13;
    return c;
}

nsa_tensor seq_view(const tbuf *b, int T) {
    nsa_tensor t = b->t;
    t.shape[1] = T;
    return t;
}

nsa_fwd_args seq_fwd(const seq *s, int T, const nsa_tensor *out) {
    nsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.cfg = s->c;
    a.q = seq_view(&s->q, T);
    a.k_cmp = seq_view(&s->kc, T);
    a.v_cmp = seq_view(&s->vc, T);
    a.k_sel = seq_view(&s->ks, T);
    a.v_sel = seq_view(&s->vs, T);
    a.k_win = seq_view(&s->kw, T);
    a.v_win = seq_view(&s->vw, T);
    a.gates = seq_view(&s->g, T);
    a.out = *out;
    a.out.shape[1] = T;
    return a;
}

int seq_new(nsa_context *ctx, seq *s, nsa_config c, nsa_dtype dt, int B, int T) {
    memset(s, 0, sizeof *s);
    s->c = c;
    s->dt = dt;
    s->B = B;
    s->T = T;
    s->q = tb_new4(dt, B, T, c.Hq, c.Dk, 1.0);
    s->kc = tb_new4(dt, B, T, c.Hkv, c.Dk, 1.0);
    s->vc = tb_new4(dt, B, T, c.Hkv, c.Dv, 1.0);
    s->ks = tb_new4(dt, B, T, c.Hkv, c.Dk, 1.0);
    s->vs = tb_new4(dt, B, T, c.Hkv, c.Dv, 1.0);
    s->kw = tb_new4(dt, B, T, c.Hkv, c.Dk, 1.0);
    s->vw = tb_new4(dt, B, T, c.Hkv, c.Dv, 1.0);
    s->g = tb_new4(dt, B, T, c.Hq, 3, 1.0);
    tb_uniform(&s->g, 0.0, 1.0);
    s->out = tb_new4(dt, B, T, c.Hq, c.Dv, 0.0);
    nsa_fwd_args a = seq_fwd(s, T, &s->out.t);
    return nsa_forward(ctx, &a) == NSA_OK;
}

void seq_free(seq *s) {
    tbuf *all[] = {&s->q, &s->kc, &s->vc, &s->ks, &s->vs, &s->kw, &s->vw, &s->g, &s->out};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tb_free(all[i]);
}

void step_new(step_in *st, const seq *s) {
    const nsa_config *c = &s->c;
    const int B = s->B;
    memset(st, 0, sizeof *st);
    st->q = tb_new4(s->dt, B, 1, c->Hq, c->Dk, 1.0);
    st->kc = tb_new4(s->dt, B, 1, c->Hkv, c->Dk, 1.0);
    st->vc = tb_new4(s->dt, B, 1, c->Hkv, c->Dv, 1.0);
    st->ks = tb_new4(s->dt, B, 1, c->Hkv, c->Dk, 1.0);
    st->vs = tb_new4(s->dt, B, 1, c->Hkv, c->Dv, 1.0);
    st->kw = tb_new4(s->dt, B, 1, c->Hkv, c->Dk, 1.0);
    st->vw = tb_new4(s->dt, B, 1, c->Hkv, c->Dv, 1.0);
    st->g = tb_new4(s->dt, B, 1, c->Hq, 3, 1.0);
    st->out = tb_new4(s->dt, B, 1, c->Hq, c->Dv, 0.0);
    st->kcn = tb_new4(s->dt, B, 1, c->Hkv, c->Dk, 1.0);
    st->vcn = tb_new4(s->dt, B, 1, c->Hkv, c->Dv, 1.0);
    st->active = calloc((size_t)B, 1);
    memset(&st->a, 0, sizeof st->a);
    st->a.cfg = *c;
    st->a.q = st->q.t;
    st->a.k_cmp = st->kc.t;
    st->a.v_cmp = st->vc.t;
    st->a.k_sel = st->ks.t;
    st->a.v_sel = st->vs.t;
    st->a.k_win = st->kw.t;
    st->a.v_win = st->vw.t;
    st->a.gates = st->g.t;
    st->a.out = st->out.t;
    st->a.active = st->active;
}

/* Row b of dst (B, 1, H, D) = token t of row b of src (B, T, H, D). */
static void copy_row(tbuf *dst, const tbuf *src, int b, int64_t t) {
    const int64_t H = src->t.shape[2], D = src->t.shape[3], T = src->t.shape[1];
    for (int64_t i = 0; i < H * D; i++) tb_set(dst, b * H * D + i, tb_get(src, (b * T + t) * H * D + i));
}

void step_fill(step_in *st, const seq *s, const int64_t *pos) {
    for (int b = 0; b < s->B; b++) {
        st->active[b] = pos[b] >= 0;
        if (pos[b] < 0) continue;
        copy_row(&st->q, &s->q, b, pos[b]);
        copy_row(&st->kc, &s->kc, b, pos[b]);
        copy_row(&st->vc, &s->vc, b, pos[b]);
        copy_row(&st->ks, &s->ks, b, pos[b]);
        copy_row(&st->vs, &s->vs, b, pos[b]);
        copy_row(&st->kw, &s->kw, b, pos[b]);
        copy_row(&st->vw, &s->vw, b, pos[b]);
        copy_row(&st->g, &s->g, b, pos[b]);
    }
}

void step_free(step_in *st) {
    tbuf *all[] = {&st->q, &st->kc, &st->vc, &st->ks, &st->vs, &st->kw,
                   &st->vw, &st->g, &st->out, &st->kcn, &st->vcn};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tb_free(all[i]);
    free(st->active);
}

int same_bits(const tbuf *a, int64_t i, const tbuf *b, int64_t j) {
    const size_t e = nsa_dtype_size(a->t.dtype);
    return a->t.dtype == b->t.dtype &&
           memcmp((const char *)a->base + (size_t)i * e, (const char *)b->base + (size_t)j * e, e) == 0;
}

int step_out_equals(const step_in *st, const tbuf *ref, int b, int64_t t) {
    const int64_t n = ref->t.shape[2] * ref->t.shape[3], T = ref->t.shape[1];
    for (int64_t i = 0; i < n; i++)
        if (!same_bits(&st->out, b * n + i, ref, (b * T + t) * n + i)) return 0;
    return 1;
}

nsa_kv_cache *dec_cache(nsa_context *ctx, const seq *s, int B, int64_t max_len, int cmp_external) {
    nsa_kv_cache_desc d;
    memset(&d, 0, sizeof d);
    d.cfg = s->c;
    d.dtype = s->dt;
    d.device.kind = NSA_DEVICE_CPU;
    d.B = B;
    d.max_len = max_len;
    d.cmp_external = cmp_external;
    nsa_kv_cache *c = NULL;
    if (nsa_kv_cache_create(ctx, &d, &c) != NSA_OK) return NULL;
    return c;
}

/* The cache's buffers with their byte sizes. */
static int buffers(const nsa_kv_cache *c, unsigned char **p, size_t *n) {
    const size_t B = (size_t)c->desc.B, e = c->e;
    unsigned char *ptr[] = {c->ks, c->vs, c->kw, c->vw, c->kr, c->vr,
                            (unsigned char *)c->kc, (unsigned char *)c->vc};
    size_t len[] = {B * (size_t)(c->desc.max_len * c->rk) * e, B * (size_t)(c->desc.max_len * c->rv) * e,
                    B * (size_t)(c->nwin * c->rk) * e,         B * (size_t)(c->nwin * c->rv) * e,
                    B * (size_t)(c->nraw * c->rk) * e,         B * (size_t)(c->nraw * c->rv) * e,
                    B * (size_t)(c->ncmp * c->rk) * 8,         B * (size_t)(c->ncmp * c->rv) * 8};
    for (int i = 0; i < 8; i++) {
        p[i] = ptr[i];
        n[i] = len[i];
    }
    return 8;
}

unsigned char *kv_snapshot(const nsa_kv_cache *c, size_t *n) {
    unsigned char *p[8];
    size_t len[8], total = sizeof(nsa_kv_row) * (size_t)c->desc.B;
    int nb = buffers(c, p, len);
    for (int i = 0; i < nb; i++) total += len[i];
    unsigned char *out = malloc(total), *w = out;
    if (!out) abort();
    memcpy(w, c->row, sizeof(nsa_kv_row) * (size_t)c->desc.B);
    w += sizeof(nsa_kv_row) * (size_t)c->desc.B;
    for (int i = 0; i < nb; i++) {
        if (len[i]) memcpy(w, p[i], len[i]);
        w += len[i];
    }
    *n = total;
    return out;
}

void kv_poison(nsa_kv_cache *c) {
    unsigned char *p[8];
    size_t len[8];
    int nb = buffers(c, p, len);
    for (int i = 0; i < nb; i++)
        if (len[i]) memset(p[i], 0xff, len[i]); /* NaN in f32, bf16, f16 and double */
}
