# SPDX-License-Identifier: Apache-2.0
# What `nsa train` reports: the heartbeat's JSON writer, the model FLOPs behind the MFU, the
# out-of-memory message of model creation, a directory as a config file.
nsa_test(test_lm_report SOURCES test_lm_report.c LIBS nsa_lm
  CASES json_utf8 json_object flops_matmul_matches_layout flops_by_hand oom_message
        config_directory)
