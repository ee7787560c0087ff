// SPDX-License-Identifier: Apache-2.0
/* test_lm_report.c — what `nsa train` reports: the JSON writer's strings (any bytes in, valid
 * JSON out, valid UTF-8 unchanged) and objects, and the model FLOPs behind the MFU (the matmul
 * term against the model's own tensor table, the attention reads and the total against counts
 * done by hand in the comments), the out-of-memory message of model creation, and that a
 * directory given as a config file is an error (it read as an empty config).
 */
#include "harness.h"
#include "lm.h"

#include <math.h>
#include <string.h>

static const char *one_str(lm_json *j, const char *key, const char *val) {
    lm_json_begin(j);
    lm_json_str(j, key, val);
    return lm_json_end(j);
}

static void json_utf8(void) {
    lm_json j = {0};
    static const struct { const char *in, *out; } cases[] = {
        {"donn\xc3\xa9" "es.txt", "{\"p\":\"donn\xc3\xa9" "es.txt\"}\n"},           /* é kept */
        {"\xe6\x97\xa5\xf0\x9f\x98\x80", "{\"p\":\"\xe6\x97\xa5\xf0\x9f\x98\x80\"}\n"}, /* 3, 4 bytes */
        {"a\"b\\c\n\t\r\x01\x1f\x7f", "{\"p\":\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f\\u007f\"}\n"},
        {"\xff" "x", "{\"p\":\"\\ufffdx\"}\n"},                 /* never a UTF-8 byte */
        {"\xc3", "{\"p\":\"\\ufffd\"}\n"},                      /* cut short at the end */
        {"\xc3(", "{\"p\":\"\\ufffd(\"}\n"},                    /* cut short by ASCII */
        {"\xc0\xaf", "{\"p\":\"\\ufffd\\ufffd\"}\n"},           /* overlong '/' */
        {"\xe0\x80\xaf", "{\"p\":\"\\ufffd\\ufffd\\ufffd\"}\n"}, /* overlong, 3 bytes */
        {"\xed\xa0\x80", "{\"p\":\"\\ufffd\\ufffd\\ufffd\"}\n"}, /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", "{\"p\":\"\\ufffd\\ufffd\\ufffd\\ufffd\"}\n"}, /* > U+10FFFF */
        {"\xf4\x8f\xbf\xbf", "{\"p\":\"\xf4\x8f\xbf\xbf\"}\n"}, /* U+10FFFF itself */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = one_str(&j, "p", cases[i].in);
        CHECK(got && !strcmp(got, cases[i].out), "case %zu: got %s want %s", i, got ? got : "NULL",
              cases[i].out);
    }
    const char *got = one_str(&j, "k\"\xff", "v"); /* keys go through the same escaping */
    CHECK(got && !strcmp(got, "{\"k\\\"\\ufffd\":\"v\"}\n"), "key: %s", got ? got : "NULL");
    lm_json_free(&j);
}

static void json_object(void) {
    lm_json j = {0};
    static const char *const names[3] = {"cmp", "sel", "win"};
    const double v[3] = {0.25, 0.5, NAN};
    lm_json_begin(&j);
    lm_json_int(&j, "step", 3);
    lm_json_obj(&j, "shares", names, v, 3);
    const char *got = lm_json_end(&j);
    CHECK(got && !strcmp(got, "{\"step\":3,\"shares\":{\"cmp\":0.25,\"sel\":0.5,\"win\":null}}\n"),
          "%s", got ? got : "NULL");
    lm_json_free(&j);
}

/* lm_matmul_params counts from the config what lm/model.c lays out: every 2-D weight but the
 * embedding and φ (phi_*), for both φ kinds and a GQA and a non-GQA config. */
static void flops_matmul_matches_layout(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    const lm_model_config cfgs[2] = {
        {.n_layer = 2, .dim = 24, .n_head = 4, .n_kv_head = 2, .ffn = 40, .l = 4, .d = 2, .lp = 4,
         .n = 3, .w = 8, .phi = LM_PHI_LEARNED, .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f,
         .rope_base = 10000.0f},
        {.n_layer = 3, .dim = 32, .n_head = 2, .n_kv_head = 2, .ffn = 24, .l = 8, .d = 4, .lp = 8,
         .n = 3, .w = 16, .phi = LM_PHI_AVG, .gate = LM_GATE_SOFTMAX, .gate_temp = 1.0f,
         .rope_base = 10000.0f},
    };
    for (int k = 0; k < 2; k++) {
        lm_model m;
        char err[512];
        CHECK(lm_model_create(&m, &cfgs[k], ctx, 1, err, sizeof err) == 0, "%s", err);
        double sum = 0;
        for (int i = 0; i < m.ntensors; i++) {
            const lm_tensor_info *t = &m.tensors[i];
            if (t->ndim == 2 && strcmp(t->name, "emb") && !strstr(t->name, "phi_"))
                sum += (double)t->shape[0] * (double)t->shape[1];
        }
        CHECK(sum == lm_matmul_params(&cfgs[k]), "config %d: layout %g, formula %g", k, sum,
              lm_matmul_params(&cfgs[k]));
        lm_model_destroy(&m);
    }
    nsa_context_destroy(ctx);
}

