# SPDX-License-Identifier: Apache-2.0
# Issue 15: the Hopper kernels' address and tile-skip arithmetic (src/cuda/sm90/hopper_layout.h)
# on the CPU, in every build (no CUDA needed).
nsa_test(test_hopper_layout SOURCES test_hopper_layout.c
  CASES desc_fields tile_layout desc_k_reads_tile desc_mn_reads_tile keys_exact tile_class_sound)
# The router's opt-in rows (how cuda.fa3 stays off unless NSA_USE_HOPPER=1), with fake backends.
nsa_test(test_route_optin SOURCES test_route_optin.c
  CASES optin_only_when_flagged optin_declines_to_next_row)
