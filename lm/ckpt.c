// SPDX-License-Identifier: Apache-2.0
/* ckpt.c — checkpoints as safetensors: the parameters under their table names, the AdamW
 * moments under "adam.m.<name>" / "adam.v.<name>", and metadata (format nsa-lm-2, step, seed,
 * corpus hash, model config, optimizer, a checksum of the whole file); weights-only exports in
 * bf16; loading either, or a plain safetensors file, into a model.
 * Not the file parser (lm/safetensors.c checks every byte of a file before this one uses it).
 * Invariant: a checkpoint file is replaced only by a complete, fsynced one (temp + rename), and
 * a load either succeeds whole or leaves the model untouched.
 */
#include "lm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ writing */

typedef struct {
    const float *data;
    char name[80];
    const lm_tensor_info *ti;
} entry;

static size_t numel(const lm_tensor_info *ti) { return (size_t)(ti->shape[0] * ti->shape[1]); }

/* fwrite of a tensor as bf16 (round to nearest even) or f32; *h continues the checksum. */
static int put_data(FILE *f, const float *x, size_t cnt, int bf16, uint64_t *h) {
    if (!bf16) {
        *h = lm_fnv(*h, x, cnt * sizeof(float));
        return fwrite(x, sizeof(float), cnt, f) == cnt;
    }
    uint16_t buf[1024];
    for (size_t i = 0; i < cnt; i += 1024) {
        const size_t k = cnt - i < 1024 ? cnt - i : 1024;
        for (size_t j = 0; j < k; j++) buf[j] = nsa_f32_to_bf16(x[i + j]);
        *h = lm_fnv(*h, buf, k * 2);
        if (fwrite(buf, 2, k, f) != k) return 0;
    }
    return 1;
}

/* Writes e[0..ne) under the metadata object meta_json ("{...}\n" from lm_json_end) as F32 or
 * BF16, atomically. With sealed, meta_json holds "checksum":"0000000000000000" and the file's
 * FNV-1a (with those digits as '0') is written over them. */
static int write_st(const char *path, const entry *e, int ne, int bf16, const char *meta_json,
                    int sealed, char *err, size_t n) {
    const size_t mlen = strlen(meta_json), cap = mlen + 64 + (size_t)ne * 256;
    char *head = malloc(cap);
    if (!head) return lm_fail(err, n, "%s: out of memory", path);
    /* drop the writer's trailing "\n" */
    size_t hl = (size_t)snprintf(head, cap, "{\"__metadata__\":%.*s", (int)(mlen - 1), meta_json);
    size_t off = 0;
    for (int i = 0; i < ne; i++) {
        const lm_tensor_info *ti = e[i].ti;
        const size_t bytes = (bf16 ? 2 : 4) * numel(ti);
        char num[64];
        if (ti->ndim == 1) snprintf(num, sizeof num, "[%lld]", (long long)ti->shape[0]);
        else snprintf(num, sizeof num, "[%lld,%lld]", (long long)ti->shape[0], (long long)ti->shape[1]);
        /* at most 80 + 40 + 2·20 + 60 bytes: the 256 reserved per entry always fit */
        hl += (size_t)snprintf(head + hl, cap - hl,
                               ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                               e[i].name, bf16 ? "BF16" : "F32", num, off, off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(head + hl, cap - hl, "}");
    while (hl % 8) head[hl++] = ' '; /* data starts 8-aligned */
    uint8_t hlb[8];
    for (int b = 0; b < 8; b++) hlb[b] = (uint8_t)((uint64_t)hl >> (8 * b));
    uint64_t h = lm_fnv(LM_FNV0, hlb, 8);
    h = lm_fnv(h, head, hl);

    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(head);
        return lm_fail(err, n, "%s: cannot write checkpoint: %s", tmp, strerror(errno));
    }
    int ok = fwrite(hlb, 1, 8, f) == 8 && fwrite(head, 1, hl, f) == hl;
    for (int i = 0; ok && i < ne; i++) ok = put_data(f, e[i].data, numel(e[i].ti), bf16, &h);
    if (ok && sealed) { /* the digits go where the zeros were hashed */
        char *z = strstr(head, "\"checksum\":\"0000000000000000\"");
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        ok = z && fseek(f, 8 + (long)(z - head) + 12, SEEK_SET) == 0 && fwrite(hex, 1, 16, f) == 16;
    }
    free(head);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        lm_fail(err, n, "%s: writing checkpoint failed: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0;
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

/* The table's tensors, then (groups 3) the moments' under adam.m. / adam.v. */
static entry *entries(const lm_model *m, const float *mom, const float *vel, int groups) {
    entry *e = calloc((size_t)(m->ntensors * groups), sizeof *e);
    if (!e) return NULL;
    for (int g = 0; g < groups; g++)
        for (int i = 0; i < m->ntensors; i++) {
            entry *x = &e[g * m->ntensors + i];
            x->ti = &m->tensors[i];
            const float *base = g == 0 ? m->hparams : g == 1 ? mom : vel;
            x->data = base + x->ti->off;
            snprintf(x->name, sizeof x->name, "%s%s", g == 0 ? "" : g == 1 ? "adam.m." : "adam.v.",
                     x->ti->name);
        }
    return e;
}

int lm_ckpt_save(const char *path, const lm_model *m, const float *mom, const float *vel,
                 const lm_ckpt_meta *meta, char *err, size_t n) {
    const int groups = mom && vel ? 3 : 1;
    entry *e = entries(m, mom, vel, groups);
    char step[32], seed[32], hash[32];
    snprintf(step, sizeof step, "%lld", (long long)meta->step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)meta->seed);
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)meta->data_hash);
    lm_json j = {0};
    lm_json_begin(&j);
    lm_json_str(&j, "format", "nsa-lm-2");
    lm_json_str(&j, "step", step);
    lm_json_str(&j, "seed", seed);
    lm_json_str(&j, "data_hash", hash);
    lm_json_str(&j, "config", meta->config);
    lm_json_str(&j, "optimizer", groups == 3 ? "adamw" : "none");
    lm_json_str(&j, "checksum", "0000000000000000"); /* sealed by write_st */
    const char *s = lm_json_end(&j);
    const int rc = !e || !s ? lm_fail(err, n, "%s: out of memory", path)
                            : write_st(path, e, m->ntensors * groups, 0, s, 1, err, n);
    lm_json_free(&j);
    free(e);
    return rc;
}

