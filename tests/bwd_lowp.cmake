# SPDX-License-Identifier: Apache-2.0
# The low-precision yardstick of the tensor-core backward tests, checked on the CPU against the
# double reference (runs in every build, CI included).
nsa_test(test_bwd_lowp SOURCES test_bwd_lowp.c gpu/gpu_bwd_lowp.c
  CASES lowp_f32_is_the_reference lowp_bf16_is_rounding)
