// SPDX-License-Identifier: Apache-2.0
/* cmd_train.c — `nsa train`: reads defaults, then a config file (--config FILE, or with --resume
 * the run's own config.txt), then flags (--key value or --key=value), and runs lm_train.
 * SIGINT asks the loop to save a checkpoint and stop; a second SIGINT kills as usual.
 */
#include "cli.h"
#include "lm.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL);
}

static void usage(FILE *f) {
    fprintf(f, "usage: nsa train [--config FILE] [--resume] [--quiet] [--KEY VALUE ...]\n\n"
               "Trains a byte-level NSA language model (default: the built-in King James Bible\n"
               "corpus) and writes OUT/model.safetensors, OUT/heartbeat.jsonl, OUT/config.txt.\n"
               "--resume continues OUT/model.safetensors with OUT/config.txt as the config file.\n"
               "A config file holds KEY = VALUE lines with the keys below.\n\nKEY (default):\n");
    lm_config_help(f);
}

int cmd_train(int argc, char **argv) {
    lm_train_config c;
    lm_train_config_default(&c);
    char err[1024];
    const char *config = NULL, *out = NULL;
    int resume = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--resume")) {
            resume = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            config = a + 9;
        } else if (!strcmp(a, "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strncmp(a, "--out=", 6)) {
            out = a + 6;
        }
    }
    if (config && lm_config_load(&c, config, err, sizeof err)) goto bad;
    if (out && lm_config_set(&c, "out", out, err, sizeof err)) goto bad;
    char resume_cfg[600], ckpt[600];
    snprintf(resume_cfg, sizeof resume_cfg, "%s/config.txt", c.out);
    if (resume && !config && access(resume_cfg, R_OK) == 0 &&
        lm_config_load(&c, resume_cfg, err, sizeof err))
        goto bad;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume") || !strcmp(a, "--quiet")) continue;
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9)) continue;
        if (strncmp(a, "--", 2)) {
            snprintf(err, sizeof err, "unexpected argument '%s'", a);
            goto bad;
        }
        const char *eq = strchr(a, '=');
        char key[64];
        const char *val;
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - a - 2), a + 2);
            val = eq + 1;
        } else {
            if (i + 1 >= argc) {
                snprintf(err, sizeof err, "%s: missing value", a);
                goto bad;
            }
            snprintf(key, sizeof key, "%s", a + 2);
            val = argv[++i];
        }
        if (lm_config_set(&c, key, val, err, sizeof err)) goto bad;
    }
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", c.out);
    if (resume && access(ckpt, R_OK) != 0) {
        snprintf(err, sizeof err, "--resume: no checkpoint %s", ckpt);
        goto bad;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    lm_train_opts o = {resume ? ckpt : NULL, quiet, &interrupted, 0};
    return lm_train(&c, &o);
bad:
    fprintf(stderr, "nsa train: %s\nhint: nsa train --help lists every key and its default\n", err);
    return 2;
}
