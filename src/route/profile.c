// SPDX-License-Identifier: Apache-2.0
/* profile.c — device profiles: the compiled-in defaults, the `key: value` file parser and the
 * directory loader (profiles/smNN.yaml).
 * Not a YAML parser: one `key: value` per line, `#` comments, optional double quotes; that is
 * the whole format, so every error can name the file and the line.
 * Invariant: the compiled-in defaults equal the shipped files (tests/test_route_profile.c), and a
 * load either replaces the whole set or changes nothing.
 */
#include "route.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NSA_PROFILE_DIR
#define NSA_PROFILE_DIR ""
#endif

/* Placeholder cutoffs, not measured: a sweep on each card replaces them (docs/design.md §3). */
#define UNMEASURED "not yet: placeholder until a sweep on this card"

static const nsa_profile builtin[] = {
    {80, "A100", 0, 512, 128, 1, 0, 1024, 0, UNMEASURED, "compiled-in"},
    {89, "RTX 4090", 0, 8192, 8192, 0, 0, 8192, 0, UNMEASURED, "compiled-in"},
    {90, "H100", 1, 0, 0, 1, 1, 0, 1, /* tests/gpu and nsa parity green, sweep: bench/RESULTS.md */
     "H100 80GB HBM3, 2026-11-26: fast roles faster than the reference role at every S "
     "of 512-65536 (bench/RESULTS.md)", "compiled-in"},
};

void nsa_profiles_builtin(nsa_profile_set *out) {
    memset(out, 0, sizeof *out);
    out->n = (int)(sizeof builtin / sizeof builtin[0]);
    memcpy(out->p, builtin, sizeof builtin);
}

const nsa_profile *nsa_profiles_find(const nsa_profile_set *set, int sm) {
    if (!set) return NULL;
    for (int i = 0; i < set->n; i++)
        if (set->p[i].sm == sm) return &set->p[i];
    return NULL;
}

/* ---- the file format ---- */

typedef enum { V_BOOL, V_COUNT, V_TEXT, V_ARCH } vkind;
typedef struct {
    const char *key;
    vkind k;
    size_t off, size;
} key_row;

#define KEY(k, v, f) {k, v, offsetof(nsa_profile, f), sizeof(((nsa_profile *)0)->f)}
static const key_row keys[] = {
    KEY("arch", V_ARCH, sm),
    KEY("name", V_TEXT, name),
    KEY("fa2.parity_accepted", V_BOOL, fa2_parity_accepted),
    KEY("fa2.min_len_win", V_COUNT, fa2_min_len_win),
    KEY("fa2.min_len_cmp", V_COUNT, fa2_min_len_cmp),
    KEY("sel.triton.allowed", V_BOOL, triton_sel_allowed),
    KEY("sel.triton.parity_accepted", V_BOOL, triton_sel_parity_accepted),
    KEY("sel.triton.min_len", V_COUNT, triton_sel_min_len),
    KEY("decode.fast.parity_accepted", V_BOOL, decode_fast_parity_accepted),
    KEY("cutoffs.measured", V_TEXT, cutoffs),
};
#undef KEY
#define NKEYS ((int)(sizeof keys / sizeof keys[0]))

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Parses value v of key row r into p; returns an error phrase or NULL. */
static const char *parse_value(const key_row *r, char *v, nsa_profile *p) {
    char *base = (char *)p + r->off;
    switch (r->k) {
    case V_BOOL:
        if (!strcmp(v, "true")) { *(int *)base = 1; return NULL; }
        if (!strcmp(v, "false")) { *(int *)base = 0; return NULL; }
        return "expected true or false";
    case V_COUNT: {
        if (!*v) return "expected a non-negative integer";
        for (const char *c = v; *c; c++)
            if (!isdigit((unsigned char)*c)) return "expected a non-negative integer";
        errno = 0;
        long long x = strtoll(v, NULL, 10);
        if (errno) return "integer out of range";
        *(int64_t *)base = (int64_t)x;
        return NULL;
    }
    case V_ARCH: {
        int sm = 0, len = 0;
        if (sscanf(v, "sm%d%n", &sm, &len) != 1 || v[len] != '\0' || sm < 10 || sm > 999)
            return "expected smNN (sm80, sm89, sm90)";
        *(int *)base = sm;
        return NULL;
    }
    case V_TEXT:
        if (strlen(v) >= r->size) return "text too long";
        memcpy(base, v, strlen(v) + 1);
        return NULL;
    }
    return "unknown key kind";
}

