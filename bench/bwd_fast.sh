#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bwd_fast.sh — one device call for the tiled CUDA backward roles (issue 7/8): parity tests of
# test_gpu_bwd_fast, the same binary built with a planted bug (must fail), compute-sanitizer
# memcheck and racecheck on the small case, then bench_train short and long (per-layer NSA backward ms).
# Binaries are built on the dev machine and carried in $C (build-bwdfast/carry): test_gpu_bwd_fast,
# test_gpu_bwd_fast_broken (dV of the tiled key kernel without the gate), bench_train.
# Usage (device, repo root): bench/bwd_fast.sh [phases]  phases: test,broken,short,memcheck,long
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
C=${C:-build-bwdfast/carry}
PH=${1:-test,broken,short,memcheck,long}
has() { [[ ",$PH," == *",$1,"* ]]; }
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }
CASES="fast_f32 fast_bf16_f16 fast_shared_recomputed fast_deterministic fast_force_branch fast_sanitize_small"

log "card"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv |
  tee -a "$OUT/summary.txt"
if has test; then
  for c in $CASES; do
    timeout 60 $C/test_gpu_bwd_fast $c >>"$OUT/test.log" 2>&1; log "test $c rc=$?"
  done
  grep -E "FAIL|worst" "$OUT/test.log" | cut -c1-220 | tee -a "$OUT/summary.txt"
fi
if has broken; then
  for c in fast_f32 fast_bf16_f16; do
    timeout 60 $C/test_gpu_bwd_fast_broken $c >>"$OUT/broken.log" 2>&1
    log "planted bug: $c rc=$? (want 1)"
  done
  grep -E "FAIL" "$OUT/broken.log" | head -2 | cut -c1-220 | tee -a "$OUT/summary.txt"
fi
if has short; then
  timeout ${SHORT_S:-120} $C/bench_train --config short --steps 3 --warmup 1 \
    >"$OUT/bench_short.csv" 2>"$OUT/bench_short.err"; log "bench short rc=$?"
  tail -25 "$OUT/bench_short.err" | tee -a "$OUT/summary.txt"; cat "$OUT/bench_short.csv" | tee -a "$OUT/summary.txt"
fi
if has memcheck; then
  for tool in memcheck racecheck; do
    timeout ${SAN_S:-60} compute-sanitizer --tool $tool --error-exitcode 9 \
      $C/test_gpu_bwd_fast fast_sanitize_small >"$OUT/san_$tool.log" 2>&1
    log "compute-sanitizer $tool rc=$?"; tail -2 "$OUT/san_$tool.log" | tee -a "$OUT/summary.txt"
  done
fi
if has long; then
  timeout ${LONG_S:-150} $C/bench_train --config long --steps 2 --warmup 1 \
    >"$OUT/bench_long.csv" 2>"$OUT/bench_long.err"; log "bench long rc=$?"
  tail -25 "$OUT/bench_long.err" | tee -a "$OUT/summary.txt"; cat "$OUT/bench_long.csv" | tee -a "$OUT/summary.txt"
fi
log "done"
