// SPDX-License-Identifier: Apache-2.0
/* config.c — the training config: defaults, one table of keys shared by the config file
 * (key = value lines) and the command-line flags (--key value), checks, and the model-config
 * string a checkpoint carries.
 * Not the CLI: tools/cmd_train.c walks argv and calls lm_config_set.
 * Invariant: every key is a table row, so the file, the flags and lm_config_write agree.
 */
#include "lm.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_INT, K_FLOAT, K_U64, K_STR, K_PHI, K_GATE } key_type;
typedef struct {
    const char *name;
    key_type type;
    size_t off;
    int model; /* 1: part of the model config (checkpoints must match) */
    const char *help;
} key_info;

#define M(f) offsetof(lm_train_config, m) + offsetof(lm_model_config, f)
#define T(f) offsetof(lm_train_config, f)
static const key_info keys[] = {
    {"layers", K_INT, M(n_layer), 1, "transformer blocks"},
    {"dim", K_INT, M(dim), 1, "model width C"},
    {"heads", K_INT, M(n_head), 1, "query heads Hq (head dim = dim/heads)"},
    {"kv_heads", K_INT, M(n_kv_head), 1, "KV heads Hkv (GQA groups)"},
    {"ffn", K_INT, M(ffn), 1, "SwiGLU hidden width"},
    {"l", K_INT, M(l), 1, "NSA compression block"},
    {"d", K_INT, M(d), 1, "NSA compression stride"},
    {"lp", K_INT, M(lp), 1, "NSA selection block"},
    {"n", K_INT, M(n), 1, "NSA selected blocks (1 initial + 2 local included)"},
    {"w", K_INT, M(w), 1, "NSA sliding window (0: off)"},
    {"phi", K_PHI, M(phi), 1, "compression: avg (library) or learned (MLP)"},
    {"gate", K_GATE, M(gate), 1, "gates: sigmoid or softmax"},
    {"gate_temp", K_FLOAT, M(gate_temp), 1, "softmax gate temperature"},
    {"rope_base", K_FLOAT, M(rope_base), 1, "RoPE base"},
    {"seq_len", K_INT, T(seq_len), 0, "tokens per sequence T"},
    {"batch", K_INT, T(batch), 0, "sequences per micro-batch B (one forward and backward)"},
    {"grad_accum", K_INT, T(grad_accum), 0,
     "micro-batches per optimizer step: the global batch is batch x grad_accum sequences"},
    {"steps", K_INT, T(steps), 0, "optimizer steps"},
    {"warmup", K_INT, T(warmup), 0, "linear warm-up steps"},
    {"lr", K_FLOAT, T(lr), 0, "peak learning rate"},
    {"lr_min_ratio", K_FLOAT, T(lr_min_ratio), 0, "final lr / peak lr (cosine)"},
    {"weight_decay", K_FLOAT, T(weight_decay), 0, "AdamW decay on matrices"},
    {"beta1", K_FLOAT, T(beta1), 0, "AdamW beta1"},
    {"beta2", K_FLOAT, T(beta2), 0, "AdamW beta2"},
    {"eps", K_FLOAT, T(eps), 0, "AdamW epsilon"},
    {"clip", K_FLOAT, T(clip), 0, "gradient clipping (global L2 norm; 0: off)"},
    {"seed", K_U64, T(seed), 0, "seed of the init and of the batches"},
    {"log_every", K_INT, T(log_every), 0, "steps between progress records"},
    {"eval_every", K_INT, T(eval_every), 0, "steps between validation evals"},
    {"eval_batches", K_INT, T(eval_batches), 0, "validation batches per eval"},
    {"ckpt_every", K_INT, T(ckpt_every), 0, "steps between checkpoints"},
    {"threads", K_INT, T(threads), 0, "CPU threads (0: all cores)"},
    {"out", K_STR, T(out), 0, "output directory"},
    {"data", K_STR, T(data), 0, "training text (default: the built-in KJV corpus)"},
    {"device", K_STR, T(device), 0, "where to train: cpu or cuda"},
    {"precision", K_STR, T(precision), 0, "cuda: bf16 (GEMMs, attention) or f32"},
    {"documents", K_STR, T(documents), 0,
     "pack documents (cu_seqlens): 'books' (one per KJV book) or a separator that starts each "
     "one (\\n escapes); empty: off (docs/varlen.md)"},
};
#undef M
#undef T
#define NKEYS (int)(sizeof keys / sizeof keys[0])

