# SPDX-License-Identifier: Apache-2.0
# Hardening (issue 13): hostile sizes at the library's entry points, checkpoints that are
# corrupt, edited or foreign, the trainer's leftovers and its bitwise promise across threads.
nsa_test(test_harden_api SOURCES test_harden_api.c LIBS nsa_ref_util
  CASES tensor_make_null_shape tensor_make_overflow extent_at_int64_max disjoint_unit_dim_huge_stride num_cmp_extremes config_sum_overflow
        config_upper_bounds forward_huge_n)
nsa_test(test_harden_ckpt SOURCES test_harden_ckpt.c lm_test_util.c LIBS nsa_lm
  CASES header_ends_in_list checksum_covers_header negative_step step_not_a_number
        offsets_must_tile format_tag_checked plain_safetensors)
nsa_test(test_harden_train SOURCES test_harden_train.c lm_test_util.c LIBS nsa_lm
  CASES orphan_tmp_removed heartbeat_no_repeat threads_bitwise weights_finetune)
# decode-demo's error paths free what they made: under ASan (build-asan, CI) LeakSanitizer
# reports a leak on stderr (the exit code stays the error's 1)
add_test(NAME harden.decode_demo_error_no_leak
  COMMAND sh -c "out=$($0 decode-demo --Hq 3 --Hkv 2 --prompt 4 --steps 1 --no-table --seed 1 2>&1); test $? -eq 1 && ! printf '%s' \"$out\" | grep -q leaked"
          $<TARGET_FILE:nsa_cli>)
# nsa export writes a bf16 weights file that nsa sample loads (saying it is weights only)
add_test(NAME harden.export_then_sample
  COMMAND sh -c "d=$(mktemp -d) && $0 train --out $d/r --steps 2 --layers 1 --dim 16 --heads 2 --kv_heads 1 --ffn 24 --seq_len 32 --batch 2 --eval_batches 1 --quiet && $0 export --out $d/r && $0 sample --ckpt $d/r/weights.bf16.safetensors --tokens 4 --prompt In 2>$d/err >/dev/null && grep -q 'weights only' $d/err; rc=$?; rm -rf $d; exit $rc"
          $<TARGET_FILE:nsa_cli>)
nsa_test(test_harden_model SOURCES test_harden_model.c LIBS nsa_lm
  CASES huge_model_fields ckpt_config_checked config_set_clears_strings)
