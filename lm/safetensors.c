// SPDX-License-Identifier: Apache-2.0
/* safetensors.c — reading a safetensors file (8-byte little-endian header length, a JSON header,
 * raw little-endian data) strictly: nsa's own checkpoints (format tag, metadata, checksum) and
 * plain files as Python's `safetensors` writes them (any tensor order, F32/BF16/F16).
 * Not a JSON library: it reads the subset safetensors headers use (an object of objects whose
 * values are strings, integer lists and string maps) and refuses anything else.
 * Invariants: after lm_st_parse succeeds, every tensor's data_offsets lie inside the data
 * section and all of them tile it exactly (no overlap, no gap, nothing after), every size was
 * computed without overflow, and a file that carries nsa's checksum has verified it.
 */
#include "checked.h"
#include "lm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER ((uint64_t)100 << 20) /* what Python's safetensors accepts */

uint64_t lm_fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

typedef struct {
    const char *p, *start, *end;
    char *err;
    size_t n;
    const char *path;
} parser;

static int corrupt(parser *q, const char *what) {
    return lm_fail(q->err, q->n, "%s: corrupt checkpoint header (%s at byte %ld)", q->path, what,
                   (long)(q->p - q->start));
}

static void ws(parser *q) {
    while (q->p < q->end && (*q->p == ' ' || *q->p == '\n' || *q->p == '\t' || *q->p == '\r'))
        q->p++;
}

static int expect(parser *q, char c) {
    ws(q);
    if (q->p >= q->end || *q->p != c) {
        char what[24];
        snprintf(what, sizeof what, "expected '%c'", c);
        return corrupt(q, what);
    }
    q->p++;
    return 0;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A JSON string into out[cap] (UTF-8); too long for cap is an error, not a truncation. */
static int str(parser *q, char *out, size_t cap) {
    if (expect(q, '"')) return -1;
    size_t k = 0;
    for (;;) {
        if (q->p >= q->end) return corrupt(q, "unterminated string");
        unsigned c = (unsigned char)*q->p++;
        if (c == '"') break;
        if (c < 0x20) return corrupt(q, "control character in a string");
        if (c == '\\') {
            if (q->p >= q->end) return corrupt(q, "unterminated string");
            const char e = *q->p++;
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) c = (unsigned char)"\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            else if (e == 'u') {
                c = 0;
                for (int i = 0; i < 4; i++) {
                    const int h = q->p < q->end ? hexval(*q->p++) : -1;
                    if (h < 0) return corrupt(q, "bad \\u escape");
                    c = c * 16 + (unsigned)h;
                }
                if (c == 0 || (c >= 0xd800 && c < 0xe000)) return corrupt(q, "unsupported \\u escape");
                if (c >= 0x80) { /* two or three UTF-8 bytes */
                    if (k + 4 > cap) return corrupt(q, "string too long");
                    if (c >= 0x800) out[k++] = (char)(0xe0 | c >> 12), out[k++] = (char)(0x80 | (c >> 6 & 63));
                    else out[k++] = (char)(0xc0 | c >> 6);
                    c = 0x80 | (c & 63);
                }
            } else {
                return corrupt(q, "bad escape");
            }
        }
        if (k + 1 >= cap) return corrupt(q, "string too long");
        out[k++] = (char)c;
    }
    out[k] = 0;
    return 0;
}

/* A non-negative JSON integer that fits int64, read only inside the header. */
static int num(parser *q, int64_t *v) {
    ws(q);
    int64_t x = 0;
    const char *s = q->p;
    while (q->p < q->end && *q->p >= '0' && *q->p <= '9') {
        if (!nsa_mul_ok(x, 10, &x) || !nsa_add_ok(x, *q->p - '0', &x))
            return corrupt(q, "integer out of range");
        q->p++;
    }
    if (q->p == s) return corrupt(q, "expected a non-negative integer");
    *v = x;
    return 0;
}

static int ints(parser *q, int64_t *v, int cap, int *cnt) {
    if (expect(q, '[')) return -1;
    *cnt = 0;
    ws(q);
    if (q->p < q->end && *q->p == ']') return q->p++, 0;
    for (;;) {
        if (*cnt >= cap) return corrupt(q, "too many integers in a list");
        if (num(q, &v[(*cnt)++])) return -1;
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

/* Strict unsigned numbers of the metadata: decimal digits only, or exactly 16 hex digits. */
static int dec_u64(const char *s, uint64_t max, uint64_t *out) {
    uint64_t x = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || x > (max - (uint64_t)(*s - '0')) / 10) return -1;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *out = x;
    return 0;
}

static int hex16(const char *s, uint64_t *out) {
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        const int h = hexval(s[i]);
        if (h < 0) return -1;
        x = x << 4 | (uint64_t)h;
    }
    if (s[16]) return -1;
    *out = x;
    return 0;
}