void lm_train_config_default(lm_train_config *c) {
    memset(c, 0, sizeof *c);
    c->m = (lm_model_config){.n_layer = 4, .dim = 128, .n_head = 4, .n_kv_head = 2, .ffn = 384,
                             .l = 16, .d = 8, .lp = 16, .n = 4, .w = 32,
                             .phi = LM_PHI_AVG, .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f,
                             .rope_base = 10000.0f};
    c->seq_len = 128;
    c->batch = 8;
    c->grad_accum = 1;
    c->steps = 800;
    c->warmup = 60;
    c->lr = 3e-3f;
    c->lr_min_ratio = 0.1f;
    c->weight_decay = 0.1f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->clip = 1.0f;
    c->seed = 1337;
    c->log_every = 10;
    c->eval_every = 100;
    c->eval_batches = 8;
    c->ckpt_every = 200;
    c->threads = 0;
    snprintf(c->out, sizeof c->out, "runs/kjv");
    snprintf(c->device, sizeof c->device, "cpu");
    snprintf(c->precision, sizeof c->precision, "bf16");
}

static const key_info *find(const char *key) {
    char k[64];
    size_t i = 0;
    for (; key[i] && i + 1 < sizeof k; i++) k[i] = key[i] == '-' ? '_' : key[i];
    k[i] = 0;
    for (int j = 0; j < NKEYS; j++)
        if (!strcmp(keys[j].name, k)) return &keys[j];
    return NULL;
}

int lm_config_set(lm_train_config *c, const char *key, const char *val, char *err, size_t n) {
    const key_info *k = find(key);
    if (!k) {
        snprintf(err, n, "unknown key '%s' (nsa train --help lists them)", key);
        return -1;
    }
    char *p = (char *)c + k->off, *end = NULL;
    errno = 0;
    /* strto* would skip leading space: " 5" is not a number here (config lines come trimmed) */
    if (k->type != K_STR && isspace((unsigned char)val[0])) goto bad;
    switch (k->type) {
    case K_INT: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < -2147483647L || v > 2147483647L) goto bad;
        *(int *)p = (int)v;
        break;
    }
    case K_FLOAT: {
        float v = strtof(val, &end);
        if (errno || end == val || *end || !isfinite(v)) goto bad;
        *(float *)p = v;
        break;
    }
    case K_U64: {
        if (val[0] == '-') goto bad;
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end) goto bad;
        *(uint64_t *)p = (uint64_t)v;
        break;
    }
    case K_STR:
        if (strlen(val) >= 512) goto bad;
        memset(p, 0, 512); /* no old bytes after the new text: configs compare with memcmp */
        memcpy(p, val, strlen(val));
        break;
    case K_PHI:
        if (!strcmp(val, "avg")) *(int *)p = LM_PHI_AVG;
        else if (!strcmp(val, "learned")) *(int *)p = LM_PHI_LEARNED;
        else goto bad;
        break;
    case K_GATE:
        if (!strcmp(val, "sigmoid")) *(int *)p = LM_GATE_SIGMOID;
        else if (!strcmp(val, "softmax")) *(int *)p = LM_GATE_SOFTMAX;
        else goto bad;
        break;
    }
    return 0;
bad:
    snprintf(err, n, "%s: bad value '%s'%s", k->name, val,
             k->type == K_PHI ? " (avg or learned)" : k->type == K_GATE ? " (sigmoid or softmax)" : "");
    return -1;
}

int lm_config_load(lm_train_config *c, const char *path, char *err, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char line[1024], e2[512];
    int ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char *h = strchr(line, '#');
        if (h) *h = 0;
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, n, "%s:%d: expected key = value", path, ln);
            fclose(f);
            return -1;
        }
        char *ke = eq;
        while (ke > s && isspace((unsigned char)ke[-1])) ke--;
        *ke = 0;
        char *v = eq + 1;
        while (isspace((unsigned char)*v)) v++;
        char *ve = v + strlen(v);
        while (ve > v && isspace((unsigned char)ve[-1])) ve--;
        *ve = 0;
        if (lm_config_set(c, s, v, e2, sizeof e2)) {
            snprintf(err, n, "%s:%d: %s", path, ln, e2);
            fclose(f);
            return -1;
        }
    }
    /* a directory opens, then fails its first read: an error, not an empty config */
    const int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (rerr) {
        snprintf(err, n, "%s: cannot read: %s", path, strerror(rerr));
        return -1;
    }
    return 0;
}

#define CHK(cond, ...)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(err, n, __VA_ARGS__);                                                         \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

