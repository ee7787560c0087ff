// SPDX-License-Identifier: Apache-2.0
/* test_route_config.c — what configures the router: NSA_* flags (every malformed value is an
 * error naming the flag, from the environment and through the API, and changes nothing) and
 * device profiles (the compiled-in defaults equal the shipped files; a broken file is an error
 * naming file and line, and the compiled-in defaults keep working).
 */
#include "harness.h"
#include "route/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef NSA_TEST_PROFILE_DIR
#error "NSA_TEST_PROFILE_DIR: the source tree's profiles/ directory"
#endif

typedef struct {
    const char *name;
    const char *bad[5];
    const char *good;
} flag_case;

static const flag_case flags[] = {
    {"NSA_FORCE_PARITY", {"2", "", "yes please", "-1", NULL}, "1"},
    {"NSA_USE_WIN_MASK", {"2", "", "onn", NULL}, "0"},
    {"NSA_USE_CMP_MASK", {"10", "", "of", NULL}, "0"},
    {"NSA_USE_SEL_PACK", {"-0", "", "nope", NULL}, "0"},
    {"NSA_USE_FA2", {"2", "", "maybe", NULL}, "1"},
    {"NSA_USE_FA2_WIN", {"11", "", "t", NULL}, "1"},
    {"NSA_USE_FA2_CMP", {"0x1", "", "y", NULL}, "1"},
    {"NSA_FA2_MIN_LEN_WIN", {"-1", "", "12x", "99999999999999999999999", NULL}, "4096"},
    {"NSA_FA2_MIN_LEN_CMP", {"-5", "", "1e3", " 7", NULL}, "256"},
    {"NSA_USE_TRITON_SEL", {"2", "", "on!", NULL}, "1"},
    {"NSA_TRITON_SEL_FORCE", {"3", "", "force", NULL}, "1"},
    {"NSA_FORCE_BRANCH", {"all", "cmp,sel", "1", NULL}, "sel"},
    {"NSA_STRICT_ASSERTS", {"2", "", "strict", NULL}, "1"},
    {"NSA_LOG_LIMIT", {"-1", "", "ten", "1.5", NULL}, "0"},
};
#define NFLAGS ((int)(sizeof flags / sizeof flags[0]))

/* Each malformed value through the API: NSA_ERR_FLAG naming flag and value, flags unchanged;
 * the good value is then accepted and shows as "set" in nsa_context_flags_format. */
static void malformed_flags_api(void) {
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    char before[2048], after[2048];
    for (int i = 0; i < NFLAGS; i++) {
        CHECK_OK(ctx, nsa_context_flags_format(ctx, before, sizeof before));
        for (int k = 0; flags[i].bad[k]; k++) {
            nsa_status st = nsa_context_set_flag(ctx, flags[i].name, flags[i].bad[k]);
            CHECK(st == NSA_ERR_FLAG, "%s=\"%s\" gave %s", flags[i].name, flags[i].bad[k],
                  nsa_status_name(st));
            CHECK(strstr(nsa_context_message(ctx), flags[i].name) != NULL, "%s",
                  nsa_context_message(ctx));
            CHECK(strstr(nsa_context_message(ctx), "malformed") != NULL);
            CHECK_OK(ctx, nsa_context_flags_format(ctx, after, sizeof after));
            CHECK(!strcmp(before, after), "%s=\"%s\" changed the flags", flags[i].name,
                  flags[i].bad[k]);
        }
        CHECK_OK(ctx, nsa_context_set_flag(ctx, flags[i].name, flags[i].good));
        CHECK_OK(ctx, nsa_context_flags_format(ctx, after, sizeof after));
        char want[96];
        snprintf(want, sizeof want, "%s=%s (set)", flags[i].name, flags[i].good);
        CHECK(strstr(after, want) != NULL, "missing \"%s\" in\n%s", want, after);
    }
    CHECK(nsa_context_set_flag(ctx, "NSA_USE_FA3", "1") == NSA_ERR_FLAG);
    CHECK(strstr(nsa_context_message(ctx), "NSA_USE_FA3: unknown flag") != NULL);
    CHECK(nsa_context_set_flag(ctx, NULL, "1") == NSA_ERR_INVALID_ARG);
    nsa_context_destroy(ctx);
}

/* Each malformed value from the environment: creation fails with NSA_ERR_FLAG, the message
 * names the flag; a good value is read (and shows in the decision). */