enum { M_FORMAT, M_STEP, M_SEED, M_HASH, M_CONFIG, M_OPTIM, M_SUM, M_N };
static const char *const meta_keys[M_N] = {"format", "step", "seed", "data_hash", "config",
                                           "optimizer", "checksum"};

typedef struct {
    char v[M_N][1100];
    int have[M_N];
    int unknown;           /* a key none of the above */
    const char *sum_at;    /* where the checksum's 16 digits sit in the header */
} meta_raw;

static int parse_meta(parser *q, meta_raw *mr) {
    char k[1100], v[1100];
    if (expect(q, '{')) return -1;
    ws(q);
    if (q->p < q->end && *q->p == '}') return q->p++, 0;
    do {
        if (str(q, k, sizeof k) || expect(q, ':')) return -1;
        ws(q);
        const char *at = q->p + 1;
        if (str(q, v, sizeof v)) return -1;
        int i = 0;
        while (i < M_N && strcmp(k, meta_keys[i])) i++;
        if (i == M_N) {
            mr->unknown = 1;
            continue;
        }
        if (mr->have[i]) return corrupt(q, "metadata key given twice");
        mr->have[i] = 1;
        memcpy(mr->v[i], v, sizeof v);
        if (i == M_SUM) mr->sum_at = at;
    } while (more(q));
    return expect(q, '}');
}

static int parse_tensor(parser *q, lm_st_tensor *r) {
    char f[32], v[32];
    int got = 0, cnt;
    int64_t o[2];
    if (expect(q, '{')) return -1;
    do {
        if (str(q, f, sizeof f) || expect(q, ':')) return -1;
        if (!strcmp(f, "dtype") && !(got & 1)) {
            if (str(q, v, sizeof v)) return -1;
            if (!strcmp(v, "F32")) r->dtype = LM_ST_F32;
            else if (!strcmp(v, "BF16")) r->dtype = LM_ST_BF16;
            else if (!strcmp(v, "F16")) r->dtype = LM_ST_F16;
            else return lm_fail(q->err, q->n, "%s: tensor %s: dtype %s (F32, BF16 or F16 only)",
                                q->path, r->name, v);
            got |= 1;
        } else if (!strcmp(f, "shape") && !(got & 2)) {
            if (ints(q, r->shape, 4, &r->ndim)) return -1;
            if (r->ndim < 1)
                return lm_fail(q->err, q->n, "%s: tensor %s: a scalar (nsa tensors have 1 to 4 "
                               "dims)", q->path, r->name);
            got |= 2;
        } else if (!strcmp(f, "data_offsets") && !(got & 4)) {
            if (ints(q, o, 2, &cnt)) return -1;
            if (cnt != 2 || o[1] < o[0])
                return lm_fail(q->err, q->n, "%s: tensor %s: bad data_offsets", q->path, r->name);
            r->o0 = (uint64_t)o[0], r->o1 = (uint64_t)o[1];
            got |= 4;
        } else {
            return lm_fail(q->err, q->n, "%s: tensor %s: unexpected field \"%s\"", q->path,
                           r->name, f);
        }
    } while (more(q));
    if (got != 7) return lm_fail(q->err, q->n, "%s: tensor %s is incomplete", q->path, r->name);
    return expect(q, '}');
}

static int cmp_off(const void *a, const void *b) {
    const lm_st_tensor *x = *(const lm_st_tensor *const *)a, *y = *(const lm_st_tensor *const *)b;
    return x->o0 < y->o0 ? -1 : x->o0 > y->o0 ? 1 : x->o1 < y->o1 ? -1 : x->o1 > y->o1;
}

