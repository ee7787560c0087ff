#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run_device.sh — everything the GPU machine runs for issue 6, in one call: build, GPU parity
# tests, compute-sanitizer (memcheck, racecheck) on small shapes, long-T sampled parity, the C
# benchmark and the torch SDPA (cuDNN, FLASH) baselines. Logs and CSVs go to $OUT (at most 8
# files come back: summary, build, test, long, parity, san logs and the two CSVs).
# Usage: bench/run_device.sh [phases]   phases: any of build,test,parity,sanitize,long,bench,sdpa,breaks,ncu
#        (default all). Env: LONG_TS (default "8192 32768 65536"), BENCH_S, BENCH_REPS,
#        BENCH_TUNES (tile alternatives key=value, timed at BENCH_TUNE_S), BENCH_SMALL_S
#        (reference vs fast roles at short S: the routing cutoffs), NCU_S.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
PH=${1:-build,test,sanitize,long,bench,sdpa}
has() { [[ ",$PH," == *",$1,"* ]]; }
B=build-dev
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }

log "card"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv | tee -a "$OUT/summary.txt"
nvcc --version | tail -1 | tee -a "$OUT/summary.txt"

if has build; then
  log "build"
  cmake -S . -B $B -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a-real -DNSA_CUDA=ON >"$OUT/build.log" 2>&1 &&
    cmake --build $B -j16 --target test_gpu_parity bench_forward >>"$OUT/build.log" 2>&1 ||
    { log "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
fi
T=$B/tests/test_gpu_parity
if has test; then
  log "gpu parity tests"
  for c in ref_f32 ref_bf16_f16 fa2_cmp_win fused_sel all_fast_paper ties_exact public_forward tiled_roles; do
    timeout 300 $T $c >>"$OUT/test.log" 2>&1; rc=$?
    log "test $c rc=$rc"
  done
  grep -E "FAIL|ok  " "$OUT/test.log" | cut -c1-400 | tail -40 | tee -a "$OUT/summary.txt"
fi
if has parity; then
  cmake --build $B -j16 --target nsa_cli >>"$OUT/build.log" 2>&1 || log "nsa_cli build failed"
  timeout 400 $B/nsa parity >"$OUT/parity.txt" 2>&1; log "nsa parity rc=$?"
  grep -E "cuda" "$OUT/parity.txt" | awk '{print $1,$2,$3,$4,$5,$6,$7,$8,$(NF)}' | sort | uniq -c | sort -rn | head -40
fi
if has sanitize; then
  for tool in memcheck racecheck; do
    for c in sanitize_small; do
      timeout 400 compute-sanitizer --tool $tool --error-exitcode 9 $T $c >>"$OUT/san.log" 2>&1
      rc=$?; log "compute-sanitizer $tool $c rc=$rc"; tail -2 "$OUT/san.log" | tee -a "$OUT/summary.txt"
    done
  done
fi
if has long; then
  for t in ${LONG_TS:-8192 32768 65536}; do
    NSA_GPU_LONG_T=$t timeout 300 $T long_sampled >>"$OUT/long.log" 2>&1; rc=$?
    log "long_sampled T=$t rc=$rc"; grep -E "long T|FAIL" "$OUT/long.log" | tail -2 | tee -a "$OUT/summary.txt"
  done
fi
if has bench; then
  log "bench_forward"
  $B/bench/bench_forward --S ${BENCH_S:-8192,16384,32768,65536} --reps ${BENCH_REPS:-20} \
    >"$OUT/bench_nsa.csv" 2>>"$OUT/build.log"; log "bench rc=$?"
  grep -E "^bench" "$OUT/build.log" | tail -5
  grep -E "total|gemm|sel," "$OUT/bench_nsa.csv"
  if [ -n "${BENCH_SMALL_S:-}" ]; then  # cutoff sweep: reference role vs fast roles, short S
    for rl in ref tiled fast; do
      $B/bench/bench_forward --S $BENCH_SMALL_S --reps 5 --roles $rl 2>>"$OUT/build.log" |
        grep -v "^kind" | sed "s/,$rl,/,$rl-small,/" >>"$OUT/bench_nsa.csv"
    done
    log "bench small-S sweep rc=$?"; grep -E "small" "$OUT/bench_nsa.csv" | grep -E "cmp|sel,|win|total" | cut -d, -f2-6
  fi
  for tn in ${BENCH_TUNES:-}; do  # tile alternatives, one at a time, at the largest S
    $B/bench/bench_forward --S ${BENCH_TUNE_S:-65536} --reps 10 --tune $tn 2>>"$OUT/build.log" |
      grep -v "^kind" >>"$OUT/bench_nsa.csv"
    log "bench tune $tn rc=$?"; grep -E "$tn" "$OUT/bench_nsa.csv" | grep -E "total|sel,|cmp|win"
  done
fi
if has sdpa; then
  log "sdpa baselines"
  PYTHONUNBUFFERED=1 python3 bench/sdpa_baseline.py --S ${BENCH_S:-8192,16384,32768,65536} \
    --reps ${BENCH_REPS:-20} >"$OUT/bench_sdpa.csv" 2>>"$OUT/build.log"; log "sdpa rc=$?"
  cat "$OUT/bench_sdpa.csv"
fi
if has breaks; then  # each break must make its case fail (rc 1); the source is restored after
  brk() {  # file, sed expression, case, label
    cp "$1" /tmp/orig.cu; sed -i "$2" "$1"
    if cmp -s "$1" /tmp/orig.cu; then log "break $4: sed did not apply"; return; fi
    cmake --build $B -j16 --target test_gpu_parity >>"$OUT/build.log" 2>&1
    timeout 300 $T $3 >>"$OUT/test.log" 2>&1; log "break $4: $3 rc=$? (expected 1)"
    grep -E "^FAIL" "$OUT/test.log" | tail -1 | cut -c1-300 | tee -a "$OUT/summary.txt"
    cp /tmp/orig.cu "$1"
  }
  brk src/cuda/select.cu 's/(eq \&\& rank < take_eq)/(eq \&\& rank <= take_eq)/' ties_exact tie-rule
  brk src/cuda/fa2.cu 's/vlo\[i\] = t - P.w + 1;/vlo[i] = t - P.w;/' fa2_cmp_win window-off-by-one
  brk src/cuda/sel_fused.cu 's/vhi\[i\] = member ? min((j + 1) \* P.lp, t + 1) : 0;/vhi[i] = member ? (j + 1) * P.lp : 0;/' fused_sel causal-clip
  brk src/cuda/combine.cu 's/if (idx4 >= P.R \* P.Hq \* D4) return;/if (idx4 >= P.R * P.Hq * D4 - 1) return;/' ref_f32 unwritten-output
  cmake --build $B -j16 --target test_gpu_parity >>"$OUT/build.log" 2>&1
fi
if has ncu; then
  for k in fa_kernel sel16_kernel select_kernel; do
    timeout 200 ncu --kernel-name regex:$k --launch-count 1 --section SpeedOfLight \
      --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
      $B/bench/bench_forward --shapes A --S ${NCU_S:-16384} --reps 1 >"$OUT/ncu_$k.txt" 2>&1
    log "ncu $k rc=$?"
    grep -E "Duration|Throughput|Warp Cycles Per Issued|Achieved Occupancy|Hit Rate|Stall|Registers|Block Limit" \
      "$OUT/ncu_$k.txt" | head -24
  done
fi
log "done"