static void malformed_flags_env(void) {
    for (int i = 0; i < NFLAGS; i++) {
        for (int k = 0; flags[i].bad[k]; k++) {
            setenv(flags[i].name, flags[i].bad[k], 1);
            nsa_context *ctx = (nsa_context *)1;
            char msg[256];
            nsa_status st = nsa_context_create(&ctx, msg, sizeof msg);
            unsetenv(flags[i].name);
            CHECK(st == NSA_ERR_FLAG && ctx == NULL, "%s=\"%s\"", flags[i].name, flags[i].bad[k]);
            CHECK(strstr(msg, flags[i].name) != NULL, "%s", msg);
        }
    }
    setenv("NSA_USE_TRITON_SEL", "1", 1);
    nsa_context *ctx;
    nsa_status st = nsa_context_create(&ctx, NULL, 0);
    unsetenv("NSA_USE_TRITON_SEL");
    CHECK(st == NSA_OK);
    nsa_route_problem p = {nsa_config_default(4, 1, 64, 64), 1, 4096, NSA_DTYPE_BF16,
                           NSA_PASS_FORWARD, 0, 0};
    nsa_device_caps caps;
    nsa_device_caps_named("sm80", &caps);
    nsa_route_decision d;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    CHECK(d.wanted[NSA_BRANCH_SEL] == NSA_ROLE_FUSED_SEL, "%s", d.reason[NSA_BRANCH_SEL]);
    nsa_context_destroy(ctx);
}

static int same_profile(const nsa_profile *a, const nsa_profile *b) {
    return a->sm == b->sm && !strcmp(a->name, b->name) &&
           a->fa2_parity_accepted == b->fa2_parity_accepted &&
           a->fa2_min_len_win == b->fa2_min_len_win && a->fa2_min_len_cmp == b->fa2_min_len_cmp &&
           a->triton_sel_allowed == b->triton_sel_allowed &&
           a->triton_sel_parity_accepted == b->triton_sel_parity_accepted &&
           a->triton_sel_min_len == b->triton_sel_min_len && !strcmp(a->cutoffs, b->cutoffs);
}

/* The shipped profiles/ files equal the compiled-in defaults, one for one, and hold the
 * contract's policies (sm89: fused selection not allowed; nothing accepted yet... as shipped). */
static void builtin_equals_shipped(void) {
    nsa_profile_set builtin, empty, shipped;
    nsa_profiles_builtin(&builtin);
    memset(&empty, 0, sizeof empty);
    nsa_context *ctx;
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    CHECK_OK(ctx, nsa_profiles_load_dir(ctx, NSA_TEST_PROFILE_DIR, &empty, &shipped));
    CHECK(shipped.n == builtin.n, "%d files, %d compiled-in", shipped.n, builtin.n);
    for (int i = 0; i < builtin.n; i++) {
        const nsa_profile *f = nsa_profiles_find(&shipped, builtin.p[i].sm);
        CHECK(f != NULL, "no file for sm%d", builtin.p[i].sm);
        char a[1024], b[1024];
        nsa_profile_format(&builtin.p[i], a, sizeof a);
        nsa_profile_format(f, b, sizeof b);
        CHECK(same_profile(f, &builtin.p[i]), "sm%d differs:\ncompiled-in:\n%s\nfile %s:\n%s",
              f->sm, a, f->source, b);
    }
    const nsa_profile *p89 = nsa_profiles_find(&builtin, 89);
    CHECK(p89 && !p89->triton_sel_allowed && !p89->fa2_parity_accepted);
    CHECK(p89->fa2_min_len_win > nsa_profiles_find(&builtin, 90)->fa2_min_len_win);
    nsa_context_destroy(ctx);
}

/* Writes text to dir/name. */
static int write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(text, f);
    return fclose(f) == 0;
}

static void remove_dir(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    remove(path);
    rmdir(dir);
}

#define GOOD_HEAD "# test\narch: sm90\nname: \"H100 test\"\n"
#define GOOD_TAIL                                                                                  \
    "fa2.min_len_win: 512\nfa2.min_len_cmp: 128\nsel.triton.allowed: true\n"                       \
    "sel.triton.parity_accepted: true\nsel.triton.min_len: 1024\n"                                 \
    "decode.fast.parity_accepted: false\ncutoffs.measured: \"test\"\n"

/* Broken files: each error names file:line; the context keeps the compiled-in profiles, and
 * creation with a broken $NSA_PROFILE_DIR fails naming it, while an unset one works. */
