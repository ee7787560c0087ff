// SPDX-License-Identifier: Apache-2.0
/* cli.c — the one argument parser of the `nsa` commands: reads a command's option table
 * (tools/cli.h) to fill its options struct, check every value and print its help.
 * Not a getopt clone: long options only (plus -h), no bundling, no positional arguments.
 * Invariant: every value reaches a command checked — numbers whole, in range and finite, files
 * existing regular files — or the command does not run (exit code 2).
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nsa %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nhint: nsa help %s lists its options\n", cmd);
    return 2;
}

/* strto* skip leading space and take a sign; we take neither space nor (for u64) a sign. */
static int plain_start(const char *s, int sign_ok) {
    return *s && !isspace((unsigned char)*s) && (sign_ok || (*s != '-' && *s != '+'));
}

int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!plain_start(s, 1)) return -1;
    char *end;
    errno = 0;
    const long long x = strtoll(s, &end, 10);
    if (errno || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    if (!plain_start(s, 0)) return -1;
    char *end;
    errno = 0;
    const unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = x;
    return 0;
}

int cli_parse_float(const char *s, double lo, double hi, float *out) {
    if (!plain_start(s, 1)) return -1;
    char *end;
    errno = 0;
    const double x = strtod(s, &end);
    if (errno || *end || !isfinite(x) || x < lo || x > hi) return -1;
    *out = (float)x;
    return 0;
}

static int in_choices(const char *choices, const char *v) {
    const size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        const size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* Stores val into opts per o; -1 with err (the option's name not included) when it does not fit. */
static int set_value(const cli_opt *o, void *opts, const char *val, char *err, size_t n) {
    char *p = (char *)opts + o->off;
    int64_t i;
    switch (o->kind) {
    case CLI_SWITCH: *(int *)p = 1; return 0;
    case CLI_INT:
    case CLI_I64:
        if (cli_parse_i64(val, (int64_t)o->lo, (int64_t)o->hi, &i)) {
            snprintf(err, n, "'%s' is not an integer in %.0f..%.0f", val, o->lo, o->hi);
            return -1;
        }
        if (o->kind == CLI_INT) *(int *)p = (int)i;
        else *(int64_t *)p = i;
        return 0;
    case CLI_U64:
        if (cli_parse_u64(val, (uint64_t *)p)) {
            snprintf(err, n, "'%s' is not an integer in 0..18446744073709551615", val);
            return -1;
        }
        return 0;
    case CLI_FLOAT:
        if (cli_parse_float(val, o->lo, o->hi, (float *)p)) {
            snprintf(err, n, "'%s' is not a finite number in %g..%g", val, o->lo, o->hi);
            return -1;
        }
        return 0;
    case CLI_CHOICE:
        if (!in_choices(o->choices, val)) {
            snprintf(err, n, "'%s', expected one of %s", val, o->choices);
            return -1;
        }
        *(const char **)p = val;
        return 0;
    case CLI_FILE: {
        struct stat st;
        if (stat(val, &st)) {
            snprintf(err, n, "'%s': %s", val, strerror(errno));
            return -1;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, n, "'%s' is %s, expected a file", val,
                     S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
            return -1;
        }
        *(const char **)p = val;
        return 0;
    }
    case CLI_STR: *(const char **)p = val; return 0;
    case CLI_CUSTOM: return o->set(opts, val, err, n);
    }
    return -1;
}

static const cli_opt *find(const cli_command *cmd, const char *name, size_t len) {
    for (int i = 0; i < cmd->nopts; i++)
        if (strlen(cmd->opts[i].name) == len && !strncmp(cmd->opts[i].name, name, len))
            return &cmd->opts[i];
    return NULL;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, void *opts) {
    char err[600];
    for (int i = 0; i < cmd->nopts; i++) {
        const cli_opt *o = &cmd->opts[i];
        if (o->def && set_value(o, opts, o->def, err, sizeof err)) /* a wrong table row */
            return cli_usage_error(cmd->name, "the default of --%s: %s", o->name, err);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_help(cmd, stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) || !a[2])
            return cli_usage_error(cmd->name, "unexpected argument '%s' (options start with --)",
                                   a);
        const char *name = a + 2, *eq = strchr(name, '=');
        const size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = find(cmd, name, len);
        const int takes_value = !o || o->kind != CLI_SWITCH;
        const char *val = NULL;
        if (eq) {
            val = eq + 1;
            if (!takes_value)
                return cli_usage_error(cmd->name, "--%.*s takes no value", (int)len, name);
        } else if (takes_value) {
            if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))
                return cli_usage_error(cmd->name, "--%s: missing value%s%s", name,
                                       i + 1 < argc ? " before " : "",
                                       i + 1 < argc ? argv[i + 1] : "");
            val = argv[++i];
        }
        if (o) {
            if (set_value(o, opts, val, err, sizeof err))
                return cli_usage_error(cmd->name, "--%s: %s", o->name, err);
            continue;
        }
        char key[64];
        int r = 0;
        if (len < sizeof key) {
            memcpy(key, name, len);
            key[len] = 0;
            r = cmd->extra ? cmd->extra(opts, key, val, err, sizeof err) : 0;
        }
        if (r < 0) return cli_usage_error(cmd->name, "--%s: %s", key, err);
        if (r == 0) return cli_usage_error(cmd->name, "unknown option --%.*s", (int)len, name);
    }
    return 0;
}

void cli_help_row(FILE *f, const char *name, const char *meta, const char *def, const char *help) {
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", name, meta ? " " : "", meta ? meta : "");
    fprintf(f, "  %-22s %s", left, help);
    if (def) fprintf(f, " (default: %s)", def[0] ? def : "\"\"");
    fputc('\n', f);
}

void cli_help(const cli_command *cmd, FILE *f) {
    fprintf(f, "usage: nsa %s%s\n\n%s\n", cmd->name,
            cmd->nopts || cmd->extra ? " [options]" : "", cmd->about);
    fprintf(f, "\noptions (--key value or --key=value):\n");
    for (int i = 0; i < cmd->nopts; i++) {
        const cli_opt *o = &cmd->opts[i];
        cli_help_row(f, o->name, o->kind == CLI_CHOICE && !o->meta ? o->choices : o->meta, o->def,
                     o->help);
    }
    if (cmd->extra_help) cmd->extra_help(f);
    cli_help_row(f, "help", NULL, NULL, "this text (also -h)");
}
