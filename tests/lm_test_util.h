// SPDX-License-Identifier: Apache-2.0
/* lm_test_util.h — what the language-model tests share: a scratch directory, whole-file reads
 * and writes, and a small corpus of numbered sentences.
 * Not a test harness (harness.h is): plain helpers with no checks of their own.
 * Invariant: lmt_corpus writes the same bytes for the same size, so runs are reproducible.
 */
#ifndef NSA_LM_TEST_UTIL_H
#define NSA_LM_TEST_UTIL_H

#include <stddef.h>

/* The scratch directory of the running case ("" when it could not be made). */
extern char lmt_dir[64];
/* Makes a fresh /tmp/nsa_lm_test_XXXXXX into lmt_dir; removes it (and all in it). */
void lmt_mkdir(void);
void lmt_rmdir(void);
/* The whole file, NUL-terminated, its length in *len (free it); NULL if unreadable. */
char *lmt_slurp(const char *path, size_t *len);
/* Writes p[0..n) as the whole file: 0, or -1. */
int lmt_spit(const char *path, const void *p, size_t n);
/* 1 if both files read and hold the same bytes. */
int lmt_same_file(const char *a, const char *b);
/* About `bytes` (< 16384) of numbered sentences (no 24-byte window repeats) into
 * lmt_dir/corpus.txt, its path into path[n]. */
void lmt_corpus(char *path, size_t n, size_t bytes);

#endif
