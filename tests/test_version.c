// SPDX-License-Identifier: Apache-2.0
/* test_version.c — the library's version agrees with its header and with the build's
 * project(VERSION) (passed as NSA_TEST_PROJECT_VERSION), and names a commit or "unknown".
 */
#include "harness.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static void matches_header_and_project(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", NSA_VERSION_MAJOR, NSA_VERSION_MINOR, NSA_VERSION_PATCH);
    CHECK(!strcmp(nsa_version_string(), want), "nsa_version_string() %s, header %s",
          nsa_version_string(), want);
    CHECK(!strcmp(want, NSA_TEST_PROJECT_VERSION), "header %s, project(VERSION) %s", want,
          NSA_TEST_PROJECT_VERSION);
    CHECK(nsa_version() == NSA_VERSION, "nsa_version() %d, NSA_VERSION %d", nsa_version(),
          NSA_VERSION);
    CHECK(nsa_version() == NSA_VERSION_MAJOR * 10000 + NSA_VERSION_MINOR * 100 + NSA_VERSION_PATCH);
    const char *c = nsa_version_commit();
    int hex = 0;
    while (isxdigit((unsigned char)c[hex]) && !isupper((unsigned char)c[hex])) hex++;
    CHECK(!strcmp(c, "unknown") || (hex == 12 && (!c[12] || !strcmp(c + 12, "-dirty"))),
          "commit '%s'", c);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"matches_header_and_project", matches_header_and_project},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
