// SPDX-License-Identifier: Apache-2.0
/* test_harden_model.c — model configs out of range, from the command line and from a
 * checkpoint's metadata (issue 13): huge --dim, --l, --ffn made lm's layout and probe overflow
 * int (UB) or ask for absurd memory; a checkpoint's config string was never validated. Both
 * paths now go through one check (lm_model_config_check) that names the field.
 */
#include "harness.h"
#include "lm.h"

#include <limits.h>
#include <string.h>

static lm_model_config base(void) {
    return (lm_model_config){.n_layer = 1, .dim = 16, .n_head = 2, .n_kv_head = 1, .ffn = 24,
                             .l = 4, .d = 2, .lp = 4, .n = 3, .w = 4, .phi = LM_PHI_LEARNED,
                             .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
}

/* Each huge field is refused by name before anything is sized from it. */
static void huge_model_fields(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    static const struct {
        const char *field;
        size_t off;
        int val;
    } f[] = {
        {"dim", offsetof(lm_model_config, dim), 1 << 30},
        {"ffn", offsetof(lm_model_config, ffn), INT_MAX},
        {"l", offsetof(lm_model_config, l), 1 << 30},
        {"lp", offsetof(lm_model_config, lp), INT_MAX},
        {"n", offsetof(lm_model_config, n), INT_MAX},
    };
    char err[512];
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        lm_model_config c = base();
        *(int *)((char *)&c + f[i].off) = f[i].val;
        lm_model m;
        err[0] = 0;
        const int rc = lm_model_create(&m, &c, ctx, 1, err, sizeof err);
        if (rc == 0) lm_model_destroy(&m);
        CHECK(rc != 0 && !strncmp(err, f[i].field, strlen(f[i].field)) && err[strlen(f[i].field)] == ':',
              "%s = %d: rc %d, '%s'", f[i].field, f[i].val, rc, err);
    }
    nsa_context_destroy(ctx);
}

/* A checkpoint's model config passes the same check as the command line's. */
static void ckpt_config_checked(void) {
    static const char *bad[] = {"dim=1073741824 heads=2", "ffn=2147483647", "layers=65",
                                "l=1073741824", "heads=3 dim=16"};
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lm_model_config m;
        err[0] = 0;
        CHECK(lm_model_config_parse(&m, bad[i], err, sizeof err) != 0, "'%s' accepted", bad[i]);
    }
    lm_model_config m, c = base();
    char s[1024];
    lm_model_config_str(&c, s, sizeof s);
    CHECK(lm_model_config_parse(&m, s, err, sizeof err) == 0, "%s", err);
}

/* Found by fuzz_config: a string key set twice ("data = long", then "data =") kept the old
 * bytes after the new terminator, so two equal configs compared unequal byte for byte (the
 * write/read round trip, and test_lm_train config_file, compare configs with memcmp). */
static void config_set_clears_strings(void) {
    lm_train_config a, b;
    char err[256];
    lm_train_config_default(&a);
    lm_train_config_default(&b);
    CHECK(lm_config_set(&a, "data", "a-long-path.txt", err, sizeof err) == 0, "%s", err);
    CHECK(lm_config_set(&a, "data", "", err, sizeof err) == 0, "%s", err);
    CHECK(lm_config_set(&b, "data", "", err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(&a, &b, sizeof a) == 0, "equal configs differ in their bytes");
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"huge_model_fields", huge_model_fields},
        {"ckpt_config_checked", ckpt_config_checked},
        {"config_set_clears_strings", config_set_clears_strings},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
