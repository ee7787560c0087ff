#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_train.sh — everything the GPU machine runs for issue 8 in one call: build, the GPU
# training tests, the short and long throughput benchmarks (bench_train), and a short real run of
# `nsa train --device cuda` on the built-in corpus (stopped by SIGINT after TRAIN_S seconds, which
# saves a checkpoint) followed by `nsa sample --device cuda`. Logs and CSVs go to $OUT.
# Usage: bench/bench_train.sh [phases]   phases: any of build,test,sanitize,breaks,short,train,long
#        (default all but sanitize). breaks plants bugs, one at a time, in this machine's copy of
#        lm/cuda_ops.cu / lm/cuda_blas.cu (the SwiGLU backward; the fused split's RoPE; the upload
#        that marks the bf16 weight mirror stale), checks that the cases meant to catch each fail,
#        and restores the files. B: build dir; STEPS / LONG_STEPS: timed steps; SAN_TOOLS:
#        compute-sanitizer tools (default memcheck racecheck).
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
PH=${1:-build,test,breaks,short,train,long}
has() { [[ ",$PH," == *",$1,"* ]]; }
B=${B:-build-gt}
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }

log "card"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv |
  tee -a "$OUT/summary.txt"
if has build; then
  log "build"
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
    -DNSA_CUDA=ON >"$OUT/build.log" 2>&1 &&
    cmake --build $B -j16 --target test_gpu_train bench_train nsa_cli >>"$OUT/build.log" 2>&1 ||
    { log "BUILD FAILED"; grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
  log "built"
fi
if has test; then
  for c in f32_step_matches_cpu bf16_step_matches_cpu f32_steps_match_cpu bf16_deterministic \
           ckpt_interchange train_cuda greedy_sample_gpu resume_bitwise_gpu \
           bf16_mirror_follows_updates; do
    timeout 120 $B/tests/test_gpu_train $c >>"$OUT/test.log" 2>&1; log "test $c rc=$?"
  done
  grep -E "FAIL|loss cpu|params after|loss before" "$OUT/test.log" | cut -c1-300 |
    tee -a "$OUT/summary.txt"
fi
if has sanitize; then  # not in the default phases: compute-sanitizer on one tiny f32 step
  for tool in ${SAN_TOOLS:-memcheck racecheck}; do
    for c in f32_step_matches_cpu bf16_step_matches_cpu; do
      timeout ${SAN_S:-60} compute-sanitizer --tool $tool --error-exitcode 9 \
        $B/tests/test_gpu_train $c >"$OUT/san_$tool.log" 2>&1
      log "compute-sanitizer $tool $c rc=$?"; tail -2 "$OUT/san_$tool.log"
    done
  done
fi
if has breaks; then
  # plant FILE SED CASES: the bug, then the cases that must fail (rc 1); the file is restored.
  plant() {
    cp "$1" /tmp/planted.orig
    sed -i "$2" "$1"
    if cmp -s "$1" /tmp/planted.orig; then log "breaks: pattern not found in $1"; else
      cmake --build $B -j16 --target test_gpu_train >>"$OUT/build.log" 2>&1
      for c in $3; do
        timeout 60 $B/tests/test_gpu_train $c >>"$OUT/test.log" 2>&1
        log "planted bug in $1: $c rc=$? (want 1)"
      done
      grep -E "^FAIL" "$OUT/test.log" | tail -1 | cut -c1-250
    fi
    cp /tmp/planted.orig "$1"
  }
  plant lm/cuda_ops.cu 's/(1.0f + ai \* (1.0f - s))/(1.0f + ai * (1.0f + s))/' \
    "f32_step_matches_cpu bf16_step_matches_cpu"
  plant lm/cuda_ops.cu 's/put(&d\[1\], x0 \* sv + x1 \* c);/put(\&d[1], x0 * sv - x1 * c);/' \
    "f32_step_matches_cpu"
  plant lm/cuda_blas.cu '/cudaMemcpyHostToDevice));$/{n;s/    touch(dst);//}' \
    "bf16_mirror_follows_updates"
  cmake --build $B -j16 --target test_gpu_train bench_train nsa_cli >>"$OUT/build.log" 2>&1
fi
if has short; then
  timeout ${SHORT_S:-170} $B/bench/bench_train --config short --steps ${STEPS:-3} --warmup 1 \
    >"$OUT/bench_short.csv" 2>/tmp/bs.err; log "bench short rc=$?"
  cat /tmp/bs.err >>"$OUT/err.log"; tail -4 /tmp/bs.err; cat "$OUT/bench_short.csv" | tee -a "$OUT/summary.txt"
fi
if has train; then
  D=$B/data/kjv.txt
  timeout --foreground -s INT ${TRAIN_S:-75} $B/nsa train --device cuda --force --out /tmp/gt_run --data $D \
    --layers 4 --dim 256 --heads 4 --kv_heads 1 --ffn 704 --seq_len 512 --batch 16 \
    --l 32 --d 16 --lp 64 --n 4 --w 128 --steps 3000 --warmup 100 --lr 2e-3 \
    --log_every 20 --eval_every 100 --eval_batches 4 --ckpt_every 100 --quiet 2>>"$OUT/err.log"
  log "train rc=$?"; tail -3 "$OUT/err.log"; tail -2 /tmp/gt_run/heartbeat.jsonl | cut -c1-400
  timeout 60 $B/nsa sample --device cuda --out /tmp/gt_run --tokens 300 --seed 1 \
    >"$OUT/sample.txt" 2>>"$OUT/err.log"; log "sample rc=$?"; cat "$OUT/sample.txt"; tail -2 "$OUT/err.log"
  for p in f32 bf16; do  # greedy bytes from the same checkpoint, f32 and bf16 decode
    timeout 60 $B/nsa sample --device cuda --precision $p --out /tmp/gt_run --tokens 80 \
      --temperature 0 >/tmp/greedy_$p.txt 2>>"$OUT/err.log"; log "greedy $p rc=$?"
  done
  if cmp -s /tmp/greedy_f32.txt /tmp/greedy_bf16.txt; then log "greedy f32 == bf16"
  else log "greedy f32 != bf16"; fi
  cat /tmp/greedy_f32.txt /tmp/greedy_bf16.txt | tee -a "$OUT/summary.txt"
  cp /tmp/gt_run/heartbeat.jsonl "$OUT/heartbeat.jsonl"
fi
if has long; then
  timeout ${LONG_S:-150} $B/bench/bench_train --config long --steps ${LONG_STEPS:-${STEPS:-3}} --warmup 1 \
    >"$OUT/bench_long.csv" 2>/tmp/bl.err; log "bench long rc=$?"
  cat /tmp/bl.err >>"$OUT/err.log"; tail -4 /tmp/bl.err; cat "$OUT/bench_long.csv" | tee -a "$OUT/summary.txt"
fi
