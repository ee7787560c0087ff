# SPDX-License-Identifier: Apache-2.0
# GPU parity tests (issue 6: CUDA forward). Built only with the CUDA backend; each case exits 77
# (skipped) where no GPU exists. long_sampled is slow (T = 8192 by default, NSA_GPU_LONG_T).
if(NSA_HAVE_CUDA)
  add_library(nsa_gpu_util STATIC gpu/gpu_util.c gpu/gpu_bwd_util.c gpu/gpu_bwd_lowp.c)
  target_compile_options(nsa_gpu_util PRIVATE ${NSA_WARN})
  target_link_libraries(nsa_gpu_util PUBLIC nsa_harness)
  nsa_test(test_gpu_parity SOURCES gpu/test_gpu_parity.c LIBS nsa_gpu_util LABELS gpu
    CASES ref_f32 ref_bf16_f16 fa2_cmp_win fused_sel all_fast_paper ties_exact public_forward
          sanitize_small tiled_roles fast_any_g fast_sel_pad route_any_g sanitize_g6)
  add_test(NAME test_gpu_parity.long_sampled COMMAND test_gpu_parity long_sampled)
  set_tests_properties(test_gpu_parity.long_sampled PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900
                       LABELS "gpu;slow")
endif()
