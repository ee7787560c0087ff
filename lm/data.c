// SPDX-License-Identifier: Apache-2.0
/* data.c — the corpus (any byte file; the built-in one is the King James Bible), its
 * deterministic train/validation split, its documents (one per book, or split at a separator),
 * batches, and a loader thread that prefetches them.
 * Not a tokenizer: tokens are bytes (vocab 256).
 * Invariant: the batch of step s is a pure function of (corpus, seed, s) — which thread made it,
 * and whether the run was resumed, does not matter.
 */
#include "lm.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VAL_PERCENT 10

int lm_corpus_load(lm_corpus *c, const char *path, int seq_len, char *err, size_t n) {
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, n, "data: %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    const int rerr = ferror(f) ? errno : 0; /* a directory: EISDIR */
    fclose(f);
    if (!buf || rerr) {
        free(buf);
        snprintf(err, n, "data: %s: %s", path, rerr ? strerror(rerr) : "out of memory");
        return -1;
    }
    if (len == 0) {
        free(buf);
        snprintf(err, n, "data: %s: the file is empty", path);
        return -1;
    }
    const size_t val = len * VAL_PERCENT / 100, train = len - val;
    if (val < (size_t)seq_len + 1 || train < (size_t)seq_len + 1) {
        free(buf);
        snprintf(err, n,
                 "data: %s: %zu bytes is too short for seq_len=%d (each of the train (90%%) and "
                 "validation (10%%) parts needs seq_len + 1 = %d bytes)",
                 path, len, seq_len, seq_len + 1);
        return -1;
    }
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ buf[i]) * 1099511628211ULL;
    c->bytes = buf;
    c->len = len;
    c->train_len = train;
    c->hash = h;
    return 0;
}

void lm_corpus_free(lm_corpus *c) {
    free(c->bytes);
    free(c->starts);
    memset(c, 0, sizeof *c);
}

/* Installed: the running program's folder plus the relative path from the install's bin to its
 * copy of the corpus (bin/nsa -> ../share/nsa/kjv.txt), so a moved prefix still finds it. */
static const char *beside_program(char *path, size_t len) {
#ifdef NSA_LM_DATA_FROM_BIN
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0';
    const int w = snprintf(path, len, "%s/%s", exe, NSA_LM_DATA_FROM_BIN);
    if (w > 0 && (size_t)w < len && access(path, R_OK) == 0) return path;
#else
    (void)path, (void)len;
#endif
    return NULL;
}

/* A KJV book opens at a line whose reference is chapter 1 verse 1: "<letters>1:1 " ("Ge1:1",
 * "1Sm1:1"); "Ge11:1" and "Ge21:1" are not (a digit before "1:1"). */
static int book_starts(const uint8_t *b, size_t len, size_t i) {
    if (i > 0 && b[i - 1] != '\n') return 0;
    size_t j = i;
    while (j < len && j - i < 16 && b[j] != ' ' && b[j] != '\n') j++;
    if (j >= len || b[j] != ' ' || j - i < 4) return 0;
    const uint8_t c = b[j - 4];
    return !memcmp(b + j - 3, "1:1", 3) && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
}

int lm_corpus_documents(lm_corpus *c, const char *spec, char *err, size_t n) {
    uint8_t sep[512];
    size_t ns = 0;
    const int books = !strcmp(spec, "books");
    for (const char *p = spec; !books && *p && ns < sizeof sep; p++) {
        char ch = *p;
        if (ch == '\\' && p[1]) {
            p++;
            ch = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
        }
        sep[ns++] = (uint8_t)ch;
    }
    if (!books && ns == 0) {
        snprintf(err, n, "documents: an empty separator (use 'books' or a string)");
        return -1;
    }
    free(c->starts);
    c->starts = calloc(c->len, 1);
    if (!c->starts) {
        snprintf(err, n, "documents: out of memory");
        return -1;
    }
    c->starts[0] = 1;
    for (size_t i = 1; i < c->len; i++)
        c->starts[i] = books ? (uint8_t)book_starts(c->bytes, c->len, i)
                             : (uint8_t)(i + ns <= c->len && !memcmp(c->bytes + i, sep, ns));
    c->ndocs = 0;
    for (size_t i = 0; i < c->len; i++) c->ndocs += c->starts[i];
    return 0;
}

const char *lm_default_corpus(void) {
    static char installed[4096 + 64];
    const char *p = beside_program(installed, sizeof installed);
    if (p) return p;
#ifdef NSA_LM_DATA_BUILD
    if (access(NSA_LM_DATA_BUILD, R_OK) == 0) return NSA_LM_DATA_BUILD;
#endif
#ifdef NSA_LM_DATA_INSTALL
    if (access(NSA_LM_DATA_INSTALL, R_OK) == 0) return NSA_LM_DATA_INSTALL;
#endif
    return NULL;
}

