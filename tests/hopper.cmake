# SPDX-License-Identifier: Apache-2.0
# Issue 15: the Hopper kernels' address and tile-skip arithmetic (src/cuda/sm90/hopper_layout.h)
# on the CPU, in every build (no CUDA needed).
nsa_test(test_hopper_layout SOURCES test_hopper_layout.c
  CASES desc_fields tile_layout desc_k_reads_tile desc_mn_reads_tile keys_exact tile_class_sound)
