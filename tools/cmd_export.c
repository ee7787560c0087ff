// SPDX-License-Identifier: Apache-2.0
/* cmd_export.c — `nsa export`: writes a checkpoint's weights alone as a plain bf16 safetensors
 * file (metadata: the model config), for Python's `safetensors` or for sampling and
 * fine-tuning (`nsa sample --ckpt FILE`, or as OUT/model.safetensors with `nsa train --resume`).
 * Not a converter of other models' weights: the tensors keep nsa's names and shapes.
 * Invariant: the source is read through the checked loader, and the output replaces its path
 * only when complete (temp file + rename).
 */
#include "cli.h"
#include "lm.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *ckpt, *out, *to;
} export_args;

#define O(f) CLI_OPT(export_args, f)
static const cli_opt table[] = {
    {"ckpt", CLI_FILE, O(ckpt), "FILE", NULL, 0, 0, NULL,
     "checkpoint to read instead of DIR/model.safetensors of --out", NULL},
    {"out", CLI_STR, O(out), "DIR", "runs/kjv", 0, 0, NULL, "run directory of nsa train", NULL},
    {"to", CLI_STR, O(to), "FILE", NULL, 0, 0, NULL,
     "the bf16 file to write instead of DIR/weights.bf16.safetensors of --out", NULL},
};
#undef O

static int export_run(void *opts);
const cli_command cmd_export = {
    "export", "write a checkpoint's weights as a plain bf16 safetensors file",
    "Reads a checkpoint (nsa's own, or a plain safetensors file) through the checked loader and\n"
    "writes its parameters alone in bf16 with the model config as metadata: no optimizer state,\n"
    "no step, no checksum. Python's safetensors reads it; so do nsa sample --ckpt FILE and\n"
    "nsa train --resume (from OUT/model.safetensors: fine-tuning from step 0).",
    table, CLI_NOPTS(table), sizeof(export_args), export_run, NULL, NULL};

static int export_run(void *opts) {
    const export_args *a = opts;
    char src[700], dst[700], err[1024];
    snprintf(src, sizeof src, "%s", a->ckpt ? a->ckpt : "");
    if (!a->ckpt) snprintf(src, sizeof src, "%s/model.safetensors", a->out);
    if (a->to) snprintf(dst, sizeof dst, "%s", a->to);
    else snprintf(dst, sizeof dst, "%s/weights.bf16.safetensors", a->out);
    if (!strcmp(src, dst))
        return cli_usage_error("export", "--to: %s is the checkpoint itself", dst);
    lm_ckpt_meta meta;
    lm_model_config mc;
    nsa_context *ctx = NULL;
    lm_model m;
    memset(&m, 0, sizeof m);
    int rc = 1;
    if (lm_ckpt_read_meta(src, &meta, err, sizeof err) ||
        lm_model_config_parse(&mc, meta.config, err, sizeof err) ||
        nsa_context_create(&ctx, err, sizeof err) != NSA_OK ||
        lm_model_create(&m, &mc, ctx, 0, err, sizeof err) ||
        lm_ckpt_load(src, &m, NULL, NULL, NULL, err, sizeof err) ||
        lm_ckpt_export(dst, &m, err, sizeof err)) {
        fprintf(stderr, "nsa export: %s\n", err);
    } else {
        if (meta.note[0]) fprintf(stderr, "nsa export: %s\n", meta.note);
        printf("nsa export: wrote %s (%zu parameters, bf16, weights only)\n", dst, m.nparams);
        rc = 0;
    }
    lm_model_destroy(&m);
    nsa_context_destroy(ctx);
    return rc;
}
