// SPDX-License-Identifier: Apache-2.0
/* nsa.c — the `nsa` command: a list of subcommands (one file each, tools/cmd_*.c), `nsa help
 * [command]`, `nsa --version`; every command's arguments go through cli_parse (tools/cli.c).
 * Tools may print and exit; the library never does.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const cli_command *const commands[] = {
    &cmd_selfcheck, &cmd_route, &cmd_parity, &cmd_train, &cmd_sample, &cmd_export,
    &cmd_decode_demo, &cmd_version,
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: nsa <command> [options]   (nsa help <command> for its options)\n\n");
    for (int i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "  %-12s %s\n", "help", "this list, or a command's options: nsa help <command>");
}

static const cli_command *lookup(const char *name) {
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(name, commands[i]->name)) return commands[i];
    return NULL;
}

static int unknown(const char *name) {
    fprintf(stderr, "nsa: unknown command '%s'\nhint: nsa help lists the commands\n", name);
    return 2;
}

/* version: no options; also `nsa --version`. */
static int version_run(void *opts) {
    (void)opts;
    printf("nsa %s (commit %s)\n", nsa_version_string(), nsa_version_commit());
    return 0;
}
const cli_command cmd_version = {"version", "print the version and the git commit of this build",
                                 "Prints the library's version (nsa_version_string) and the git "
                                 "commit it was configured from\n(\"unknown\" outside a git "
                                 "checkout). Also: nsa --version.",
                                 NULL, 0, 0, version_run, NULL, NULL};

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        if (argc < 3 || !strcmp(name, "--help") || !strcmp(name, "-h")) {
            usage(stdout);
            return 0;
        }
        const cli_command *c = lookup(argv[2]);
        if (!c) return unknown(argv[2]);
        if (argc > 3) {
            fprintf(stderr, "nsa help: unexpected argument '%s'\nhint: nsa help <command>\n", argv[3]);
            return 2;
        }
        cli_help(c, stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) name = "version";
    const cli_command *c = lookup(name);
    if (!c) return unknown(name);
    void *opts = calloc(1, c->opts_size ? c->opts_size : 1);
    if (!opts) {
        fprintf(stderr, "nsa %s: out of memory\n", c->name);
        return 1;
    }
    int rc = cli_parse(c, argc - 1, argv + 1, opts);
    if (rc == 0) rc = c->run(opts);
    else if (rc == 1) rc = 0; /* help */
    free(opts);
    return rc;
}
