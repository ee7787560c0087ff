# SPDX-License-Identifier: Apache-2.0
# Reference forward/backward tests (issue 2: libnsa foundation). Helpers shared by these tests
# live in ref_util.c; each case is one invariant (see the case's comment in its file).
add_library(nsa_ref_util STATIC ref_util.c)
target_compile_options(nsa_ref_util PRIVATE ${NSA_WARN})
target_link_libraries(nsa_ref_util PUBLIC nsa_harness)

nsa_test(test_ref_forward SOURCES test_ref_forward.c LIBS nsa_ref_util
  CASES full_coverage_dense branch_cmp_dense branch_cmp_compressed_dense branch_sel_dense
        branch_win_banded causality_bitwise causality_bitwise_compressed causality_bitwise_shared_kv)
nsa_test(test_ref_backward SOURCES test_ref_backward.c LIBS nsa_ref_util
  CASES fd_gqa1_raw fd_gqa4_compressed fd_shared_kv fd_identity_no_window determinism_threads
        sel_ranges_reused alias_identical_sum alias_overlap_rejected)
nsa_test(test_ref_select SOURCES test_ref_select.c LIBS nsa_ref_util
  CASES sel_bruteforce group_consistency tie_rule eq9_weights selection_same_across_dtypes)
nsa_test(test_ref_edges SOURCES test_ref_edges.c LIBS nsa_ref_util
  CASES no_nan_edges guard_bytes_all_outputs strided_inputs determinism_forward_threads
        dtypes_round_f32)
nsa_test(test_ref_args SOURCES test_ref_args.c LIBS nsa_ref_util
  CASES bad_config null_pointers bad_tensors_forward bad_tensors_backward overflow_sizes)
nsa_test(test_ref_convert SOURCES test_ref_convert.c
  CASES f16_exhaustive bf16_exhaustive random_f32_rounding ties_to_even)
