# SPDX-License-Identifier: Apache-2.0
# Issue 14: the index math header (src/core/nsa_index.h) against brute-force definitions.
nsa_test(test_index SOURCES test_index.c
  CASES cmp_blocks overlap_weights window_span forced_and_candidates top_k_tie_rule
        merge_and_union)
# The allocation-failure walk (nsa_testing_fail_alloc_at): NSA_ERR_NOMEM, nothing leaked (the
# ASan pass of scripts/test.sh), the cache unchanged and the next call bitwise as undisturbed.
nsa_test(test_alloc_fail SOURCES test_alloc_fail.c test_decode_util.c LIBS nsa_ref_util
  CASES forward backward cache_and_decode)