/* Sizes match dtype × shape and the offsets tile [0, data_len) exactly. */
static int check_tiling(lm_st_file *f, const char *path, char *err, size_t n) {
    for (int i = 0; i < f->nt; i++) {
        const lm_st_tensor *r = &f->t[i];
        int64_t cnt = r->dtype == LM_ST_F32 ? 4 : 2;
        for (int d = 0; d < r->ndim; d++)
            if (!nsa_mul_ok(cnt, r->shape[d], &cnt))
                return lm_fail(err, n, "%s: tensor %s: shape overflows int64", path, r->name);
        if ((uint64_t)cnt != r->o1 - r->o0)
            return lm_fail(err, n, "%s: tensor %s: data_offsets [%llu, %llu] hold %llu bytes, its "
                           "dtype and shape %lld", path, r->name, (unsigned long long)r->o0,
                           (unsigned long long)r->o1, (unsigned long long)(r->o1 - r->o0),
                           (long long)cnt);
    }
    const lm_st_tensor **by = malloc(sizeof *by * (f->nt > 0 ? (size_t)f->nt : 1));
    if (!by) return lm_fail(err, n, "%s: out of memory", path);
    for (int i = 0; i < f->nt; i++) by[i] = &f->t[i];
    qsort(by, (size_t)f->nt, sizeof *by, cmp_off);
    uint64_t at = 0;
    int rc = 0;
    for (int i = 0; i < f->nt && !rc; i++) {
        if (by[i]->o1 > f->data_len)
            rc = lm_fail(err, n, "%s: truncated or corrupt checkpoint (data holds %zu bytes, "
                         "tensor %s's data_offsets end at %llu)", path, f->data_len, by[i]->name,
                         (unsigned long long)by[i]->o1);
        else if (by[i]->o0 != at)
            rc = lm_fail(err, n, "%s: tensor %s: data_offsets start at %llu, expected %llu (the "
                         "tensors must tile the data: %s)", path, by[i]->name,
                         (unsigned long long)by[i]->o0, (unsigned long long)at,
                         by[i]->o0 < at ? "overlap" : "gap");
        at = by[i]->o1;
    }
    free(by);
    if (!rc && at != f->data_len)
        rc = lm_fail(err, n, "%s: truncated or corrupt checkpoint (data holds %zu bytes, the "
                     "tensors %llu)", path, f->data_len, (unsigned long long)at);
    return rc;
}

/* The nsa metadata: tag, strict numbers, the checksum verified. */
static int check_nsa(lm_st_file *f, const meta_raw *mr, const char *path, char *err, size_t n) {
    if (!mr->have[M_FORMAT] || strncmp(mr->v[M_FORMAT], "nsa-lm-", 7))
        return lm_fail(err, n, "%s: carries an nsa checksum but its format tag is '%s', not "
                       "nsa-lm-2", path, mr->have[M_FORMAT] ? mr->v[M_FORMAT] : "(none)");
    if (!strcmp(mr->v[M_FORMAT], "nsa-lm-2")) f->nsa = 2;
    else if (!strcmp(mr->v[M_FORMAT], "nsa-lm-1")) f->nsa = 1;
    else
        return lm_fail(err, n, "%s: unknown checkpoint format '%s' (this build reads nsa-lm-2 "
                       "and nsa-lm-1)", path, mr->v[M_FORMAT]);
    for (int i = 0; i < M_N; i++)
        if (!mr->have[i])
            return lm_fail(err, n, "%s: %s checkpoint without metadata '%s'", path,
                           mr->v[M_FORMAT], meta_keys[i]);
    if (mr->unknown)
        return lm_fail(err, n, "%s: %s checkpoint with unknown metadata", path, mr->v[M_FORMAT]);
    uint64_t step, sum;
    lm_ckpt_meta *m = &f->meta;
    if (dec_u64(mr->v[M_STEP], INT32_MAX, &step))
        return lm_fail(err, n, "%s: metadata step '%s', expected 0..%d", path, mr->v[M_STEP],
                       INT32_MAX);
    m->step = (int64_t)step;
    if (dec_u64(mr->v[M_SEED], UINT64_MAX, &m->seed))
        return lm_fail(err, n, "%s: metadata seed '%s', expected a decimal uint64", path,
                       mr->v[M_SEED]);
    if (hex16(mr->v[M_HASH], &m->data_hash))
        return lm_fail(err, n, "%s: metadata data_hash '%s', expected 16 hex digits", path,
                       mr->v[M_HASH]);
    if (hex16(mr->v[M_SUM], &sum))
        return lm_fail(err, n, "%s: metadata checksum '%s', expected 16 hex digits", path,
                       mr->v[M_SUM]);
    if (strcmp(mr->v[M_OPTIM], "adamw") && strcmp(mr->v[M_OPTIM], "none"))
        return lm_fail(err, n, "%s: metadata optimizer '%s', expected adamw or none", path,
                       mr->v[M_OPTIM]);
    f->has_optimizer = !strcmp(mr->v[M_OPTIM], "adamw");
    uint64_t h;
    if (f->nsa == 1) { /* nsa-lm-1: the data only */
        h = lm_fnv(LM_FNV0, f->data, f->data_len);
    } else { /* nsa-lm-2: the whole file, the checksum's own digits read as '0' */
        const size_t at = (size_t)((const uint8_t *)mr->sum_at - f->file);
        h = lm_fnv(LM_FNV0, f->file, at);
        h = lm_fnv(h, "0000000000000000", 16);
        h = lm_fnv(h, f->file + at + 16, f->size - at - 16);
    }
    if (h != sum) return lm_fail(err, n, "%s: corrupt checkpoint (checksum mismatch)", path);
    return 0;
}