int lm_model_config_check(const lm_model_config *m, char *err, size_t n) {
    CHK(m->n_layer >= 1 && m->n_layer <= LM_MAX_LAYERS, "layers: %d, expected 1..%d", m->n_layer,
        LM_MAX_LAYERS);
    CHK(m->dim >= 2 && m->dim <= LM_MAX_DIM, "dim: %d, expected 2..%d", m->dim, LM_MAX_DIM);
    CHK(m->n_head >= 1 && m->n_head <= NSA_MAX_HEADS, "heads: %d, expected 1..%d", m->n_head,
        NSA_MAX_HEADS);
    CHK(m->dim % m->n_head == 0, "dim: %d must be a multiple of heads=%d", m->dim, m->n_head);
    CHK((m->dim / m->n_head) % 2 == 0 && m->dim / m->n_head <= NSA_MAX_HEAD_DIM,
        "dim/heads: %d, expected an even head dim (RoPE) of at most %d", m->dim / m->n_head,
        NSA_MAX_HEAD_DIM);
    CHK(m->n_kv_head >= 1 && m->n_kv_head <= m->n_head && m->n_head % m->n_kv_head == 0,
        "kv_heads: %d must divide heads=%d", m->n_kv_head, m->n_head);
    CHK(m->ffn >= 1 && m->ffn <= LM_MAX_FFN, "ffn: %d, expected 1..%d", m->ffn, LM_MAX_FFN);
    /* the NSA fields' ranges; how they fit together (d | l, d | lp, n ≥ 3) the library's
     * validator says when the model is created (lm_model_create's probe) */
    CHK(m->l >= 1 && m->l <= NSA_MAX_BLOCK, "l: %d, expected 1..%d", m->l, NSA_MAX_BLOCK);
    CHK(m->d >= 1 && m->d <= NSA_MAX_BLOCK, "d: %d, expected 1..%d", m->d, NSA_MAX_BLOCK);
    CHK(m->lp >= 1 && m->lp <= NSA_MAX_BLOCK, "lp: %d, expected 1..%d", m->lp, NSA_MAX_BLOCK);
    CHK(m->n >= 3 && m->n <= NSA_MAX_SELECTED,
        "n: %d, expected 3..%d (1 initial + 2 local blocks are always selected)", m->n,
        NSA_MAX_SELECTED);
    CHK(m->w >= 0, "w: %d, expected >= 0 (0: no window)", m->w);
    CHK(m->phi == LM_PHI_AVG || m->phi == LM_PHI_LEARNED, "phi: %d, expected avg or learned", m->phi);
    CHK(m->gate == LM_GATE_SIGMOID || m->gate == LM_GATE_SOFTMAX,
        "gate: %d, expected sigmoid or softmax", m->gate);
    CHK(m->gate_temp > 0 && m->gate_temp <= 1e4f, "gate_temp: %g, expected (0, 1e4]",
        (double)m->gate_temp);
    CHK(m->rope_base > 1 && m->rope_base <= 1e9f, "rope_base: %g, expected (1, 1e9]",
        (double)m->rope_base);
    return 0;
}

int lm_config_check(const lm_train_config *c, char *err, size_t n) {
    if (lm_model_config_check(&c->m, err, n)) return -1;
    CHK(c->seq_len >= 2 && c->seq_len <= LM_MAX_TOKENS, "seq_len: %d, expected 2..%d",
        c->seq_len, LM_MAX_TOKENS);
    CHK(c->batch >= 1 && c->batch <= LM_MAX_TOKENS / c->seq_len,
        "batch: %d, expected 1..%d (batch x seq_len <= %d tokens a step)", c->batch,
        LM_MAX_TOKENS / c->seq_len, LM_MAX_TOKENS);
    CHK(c->grad_accum >= 1, "grad_accum: %d, expected >= 1", c->grad_accum);
    CHK((int64_t)c->batch * c->grad_accum <= INT32_MAX / c->seq_len,
        "grad_accum: batch %d x grad_accum %d x seq_len %d tokens per step, expected at most %d",
        c->batch, c->grad_accum, c->seq_len, INT32_MAX);
    CHK(c->steps >= 1, "steps: %d, expected >= 1", c->steps);
    CHK(c->warmup >= 0, "warmup: %d, expected >= 0", c->warmup);
    CHK(c->lr > 0, "lr: %g, expected > 0", c->lr);
    CHK(c->lr_min_ratio >= 0 && c->lr_min_ratio <= 1, "lr_min_ratio: %g, expected 0..1",
        c->lr_min_ratio);
    CHK(c->weight_decay >= 0, "weight_decay: %g, expected >= 0", c->weight_decay);
    CHK(c->beta1 >= 0 && c->beta1 < 1, "beta1: %g, expected [0, 1)", c->beta1);
    CHK(c->beta2 >= 0 && c->beta2 < 1, "beta2: %g, expected [0, 1)", c->beta2);
    CHK(c->eps > 0, "eps: %g, expected > 0", c->eps);
    CHK(c->clip >= 0, "clip: %g, expected >= 0", c->clip);
    CHK(c->log_every >= 1, "log_every: %d, expected >= 1", c->log_every);
    CHK(c->eval_every >= 1, "eval_every: %d, expected >= 1", c->eval_every);
    CHK(c->eval_batches >= 1 && c->eval_batches <= 65536, "eval_batches: %d, expected 1..65536",
        c->eval_batches);
    CHK(c->ckpt_every >= 1, "ckpt_every: %d, expected >= 1", c->ckpt_every);
    CHK(c->threads >= 0 && c->threads <= 4096, "threads: %d, expected 0..4096", c->threads);
    CHK(c->out[0], "out: empty output directory");
    CHK(!strcmp(c->device, "cpu") || !strcmp(c->device, "cuda"), "device: '%s', expected cpu or cuda",
        c->device);
    CHK(!strcmp(c->precision, "bf16") || !strcmp(c->precision, "f32"),
        "precision: '%s', expected bf16 or f32", c->precision);
    CHK(!c->documents[0] || !strcmp(c->device, "cpu"),
        "documents: the cuda trainer does not pack documents yet (docs/varlen.md)");
    CHK(!c->documents[0] || c->m.phi == LM_PHI_AVG,
        "documents: phi learned does not pack documents yet (phi avg does)");
    return 0;
}

