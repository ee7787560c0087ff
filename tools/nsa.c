// SPDX-License-Identifier: Apache-2.0
/* nsa.c — the `nsa` command: a table of subcommands, one file each (tools/cmd_*.c).
 * Tools may print and exit; the library never does.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const nsa_command commands[] = {
    {"selfcheck", "run the reference on random inputs and print what was verified", cmd_selfcheck},
    {"route", "show the backend and reason per branch for a shape, dtype and device", cmd_route},
    {"parity", "check every fast path of this build against the reference", cmd_parity},
    {"train", "train a byte-level NSA language model (heartbeat, checkpoints, --resume)", cmd_train},
    {"sample", "generate text from a checkpoint through the KV-cache decode", cmd_sample},
    {"decode-demo", "decode with a KV cache; measured token reads vs budget vs dense (Table 4)",
     cmd_decode_demo},
};

static void usage(FILE *f) {
    fprintf(f, "usage: nsa <command> [options]   (nsa <command> --help for its options)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "nsa: unknown command '%s'\nhint: nsa --help lists the commands\n", argv[1]);
    return 2;
}
