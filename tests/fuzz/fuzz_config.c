// SPDX-License-Identifier: Apache-2.0
/* fuzz_config.c — libFuzzer target for the language model's config parsers (lm/config.c): the
 * input as a config file (lm_config_load, then lm_config_check) and as a checkpoint's
 * model-config string (lm_model_config_parse).
 * Not a check of defaults or help text (test_lm_train config_file does that).
 * Invariant: a config that passes the check writes out and loads back to the same config.
 */
#include "fuzz.h"
#include "lm.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    lm_train_config c, back;
    lm_train_config_default(&c);
    if (lm_config_load(&c, fz_file(data, size), err, sizeof err) == 0 &&
        lm_config_check(&c, err, sizeof err) == 0) {
        char path[96];
        snprintf(path, sizeof path, "%s.w", fz_path());
        FILE *f = fopen(path, "w");
        if (!f) return 0;
        lm_config_write(&c, f);
        fclose(f);
        lm_train_config_default(&back);
        if (lm_config_load(&back, path, err, sizeof err) || memcmp(&c, &back, sizeof c)) abort();
    }
    char s[1100];
    const size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = 0;
    lm_model_config m;
    (void)lm_model_config_parse(&m, s, err, sizeof err);
    return 0;
}
