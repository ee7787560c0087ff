# Execution routing tests (issue 4): golden routing table, fallbacks through fake backends,
# strict causality, logger, flags, device profiles. CPU only; fake CUDA caps and backends.
nsa_test(test_route_table SOURCES test_route_table.c
  CASES golden_table not_compiled_gets_reference decision_fields_and_errors)
nsa_test(test_route_fallback SOURCES test_route_fallback.c
  CASES nonfinite_falls_back error_falls_back unsupported_falls_back strict_catches_future_range
        strict_reference_passes pipeline_matches_reference force_branch_one_hot
        log_rate_limit_per_tag)
nsa_test(test_route_config SOURCES test_route_config.c
  CASES malformed_flags_api malformed_flags_env builtin_equals_shipped
        broken_profile_names_file_and_line)
target_compile_definitions(test_route_config PRIVATE
  NSA_TEST_PROFILE_DIR="${PROJECT_SOURCE_DIR}/profiles")
