// SPDX-License-Identifier: Apache-2.0
/* cmd_train.c — `nsa train`: defaults, then a config file (--config FILE, or with --resume the
 * run's own config.txt), then the config keys given as flags (--dim 256), then lm_train.
 * A run directory that already holds a run is refused unless --resume or --force.
 * SIGINT asks the loop to save a checkpoint and stop; a second SIGINT kills as usual.
 * Invariant: every argument is checked before anything is written; a refusal writes nothing.
 */
#include "cli.h"
#include "lm.h"

#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL);
}

#define MAX_KEYS 256
typedef struct {
    const char *config;
    int resume, force, quiet;
    int nkeys;
    char key[MAX_KEYS][64];      /* config keys given as flags, in order */
    const char *val[MAX_KEYS];   /* their values (in argv) */
} train_args;

/* A config key as a flag: checked now (on a scratch config), applied in order after the config
 * files, so flags win over files wherever they stand on the command line. */
static int train_key(void *opts, const char *key, const char *val, char *err, size_t n) {
    train_args *a = opts;
    if (!lm_config_is_key(key)) return 0;
    lm_train_config scratch;
    lm_train_config_default(&scratch);
    char e[512];
    if (lm_config_set(&scratch, key, val, e, sizeof e)) {
        const char *colon = strstr(e, ": "); /* lm names the key first; the parser does too */
        snprintf(err, n, "%s", colon ? colon + 2 : e);
        return -1;
    }
    if (a->nkeys == MAX_KEYS) {
        snprintf(err, n, "more than %d config flags", MAX_KEYS);
        return -1;
    }
    snprintf(a->key[a->nkeys], sizeof a->key[0], "%s", key);
    a->val[a->nkeys++] = val;
    return 1;
}

static void train_keys_help(FILE *f) {
    fprintf(f, "\nconfig keys (flags, or KEY = VALUE lines of a --config file; '-' and '_' alike):\n");
    const char *name, *help;
    char def[600];
    for (int i = 0; lm_config_key(i, &name, &help, def, sizeof def); i++)
        cli_help_row(f, name, NULL, def, help);
}

#define O(f) CLI_OPT(train_args, f)
static const cli_opt table[] = {
    {"config", CLI_FILE, O(config), "FILE", NULL, 0, 0, NULL,
     "KEY = VALUE lines (# comments) read before the flags", NULL},
    {"resume", CLI_SWITCH, O(resume), NULL, NULL, 0, 0, NULL,
     "continue OUT/model.safetensors; OUT/config.txt is the config file unless --config", NULL},
    {"force", CLI_SWITCH, O(force), NULL, NULL, 0, 0, NULL,
     "start a new run in an OUT that holds one: removes OUT/model.safetensors, starts a new "
     "OUT/heartbeat.jsonl and OUT/config.txt; other files in OUT are kept", NULL},
    {"quiet", CLI_SWITCH, O(quiet), NULL, NULL, 0, 0, NULL, "no progress line", NULL},
};
#undef O

static int train_run(void *opts);
const cli_command cmd_train = {
    "train", "train a byte-level NSA language model (heartbeat, checkpoints, --resume)",
    "Trains a byte-level NSA language model (default: the built-in King James Bible corpus)\n"
    "and writes OUT/model.safetensors, OUT/heartbeat.jsonl and OUT/config.txt. An OUT that\n"
    "already holds a run (a checkpoint or a heartbeat) is refused unless --resume or --force.",
    table, CLI_NOPTS(table), sizeof(train_args), train_run, train_key, train_keys_help};

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int train_run(void *opts) {
    const train_args *a = opts;
    lm_train_config c;
    lm_train_config_default(&c);
    char err[1024], resume_cfg[600], ckpt[600], hb[600];
    if (a->resume && a->force)
        return cli_usage_error("train", "--resume and --force: continue the run, or replace it?");
    if (a->config && lm_config_load(&c, a->config, err, sizeof err))
        return cli_usage_error("train", "--config: %s", err);
    /* --out first: the run's own config.txt lives there */
    for (int i = 0; i < a->nkeys; i++)
        if (!strcmp(a->key[i], "out")) lm_config_set(&c, "out", a->val[i], err, sizeof err);
    snprintf(resume_cfg, sizeof resume_cfg, "%s/config.txt", c.out);
    if (a->resume && !a->config && access(resume_cfg, R_OK) == 0 &&
        lm_config_load(&c, resume_cfg, err, sizeof err))
        return cli_usage_error("train", "--resume: %s", err);
    for (int i = 0; i < a->nkeys; i++)
        lm_config_set(&c, a->key[i], a->val[i], err, sizeof err); /* checked at parse */
    if (lm_config_check(&c, err, sizeof err)) return cli_usage_error("train", "%s", err);
    struct stat st;
    if (c.data[0] && (stat(c.data, &st) || !S_ISREG(st.st_mode)))
        return cli_usage_error("train", "--data: '%s' is %s, expected a file", c.data,
                               access(c.data, F_OK) ? "missing" : "not a regular file");
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", c.out);
    snprintf(hb, sizeof hb, "%s/heartbeat.jsonl", c.out);
    if (a->resume && access(ckpt, R_OK) != 0)
        return cli_usage_error("train", "--resume: no checkpoint %s", ckpt);
    if (!a->resume && !a->force && (exists(ckpt) || exists(hb)))
        return cli_usage_error("train", "out: %s already holds a run (%s); continue it with "
                               "--resume, or replace it with --force", c.out,
                               exists(ckpt) ? "model.safetensors" : "heartbeat.jsonl");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    lm_train_opts o = {a->resume ? ckpt : NULL, a->quiet, &interrupted, 0};
    return lm_train(&c, &o);
}
