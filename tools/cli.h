// SPDX-License-Identifier: Apache-2.0
/* cli.h — what the `nsa` subcommands share: the command table entry and small helpers. */
#ifndef NSA_CLI_H
#define NSA_CLI_H

#include "nsa.h"

typedef struct {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
} nsa_command;

int cmd_selfcheck(int argc, char **argv);
int cmd_route(int argc, char **argv);
int cmd_parity(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_decode_demo(int argc, char **argv);

#endif