int lm_st_parse(lm_st_file *f, uint8_t *buf, size_t size, const char *path, char *err,
                size_t n) {
    memset(f, 0, sizeof *f);
    f->file = buf;
    f->size = size;
    if (size < 8) return lm_fail(err, n, "%s: truncated checkpoint (%zu bytes)", path, size);
    uint64_t hl = 0;
    for (int b = 0; b < 8; b++) hl |= (uint64_t)buf[b] << (8 * b);
    if (hl > size - 8 || hl > MAX_HEADER)
        return lm_fail(err, n, "%s: truncated or corrupt checkpoint (header of %llu bytes in a "
                       "file of %zu)", path, (unsigned long long)hl, size);
    f->data = buf + 8 + hl;
    f->data_len = size - 8 - (size_t)hl;
    const int cap = 3 * LM_MAX_TENSORS;
    meta_raw *mr = calloc(1, sizeof *mr);
    f->t = malloc(sizeof *f->t * (size_t)cap);
    if (!mr || !f->t) {
        free(mr);
        return lm_fail(err, n, "%s: out of memory", path);
    }
    parser q = {(const char *)buf + 8, (const char *)buf + 8, (const char *)buf + 8 + hl, err, n,
                path};
    char k[1100];
    int rc = expect(&q, '{');
    ws(&q);
    const int empty = !rc && q.p < q.end && *q.p == '}';
    if (empty) q.p++;
    while (!rc && !empty) {
        if ((rc = str(&q, k, sizeof k)) || (rc = expect(&q, ':'))) break;
        if (!strcmp(k, "__metadata__")) {
            rc = parse_meta(&q, mr);
        } else if (f->nt >= cap) {
            rc = lm_fail(err, n, "%s: more than %d tensors", path, cap);
        } else if (strlen(k) >= sizeof f->t[0].name) {
            rc = lm_fail(err, n, "%s: tensor name too long: %.40s...", path, k);
        } else {
            lm_st_tensor *r = &f->t[f->nt];
            memset(r, 0, sizeof *r);
            memcpy(r->name, k, strlen(k) + 1);
            for (int i = 0; i < f->nt && !rc; i++)
                if (!strcmp(f->t[i].name, k)) rc = lm_fail(err, n, "%s: tensor %s twice", path, k);
            if (!rc && !(rc = parse_tensor(&q, r))) f->nt++;
        }
        if (!rc && !more(&q)) {
            rc = expect(&q, '}');
            break;
        }
    }
    ws(&q);
    if (!rc && q.p != q.end) rc = corrupt(&q, "bytes after the header object");
    if (!rc) rc = check_tiling(f, path, err, n);
    if (!rc && (mr->have[M_SUM] || (mr->have[M_FORMAT] && !strncmp(mr->v[M_FORMAT], "nsa-lm-", 7))))
        rc = check_nsa(f, mr, path, err, n);
    for (int i = 0; !rc && f->nsa && i < f->nt; i++)
        if (f->t[i].dtype != LM_ST_F32)
            rc = lm_fail(err, n, "%s: tensor %s is not F32 (nsa checkpoints are)", path, f->t[i].name);
    if (!rc && mr->have[M_CONFIG]) {
        if (strlen(mr->v[M_CONFIG]) >= sizeof f->meta.config)
            rc = lm_fail(err, n, "%s: metadata config too long", path);
        else
            memcpy(f->meta.config, mr->v[M_CONFIG], strlen(mr->v[M_CONFIG]) + 1), f->has_config = 1;
    }
    f->meta.weights_only = !f->nsa || !f->has_optimizer;
    free(mr);
    return rc;
}

int lm_st_read(lm_st_file *f, const char *path, char *err, size_t n) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return lm_fail(err, n, "%s: cannot open checkpoint: %s", path, strerror(errno));
    long sz = -1;
    if (fseek(fp, 0, SEEK_END) == 0) sz = ftell(fp);
    if (sz < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return lm_fail(err, n, "%s: cannot read checkpoint (not a regular file?)", path);
    }
    uint8_t *buf = malloc((size_t)sz + 1);
    if (!buf || fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
        fclose(fp);
        free(buf);
        return lm_fail(err, n, "%s: cannot read checkpoint", path);
    }
    fclose(fp);
    return lm_st_parse(f, buf, (size_t)sz, path, err, n);
}

void lm_st_free(lm_st_file *f) {
    free(f->file);
    free(f->t);
    memset(f, 0, sizeof *f);
}

const lm_st_tensor *lm_st_find(const lm_st_file *f, const char *name) {
    for (int i = 0; i < f->nt; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}