int lm_ckpt_export(const char *path, const lm_model *m, char *err, size_t n) {
    entry *e = entries(m, NULL, NULL, 1);
    char cfg[1024];
    lm_model_config_str(&m->cfg, cfg, sizeof cfg);
    lm_json j = {0};
    lm_json_begin(&j);
    lm_json_str(&j, "config", cfg);
    lm_json_str(&j, "source", "nsa export (bf16 weights, no optimizer state)");
    const char *s = lm_json_end(&j);
    const int rc = !e || !s ? lm_fail(err, n, "%s: out of memory", path)
                            : write_st(path, e, m->ntensors, 1, s, 0, err, n);
    lm_json_free(&j);
    free(e);
    return rc;
}

/* ------------------------------------------------------------------ reading */

/* The model config of a plain file without one, from its shapes: emb (256, C), wg (3·Hq, C),
 * wk_cmp (Hkv·D, C), w1 (F, C), phi_k.pe (l, D) when φ is learned; the rest stays default. */
static int infer_config(const lm_st_file *f, lm_model_config *c, const char *path, char *err,
                        size_t n) {
    lm_train_config d;
    lm_train_config_default(&d);
    *c = d.m;
    const lm_st_tensor *emb = lm_st_find(f, "emb"), *wg = lm_st_find(f, "layers.0.attn.wg");
    const lm_st_tensor *wk = lm_st_find(f, "layers.0.attn.wk_cmp"), *w1 = lm_st_find(f, "layers.0.mlp.w1");
    const lm_st_tensor *pe = lm_st_find(f, "layers.0.attn.phi_k.pe");
    if (!emb || !wg || !wk || !w1 || emb->ndim != 2 || wg->ndim != 2 || wk->ndim != 2 ||
        w1->ndim != 2 || wg->shape[0] % 3 || wg->shape[0] > 3 * (int64_t)INT32_MAX ||
        emb->shape[1] > INT32_MAX || w1->shape[0] > INT32_MAX)
        return lm_fail(err, n, "%s: no model config in its metadata, and its tensors do not "
                       "show one (emb, layers.0.attn.wg, .wk_cmp, .mlp.w1)", path);
    int layers = 0;
    char nm[80];
    do snprintf(nm, sizeof nm, "layers.%d.ln1", layers);
    while (lm_st_find(f, nm) && ++layers <= LM_MAX_LAYERS);
    c->n_layer = layers;
    c->dim = (int)emb->shape[1];
    c->n_head = (int)(wg->shape[0] / 3);
    c->ffn = (int)w1->shape[0];
    const int64_t D = c->n_head > 0 ? c->dim / c->n_head : 0;
    c->n_kv_head = D > 0 && wk->shape[0] % D == 0 && wk->shape[0] / D <= INT32_MAX
                       ? (int)(wk->shape[0] / D) : 0;
    if (pe && pe->ndim == 2 && pe->shape[0] <= INT32_MAX) c->phi = LM_PHI_LEARNED, c->l = (int)pe->shape[0];
    return lm_model_config_check(c, err, n) ? -1 : 0;
}

