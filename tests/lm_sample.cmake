# SPDX-License-Identifier: Apache-2.0
# Sampling of the language model (lm/sample.c): top-p against greedy, no top-p and a nucleus
# worked out by hand; batched generation against each prompt alone.
nsa_test(test_lm_sample SOURCES test_lm_sample.c LIBS nsa_lm
  CASES top_p_tiny_is_greedy top_p_one_is_off nucleus_only)
