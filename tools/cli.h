// SPDX-License-Identifier: Apache-2.0
/* cli.h — what the `nsa` subcommands share: the command table, the option tables and the one
 * argument parser (tools/cli.c) that reads them.
 * Not the commands themselves: one file each, tools/cmd_*.c.
 * Invariant: a command's usage text, its defaults and its parser come from the same table, so
 * `nsa help CMD` cannot drift from what the parser accepts.
 *
 * Conventions every command gets from the parser:
 *   --key value and --key=value; `-h`/`--help`; the last occurrence of an option wins;
 *   a value that starts with "--" is taken for a missing value (pass such text as --key=--text);
 *   numbers are parsed strictly (the whole text, in range, finite); a FILE must exist and be a
 *   regular file; usage errors print "nsa CMD: ...", a hint line, and exit with code 2.
 *
 * Adding a command:
 *   1. tools/cmd_NAME.c: a struct of its options, a table of cli_opt rows (CLI_OPT() gives the
 *      offset into the struct), `int cmd_NAME_run(void *opts)`, and
 *      `const cli_command cmd_NAME = {"NAME", "one-line summary", "about text", opts_table,
 *       CLI_NOPTS(opts_table), sizeof(struct), cmd_NAME_run, NULL, NULL};`
 *   2. declare it below and add &cmd_NAME to the list in tools/nsa.c.
 *   `nsa help NAME`, `nsa NAME --help`, the defaults and the checks then come for free.
 */
#ifndef NSA_CLI_H
#define NSA_CLI_H

#include "nsa.h"

#include <stddef.h>
#include <stdio.h>

/* What an option's value is, and where the parser stores it (at opts + off). */
typedef enum {
    CLI_SWITCH, /* no value; int set to 1                                              */
    CLI_INT,    /* int in [lo, hi]                                                      */
    CLI_I64,    /* int64_t in [lo, hi]                                                  */
    CLI_U64,    /* uint64_t, any 64-bit value (seeds)                                   */
    CLI_FLOAT,  /* float, finite, in [lo, hi]                                           */
    CLI_STR,    /* const char *, any text                                               */
    CLI_CHOICE, /* const char *, one of `choices` ("cpu|cuda")                          */
    CLI_FILE,   /* const char *, an existing regular file (not a directory)             */
    CLI_CUSTOM, /* `set` parses the text into opts (lists, "clock" seeds, NAME=VALUE)   */
} cli_kind;

typedef struct cli_opt {
    const char *name;    /* "tokens" for --tokens                                          */
    cli_kind kind;
    size_t off;          /* offset of the value in the command's options struct           */
    const char *meta;    /* the value's placeholder in usage: "N", "FILE"; NULL: none       */
    const char *def;     /* the default, as command-line text, parsed like one; NULL: none  */
    double lo, hi;       /* CLI_INT, CLI_I64, CLI_FLOAT: the accepted range                 */
    const char *choices; /* CLI_CHOICE: "a|b|c"                                            */
    const char *help;
    /* CLI_CUSTOM: 0, or -1 with a message (without the option's name) in err */
    int (*set)(void *opts, const char *val, char *err, size_t n);
} cli_opt;

#define CLI_OPT(type, field) offsetof(type, field)
#define CLI_NOPTS(table) ((int)(sizeof(table) / sizeof((table)[0])))

typedef struct cli_command {
    const char *name;
    const char *summary; /* one line for `nsa help`                                       */
    const char *about;   /* what it does, printed under the usage line (may be multi-line) */
    const cli_opt *opts;
    int nopts;
    size_t opts_size;    /* sizeof the options struct the table points into                */
    int (*run)(void *opts); /* the exit code; runs only after a clean parse                 */
    /* Options not in the table (`nsa train`'s config keys). extra: 1 taken, 0 unknown key,
     * -1 bad value (message in err); extra_help prints their rows as cli_help_row does. */
    int (*extra)(void *opts, const char *key, const char *val, char *err, size_t n);
    void (*extra_help)(FILE *f);
} cli_command;

/* Parses argv[1..argc) (argv[0] is the command name) into opts (cmd->opts_size bytes, filled
 * with the table's defaults first). Returns 0: parsed; 1: help was asked for (printed to stdout);
 * 2: a usage error (printed to stderr with a hint). */
int cli_parse(const cli_command *cmd, int argc, char **argv, void *opts);
/* Prints the usage, about text and option rows of cmd. */
void cli_help(const cli_command *cmd, FILE *f);
/* One option row: "  --name META   help (default: def)". */
void cli_help_row(FILE *f, const char *name, const char *meta, const char *def, const char *help);
/* A usage error: "nsa CMD: message" and the hint line; returns 2, the exit code of usage errors. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Strict number parsing shared with custom setters: the whole text, in [lo, hi]. 0 or -1. */
int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int cli_parse_u64(const char *s, uint64_t *out);
/* A finite number in [lo, hi], the whole text (as CLI_FLOAT reads it). 0 or -1. */
int cli_parse_float(const char *s, double lo, double hi, float *out);

/* Packed-document offsets (tools/docs_arg.c) for --docs / --cu-seqlens: text v of document
 * lengths "4096,4096" (offsets = 0) or of offsets "0,4096,8192" (offsets = 1) into cu[0..n_docs]
 * (at most cap - 1 documents, ascending from 0, within int32). 0, or -1 with why in err. */
int cli_parse_docs(const char *v, int offsets, int32_t *cu, int cap, int64_t *n_docs, char *err,
                   size_t n);

extern const cli_command cmd_selfcheck, cmd_route, cmd_parity, cmd_train, cmd_sample,
    cmd_export, cmd_decode_demo, cmd_version;

#endif