/* Reads and checks the file, and the model config it carries (or shows). */
static int open_ckpt(const char *path, lm_st_file *f, lm_model_config *cfg, char *err, size_t n) {
    if (lm_st_read(f, path, err, n)) return -1;
    char e2[512];
    if (f->has_config) {
        if (lm_model_config_parse(cfg, f->meta.config, e2, sizeof e2))
            return lm_fail(err, n, "%s: %s", path, e2);
    } else if (infer_config(f, cfg, path, err, n)) {
        return -1;
    } else {
        lm_model_config_str(cfg, f->meta.config, sizeof f->meta.config);
    }
    lm_ckpt_meta *m = &f->meta;
    if (!f->nsa)
        snprintf(m->note, sizeof m->note, "%s: plain safetensors (no nsa checksum): loaded as "
                 "weights only; missing: optimizer state (AdamW moments start at zero), step "
                 "(starts at 0), seed and corpus hash%s", path, f->has_config ? "" :
                 ", model config (inferred from the shapes; NSA l, d, lp, n, w, gate and "
                 "rope_base are the defaults)");
    else if (!f->has_optimizer)
        snprintf(m->note, sizeof m->note, "%s: saved without optimizer state: loaded as weights "
                 "only (AdamW moments start at zero, the step at 0)", path);
    else if (f->nsa == 1)
        snprintf(m->note, sizeof m->note, "%s: format nsa-lm-1, whose checksum covers the data "
                 "but not the header; the next save writes nsa-lm-2", path);
    if (m->weights_only) m->step = 0;
    return 0;
}

int lm_ckpt_read_meta(const char *path, lm_ckpt_meta *meta, char *err, size_t n) {
    lm_st_file f;
    lm_model_config cfg;
    const int rc = open_ckpt(path, &f, &cfg, err, n);
    if (!rc) *meta = f.meta;
    lm_st_free(&f);
    return rc;
}

/* Copies record r (f32, bf16 or f16) into dst as f32. */
static void get_data(float *dst, const lm_st_file *f, const lm_st_tensor *r) {
    const uint8_t *src = f->data + r->o0;
    const size_t cnt = (size_t)(r->o1 - r->o0) / (r->dtype == LM_ST_F32 ? 4 : 2);
    if (r->dtype == LM_ST_F32) {
        memcpy(dst, src, cnt * 4);
        return;
    }
    for (size_t i = 0; i < cnt; i++) {
        const uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
        dst[i] = r->dtype == LM_ST_BF16 ? nsa_bf16_to_f32(h) : nsa_f16_to_f32(h);
    }
}

int lm_ckpt_load(const char *path, lm_model *m, float *mom, float *vel, lm_ckpt_meta *meta,
                 char *err, size_t n) {
    lm_st_file f;
    lm_model_config cc;
    int rc = -1;
    const int groups = mom && vel ? 3 : 1;
    const lm_st_tensor **use = NULL;
    char e2[512];
    if (open_ckpt(path, &f, &cc, err, n)) goto out;
    /* without a config (inferred), the shapes below are the whole check */
    if (f.has_config && lm_model_config_diff(&cc, &m->cfg, e2, sizeof e2)) {
        lm_fail(err, n, "%s: wrong config: %s", path, e2);
        goto out;
    }
    const int have = f.has_optimizer ? 3 : 1, want = groups < have ? groups : have;
    use = calloc((size_t)(3 * m->ntensors), sizeof *use);
    if (!use) {
        lm_fail(err, n, "%s: out of memory", path);
        goto out;
    }
    int found = 0;
    for (int g = 0; g < have; g++)
        for (int i = 0; i < m->ntensors; i++) {
            const lm_tensor_info *ti = &m->tensors[i];
            char nm[80];
            snprintf(nm, sizeof nm, "%s%s", g == 0 ? "" : g == 1 ? "adam.m." : "adam.v.", ti->name);
            const lm_st_tensor *r = lm_st_find(&f, nm);
            if (!r) {
                lm_fail(err, n, "%s: tensor %s missing", path, nm);
                goto out;
            }
            if (r->ndim != ti->ndim || r->shape[0] != ti->shape[0] ||
                (ti->ndim == 2 && r->shape[1] != ti->shape[1])) {
                lm_fail(err, n, "%s: tensor %s has the wrong shape", path, nm);
                goto out;
            }
            use[g * m->ntensors + i] = r;
            found++;
        }
    if (found != f.nt) { /* a tensor this model does not have: refused, not ignored */
        for (int k = 0; k < f.nt; k++) {
            int known = 0;
            for (int i = 0; i < have * m->ntensors && !known; i++) known = use[i] == &f.t[k];
            if (!known) {
                lm_fail(err, n, "%s: tensor %s is not a parameter of this model", path, f.t[k].name);
                goto out;
            }
        }
    }
    for (int g = 0; g < want; g++)
        for (int i = 0; i < m->ntensors; i++) {
            float *base = g == 0 ? m->hparams : g == 1 ? mom : vel;
            get_data(base + m->tensors[i].off, &f, use[g * m->ntensors + i]);
        }
    if (groups == 3 && want == 1) {
        memset(mom, 0, m->nparams * sizeof(float));
        memset(vel, 0, m->nparams * sizeof(float));
    }
    lm_model_push(m); /* a model on a device computes from its own copy */
    if (meta) *meta = f.meta;
    rc = 0;
out:
    free(use);
    lm_st_free(&f);
    return rc;
}
