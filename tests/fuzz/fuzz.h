// SPDX-License-Identifier: Apache-2.0
/* fuzz.h — what the libFuzzer targets share: a reader that draws values from the fuzz input
 * (small ones mostly, the extremes of int32/int64 sometimes) and a per-process scratch file for
 * parsers that read a path.
 * Not a test harness: a target only calls the code; ASan/UBSan and libFuzzer judge the run.
 * Invariant: a value is a pure function of the input bytes, so every finding replays.
 */
#ifndef NSA_FUZZ_H
#define NSA_FUZZ_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p;
    size_t n, i;
} fz_in;

static inline uint8_t fz_byte(fz_in *f) { return f->i < f->n ? f->p[f->i++] : 0; }

/* 0..small most of the time; one of the boundary values otherwise. */
static inline int64_t fz_val(fz_in *f, int64_t small) {
    static const int64_t edge[] = {-1, 0, 1, INT32_MAX, (int64_t)INT32_MAX + 1, INT32_MIN,
                                   (int64_t)1 << 40, INT64_MAX, INT64_MIN, 65536, 65537, 4096,
                                   4097, -2, (int64_t)1 << 31 << 31};
    const uint8_t b = fz_byte(f);
    if (b < 240) return small > 0 ? b % (small + 1) : 0;
    return edge[(b - 240) % (sizeof edge / sizeof edge[0])];
}

static inline int fz_int(fz_in *f, int small) {
    const int64_t v = fz_val(f, small);
    return v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v;
}

static char fz_path_buf[64];

/* Removes the scratch files at exit (libFuzzer ends a timed run with exit()). */
static inline void fz_cleanup(void) {
    char w[80];
    snprintf(w, sizeof w, "%s.w", fz_path_buf);
    unlink(fz_path_buf);
    unlink(w);
}

/* This process's scratch file, in /dev/shm when there is one (no disk in the loop). */
static inline const char *fz_path(void) {
    if (!fz_path_buf[0]) {
        snprintf(fz_path_buf, sizeof fz_path_buf, "%s/nsa_fuzz_%ld",
                 access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm", (long)getpid());
        atexit(fz_cleanup);
    }
    return fz_path_buf;
}

/* Writes the input to the scratch file and returns its path. */
static inline const char *fz_file(const uint8_t *data, size_t size) {
    FILE *f = fopen(fz_path(), "wb");
    if (!f) return fz_path();
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    return fz_path();
}

#endif /* NSA_FUZZ_H */
