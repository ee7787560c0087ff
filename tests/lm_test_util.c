// SPDX-License-Identifier: Apache-2.0
/* lm_test_util.c — the language-model tests' scratch directory, file helpers and corpus
 * (lm_test_util.h). */
#include "lm_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char lmt_dir[64];

void lmt_mkdir(void) {
    snprintf(lmt_dir, sizeof lmt_dir, "/tmp/nsa_lm_test_XXXXXX");
    if (!mkdtemp(lmt_dir)) lmt_dir[0] = 0;
}

void lmt_rmdir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", lmt_dir);
    if (lmt_dir[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", lmt_dir);
}

char *lmt_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = b ? (size_t)n : 0;
    return b;
}

int lmt_spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int lmt_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = lmt_slurp(a, &na), *y = lmt_slurp(b, &nb);
    const int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return same;
}

void lmt_corpus(char *path, size_t n, size_t bytes) {
    snprintf(path, n, "%s/corpus.txt", lmt_dir);
    static const char *w[] = {"light", "earth", "water", "day", "night", "God", "saw", "good"};
    char buf[16384];
    if (bytes > sizeof buf) bytes = sizeof buf;
    size_t len = 0;
    for (int i = 0; len + 40 < bytes; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "And the %s was %s %d. ", w[i % 8],
                                w[(i * 5 + 3) % 8], i);
    lmt_spit(path, buf, len);
}
