#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# verify_dev.sh — one device call that verifies a tree on the GPU machine and measures what the
# issues ask: builds (Release, sm_90a), every GPU test but the slow ones (ctest -L gpu -LE slow),
# compute-sanitizer memcheck/racecheck on the small cases of the tensor-core backward, the
# decode and the forward (and synccheck on the Hopper kernels, src/cuda/sm90/), shape A and B
# forward+backward against torch SDPA cuDNN in the same call, the forward per branch with the
# Hopper kernels beside the sm80 ones and cuDNN (phase hopper), bench_train's short and long
# configs beside the PyTorch baseline of the same models (bench/torch_train.py: eager and
# torch.compile, cuDNN SDPA, issue 18), and a short `nsa train --device cuda` run with a sample
# (heartbeat kept for the plot).
# usage (device): OUT=$OUT [PHASES="test bench hopper train"] bash bench/verify_dev.sh [SRC]
#   SRC: the tree (default: the repo); the build directory build-verify is reused by later calls.
#   bench: A_S, B_S (lengths), A_TUNES (nsa_cuda_tune settings measured in turn at shape A);
#   hopper: F_S (lengths) of the forward, shapes A and B, roles fast then hopper, then cuDNN;
#   train: bench_train and torch_train.py (TORCH_MODES, default "eager compile") on each of
#   TRAIN_CONFIGS (default "short long"), TRAIN_STEPS timed steps each, CSVs train_*.csv (the
#   torch.compile runs compile for minutes: PHASES=train alone is one call); then TRAIN_S
#   seconds of `nsa train --device cuda` with TRAIN_ARGS, then a sample.
# Logs and CSVs go to $OUT; nothing here asserts a time.
set -u
SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)}
OUT=${OUT:-/tmp/verify_out}
mkdir -p "$OUT"
B=$SRC/build-verify
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }
log "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
has() { case " ${PHASES:-test bench train} " in *" $1 "*) return 0;; esac; return 1; }
cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
  >"$OUT/build.log" 2>&1 && cmake --build "$B" -j16 >>"$OUT/build.log" 2>&1
log "build rc=$?"
if has test; then
  (cd "$B" && timeout 420 ctest -L gpu -LE slow -j2 --output-on-failure >"$OUT/ctest_gpu.log" 2>&1)
  log "ctest gpu rc=$?"
  grep -E "tests passed|tests failed|\(Failed\)|Not Run" "$OUT/ctest_gpu.log" | tee -a "$OUT/summary.txt"
  for c in "test_gpu_bwd_tc tc_sanitize_small" "test_gpu_decode decode_fast"; do
    for tool in memcheck racecheck; do
      timeout 150 compute-sanitizer --tool $tool $B/tests/$c >/tmp/san.log 2>&1
      log "$tool $c: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' /tmp/san.log | head -1)"
    done
  done
  for tool in memcheck racecheck synccheck; do
    timeout 300 compute-sanitizer --tool $tool $B/tests/test_gpu_hopper hopper_sanitize \
      >"$OUT/san_hopper_$tool.log" 2>&1
    log "$tool test_gpu_hopper hopper_sanitize: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' \
      "$OUT/san_hopper_$tool.log" | head -1)"
  done
fi
if has hopper; then
  for rl in fast hopper; do
    timeout 240 $B/bench/bench_forward --S ${F_S:-16384,65536} --reps 10 --roles $rl 2>>"$OUT/build.log" |
      tee -a "$OUT/fwd_hopper.csv"
  done
  timeout 240 python3 "$SRC/bench/sdpa_baseline.py" --S ${F_S:-16384,65536} --reps 10 2>&1 |
    tee "$OUT/sdpa_fwd.csv"
fi
if has bench; then
  for tune in ${A_TUNES:-bwd_dq_stages=0}; do
    timeout 120 $B/bench/bench_bwd --shape A --S ${A_S:-65536} --reps 3 --tune $tune 2>/dev/null |
      sed "s/^/$tune,/" | tee -a "$OUT/fwdbwd_A.csv"
  done
  timeout 150 $B/bench/bench_bwd --shape B --S ${B_S:-8192,16384,32768,65536} --reps 3 2>/dev/null |
    tee "$OUT/fwdbwd_B.csv"
  timeout 150 python3 "$SRC/bench/sdpa_bwd.py" --shape B --S ${B_S:-8192,16384,32768,65536} \
    --reps 3 2>&1 | tee "$OUT/sdpa_B.csv"
fi
if has train; then
  for cfg in ${TRAIN_CONFIGS:-short long}; do
    timeout 300 $B/bench/bench_train --config $cfg --steps ${TRAIN_STEPS:-10} \
      >"$OUT/train_${cfg}_nsa.csv" 2>"$OUT/train_${cfg}_nsa.err"
    log "bench_train $cfg rc=$?"
    grep -A1 "^config," "$OUT/train_${cfg}_nsa.csv" | tail -1 | tee -a "$OUT/summary.txt"
    for mode in ${TORCH_MODES:-eager compile}; do
      timeout 420 python3 "$SRC/bench/torch_train.py" --config $cfg --mode $mode \
        --steps ${TRAIN_STEPS:-10} >"$OUT/train_${cfg}_torch_$mode.csv" \
        2>"$OUT/train_${cfg}_torch_$mode.err"
      log "torch_train $cfg $mode rc=$?"
      grep -E "^# sdpa|^$cfg," "$OUT/train_${cfg}_torch_$mode.csv" | tee -a "$OUT/summary.txt"
    done
  done
fi
if has train && [ "${TRAIN_S:-0}" -gt 0 ]; then
  timeout --foreground -s INT "$TRAIN_S" "$B/nsa" train --device cuda --out /tmp/vt_run \
    --data "$B/data/kjv.txt" ${TRAIN_ARGS:-} --quiet 2>"$OUT/train.err"
  log "train rc=$? (SIGINT after ${TRAIN_S} s saves a checkpoint)"
  tail -2 /tmp/vt_run/heartbeat.jsonl | cut -c1-400 | tee -a "$OUT/summary.txt"
  cp /tmp/vt_run/heartbeat.jsonl "$OUT/heartbeat.jsonl"
  timeout 60 "$B/nsa" sample --device cuda --out /tmp/vt_run --tokens 300 --seed 1 \
    --prompt "Ge1:1 In the beginning" >"$OUT/sample.txt" 2>>"$OUT/train.err"
  log "sample rc=$?"; cat "$OUT/sample.txt"
fi
log "done"
