# SPDX-License-Identifier: Apache-2.0
# Caller-supplied selected blocks (nsa_fwd_args.block_indices) and the blocks a decode step
# reports (nsa_decode_args.sel_blocks): issue 17.
nsa_test(test_given_blocks SOURCES test_given_blocks.c LIBS nsa_ref_util
  CASES given_equals_selected given_backward_equals_selected given_validation
        given_empty_rows decode_reports_blocks)
