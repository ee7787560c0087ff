// SPDX-License-Identifier: Apache-2.0
/* sample.c — text generation: the prompt is prefilled into one KV cache per layer, then every
 * new byte goes through the library's decode (nsa_decode_step), with temperature, top-k and
 * top-p (applied in that order); the time to the first token and the decode speed are measured.
 * Not a second model: lm_decode runs the very layer code of training (lm/pass.c).
 * Invariant: with temperature 0 the tokens equal the argmax of a full forward recomputed at
 * every step (tests/test_lm_model.c checks it).
 */
#include "lm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Top-p: keeps the most likely bytes (ties: lowest byte first) up to and including the one at
 * which their mass reaches top_p of the total; zeroes the others in p and returns the kept
 * mass, summed in byte order as the draw walks. The most likely byte is always kept. */
static double nucleus(double *p, double top_p) {
    int ord[LM_VOCAB], n = 0;
    double total = 0.0;
    for (int v = 0; v < LM_VOCAB; v++) {
        if (p[v] <= 0.0) continue;
        total += p[v];
        int i = n++; /* insertion: descending p, a tie after the lower byte already placed */
        while (i > 0 && p[ord[i - 1]] < p[v]) {
            ord[i] = ord[i - 1];
            i--;
        }
        ord[i] = v;
    }
    const double target = top_p * total;
    double cum = 0.0;
    int keep = 0;
    while (keep < n && (keep == 0 || cum < target)) cum += p[ord[keep++]];
    for (int i = keep; i < n; i++) p[ord[i]] = 0.0;
    double sum = 0.0;
    for (int v = 0; v < LM_VOCAB; v++) sum += p[v];
    return sum;
}

/* The next token from logits (256): argmax for temperature 0 (ties: lowest byte), else a draw
 * from softmax(logits / temperature) over the top_k most likely bytes, then over the nucleus
 * of top_p of their mass. */
uint8_t lm_sample_pick(const float *logits, const lm_sample_opts *o, uint64_t *rng) {
    int best = 0;
    for (int v = 1; v < LM_VOCAB; v++)
        if (logits[v] > logits[best]) best = v;
    if (o->temperature <= 0.0f) return (uint8_t)best;
    float thr = -INFINITY;
    if (o->top_k > 0 && o->top_k < LM_VOCAB) { /* the k-th largest logit */
        float s[LM_VOCAB];
        memcpy(s, logits, sizeof s);
        for (int a = 0; a < o->top_k; a++) {
            int mx = a;
            for (int b = a + 1; b < LM_VOCAB; b++)
                if (s[b] > s[mx]) mx = b;
            float t = s[a];
            s[a] = s[mx];
            s[mx] = t;
        }
        thr = s[o->top_k - 1];
    }
    double p[LM_VOCAB], sum = 0.0;
    for (int v = 0; v < LM_VOCAB; v++) {
        p[v] = logits[v] >= thr ? exp((double)(logits[v] - logits[best]) / o->temperature) : 0.0;
        sum += p[v];
    }
    if (o->top_p > 0.0f && o->top_p < 1.0f) sum = nucleus(p, o->top_p);
    double u = lm_rng_uniform(rng) * sum;
    for (int v = 0; v < LM_VOCAB; v++) {
        u -= p[v];
        if (u < 0.0 && p[v] > 0.0) return (uint8_t)v;
    }
    return (uint8_t)best;
}

int lm_generate_rows(lm_model *m, const uint8_t *const *prompts, const int *lens, int B, int n,
                     const lm_sample_opts *o, uint8_t *out, char *err, size_t errn) {
    if (B < 1 || B > LM_MAX_ROWS)
        return lm_fail(err, errn, "rows: %d, expected 1 .. %d", B, LM_MAX_ROWS);
    int64_t max_len = 0, prompt_tokens = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1)
            return lm_fail(err, errn, "prompt %d: empty (give at least one byte)", b);
        max_len = lens[b] > max_len ? lens[b] : max_len;
        prompt_tokens += lens[b];
    }
    if (n < 1) return 0;
    const int L = m->cfg.n_layer;
    nsa_kv_cache *caches[LM_MAX_LAYERS] = {0};
    nsa_kv_cache_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.cfg = m->nsa;
    desc.dtype = m->be->att_dtype;
    desc.device.kind = m->be->device;
    desc.B = B;
    desc.max_len = max_len + n;
    desc.cmp_external = m->cfg.phi == LM_PHI_LEARNED;
    float *logits = malloc(sizeof(float) * LM_VOCAB * (size_t)B);
    int rc = -1;
    if (!logits) {
        lm_fail(err, errn, "out of memory");
        goto out;
    }
    const double t0 = mono_s();
    for (int l = 0; l < L; l++) {
        nsa_status st = nsa_kv_cache_create(m->ctx, &desc, &caches[l]);
        if (st != NSA_OK) {
            lm_fail(err, errn, "nsa_kv_cache_create: %s: %s", nsa_status_name(st),
                    nsa_context_message(m->ctx));
            goto out;
        }
    }
    /* Each row alone through its prefill (lengths differ), then every row steps together. Row
     * b draws from its own stream, seed + b, so its bytes do not depend on the others. */
    uint64_t rng[LM_MAX_ROWS];
    uint8_t tok[LM_MAX_ROWS];
    int64_t pos[LM_MAX_ROWS];
    for (int b = 0; b < B; b++) {
        if (lm_prefill_row(m, prompts[b], lens[b], b, caches, err, errn)) goto out;
        m->be->download(logits + (size_t)b * LM_VOCAB,
                        m->logits + (size_t)(lens[b] - 1) * LM_VOCAB, sizeof(float) * LM_VOCAB);
        rng[b] = o->seed + (uint64_t)b;
        pos[b] = lens[b];
    }
    double t1 = t0;
    for (int i = 0; i < n; i++) {
        for (int b = 0; b < B; b++)
            out[(size_t)b * n + i] = tok[b] =
                lm_sample_pick(logits + (size_t)b * LM_VOCAB, o, &rng[b]);
        if (i == 0) t1 = mono_s();
        if (i + 1 < n && lm_decode_rows(m, caches, tok, pos, B, logits, err, errn)) goto out;
        for (int b = 0; b < B; b++) pos[b]++;
    }
    if (o->reads && n > 1 && nsa_kv_cache_last_reads(m->ctx, caches[0], 0, o->reads) != NSA_OK) {
        lm_fail(err, errn, "nsa_kv_cache_last_reads: %s", nsa_context_message(m->ctx));
        goto out;
    }
    if (o->stats) {
        o->stats->rows = B;
        o->stats->prompt_tokens = prompt_tokens;
        o->stats->prefill_s = t1 - t0;
        o->stats->decode_s = mono_s() - t1;
        o->stats->decode_tokens = (int64_t)B * (n - 1);
    }
    rc = 0;
out:
    for (int l = 0; l < L; l++) nsa_kv_cache_destroy(caches[l]);
    free(logits);
    return rc;
}

int lm_generate(lm_model *m, const uint8_t *prompt, int len, int n, const lm_sample_opts *o,
                uint8_t *out, char *err, size_t errn) {
    return lm_generate_rows(m, &prompt, &len, 1, n, o, out, err, errn);
}
