# SPDX-License-Identifier: Apache-2.0
# GPU backward and decode tests (issue 7). Built only with the CUDA backend (nsa_gpu_util comes
# from tests/gpu.cmake); each case exits 77 (skipped) where no GPU exists.
if(NSA_HAVE_CUDA)
  nsa_test(test_gpu_bwd SOURCES gpu/test_gpu_bwd.c LIBS nsa_gpu_util LABELS gpu
    CASES ref_f32 ref_bf16_f16 shared_kv ranges_recomputed deterministic force_branch bad_ranges
          sanitize_small)
  nsa_test(test_gpu_decode SOURCES gpu/test_gpu_decode.c LIBS nsa_gpu_util LABELS gpu
    CASES decode_f32 decode_bf16_f16 decode_masked decode_external decode_prefill decode_fast
          decode_fast_splits)
endif()
