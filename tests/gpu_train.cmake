# SPDX-License-Identifier: Apache-2.0
# GPU training tests (issue 8): the model on the CUDA backend against the CPU trainer. Built only
# with the CUDA backend; each case exits 77 (skipped) where no GPU exists.
if(NSA_HAVE_CUDA)
  nsa_test(test_gpu_train SOURCES gpu/test_gpu_train.c LIBS nsa_lm LABELS gpu
    CASES f32_step_matches_cpu bf16_step_matches_cpu f32_steps_match_cpu bf16_deterministic
          ckpt_interchange train_cuda greedy_sample_gpu
          resume_bitwise_gpu bf16_mirror_follows_updates)
endif()
