# SPDX-License-Identifier: Apache-2.0
# GPU tests of the tensor-core backward roles (FA-2 cmp/win, fused selection). Built only with
# the CUDA backend (nsa_gpu_util comes from tests/gpu.cmake); each case exits 77 without a GPU.
if(NSA_HAVE_CUDA)
  nsa_test(test_gpu_bwd_tc SOURCES gpu/test_gpu_bwd_tc.c LIBS nsa_gpu_util LABELS gpu
    CASES tc_route tc_bf16 tc_f16 tc_saved_forward tc_dq_two_stages tc_shared_recomputed
          tc_deterministic tc_force_branch tc_sanitize_small)
endif()
