// SPDX-License-Identifier: Apache-2.0
/* ckpt.c — checkpoints as safetensors (8-byte little-endian header length, JSON header, raw
 * little-endian data): the parameters under their table names, the AdamW moments under
 * "adam.m.<name>" / "adam.v.<name>", and metadata (step, seed, corpus hash, model config, a
 * checksum of the data).
 * Not a general safetensors library: it reads F32 tensors of the names it expects.
 * Invariant: a checkpoint file is replaced only by a complete, fsynced one (temp + rename), and
 * a load either succeeds whole or leaves the model untouched.
 */
#include "lm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}
#define FNV0 1469598103934665603ULL

/* ------------------------------------------------------------------ writing */

typedef struct {
    const float *data;
    char name[80];
    const lm_tensor_info *ti;
} entry;

int lm_ckpt_save(const char *path, const lm_model *m, const float *mom, const float *vel,
                 const lm_ckpt_meta *meta, char *err, size_t n) {
    const int groups = mom && vel ? 3 : 1, ne = m->ntensors * groups;
    entry *e = calloc((size_t)ne, sizeof *e);
    lm_json j = {0};
    if (!e) return lm_fail(err, n, "%s: out of memory", path);
    uint64_t sum = FNV0;
    for (int g = 0; g < groups; g++)
        for (int i = 0; i < m->ntensors; i++) {
            entry *x = &e[g * m->ntensors + i];
            x->ti = &m->tensors[i];
            const float *base = g == 0 ? m->hparams : g == 1 ? mom : vel;
            x->data = base + x->ti->off;
            snprintf(x->name, sizeof x->name, "%s%s", g == 0 ? "" : g == 1 ? "adam.m." : "adam.v.",
                     x->ti->name);
            sum = fnv(sum, x->data, sizeof(float) * (size_t)(x->ti->shape[0] * x->ti->shape[1]));
        }
    /* header: the metadata object through the JSON writer (escaping), then one entry per
     * tensor; j.buf is sized for all of it up front */
    char num[64];
    {
        char step[32], seed[32], hash[32], cks[32];
        snprintf(step, sizeof step, "%lld", (long long)meta->step);
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)meta->seed);
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)meta->data_hash);
        snprintf(cks, sizeof cks, "%016llx", (unsigned long long)sum);
        lm_json sub = {0};
        lm_json_begin(&sub);
        lm_json_str(&sub, "format", "nsa-lm-1");
        lm_json_str(&sub, "step", step);
        lm_json_str(&sub, "seed", seed);
        lm_json_str(&sub, "data_hash", hash);
        lm_json_str(&sub, "config", meta->config);
        lm_json_str(&sub, "optimizer", groups == 3 ? "adamw" : "none");
        lm_json_str(&sub, "checksum", cks);
        const char *s = lm_json_end(&sub);
        const size_t len = s ? strlen(s) : 0, cap = len + 64 + (size_t)ne * 256;
        j.buf = s ? malloc(cap) : NULL;
        if (!j.buf) {
            lm_json_free(&sub);
            goto oom;
        }
        j.cap = cap;
        /* drop the writer's trailing "\n" */
        j.len = (size_t)snprintf(j.buf, cap, "{\"__metadata__\":%.*s", (int)(len - 1), s);
        lm_json_free(&sub);
    }
    size_t off = 0;
    for (int i = 0; i < ne; i++) {
        const lm_tensor_info *ti = e[i].ti;
        const size_t bytes = sizeof(float) * (size_t)(ti->shape[0] * ti->shape[1]);
        if (ti->ndim == 1) snprintf(num, sizeof num, "[%lld]", (long long)ti->shape[0]);
        else snprintf(num, sizeof num, "[%lld,%lld]", (long long)ti->shape[0], (long long)ti->shape[1]);
        /* at most 80 + 40 + 2·20 + 60 bytes: the 256 reserved per entry always fit */
        j.len += (size_t)snprintf(j.buf + j.len, j.cap - j.len,
                                  ",\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                                  e[i].name, num, off, off + bytes);
        off += bytes;
    }
    j.len += (size_t)snprintf(j.buf + j.len, j.cap - j.len, "}");
    while (j.len % 8) j.buf[j.len++] = ' '; /* data starts 8-aligned */

    /* write temp, fsync, rename, fsync the directory */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        lm_fail(err, n, "%s: cannot write checkpoint: %s", tmp, strerror(errno));
        goto out;
    }
    uint8_t hl[8];
    for (int b = 0; b < 8; b++) hl[b] = (uint8_t)((uint64_t)j.len >> (8 * b));
    int ok = fwrite(hl, 1, 8, f) == 8 && fwrite(j.buf, 1, j.len, f) == j.len;
    for (int i = 0; ok && i < ne; i++) {
        const size_t cnt = (size_t)(e[i].ti->shape[0] * e[i].ti->shape[1]);
        ok = fwrite(e[i].data, sizeof(float), cnt, f) == cnt;
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        lm_fail(err, n, "%s: writing checkpoint failed: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    {
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
    }
    lm_json_free(&j);
    free(e);
    return 0;
oom:
    lm_fail(err, n, "%s: out of memory", path);
out:
    lm_json_free(&j);
    free(e);
    return -1;
}

