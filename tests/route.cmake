# SPDX-License-Identifier: Apache-2.0
# Execution routing tests (issue 4): golden routing table, fallbacks through fake backends,
# strict causality, logger, flags, device profiles. CPU only; fake CUDA caps and backends.
nsa_test(test_route_table SOURCES test_route_table.c
  CASES golden_table not_compiled_gets_reference decision_fields_and_errors decode_step_policy)
nsa_test(test_route_fallback SOURCES test_route_fallback.c
  CASES nonfinite_falls_back error_falls_back unsupported_falls_back strict_catches_future_range
        strict_reference_passes strict_checks_backward_ranges pipeline_matches_reference force_branch_one_hot
        log_rate_limit_per_tag)
nsa_test(test_route_config SOURCES test_route_config.c
  CASES malformed_flags_api malformed_flags_env builtin_equals_shipped
        broken_profile_names_file_and_line)
target_compile_definitions(test_route_config PRIVATE
  NSA_TEST_PROFILE_DIR="${PROJECT_SOURCE_DIR}/profiles")

# The commands: `nsa route` shows the contract's device policies; `nsa parity` passes.
add_test(NAME nsa_route.sm89_policy
  COMMAND nsa_cli route --device sm89 --T 100000 --flag NSA_USE_TRITON_SEL=1)
set_tests_properties(nsa_route.sm89_policy PROPERTIES PASS_REGULAR_EXPRESSION
  "sel +ref +packed +packed \\(NSA_USE_SEL_PACK=1\\); fused selection disabled on sm89 by device policy")
add_test(NAME nsa_route.sm90_policy COMMAND nsa_cli route --device sm90)
set_tests_properties(nsa_route.sm90_policy PROPERTIES PASS_REGULAR_EXPRESSION
  "FA-2 \\(parity accepted on this arch\\).*fused selection \\(parity accepted on this arch\\)")
add_test(NAME nsa_route.bad_flag COMMAND nsa_cli route --flag NSA_USE_FA2=maybe)
set_tests_properties(nsa_route.bad_flag PROPERTIES WILL_FAIL TRUE)
add_test(NAME nsa_parity.all COMMAND nsa_cli parity)
