// SPDX-License-Identifier: Apache-2.0
/* cmd_route.c — `nsa route`: the router's decision for a shape, dtype and device (the real one,
 * or a named one such as --device sm89), with each branch's backend and reason, the flags and
 * the profile in force. Runs nothing.
 * Invariant: it prints exactly what nsa_route_explain returns; no policy lives here.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_dtype(const char *v, nsa_dtype *dt) {
    if (!strcmp(v, "f32")) *dt = NSA_DTYPE_F32;
    else if (!strcmp(v, "bf16")) *dt = NSA_DTYPE_BF16;
    else if (!strcmp(v, "f16")) *dt = NSA_DTYPE_F16;
    else return 0;
    return 1;
}

/* The device: "cpu", "cuda:N" (real) or "smNN" (named). */
static int device_caps(nsa_context *ctx, const char *dev, nsa_device_caps *caps) {
    if (!dev) {
        nsa_device d = {NSA_DEVICE_CPU, 0};
        if (nsa_device_caps_query(ctx, (nsa_device){NSA_DEVICE_CUDA, 0}, caps) == NSA_OK)
            return 1;
        return nsa_device_caps_query(ctx, d, caps) == NSA_OK;
    }
    if (!strncmp(dev, "cuda:", 5)) {
        int64_t i;
        if (cli_parse_i64(dev + 5, 0, 1023, &i)) {
            cli_usage_error("route", "--device: '%s', expected cuda:N", dev);
            return 0;
        }
        if (nsa_device_caps_query(ctx, (nsa_device){NSA_DEVICE_CUDA, (int)i}, caps) != NSA_OK) {
            fprintf(stderr, "nsa route: %s\nhint: --device sm90 names a device without one\n",
                    nsa_context_message(ctx));
            return 0;
        }
        return 1;
    }
    if (nsa_device_caps_named(dev, caps) != NSA_OK) {
        fprintf(stderr, "nsa route: --device: unknown device \"%s\"\n"
                        "hint: cpu, cuda:0, or an architecture such as sm80, sm89, sm90\n", dev);
        return 0;
    }
    return 1;
}

/* The bounds keep B·T·Hq·max(Dk, Dv) below 2^63 (2^16 · 2^26 · 2^10 · 2^10), so no size the
 * router computes from them can overflow. */
typedef struct {
    const char *device, *dtype, *pass, *profiles;
    int64_t T, B;
    int Hq, Hkv, Dk, Dv, l, d, lp, n, w;
    int nflags;
    const char *flags[64]; /* NAME=VALUE, in order */
    int64_t n_docs;        /* --docs / --cu-seqlens: packed documents; 0: none */
    int32_t cu[4097];
} route_args;

static int set_docs(route_args *a, const char *val, int offsets, char *err, size_t n) {
    return cli_parse_docs(val, offsets, a->cu, 4097, &a->n_docs, err, n);
}
static int add_docs(void *opts, const char *val, char *err, size_t n) {
    return set_docs(opts, val, 0, err, n);
}
static int add_cu(void *opts, const char *val, char *err, size_t n) {
    return set_docs(opts, val, 1, err, n);
}

static int add_flag(void *opts, const char *val, char *err, size_t n) {
    route_args *a = opts;
    const char *eq = strchr(val, '=');
    if (!eq || eq == val || eq - val >= 64) {
        snprintf(err, n, "'%s' is not NAME=VALUE", val);
        return -1;
    }
    if (a->nflags == 64) {
        snprintf(err, n, "more than 64 flags");
        return -1;
    }
    a->flags[a->nflags++] = val;
    return 0;
}

#define O(f) CLI_OPT(route_args, f)
#define DIM(name, f, def, lo, hi, help) {name, CLI_INT, O(f), "n", def, lo, hi, NULL, help, NULL}
static const cli_opt table[] = {
    {"device", CLI_STR, O(device), "cpu|cuda:N|smNN", NULL, 0, 0, NULL,
     "the device (default: cuda:0 if present, else cpu); smNN names one without it", NULL},
    {"dtype", CLI_CHOICE, O(dtype), NULL, "bf16", 0, 0, "f32|bf16|f16", "tensor dtype", NULL},
    {"pass", CLI_CHOICE, O(pass), NULL, "forward", 0, 0, "forward|backward|decode", "which pass", NULL},
    {"T", CLI_I64, O(T), "n", "4096", 0, 1 << 26, NULL, "tokens", NULL},
    {"B", CLI_I64, O(B), "n", "1", 0, 1 << 16, NULL, "batch", NULL},
    DIM("Hq", Hq, "64", 1, 1024, "query heads"),
    DIM("Hkv", Hkv, "4", 1, 1024, "KV heads"),
    DIM("Dk", Dk, "192", 1, 1024, "query/key head dim"),
    DIM("Dv", Dv, "128", 1, 1024, "value head dim"),
    DIM("l", l, "32", 1, 1 << 20, "compression block"),
    DIM("d", d, "16", 1, 1 << 20, "compression stride"),
    DIM("lp", lp, "64", 1, 1 << 20, "selection block"),
    DIM("n", n, "16", 1, 1 << 20, "selected blocks"),
    DIM("w", w, "512", 0, 1 << 26, "sliding window"),
    {"flag", CLI_CUSTOM, 0, "NAME=VALUE", NULL, 0, 0, NULL,
     "a routing flag, as NSA_* in the environment (repeatable)", add_flag},
    {"profiles", CLI_STR, O(profiles), "DIR", NULL, 0, 0, NULL,
     "device profiles to load instead of the compiled-in ones", NULL},
    {"docs", CLI_CUSTOM, 0, "L,L,...", NULL, 0, 0, NULL,
     "packed documents of these lengths (varlen, docs/varlen.md): B=1, T their total", add_docs},
    {"cu-seqlens", CLI_CUSTOM, 0, "0,O,...,T", NULL, 0, 0, NULL,
     "packed documents by their offsets, as cu_seqlens (instead of --docs)", add_cu},
};
#undef DIM
#undef O

