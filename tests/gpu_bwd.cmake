# GPU backward tests (issue 7: CUDA backward). Built only with the CUDA backend (nsa_gpu_util
# comes from tests/gpu.cmake); each case exits 77 (skipped) where no GPU exists.
if(NSA_HAVE_CUDA)
  nsa_test(test_gpu_bwd SOURCES gpu/test_gpu_bwd.c LIBS nsa_gpu_util LABELS gpu
    CASES ref_f32 ref_bf16_f16 shared_kv ranges_recomputed deterministic force_branch bad_ranges
          sanitize_small)
endif()
