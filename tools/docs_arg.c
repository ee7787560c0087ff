// SPDX-License-Identifier: Apache-2.0
/* docs_arg.c — the packed-documents options of `nsa route` and `nsa parity`: `--docs 4096,4096`
 * (document lengths) and `--cu-seqlens 0,4096,8192` (offsets), both into offsets.
 * Not validation of the offsets against a call: the library does that (NSA_ERR_SHAPE).
 * Invariant: on success cu[0..*n_docs] ascend from 0 and fit int32.
 */
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int cli_parse_docs(const char *v, int offsets, int32_t *cu, int cap, int64_t *n_docs, char *err,
                   size_t n) {
    int k = 0;
    const char *p = v;
    if (!offsets) cu[k++] = 0;
    while (*p) {
        char *end;
        const long long x = strtoll(p, &end, 10);
        const long long at = offsets ? x : cu[k - 1] + x;
        if (end == p || (*end && *end != ',') || x < 0 || k >= cap || at > INT32_MAX ||
            (k > 0 && at < cu[k - 1])) {
            snprintf(err, n, "'%s' is not a list of %s (at most %d documents)", v,
                     offsets ? "ascending offsets from 0" : "document lengths >= 0", cap - 1);
            return -1;
        }
        cu[k++] = (int32_t)at;
        p = *end ? end + 1 : end;
    }
    if (k < 2 || cu[0] != 0) {
        snprintf(err, n, "'%s': %s", v,
                 offsets ? "offsets start at 0 and end at T" : "at least one document");
        return -1;
    }
    *n_docs = k - 1;
    return 0;
}