static int route_run(void *opts);
const cli_command cmd_route = {
    "route", "show the backend and reason per branch for a shape, dtype and device",
    "Prints the backend and the reason for each branch (cmp, sel, win), the flags and the\n"
    "profile in force. Runs nothing. The defaults are the paper's config. Flags come from the\n"
    "environment (NSA_*) and --flag.",
    table, CLI_NOPTS(table), sizeof(route_args), route_run, NULL, NULL};

static int route_run(void *opts) {
    const route_args *a = opts;
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = nsa_config_default(a->Hq, a->Hkv, a->Dk, a->Dv);
    p.cfg.l = a->l, p.cfg.d = a->d, p.cfg.lp = a->lp, p.cfg.n = a->n, p.cfg.w = a->w;
    p.B = a->B;
    p.T = a->T;
    if (a->n_docs > 0) { /* packed documents: one row of their total, cutoffs on the longest */
        p.B = 1;
        p.T = a->cu[a->n_docs];
        p.n_docs = a->n_docs;
        for (int64_t k = 0; k < a->n_docs; k++)
            if (a->cu[k + 1] - a->cu[k] > p.max_seqlen) p.max_seqlen = a->cu[k + 1] - a->cu[k];
    }
    parse_dtype(a->dtype, &p.dtype);
    p.pass = !strcmp(a->pass, "forward") ? NSA_PASS_FORWARD
             : !strcmp(a->pass, "backward") ? NSA_PASS_BACKWARD : NSA_PASS_DECODE;
    const char *dev = a->device, *profiles = a->profiles;
    char msg[512];
    nsa_context *ctx;
    if (nsa_context_create(&ctx, msg, sizeof msg) != NSA_OK) {
        fprintf(stderr, "nsa route: %s\nhint: fix or unset the named variable\n", msg);
        return 2;
    }
    int rc = 2;
    for (int i = 0; i < a->nflags; i++) {
        char name[64];
        const char *v = a->flags[i], *eq = strchr(v, '=');
        memcpy(name, v, (size_t)(eq - v));
        name[eq - v] = '\0';
        if (nsa_context_set_flag(ctx, name, eq + 1) != NSA_OK) {
            cli_usage_error("route", "--flag: %s", nsa_context_message(ctx));
            goto done;
        }
    }
    if (profiles && nsa_context_load_profiles(ctx, profiles) != NSA_OK) {
        fprintf(stderr, "nsa route: %s\nhint: fix the file, or drop --profiles to use the "
                        "compiled-in profiles\n", nsa_context_message(ctx));
        goto done;
    }
    nsa_device_caps caps;
    if (!device_caps(ctx, dev, &caps)) goto done;
    nsa_route_decision d;
    if (nsa_route_explain(ctx, &p, &caps, &d) != NSA_OK) {
        fprintf(stderr, "nsa route: %s\n", nsa_context_message(ctx));
        goto done;
    }
    static const char *passes[] = {"forward", "backward", "decode"};
    printf("device:    %s%s\n", caps.name,
           caps.kind == NSA_DEVICE_CUDA && !caps.compiled ? "  [no code for it in this build]"
                                                          : "");
    printf("problem:   %s B=%lld T=%lld %s  l=%d d=%d lp=%d n=%d w=%d  Hq=%d Hkv=%d Dk=%d Dv=%d\n",
           passes[p.pass], (long long)p.B, (long long)p.T, nsa_dtype_name(p.dtype), p.cfg.l,
           p.cfg.d, p.cfg.lp, p.cfg.n, p.cfg.w, p.cfg.Hq, p.cfg.Hkv, p.cfg.Dk, p.cfg.Dv);
    if (p.n_docs > 0)
        printf("documents: %lld packed, the longest %lld tokens (varlen)\n", (long long)p.n_docs,
               (long long)p.max_seqlen);
    nsa_toolchain tc;
    nsa_context_toolchain(ctx, &tc);
    printf("toolchain: ");
    if (tc.cuda_built) {
        printf("CUDA runtime %d.%d, driver %d.%d, archs", tc.runtime_version / 1000,
               tc.runtime_version % 1000 / 10, tc.driver_version / 1000,
               tc.driver_version % 1000 / 10);
        for (int k = 0; k < tc.narchs; k++) printf(" sm%d", tc.archs[k]);
    }
    printf("%s%s\n", tc.cuda_built && tc.note[0] ? "; " : "", tc.note);
    printf("profile:   %s\n", d.profile);
    printf("gates:     %s%s\n", d.force_branch < 0 ? "as given" : "one-hot ",
           d.force_branch < 0 ? "" : nsa_branch_name((nsa_branch)d.force_branch));
    printf("\n%-6s %-10s %-8s %s\n", "branch", "backend", "wanted", "reason");
    for (int b = 0; b < 3; b++)
        printf("%-6s %-10s %-8s %s\n", nsa_branch_name((nsa_branch)b), d.backend[b],
               nsa_role_name(d.wanted[b]), d.reason[b]);
    char flags[2048];
    nsa_context_flags_format(ctx, flags, sizeof flags);
    printf("\nflags:\n");
    for (char *line = strtok(flags, "\n"); line; line = strtok(NULL, "\n")) printf("  %s\n", line);
    rc = 0;
done:
    nsa_context_destroy(ctx);
    return rc;
}
