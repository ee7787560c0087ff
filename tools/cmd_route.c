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

static void usage(FILE *f) {
    fprintf(f,
            "usage: nsa route [--device cpu|cuda:N|smNN] [--dtype f32|bf16|f16] [--T n] [--B n]\n"
            "                 [--pass forward|backward|decode] [--Hq n --Hkv n --Dk n --Dv n]\n"
            "                 [--l n --d n --lp n --n n --w n] [--flag NAME=VALUE]...\n"
            "                 [--profiles DIR]\n"
            "Prints the backend and the reason for each branch (cmp, sel, win), the flags and the\n"
            "profile in force. Defaults: the real device (cuda:0 if present, else cpu), bf16,\n"
            "T=4096, B=1, forward, the paper's config (l=32 d=16 lp=64 n=16 w=512, Hq=64 Hkv=4\n"
            "Dk=192 Dv=128). Flags come from the environment (NSA_*) and --flag.\n");
}

static int parse_int(const char *opt, const char *v, long long lo, long long *out) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo) {
        fprintf(stderr, "nsa route: %s: \"%s\" is not an integer >= %lld\n", opt, v, lo);
        return 0;
    }
    *out = x;
    return 1;
}

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
        long long i;
        if (!parse_int("--device", dev + 5, 0, &i)) return 0;
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

int cmd_route(int argc, char **argv) {
    nsa_route_problem p;
    memset(&p, 0, sizeof p);
    p.cfg = nsa_config_default(64, 4, 192, 128);
    p.B = 1;
    p.T = 4096;
    p.dtype = NSA_DTYPE_BF16;
    p.pass = NSA_PASS_FORWARD;
    const char *dev = NULL, *profiles = NULL;
    char msg[512];
    nsa_context *ctx;
    if (nsa_context_create(&ctx, msg, sizeof msg) != NSA_OK) {
        fprintf(stderr, "nsa route: %s\nhint: fix or unset the named variable\n", msg);
        return 2;
    }
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            rc = 0;
            goto done;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "nsa route: %s needs a value\n", o);
            usage(stderr);
            goto done;
        }
        const char *v = argv[++i];
        long long x;
        struct { const char *name; int *ip; int64_t *lp; long long lo; } ints[] = {
            {"--T", NULL, &p.T, 0},       {"--B", NULL, &p.B, 0},
            {"--Hq", &p.cfg.Hq, NULL, 1}, {"--Hkv", &p.cfg.Hkv, NULL, 1},
            {"--Dk", &p.cfg.Dk, NULL, 1}, {"--Dv", &p.cfg.Dv, NULL, 1},
            {"--l", &p.cfg.l, NULL, 1},   {"--d", &p.cfg.d, NULL, 1},
            {"--lp", &p.cfg.lp, NULL, 1}, {"--n", &p.cfg.n, NULL, 1},
            {"--w", &p.cfg.w, NULL, 0},
        };
        int hit = 0;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !hit; k++) {
            if (strcmp(o, ints[k].name)) continue;
            hit = 1;
            if (!parse_int(o, v, ints[k].lo, &x)) goto done;
            if (ints[k].ip) *ints[k].ip = (int)x;
            else *ints[k].lp = x;
        }
        if (hit) continue;
        if (!strcmp(o, "--device")) {
            dev = v;
        } else if (!strcmp(o, "--profiles")) {
            profiles = v;
        } else if (!strcmp(o, "--dtype")) {
            if (!parse_dtype(v, &p.dtype)) {
                fprintf(stderr, "nsa route: --dtype: \"%s\" (f32, bf16 or f16)\n", v);
                goto done;
            }
        } else if (!strcmp(o, "--pass")) {
            if (!strcmp(v, "forward")) p.pass = NSA_PASS_FORWARD;
            else if (!strcmp(v, "backward")) p.pass = NSA_PASS_BACKWARD;
            else if (!strcmp(v, "decode")) p.pass = NSA_PASS_DECODE;
            else {
                fprintf(stderr, "nsa route: --pass: \"%s\" (forward, backward or decode)\n", v);
                goto done;
            }
        } else if (!strcmp(o, "--flag")) {
            char name[64];
            const char *eq = strchr(v, '=');
            if (!eq || (size_t)(eq - v) >= sizeof name) {
                fprintf(stderr, "nsa route: --flag: \"%s\" is not NAME=VALUE\n", v);
                goto done;
            }
            memcpy(name, v, (size_t)(eq - v));
            name[eq - v] = '\0';
            if (nsa_context_set_flag(ctx, name, eq + 1) != NSA_OK) {
                fprintf(stderr, "nsa route: %s\n", nsa_context_message(ctx));
                goto done;
            }
        } else {
            fprintf(stderr, "nsa route: unknown option %s\n", o);
            usage(stderr);
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
