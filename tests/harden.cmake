# SPDX-License-Identifier: Apache-2.0
# Hardening (issue 13): hostile sizes at the library's entry points, checkpoints that are
# corrupt, edited or foreign, the trainer's leftovers and its bitwise promise across threads.
nsa_test(test_harden_api SOURCES test_harden_api.c LIBS nsa_ref_util
  CASES tensor_make_null_shape tensor_make_overflow extent_at_int64_max num_cmp_extremes config_sum_overflow
        config_upper_bounds forward_huge_n)
