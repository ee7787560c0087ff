# SPDX-License-Identifier: Apache-2.0
# The `nsa` command line (tools/cli.h conventions): each case of tests/cli/run.sh is its own ctest
# test `cli.<case>`; `bash tests/cli/run.sh build/nsa VERSION CASE` reruns one.
foreach(c version help bad_values bad_flags directory_as_file key_equals_value same_defaults
          train_guard progress sample_batch)
  add_test(NAME cli.${c} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/run.sh
                                 $<TARGET_FILE:nsa_cli> ${PROJECT_VERSION} ${c})
  set_tests_properties(cli.${c} PROPERTIES LABELS cli TIMEOUT 120)
endforeach()

# nsa_version(), nsa_version_string(), nsa_version_commit() against the header and the build
nsa_test(test_version SOURCES test_version.c CASES matches_header_and_project)
target_compile_definitions(test_version PRIVATE NSA_TEST_PROJECT_VERSION="${PROJECT_VERSION}")
