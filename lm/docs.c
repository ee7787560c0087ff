// SPDX-License-Identifier: Apache-2.0
/* docs.c — packed documents of one training batch (docs/varlen.md): the batch's bound bytes
 * become the library's cu_seqlens over the B·T rows and the loss mask.
 * Not the corpus split (data.c) nor the passes that read them (pass.c).
 * Invariant: every row starts a document and no document spans two rows, so the packed call
 * over B·T rows computes what B·(documents per row) separate calls would.
 */
#include "lm.h"

#include <stdlib.h>

int lm_model_set_docs(lm_model *m, const uint8_t *bound, int B, int T, char *err, size_t n) {
    m->doc_n = 0;
    if (!bound) return 0;
    if (m->be->device != NSA_DEVICE_CPU)
        return lm_fail(err, n, "documents: the %s trainer does not pack documents yet (the CPU "
                       "does; docs/varlen.md)", m->be->name);
    if (m->cfg.phi == LM_PHI_LEARNED)
        return lm_fail(err, n, "documents: learned phi does not pack documents yet (phi avg "
                       "does; docs/varlen.md)");
    const int N = B * T;
    if (m->doc_cap < N + 1) {
        int32_t *cu = realloc(m->doc_cu, sizeof(int32_t) * (size_t)(N + 1));
        if (cu) m->doc_cu = cu;
        uint8_t *mask = realloc(m->doc_mask, (size_t)N + 1);
        if (mask) m->doc_mask = mask;
        if (!cu || !mask) return lm_fail(err, n, "documents: out of memory");
        m->doc_cap = N + 1;
    }
    int k = 0;
    for (int b = 0; b < B; b++) {
        m->doc_cu[k++] = b * T;
        for (int t = 0; t < T; t++) {
            const int r = b * T + t;
            m->doc_mask[r] = !bound[r]; /* y[r] is the next document's first byte */
            if (bound[r] && t + 1 < T) m->doc_cu[k++] = r + 1;
        }
    }
    m->doc_cu[k] = N;
    m->doc_max = 0;
    for (int i = 0; i < k; i++)
        if (m->doc_cu[i + 1] - m->doc_cu[i] > m->doc_max) m->doc_max = m->doc_cu[i + 1] - m->doc_cu[i];
    m->doc_n = k;
    return 0;
}
