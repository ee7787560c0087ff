# SPDX-License-Identifier: Apache-2.0
# Decode with KV caches (issue 3): decode equals prefill, caches, counters, bad inputs.
nsa_test(test_decode SOURCES test_decode.c test_decode_util.c
  CASES empty_equals_prefill prefill_then_decode causality_stale batch_mixed_lengths
        flags_as_forward edge_configs)
nsa_test(test_decode_ext SOURCES test_decode_ext.c test_decode_util.c
  CASES cmp_external_equals_forward append_equals_prefill)
nsa_test(test_decode_bad SOURCES test_decode_bad.c test_decode_util.c
  CASES counters_formula create_and_size bad_inputs external_needs_kc_new)
