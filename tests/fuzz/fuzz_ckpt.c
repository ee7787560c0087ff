// SPDX-License-Identifier: Apache-2.0
/* fuzz_ckpt.c — libFuzzer target for the checkpoint reader: the input as a safetensors file,
 * parsed in memory (lm_st_parse) and loaded from disk into a tiny model with moments
 * (lm_ckpt_read_meta, lm_ckpt_load: config, shapes, dtypes, plain-file inference).
 * Not a check of what loads (test_harden_ckpt and test_lm_train do that).
 * Invariant: a load that fails leaves the model's parameters as they were. The seed corpus
 * holds checkpoints of exactly this model (fuzz_ckpt_model below).
 */
#include "fuzz.h"
#include "lm.h"

#include <stdlib.h>
#include <string.h>

/* The model of the seed corpus: 1 layer, dim 4, 2 heads, 1 KV head, ffn 4. */
static lm_model_config fuzz_ckpt_model(void) {
    return (lm_model_config){.n_layer = 1, .dim = 4, .n_head = 2, .n_kv_head = 1, .ffn = 4,
                             .l = 4, .d = 2, .lp = 4, .n = 3, .w = 4, .phi = LM_PHI_AVG,
                             .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static nsa_context *ctx;
    static lm_model m;
    static float *mom, *vel, *keep;
    char err[1024];
    if (!ctx) {
        lm_model_config c = fuzz_ckpt_model();
        if (nsa_context_create(&ctx, NULL, 0) != NSA_OK || lm_model_create(&m, &c, ctx, 1, err, sizeof err))
            abort();
        mom = calloc(m.nparams, 4), vel = calloc(m.nparams, 4), keep = malloc(4 * m.nparams);
        if (!mom || !vel || !keep) abort();
    }
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    lm_st_file f;
    (void)lm_st_parse(&f, copy, size, "fuzz", err, sizeof err);
    lm_st_free(&f);
    const char *path = fz_file(data, size);
    lm_ckpt_meta meta;
    (void)lm_ckpt_read_meta(path, &meta, err, sizeof err);
    memcpy(keep, m.params, 4 * m.nparams);
    if (lm_ckpt_load(path, &m, mom, vel, &meta, err, sizeof err) != 0 &&
        memcmp(keep, m.params, 4 * m.nparams))
        abort(); /* a failed load changed the model */
    return 0;
}