nsa_status nsa_profile_parse_file(nsa_context *ctx, const char *path, nsa_profile *out) {
    FILE *f = fopen(path, "r");
    if (!f) return nsa_fail(ctx, NSA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    nsa_profile p;
    memset(&p, 0, sizeof p);
    int seen[NKEYS] = {0};
    char buf[512];
    int line = 0;
    nsa_status st = NSA_OK;
    while (st == NSA_OK && fgets(buf, sizeof buf, f)) {
        line++;
        if (!strchr(buf, '\n') && !feof(f)) {
            st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s:%d: line too long", path, line);
            break;
        }
        int quoted = 0;
        for (char *c = buf; *c; c++) { /* strip a comment outside quotes */
            if (*c == '"') quoted = !quoted;
            if (*c == '#' && !quoted) { *c = '\0'; break; }
        }
        char *s = trim(buf);
        if (!*s) continue;
        char *colon = strchr(s, ':');
        if (!colon) {
            st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s:%d: expected `key: value`, got \"%s\"", path,
                          line, s);
            break;
        }
        *colon = '\0';
        char *k = trim(s), *v = trim(colon + 1);
        size_t vn = strlen(v);
        if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
            v[vn - 1] = '\0';
            v++;
        }
        int i = 0;
        while (i < NKEYS && strcmp(keys[i].key, k) != 0) i++;
        if (i == NKEYS) {
            st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s:%d: unknown key \"%s\"", path, line, k);
            break;
        }
        if (seen[i]) {
            st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s:%d: key \"%s\" given twice", path, line, k);
            break;
        }
        seen[i] = line;
        const char *why = parse_value(&keys[i], v, &p);
        if (why)
            st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s:%d: %s: \"%s\": %s", path, line, k, v, why);
    }
    if (st == NSA_OK && ferror(f)) st = nsa_fail(ctx, NSA_ERR_IO, "%s: read error", path);
    fclose(f);
    for (int i = 0; st == NSA_OK && i < NKEYS; i++)
        if (!seen[i])
            st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s:%d: missing key \"%s\"", path, line + 1,
                          keys[i].key);
    if (st != NSA_OK) return st;
    snprintf(p.source, sizeof p.source, "%s", path);
    *out = p;
    return NSA_OK;
}

void nsa_profile_format(const nsa_profile *p, char *buf, size_t len) {
    snprintf(buf, len,
             "arch: sm%d\nname: \"%s\"\nfa2.parity_accepted: %s\nfa2.min_len_win: %lld\n"
             "fa2.min_len_cmp: %lld\nsel.triton.allowed: %s\nsel.triton.parity_accepted: %s\n"
             "sel.triton.min_len: %lld\ndecode.fast.parity_accepted: %s\n"
             "cutoffs.measured: \"%s\"\n",
             p->sm, p->name, p->fa2_parity_accepted ? "true" : "false",
             (long long)p->fa2_min_len_win, (long long)p->fa2_min_len_cmp,
             p->triton_sel_allowed ? "true" : "false",
             p->triton_sel_parity_accepted ? "true" : "false", (long long)p->triton_sel_min_len,
             p->decode_fast_parity_accepted ? "true" : "false", p->cutoffs);
}

/* "smNN.yaml" -> NN, else 0. */
static int file_arch(const char *name) {
    int sm = 0, len = 0;
    if (sscanf(name, "sm%d%n", &sm, &len) != 1 || strcmp(name + len, ".yaml") != 0) return 0;
    return sm;
}

nsa_status nsa_profiles_load_dir(nsa_context *ctx, const char *dir, const nsa_profile_set *base,
                                 nsa_profile_set *out) {
    DIR *d = opendir(dir);
    if (!d) return nsa_fail(ctx, NSA_ERR_IO, "%s: cannot open profile directory: %s", dir,
                            strerror(errno));
    nsa_profile_set set = *base;
    nsa_status st = NSA_OK;
    struct dirent *e;
    while (st == NSA_OK && (e = readdir(d)) != NULL) {
        int sm = file_arch(e->d_name);
        if (!sm) continue;
        char path[1024];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            st = nsa_fail(ctx, NSA_ERR_IO, "%s/%s: path too long", dir, e->d_name);
            break;
        }
        nsa_profile p;
        st = nsa_profile_parse_file(ctx, path, &p);
        if (st != NSA_OK) break;
        if (p.sm != sm) {
            st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s:1: arch sm%d does not match the file name",
                          path, p.sm);
            break;
        }
        nsa_profile *slot = (nsa_profile *)nsa_profiles_find(&set, sm);
        if (!slot) {
            if (set.n == NSA_PROFILE_MAX) {
                st = nsa_fail(ctx, NSA_ERR_PROFILE, "%s: more than %d profiles", dir,
                              NSA_PROFILE_MAX);
                break;
            }
            slot = &set.p[set.n++];
        }
        *slot = p;
    }
    closedir(d);
    if (st != NSA_OK) return st;
    *out = set;
    return NSA_OK;
}

nsa_status nsa_profiles_init(nsa_context *ctx) {
    nsa_profile_set *set = nsa_malloc(sizeof *set);
    if (!set) return nsa_fail(ctx, NSA_ERR_NOMEM, "profiles: out of memory");
    nsa_profiles_builtin(set);
    ctx->profiles = set;
    const char *env = getenv("NSA_PROFILE_DIR");
    if (env && *env) return nsa_profiles_load_dir(ctx, env, set, set);
    DIR *d = NSA_PROFILE_DIR[0] ? opendir(NSA_PROFILE_DIR) : NULL;
    if (!d) return NSA_OK; /* not installed: the compiled-in defaults */
    closedir(d);
    return nsa_profiles_load_dir(ctx, NSA_PROFILE_DIR, set, set);
}

nsa_status nsa_context_load_profiles(nsa_context *ctx, const char *dir) {
    if (!ctx) return NSA_ERR_INVALID_ARG;
    nsa_clear(ctx);
    if (!dir) return nsa_fail(ctx, NSA_ERR_INVALID_ARG, "dir: NULL pointer");
    nsa_profile_set next;
    NSA_TRY(nsa_profiles_load_dir(ctx, dir, ctx->profiles, &next));
    *ctx->profiles = next;
    return NSA_OK;
}
