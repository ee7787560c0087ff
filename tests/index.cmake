# SPDX-License-Identifier: Apache-2.0
# Issue 14: the index math header (src/core/nsa_index.h) against brute-force definitions.
nsa_test(test_index SOURCES test_index.c
  CASES cmp_blocks overlap_weights window_span forced_and_candidates top_k_tie_rule
        merge_and_union)
