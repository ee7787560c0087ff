# SPDX-License-Identifier: Apache-2.0
# GPU tests of the tensor-core selection backward (bwd_sel_tc.cu, role fused_sel). Built only
# with the CUDA backend (nsa_gpu_util comes from tests/gpu.cmake); each case exits 77 (skipped)
# without a GPU. seltc_time prints timings (shape A 8k/64k, the training configs): slow.
if(NSA_HAVE_CUDA)
  nsa_test(test_gpu_bwd_sel_tc SOURCES gpu/test_gpu_bwd_sel_tc.c LIBS nsa_gpu_util LABELS gpu
    CASES seltc_g16 seltc_g4_g1 seltc_g6_lp96 seltc_splits_twice seltc_shared_recomputed
          seltc_sanitize_small)
  add_test(NAME test_gpu_bwd_sel_tc.seltc_time COMMAND test_gpu_bwd_sel_tc seltc_time)
  set_tests_properties(test_gpu_bwd_sel_tc.seltc_time PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900
                       LABELS "gpu;slow")
endif()