/* ------------------------------------------------------------------ reading */

typedef struct {
    char name[80];
    int ndim;
    int64_t shape[4];
    uint64_t o0, o1;
} rec;

typedef struct {
    const char *p, *end;
    char *err;
    size_t n;
    const char *path;
} parser;

static void ws(parser *q) {
    while (q->p < q->end && (*q->p == ' ' || *q->p == '\n' || *q->p == '\t' || *q->p == '\r'))
        q->p++;
}

static int expect(parser *q, char c) {
    ws(q);
    if (q->p >= q->end || *q->p != c)
        return lm_fail(q->err, q->n, "%s: corrupt checkpoint header (expected '%c')", q->path, c);
    q->p++;
    return 0;
}

static int str(parser *q, char *out, size_t cap) {
    if (expect(q, '"')) return -1;
    size_t k = 0;
    while (q->p < q->end && *q->p != '"') {
        char c = *q->p++;
        if (c == '\\') {
            if (q->p >= q->end) break;
            c = *q->p++;
            if (c == 'n') c = '\n';
            else if (c == 'u') {
                if (q->end - q->p < 4) break;
                c = (char)strtol((char[5]){q->p[0], q->p[1], q->p[2], q->p[3], 0}, NULL, 16);
                q->p += 4;
            }
        }
        if (k + 1 < cap) out[k++] = c;
    }
    out[k] = 0;
    return expect(q, '"');
}

static int ints(parser *q, int64_t *v, int cap, int *cnt) {
    if (expect(q, '[')) return -1;
    *cnt = 0;
    ws(q);
    if (q->p < q->end && *q->p == ']') return q->p++, 0;
    for (;;) {
        ws(q);
        char *e;
        long long x = strtoll(q->p, &e, 10);
        if (e == q->p || e > q->end || x < 0 || *cnt >= cap)
            return lm_fail(q->err, q->n, "%s: corrupt checkpoint header (bad integer list)", q->path);
        v[(*cnt)++] = x;
        q->p = e;
        ws(q);
        if (q->p < q->end && *q->p == ',') {
            q->p++;
            continue;
        }
        return expect(q, ']');
    }
}

static int more(parser *q) {
    ws(q);
    if (q->p < q->end && *q->p == ',') return q->p++, 1;
    return 0;
}