static void window(const lm_corpus *c, size_t off, int T, uint8_t *x, uint8_t *y,
                   uint8_t *bound) {
    memcpy(x, c->bytes + off, (size_t)T);
    memcpy(y, c->bytes + off + 1, (size_t)T);
    if (!bound) return;
    if (c->starts) memcpy(bound, c->starts + off + 1, (size_t)T);
    else memset(bound, 0, (size_t)T);
}

void lm_batch(const lm_corpus *c, uint64_t seed, int64_t step, int B, int T, uint8_t *x,
              uint8_t *y, uint8_t *bound) {
    uint64_t s = seed * 0x2545f4914f6cdd1dULL ^ ((uint64_t)step + 1) * 0x9e3779b97f4a7c15ULL;
    const uint64_t span = (uint64_t)(c->train_len - (size_t)T - 1) + 1; /* offsets 0..train-T-1 */
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)(lm_rng_next(&s) % span);
        window(c, off, T, x + (size_t)b * T, y + (size_t)b * T,
               bound ? bound + (size_t)b * T : NULL);
    }
}

void lm_val_batch(const lm_corpus *c, int k, int nbatches, int B, int T, uint8_t *x, uint8_t *y,
                  uint8_t *bound) {
    const size_t val_len = c->len - c->train_len, last = val_len - (size_t)T - 1;
    const int64_t W = (int64_t)nbatches * B;
    for (int b = 0; b < B; b++) {
        const int64_t j = (int64_t)k * B + b;
        size_t off = W > 1 ? (size_t)((double)last * (double)j / (double)(W - 1)) : 0;
        window(c, c->train_len + off, T, x + (size_t)b * T, y + (size_t)b * T,
               bound ? bound + (size_t)b * T : NULL);
    }
}

/* ------------------------------------------------------------------ loader thread */

#define SLOTS 2

struct lm_loader {
    const lm_corpus *c;
    uint64_t seed;
    int B, T;
    int64_t next_make, next_take; /* steps */
    uint8_t *buf;                 /* (SLOTS, 3, B, T): x, y, bound */
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
};

static void *loader_main(void *arg) {
    lm_loader *L = arg;
    const size_t bt = (size_t)L->B * L->T;
    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (!L->stop && L->next_make - L->next_take >= SLOTS) pthread_cond_wait(&L->cv, &L->mu);
        if (L->stop) break;
        const int64_t s = L->next_make;
        uint8_t *slot = L->buf + (size_t)((uint64_t)s % SLOTS) * 3 * bt;
        pthread_mutex_unlock(&L->mu);
        lm_batch(L->c, L->seed, s, L->B, L->T, slot, slot + bt, slot + 2 * bt);
        pthread_mutex_lock(&L->mu);
        L->next_make++;
        pthread_cond_broadcast(&L->cv);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

lm_loader *lm_loader_start(const lm_corpus *c, uint64_t seed, int64_t step0, int B, int T) {
    if (step0 < 0 || B < 1 || T < 1) return NULL;
    lm_loader *L = calloc(1, sizeof *L);
    if (!L) return NULL;
    L->c = c;
    L->seed = seed;
    L->B = B;
    L->T = T;
    L->next_make = L->next_take = step0;
    L->buf = malloc((size_t)SLOTS * 3 * (size_t)B * T);
    if (!L->buf) {
        free(L);
        return NULL;
    }
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    if (pthread_create(&L->th, NULL, loader_main, L)) {
        pthread_mutex_destroy(&L->mu);
        pthread_cond_destroy(&L->cv);
        free(L->buf);
        free(L);
        return NULL;
    }
    return L;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double lm_loader_next(lm_loader *L, uint8_t *x, uint8_t *y, uint8_t *bound) {
    const size_t bt = (size_t)L->B * L->T;
    const double t0 = now_s();
    pthread_mutex_lock(&L->mu);
    while (L->next_make <= L->next_take) pthread_cond_wait(&L->cv, &L->mu);
    const double waited = now_s() - t0;
    const uint8_t *slot = L->buf + (size_t)((uint64_t)L->next_take % SLOTS) * 3 * bt;
    memcpy(x, slot, bt);
    memcpy(y, slot + bt, bt);
    if (bound) memcpy(bound, slot + 2 * bt, bt);
    L->next_take++;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    return waited;
}

void lm_loader_stop(lm_loader *L) {
    if (!L) return;
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    pthread_join(L->th, NULL);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
    free(L->buf);
    free(L);
}
