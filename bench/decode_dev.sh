#!/usr/bin/env bash
# decode_dev.sh — one device call for the CUDA decode step (issue 7): build (Release, sm_90a),
# test_gpu_decode (split-key and reference steps against the CPU decode), compute-sanitizer
# memcheck and racecheck on the small split-key case, then bench_decode and torch SDPA cuDNN
# decode for the same points, a carried baseline bench_decode ($C/bench_decode_base, the
# previous step) when present, the warm-cache bench (--flush 0) and Nsight Compute sections of
# one step (B=1 at the largest S, B=64 at the smallest). Logs and CSVs go to $OUT.
# Usage (device, repo root): bench/decode_dev.sh [B list] [S list] [phases]
#   phases (default all): test,san,bench,base,warm,ncu
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
BL=${1:-1,16,64}
SL=${2:-8192,65536}
PH=${3:-test,san,bench,base,warm,ncu}
has() { [[ ",$PH," == *",$1,"* ]]; }
C=${C:-build-decode/carry}
B=build-dev-decode
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv |
  tee -a "$OUT/summary.txt"
log "build"
{ cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real &&
  cmake --build $B -j16 --target test_gpu_decode bench_decode; } >"$OUT/build.log" 2>&1
rc=$?
log "build rc=$rc"
if [ $rc -ne 0 ]; then grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; fi
has test && for c in decode_fast decode_fast_splits decode_f32 decode_bf16_f16 decode_masked decode_external \
         decode_prefill; do
  timeout 60 $B/tests/test_gpu_decode $c >>"$OUT/test.log" 2>&1
  log "test $c rc=$?"
done
has test && grep -E "FAIL|worst|step [0-9]|append|prefill" "$OUT/test.log" | cut -c1-200 |
  head -40 | tee -a "$OUT/summary.txt"
has san && for tool in memcheck racecheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 $B/tests/test_gpu_decode \
    decode_fast >"$OUT/$tool.log" 2>&1
  log "$tool decode_fast rc=$?"
  grep -E "ERROR SUMMARY|Invalid|Race|hazard" "$OUT/$tool.log" | head -5 | tee -a "$OUT/summary.txt"
done
if has bench; then
  log "bench"
  timeout 100 $B/bench/bench_decode --B "$BL" --S "$SL" --reps 20 | tee "$OUT/bench.csv"
  PYTHONUNBUFFERED=1 timeout 80 python3 bench/sdpa_decode.py --B "$BL" --S "$SL" --reps 20 |
    tee "$OUT/sdpa.csv"
fi
if has base && [ -x "$C/bench_decode_base" ]; then
  log "baseline"
  timeout 100 "$C/bench_decode_base" --B "$BL" --S "$SL" --reps 20 | tee "$OUT/bench_base.csv"
fi
if has warm; then
  log "warm cache (--flush 0)"
  timeout 60 $B/bench/bench_decode --B 1 --S "$SL" --reps 20 --flush 0 | tee "$OUT/bench_warm.csv"
fi
if has ncu; then
  for bs in "1 ${SL##*,}" "64 ${SL%%,*}"; do
    set -- $bs
    log "ncu B=$1 S=$2"
    timeout 90 ncu --clock-control none -k regex:fd_step --launch-skip 3 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis \
      $B/bench/bench_decode --B $1 --S $2 --reps 1 >"$OUT/ncu_B$1.txt" 2>&1
    grep -E "Duration|Throughput|Stall|Warp Cycles|Issued|Eligible|Active Warps|Block Limit|Grid Size|Registers|L2 Hit|Mem Busy" \
      "$OUT/ncu_B$1.txt" | head -40
  done
fi
log "done"
