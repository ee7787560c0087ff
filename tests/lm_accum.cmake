# SPDX-License-Identifier: Apache-2.0
# Gradient accumulation in the trainer (grad_accum): micro-batches against one global batch,
# bitwise repeatable and resumable.
nsa_test(test_lm_accum SOURCES test_lm_accum.c LIBS nsa_lm
  CASES equals_global_rows equals_global_docs bitwise_resume)