/* Parses the header into recs and meta; returns the record count or -1. */
static int parse_header(parser *q, rec *recs, int cap, lm_ckpt_meta *meta, uint64_t *checksum) {
    char k[1100], v[1100];
    int nr = 0, have_sum = 0;
    memset(meta, 0, sizeof *meta);
    if (expect(q, '{')) return -1;
    do {
        if (str(q, k, sizeof k) || expect(q, ':') || expect(q, '{')) return -1;
        if (!strcmp(k, "__metadata__")) {
            do {
                if (str(q, k, sizeof k) || expect(q, ':') || str(q, v, sizeof v)) return -1;
                if (!strcmp(k, "step")) meta->step = strtoll(v, NULL, 10);
                else if (!strcmp(k, "seed")) meta->seed = strtoull(v, NULL, 10);
                else if (!strcmp(k, "data_hash")) meta->data_hash = strtoull(v, NULL, 16);
                else if (!strcmp(k, "config")) {
                    v[sizeof meta->config - 1] = 0;
                    memcpy(meta->config, v, sizeof meta->config);
                }
                else if (!strcmp(k, "checksum")) *checksum = strtoull(v, NULL, 16), have_sum = 1;
            } while (more(q));
        } else {
            if (nr >= cap) return lm_fail(q->err, q->n, "%s: too many tensors", q->path);
            rec *r = &recs[nr++];
            memset(r, 0, sizeof *r);
            if (strlen(k) >= sizeof r->name)
                return lm_fail(q->err, q->n, "%s: tensor name too long", q->path);
            memcpy(r->name, k, strlen(k) + 1);
            int got = 0;
            do {
                char f[32];
                int cnt;
                int64_t o[4];
                if (str(q, f, sizeof f) || expect(q, ':')) return -1;
                if (!strcmp(f, "dtype")) {
                    if (str(q, v, sizeof v)) return -1;
                    if (strcmp(v, "F32"))
                        return lm_fail(q->err, q->n, "%s: tensor %s has dtype %s, expected F32",
                                    q->path, r->name, v);
                    got |= 1;
                } else if (!strcmp(f, "shape")) {
                    if (ints(q, r->shape, 4, &r->ndim)) return -1;
                    got |= 2;
                } else if (!strcmp(f, "data_offsets")) {
                    if (ints(q, o, 4, &cnt)) return -1;
                    if (cnt != 2) return lm_fail(q->err, q->n, "%s: %s: bad data_offsets", q->path, r->name);
                    r->o0 = (uint64_t)o[0];
                    r->o1 = (uint64_t)o[1];
                    got |= 4;
                } else {
                    return lm_fail(q->err, q->n, "%s: %s: unknown field %s", q->path, r->name, f);
                }
            } while (more(q));
            if (got != 7) return lm_fail(q->err, q->n, "%s: tensor %s is incomplete", q->path, r->name);
        }
        if (expect(q, '}')) return -1;
    } while (more(q));
    if (expect(q, '}')) return -1;
    if (!have_sum) return lm_fail(q->err, q->n, "%s: not an nsa checkpoint (no checksum)", q->path);
    return nr;
}

typedef struct {
    uint8_t *file;
    size_t size;
    const uint8_t *data; /* after the header */
    size_t data_len;
    rec *recs;
    int nr;
    uint64_t checksum;
} loaded;

