#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# decode_dev.sh — one device call for the CUDA decode step (issue 7): build (Release, sm_90a),
# test_gpu_decode (split-key and reference steps against the CPU decode), compute-sanitizer
# memcheck and racecheck on the small split-key case, then bench_decode and torch SDPA cuDNN
# decode for the same points, a carried baseline bench_decode ($C/bench_decode_base, the
# previous step) when present, the warm-cache bench (--flush 0) and Nsight Compute sections of
# one step (B=1 at the largest S, B=64 at the smallest). When the tree fails its tests and
# $C/alt holds decode sources (a tested earlier step), those are built, tested and timed
# instead (the log says FALLBACK). Logs and CSVs go to $OUT.
# Usage (device, repo root): bench/decode_dev.sh [B list] [S list] [phases]
#   phases (default all): test,san,bench,base,warm,broken,ncu
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
BL=${1:-1,16,64}
SL=${2:-8192,65536}
PH=${3:-test,san,bench,base,warm,broken,ncu}
has() { [[ ",$PH," == *",$1,"* ]]; }
C=${C:-build-decode/carry}
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv |
  tee -a "$OUT/summary.txt"
# build_test DIR: builds the tree at DIR into DIR/$BN, runs the decode cases; 0 when all pass
BN=build-dev-decode
build_test() {
  log "build $1"
  { cmake -S "$1" -B "$1/$BN" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real &&
    cmake --build "$1/$BN" -j16 --target test_gpu_decode bench_decode; } >>/tmp/decode_build.log 2>&1
  local rc=$? bad=0
  log "build rc=$rc"
  if [ $rc -ne 0 ]; then grep -E "error|FAILED" /tmp/decode_build.log | head -30; return 1; fi
  has test || return 0
  for c in decode_fast decode_fast_splits decode_f32 decode_bf16_f16 decode_masked \
           decode_external decode_prefill; do
    timeout 60 "$1/$BN/tests/test_gpu_decode" $c >>"$OUT/test.log" 2>&1
    rc=$?
    log "test $c rc=$rc"
    [ $rc -eq 0 ] || bad=1
  done
  return $bad
}
B=./$BN
if ! build_test . && [ -d "$C/alt" ]; then
  # the working tree failed: the fallback decode sources in $C/alt (the last tested step)
  log "FALLBACK to $C/alt"
  mkdir -p /tmp/alt && tar --exclude='./build*' -cf - . | (cd /tmp/alt && tar xf -)
  cp "$C"/alt/* /tmp/alt/src/cuda/
  echo "== fallback" >>"$OUT/test.log"
  build_test /tmp/alt || { log "fallback failed too"; exit 1; }
  B=/tmp/alt/$BN
fi
has test && grep -E "FAIL|worst|step [0-9]|append|prefill" "$OUT/test.log" | cut -c1-200 |
  head -40 | tee -a "$OUT/summary.txt"
has san && for tc in "memcheck decode_fast" "racecheck decode_fast" "memcheck decode_fast_splits"; do
  set -- $tc
  timeout 60 compute-sanitizer --tool $1 --error-exitcode 9 $B/tests/test_gpu_decode $2 \
    >/tmp/san.log 2>&1
  log "$1 $2 rc=$?"
  cat /tmp/san.log >>"$OUT/san.log"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race|hazard" /tmp/san.log | head -5 |
    tee -a "$OUT/summary.txt"
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
if has broken; then
  # a planted bug: the tensor-core split forgets to rescale O when the running max moves (only
  # splits of several chunks see it); decode_fast_splits must fail
  log "planted bug"
  mkdir -p /tmp/broken && tar --exclude='./build*' -cf - . | (cd /tmp/broken && tar xf -)
  sed -i 's/o\[j\]\[0\]\[r\] \*= r < 2 ? al0 : al1;/o[j][0][r] *= 1.f;/' \
    /tmp/broken/src/cuda/decode_fast.cu
  grep -c "o\[j\]\[0\]\[r\] \*= 1.f" /tmp/broken/src/cuda/decode_fast.cu
  { cmake -S /tmp/broken -B /tmp/broken/$BN -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES=90a-real &&
    cmake --build /tmp/broken/$BN -j16 --target test_gpu_decode; } >/tmp/broken_build.log 2>&1
  timeout 60 /tmp/broken/$BN/tests/test_gpu_decode decode_fast_splits >/tmp/broken.log 2>&1
  log "planted bug: decode_fast_splits rc=$? (want 1)"
  grep -E "FAIL|out\[" /tmp/broken.log | head -3 | cut -c1-160 | tee -a "$OUT/summary.txt"
fi
if has ncu; then
  for bs in "1 ${SL##*,}" "64 ${SL%%,*}"; do
    set -- $bs
    log "ncu B=$1 S=$2"
    timeout 90 ncu --clock-control none -k regex:fd_step --launch-skip 3 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters \
      $B/bench/bench_decode --B $1 --S $2 --reps 1 >/tmp/ncu.txt 2>&1
    cat /tmp/ncu.txt >>"$OUT/ncu.txt"
    grep -E "Duration|DRAM Throughput|Warp Cycles Per Issued|Issued Warp|Eligible Warps|Grid Size|Registers Per|Spilling Requests  " \
      /tmp/ncu.txt | head -20
  done
fi
log "done"
