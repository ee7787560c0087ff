// SPDX-License-Identifier: Apache-2.0
/* version.c — nsa_version, nsa_version_string, nsa_version_commit.
 * Not where the version is set: NSA_VERSION_TEXT and NSA_GIT_COMMIT come from CMake
 * (cmake/version.cmake, from project(VERSION) and git at configure time), so the library, the
 * CMake package, the shared library's soname and `nsa --version` cannot disagree.
 */
#include "nsa.h"

#if !defined(NSA_VERSION_TEXT) || !defined(NSA_GIT_COMMIT) || !defined(NSA_VERSION_NUMBER)
#error "version.c is compiled with the NSA_VERSION_DEFINES of cmake/version.cmake"
#endif

int nsa_version(void) {
    return NSA_VERSION_NUMBER;
}

const char *nsa_version_string(void) {
    return NSA_VERSION_TEXT;
}

const char *nsa_version_commit(void) {
    return NSA_GIT_COMMIT;
}