static void write_val(const lm_train_config *c, const key_info *k, char *buf, size_t n) {
    const char *p = (const char *)c + k->off;
    switch (k->type) {
    case K_INT: snprintf(buf, n, "%d", *(const int *)p); break;
    case K_FLOAT: /* the shortest text that reads back as the same float */
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(buf, n, "%.*g", prec, *(const float *)p);
            if (strtof(buf, NULL) == *(const float *)p) break;
        }
        break;
    case K_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case K_STR: snprintf(buf, n, "%s", p); break;
    case K_PHI: snprintf(buf, n, "%s", *(const int *)p == LM_PHI_LEARNED ? "learned" : "avg"); break;
    case K_GATE:
        snprintf(buf, n, "%s", *(const int *)p == LM_GATE_SOFTMAX ? "softmax" : "sigmoid");
        break;
    }
}

void lm_config_write(const lm_train_config *c, FILE *f) {
    char v[600];
    for (int i = 0; i < NKEYS; i++) {
        write_val(c, &keys[i], v, sizeof v);
        fprintf(f, "%s = %s\n", keys[i].name, v);
    }
}

int lm_config_key(int i, const char **name, const char **help, char *def, size_t n) {
    if (i < 0 || i >= NKEYS) return 0;
    lm_train_config d;
    lm_train_config_default(&d);
    write_val(&d, &keys[i], def, n);
    *name = keys[i].name;
    *help = keys[i].help;
    return 1;
}

int lm_config_is_key(const char *key) {
    return find(key) != NULL;
}

void lm_model_config_str(const lm_model_config *m, char *buf, size_t n) {
    lm_train_config c;
    memset(&c, 0, sizeof c);
    c.m = *m;
    size_t len = 0;
    buf[0] = 0;
    char v[600];
    for (int i = 0; i < NKEYS; i++) {
        if (!keys[i].model) continue;
        write_val(&c, &keys[i], v, sizeof v);
        int w = snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", keys[i].name, v);
        if (w < 0 || (size_t)w >= n - len) return;
        len += (size_t)w;
    }
}

int lm_model_config_parse(lm_model_config *m, const char *s, char *err, size_t n) {
    lm_train_config c;
    lm_train_config_default(&c);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, n, "checkpoint config: malformed entry '%s'", tok);
            return -1;
        }
        *eq = 0;
        const key_info *k = find(tok);
        if (!k || !k->model) {
            snprintf(err, n, "checkpoint config: unknown model key '%s'", tok);
            return -1;
        }
        if (lm_config_set(&c, tok, eq + 1, err, n)) return -1;
    }
    char e2[512];
    if (lm_model_config_check(&c.m, e2, sizeof e2)) {
        snprintf(err, n, "checkpoint config: %s", e2);
        return -1;
    }
    *m = c.m;
    return 0;
}

int lm_model_config_diff(const lm_model_config *a, const lm_model_config *b, char *err, size_t n) {
    lm_train_config ca, cb;
    memset(&ca, 0, sizeof ca);
    memset(&cb, 0, sizeof cb);
    ca.m = *a;
    cb.m = *b;
    char va[600], vb[600];
    for (int i = 0; i < NKEYS; i++) {
        if (!keys[i].model) continue;
        write_val(&ca, &keys[i], va, sizeof va);
        write_val(&cb, &keys[i], vb, sizeof vb);
        if (strcmp(va, vb)) {
            snprintf(err, n, "%s: checkpoint has %s, this run has %s", keys[i].name, va, vb);
            return -1;
        }
    }
    return 0;
}

nsa_config lm_nsa_config(const lm_model_config *m) {
    const int D = m->n_head > 0 ? m->dim / m->n_head : 0;
    nsa_config c = nsa_config_default(m->n_head, m->n_kv_head, D, D);
    c.l = m->l;
    c.d = m->d;
    c.lp = m->lp;
    c.n = m->n;
    c.w = m->w;
    return c;
}
