# SPDX-License-Identifier: Apache-2.0
# GPU tests of the tiled backward roles (masked cmp/win, packed sel). Built only with the CUDA
# backend (nsa_gpu_util comes from tests/gpu.cmake); each case exits 77 (skipped) without a GPU.
if(NSA_HAVE_CUDA)
  nsa_test(test_gpu_bwd_fast SOURCES gpu/test_gpu_bwd_fast.c LIBS nsa_gpu_util LABELS gpu
    CASES fast_f32 fast_bf16_f16 fast_shared_recomputed fast_deterministic fast_force_branch
          fast_sanitize_small)
endif()
