# SPDX-License-Identifier: Apache-2.0
# The byte-level language model (lm/): layers against finite differences, the whole model,
# training (checkpoints, resume, heartbeat, errors) and sampling through the decode.
nsa_test(test_lm_layers SOURCES test_lm_layers.c LIBS nsa_lm
  CASES matmul_grad rmsnorm_grad swiglu_grad gates_sigmoid_grad gates_softmax_grad
        cross_entropy_grad phi_grad rope_relative schedule_and_clip)
nsa_test(test_lm_model SOURCES test_lm_model.c LIBS nsa_lm
  CASES gradcheck_avg_sigmoid gradcheck_learned_softmax loss_decreases greedy_decode_avg
        greedy_decode_learned batch_rows_avg batch_rows_learned)
nsa_test(test_lm_train SOURCES test_lm_train.c lm_test_util.c LIBS nsa_lm
  CASES ckpt_roundtrip resume_bitwise heartbeat_json nonfinite_stops bad_inputs config_file
        loader_order)
