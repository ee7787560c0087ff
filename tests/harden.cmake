# SPDX-License-Identifier: Apache-2.0
# Hardening (issue 13): hostile sizes at the library's entry points, checkpoints that are
# corrupt, edited or foreign, the trainer's leftovers and its bitwise promise across threads.
nsa_test(test_harden_api SOURCES test_harden_api.c LIBS nsa_ref_util
  CASES tensor_make_null_shape tensor_make_overflow extent_at_int64_max num_cmp_extremes config_sum_overflow
        config_upper_bounds forward_huge_n)
nsa_test(test_harden_ckpt SOURCES test_harden_ckpt.c LIBS nsa_lm
  CASES header_ends_in_list checksum_covers_header negative_step step_not_a_number
        offsets_must_tile format_tag_checked plain_safetensors)
nsa_test(test_harden_train SOURCES test_harden_train.c LIBS nsa_lm
  CASES orphan_tmp_removed heartbeat_no_repeat threads_bitwise weights_finetune)