static int read_file(const char *path, loaded *L, lm_ckpt_meta *meta, char *err, size_t n) {
    memset(L, 0, sizeof *L);
    FILE *f = fopen(path, "rb");
    if (!f) return lm_fail(err, n, "%s: cannot open checkpoint: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (sz < 8) {
        fclose(f);
        return lm_fail(err, n, "%s: truncated checkpoint (%ld bytes)", path, sz);
    }
    L->file = malloc((size_t)sz);
    if (!L->file || fread(L->file, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(L->file);
        return lm_fail(err, n, "%s: cannot read checkpoint", path);
    }
    fclose(f);
    L->size = (size_t)sz;
    uint64_t hl = 0;
    for (int b = 0; b < 8; b++) hl |= (uint64_t)L->file[b] << (8 * b);
    if (hl > L->size - 8) {
        free(L->file);
        return lm_fail(err, n, "%s: truncated or corrupt checkpoint (header of %llu bytes in a file "
                            "of %zu)", path, (unsigned long long)hl, L->size);
    }
    const int cap = 3 * LM_MAX_TENSORS;
    L->recs = malloc(sizeof(rec) * (size_t)cap);
    if (!L->recs) {
        free(L->file);
        return lm_fail(err, n, "%s: out of memory", path);
    }
    parser q = {(const char *)L->file + 8, (const char *)L->file + 8 + hl, err, n, path};
    L->nr = parse_header(&q, L->recs, cap, meta, &L->checksum);
    L->data = L->file + 8 + hl;
    L->data_len = L->size - 8 - (size_t)hl;
    if (L->nr < 0) {
        free(L->recs);
        free(L->file);
        return -1;
    }
    uint64_t end = 0;
    for (int i = 0; i < L->nr; i++)
        if (L->recs[i].o1 > end) end = L->recs[i].o1;
    if (end != L->data_len) {
        free(L->recs);
        free(L->file);
        return lm_fail(err, n, "%s: truncated or corrupt checkpoint (data holds %zu bytes, header "
                            "says %llu)", path, L->data_len, (unsigned long long)end);
    }
    return 0;
}

int lm_ckpt_read_meta(const char *path, lm_ckpt_meta *meta, char *err, size_t n) {
    loaded L;
    if (read_file(path, &L, meta, err, n)) return -1;
    free(L.recs);
    free(L.file);
    return 0;
}

int lm_ckpt_load(const char *path, lm_model *m, float *mom, float *vel, lm_ckpt_meta *meta,
                 char *err, size_t n) {
    loaded L;
    lm_ckpt_meta md;
    if (read_file(path, &L, &md, err, n)) return -1;
    int rc = -1;
    const int groups = mom && vel ? 3 : 1;
    const rec **use = calloc((size_t)(groups * m->ntensors), sizeof *use);
    char e2[256];
    lm_model_config cc;
    if (!use) {
        lm_fail(err, n, "%s: out of memory", path);
        goto out;
    }
    if (lm_model_config_parse(&cc, md.config, e2, sizeof e2)) {
        lm_fail(err, n, "%s: %s", path, e2);
        goto out;
    }
    if (lm_model_config_diff(&cc, &m->cfg, e2, sizeof e2)) {
        lm_fail(err, n, "%s: wrong config: %s", path, e2);
        goto out;
    }
    /* the checksum covers the data of every tensor in file order */
    if (fnv(FNV0, L.data, L.data_len) != L.checksum) {
        lm_fail(err, n, "%s: corrupt checkpoint (checksum mismatch)", path);
        goto out;
    }
    for (int g = 0; g < groups; g++)
        for (int i = 0; i < m->ntensors; i++) {
            const lm_tensor_info *ti = &m->tensors[i];
            char want[80];
            snprintf(want, sizeof want, "%s%s", g == 0 ? "" : g == 1 ? "adam.m." : "adam.v.", ti->name);
            const rec *r = NULL;
            for (int k = 0; k < L.nr && !r; k++)
                if (!strcmp(L.recs[k].name, want)) r = &L.recs[k];
            if (!r) {
                lm_fail(err, n, "%s: tensor %s missing%s", path, want,
                     g ? " (a model-only checkpoint cannot be resumed)" : "");
                goto out;
            }
            int shape_ok = r->ndim == ti->ndim && r->shape[0] == ti->shape[0] &&
                           (ti->ndim == 1 || r->shape[1] == ti->shape[1]);
            const uint64_t bytes = sizeof(float) * (uint64_t)(ti->shape[0] * ti->shape[1]);
            if (!shape_ok || r->o1 < r->o0 || r->o1 - r->o0 != bytes || r->o1 > L.data_len) {
                lm_fail(err, n, "%s: tensor %s has the wrong shape or size", path, want);
                goto out;
            }
            use[g * m->ntensors + i] = r;
        }
    for (int g = 0; g < groups; g++)
        for (int i = 0; i < m->ntensors; i++) {
            const lm_tensor_info *ti = &m->tensors[i];
            float *base = g == 0 ? m->hparams : g == 1 ? mom : vel;
            const rec *r = use[g * m->ntensors + i];
            memcpy(base + ti->off, L.data + r->o0, (size_t)(r->o1 - r->o0));
        }
    lm_model_push(m); /* a model on a device computes from its own copy */
    if (meta) *meta = md;
    rc = 0;
out:
    free(use);
    free(L.recs);
    free(L.file);
    return rc;
}