static void flops_by_hand(void) {
    /* l=4 d=2 lp=4 n=3 w=8, T=8: query s=1..8 sees cmp 0,0,0,1,1,2,2,3 (9), sel min(12,s) (36),
     * win min(8,s) (36): 81 keys / 8 queries */
    lm_model_config m = {.n_layer = 1, .dim = 16, .n_head = 2, .n_kv_head = 1, .ffn = 16, .l = 4,
                         .d = 2, .lp = 4, .n = 3, .w = 8, .phi = LM_PHI_AVG};
    CHECK(lm_attn_reads(&m, 8) == 81.0 / 8, "reads %g", lm_attn_reads(&m, 8));
    /* D=8: wq 16·16, wk/wv 6·16·8, wg 16·6, wo 16·16, mlp 3·16·16, head 256·16 = 6240;
     * attention 1 layer · 2 heads · 2·(8+8) · 81/8 = 648; 3 · (2·6240 + 648) = 39384 */
    CHECK(lm_flops_per_token(&m, 8) == 39384.0, "flops %g", lm_flops_per_token(&m, 8));
    /* φ learned adds per forward 1 layer · 2 (k, v) · 1 KV head · 2 · (4·8·8 + 8·8) / d=2 = 640 */
    m.phi = LM_PHI_LEARNED;
    CHECK(lm_flops_per_token(&m, 8) == 39384.0 + 3 * 640.0, "flops %g", lm_flops_per_token(&m, 8));
    /* the paper's config: the last query of 8192 reads num_cmp (8192-32)/16+1 = 511, n·lp = 1024
     * and w = 512: 2047 keys, Table 4's "2048" before rounding */
    lm_model_config p = {.n_layer = 1, .dim = 64, .n_head = 1, .n_kv_head = 1, .ffn = 1, .l = 32,
                         .d = 16, .lp = 64, .n = 16, .w = 512};
    const double last = lm_attn_reads(&p, 8192) * 8192 - lm_attn_reads(&p, 8191) * 8191;
    CHECK(fabs(last - 2047) < 1e-6, "last query reads %g", last);
}

static void *no_memory(size_t bytes) {
    (void)bytes;
    return NULL;
}

/* A backend whose allocations fail: the message names the real parameter count (it said
 * "0 parameters": the count was read after the model was cleared). */
static void oom_message(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    lm_backend be = lm_cpu_backend;
    be.alloc = no_memory;
    lm_model_config c = {.n_layer = 1, .dim = 16, .n_head = 2, .n_kv_head = 1, .ffn = 16, .l = 4,
                         .d = 2, .lp = 4, .n = 3, .w = 8, .phi = LM_PHI_AVG,
                         .gate = LM_GATE_SIGMOID, .gate_temp = 1.0f, .rope_base = 10000.0f};
    lm_model m, ok;
    char err[512] = "", want[64];
    CHECK(lm_model_create(&ok, &c, ctx, 1, err, sizeof err) == 0, "%s", err);
    snprintf(want, sizeof want, "out of memory for the %zu parameters", ok.nparams);
    CHECK(lm_model_create_on(&m, &c, ctx, &be, 1, err, sizeof err) != 0);
    CHECK(strstr(err, want), "'%s' does not say '%s'", err, want);
    lm_model_destroy(&ok);
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
}

static void config_directory(void) {
    lm_train_config c, d;
    lm_train_config_default(&c);
    d = c;
    char err[512] = "";
    CHECK(lm_config_load(&c, "/tmp", err, sizeof err) == -1, "a directory loaded as a config");
    CHECK(strstr(err, "/tmp: cannot read"), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c), "the config changed");
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"json_utf8", json_utf8},
        {"json_object", json_object},
        {"flops_matmul_matches_layout", flops_matmul_matches_layout},
        {"flops_by_hand", flops_by_hand},
        {"oom_message", oom_message},
        {"config_directory", config_directory},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