static void broken_profile_names_file_and_line(void) {
    static const struct {
        const char *text, *want;
    } broken[] = {
        {GOOD_HEAD "fa2.parity_accepted: yes\n" GOOD_TAIL, "sm90.yaml:4: fa2.parity_accepted"},
        {GOOD_HEAD "fa2.parity_accepted: true\nfa2.min_len_win 512\n", "sm90.yaml:5: expected"},
        {GOOD_HEAD "fa2.parity_accepted: true\nfa2.min_len_wim: 5\n", "sm90.yaml:5: unknown key"},
        {GOOD_HEAD "fa2.parity_accepted: true\n" GOOD_TAIL "arch: sm90\n", "sm90.yaml:12: key"},
        {GOOD_HEAD "fa2.parity_accepted: true\nfa2.min_len_win: -3\n", "sm90.yaml:5: fa2.min_len"},
        {GOOD_HEAD "fa2.parity_accepted: true\n", "missing key \"fa2.min_len_win\""},
        {"arch: sm80\nname: x\nfa2.parity_accepted: true\n" GOOD_TAIL, "does not match the file"},
    };
    char tmpl[] = "/tmp/nsa_route_profXXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    nsa_route_problem p = {nsa_config_default(4, 1, 64, 64), 1, 4096, NSA_DTYPE_BF16,
                           NSA_PASS_FORWARD, 0, 0};
    nsa_device_caps caps;
    nsa_device_caps_named("sm90", &caps);
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        CHECK(write_file(dir, "sm90.yaml", broken[i].text));
        nsa_context *ctx;
        CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
        nsa_status st = nsa_context_load_profiles(ctx, dir);
        CHECK(st == NSA_ERR_PROFILE, "case %zu: %s", i, nsa_status_name(st));
        CHECK(strstr(nsa_context_message(ctx), dir) != NULL, "%s", nsa_context_message(ctx));
        CHECK(strstr(nsa_context_message(ctx), broken[i].want) != NULL, "case %zu: \"%s\" lacks "
              "\"%s\"", i, nsa_context_message(ctx), broken[i].want);
        nsa_route_decision d;
        CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
        CHECK(strstr(d.profile, "sm90 H100 (compiled-in") != NULL, "%s", d.profile);
        nsa_context_destroy(ctx);
    }
    /* through the environment at creation */
    setenv("NSA_PROFILE_DIR", dir, 1);
    nsa_context *ctx;
    char msg[512];
    nsa_status st = nsa_context_create(&ctx, msg, sizeof msg);
    unsetenv("NSA_PROFILE_DIR");
    CHECK(st == NSA_ERR_PROFILE && strstr(msg, "sm90.yaml:") != NULL, "%s", msg);
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    nsa_context_destroy(ctx);
    /* a good file loads and changes the policy: parity accepted → fast paths on by default */
    CHECK(write_file(dir, "sm90.yaml", GOOD_HEAD "fa2.parity_accepted: true\n" GOOD_TAIL));
    setenv("NSA_PROFILE_DIR", dir, 1);
    st = nsa_context_create(&ctx, msg, sizeof msg);
    unsetenv("NSA_PROFILE_DIR");
    CHECK(st == NSA_OK, "%s", msg);
    nsa_route_decision d;
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    CHECK(strstr(d.profile, "H100 test") && strstr(d.profile, dir), "%s", d.profile);
    for (int b = 0; b < 3; b++)
        CHECK(d.wanted[b] == (b == NSA_BRANCH_SEL ? NSA_ROLE_FUSED_SEL : NSA_ROLE_FA2), "%s",
              d.reason[b]);
    CHECK(strstr(d.reason[NSA_BRANCH_CMP], "parity accepted on this arch") != NULL);
    p.T = 500; /* below every cutoff */
    CHECK_OK(ctx, nsa_route_explain(ctx, &p, &caps, &d));
    CHECK(d.wanted[0] == NSA_ROLE_MASKED && d.wanted[1] == NSA_ROLE_PACKED &&
          d.wanted[2] == NSA_ROLE_MASKED, "%s | %s | %s", d.reason[0], d.reason[1], d.reason[2]);
    nsa_context_destroy(ctx);
    CHECK(nsa_context_create(&ctx, NULL, 0) == NSA_OK);
    CHECK(nsa_context_load_profiles(ctx, "/nonexistent/nsa/profiles") == NSA_ERR_IO);
    CHECK(strstr(nsa_context_message(ctx), "/nonexistent/nsa/profiles") != NULL);
    nsa_context_destroy(ctx);
    remove_dir(dir, "sm90.yaml");
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"malformed_flags_api", malformed_flags_api},
        {"malformed_flags_env", malformed_flags_env},
        {"builtin_equals_shipped", builtin_equals_shipped},
        {"broken_profile_names_file_and_line", broken_profile_names_file_and_line},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
