#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# selbwd_dev.sh — one device call for the tensor-core selection backward (bwd_sel_tc.cu, issue 7):
# build, parity cases of test_gpu_bwd_sel_tc, bench_bwd with sel forced to the fused role (the
# backward's steps), a planted bug (gate·P without the gate in the dK/dV kernel: must fail),
# compute-sanitizer memcheck/racecheck on the small case, backward times (events), the lead's
# test_gpu_bwd_tc and the sel kernels alone (ncu).
# Usage (device, repo root): bench/selbwd_dev.sh [phases]
#   phases: build,test,bench,ncud,broken,memcheck,time,lead,ncu (env SHAPES for time, NCU_SHAPES (space-separated) for ncu, BENCH_S)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
B=${B:-build-dev-selbwd}
PH=${1:-build,test,bench,broken,memcheck,time,lead}
SHAPES=${SHAPES:-A8192,A65536,long,short}
has() { [[ ",$PH," == *",$1,"* ]]; }
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }
X=$B/tests/test_gpu_bwd_sel_tc
CASES="seltc_g16 seltc_g4_g1 seltc_g6_lp96 seltc_splits_twice seltc_shared_recomputed seltc_sanitize_small"

log "card"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv |
  tee -a "$OUT/summary.txt"
if has build; then
  T="test_gpu_bwd_sel_tc bench_bwd"
  grep -qs test_gpu_bwd_tc tests/*.cmake && T="$T test_gpu_bwd_tc"
  { cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real &&
    ninja -C $B $T; } >"$OUT/build.log" 2>&1
  log "build rc=$?"; grep -E "error|warning" "$OUT/build.log" | head -20 | tee -a "$OUT/summary.txt"
fi
if has test; then
  for c in $CASES; do
    timeout 60 $X $c >>"$OUT/test.log" 2>&1; log "test $c rc=$?"
  done
  grep -E "FAIL|worst|routed" "$OUT/test.log" | cut -c1-230 | tee -a "$OUT/summary.txt"
fi
if has bench; then
  NSA_TRITON_SEL_FORCE=1 timeout 120 $B/bench/bench_bwd --S ${BENCH_S:-8192,65536} --reps 3 \
    >"$OUT/bench_bwd.csv" 2>&1; log "bench_bwd (sel forced fused) rc=$?"
  cat "$OUT/bench_bwd.csv" | tee -a "$OUT/summary.txt"
fi
if has ncud; then
  NSA_TRITON_SEL_FORCE=1 timeout 150 ncu --section SpeedOfLight --section Occupancy \
    --section WarpStateStats --section MemoryWorkloadAnalysis -k regex:'sq_kernel|sk_kernel' -c 2 \
    $B/bench/bench_bwd --S ${NCUD_S:-8192} --reps 1 >"$OUT/ncud.log" 2>&1; log "ncu detail rc=$?"
  grep -E "sq_kernel|sk_kernel|Duration|Throughput|Achieved Occupancy|Registers|Warp Cycles Per Issued|Hit Rate" \
    "$OUT/ncud.log" | cut -c1-150 | tee -a "$OUT/summary.txt"
fi
if has broken; then
  cp src/cuda/bwd_sel_tc.cu /tmp/keep.cu
  sed -i 's/st\[nt\]\[2 \* i + e\] = gt \* p;/st[nt][2 * i + e] = p;/' src/cuda/bwd_sel_tc.cu
  ninja -C $B test_gpu_bwd_sel_tc >"$OUT/broken_build.log" 2>&1; log "broken build rc=$?"
  timeout 90 $X seltc_g16 >"$OUT/broken.log" 2>&1; log "planted bug: seltc_g16 rc=$? (want 1)"
  grep -E "FAIL" "$OUT/broken.log" | head -2 | cut -c1-230 | tee -a "$OUT/summary.txt"
  cp /tmp/keep.cu src/cuda/bwd_sel_tc.cu
  ninja -C $B test_gpu_bwd_sel_tc >>"$OUT/broken_build.log" 2>&1; log "restored build rc=$?"
fi
if has memcheck; then
  for tool in memcheck racecheck; do
    timeout 90 compute-sanitizer --tool $tool --error-exitcode 9 $X seltc_sanitize_small \
      >"$OUT/san_$tool.log" 2>&1
    log "compute-sanitizer $tool rc=$?"; tail -2 "$OUT/san_$tool.log" | tee -a "$OUT/summary.txt"
  done
fi
if has time; then
  NSA_SELTC_SHAPES=$SHAPES timeout 150 $X seltc_time >"$OUT/time.log" 2>&1; log "time rc=$?"
  grep -E "time|FAIL" "$OUT/time.log" | tee -a "$OUT/summary.txt"
fi
if has lead && [ -x $B/tests/test_gpu_bwd_tc ]; then
  (cd $B && timeout 200 ctest -R test_gpu_bwd_tc -LE slow --output-on-failure) >"$OUT/lead.log" 2>&1
  log "lead test rc=$?"; grep -E "tests passed|Failed|FAIL" "$OUT/lead.log" | head -12 | tee -a "$OUT/summary.txt"
fi
if has ncu; then
  for s in ${NCU_SHAPES:-$SHAPES}; do
    NSA_SELTC_SHAPES=$s NSA_SELTC_BASE=0 timeout 120 ncu --clock-control none \
      -k regex:'sq_kernel|sk_kernel|sk_reduce|sk_plan' --metrics gpu__time_duration.sum \
      --print-summary per-kernel $X seltc_time >"$OUT/ncu_$s.log" 2>&1
    log "ncu $s rc=$?"
    grep -E "sq_kernel|sk_kernel|sk_reduce|sk_plan|gpu__time_duration" "$OUT/ncu_$s.log" |
      cut -c1-160 | tee -a "$OUT/summary.txt"
  done
fi
log "done"
