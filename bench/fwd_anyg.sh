#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fwd_anyg.sh — one device call for the tensor-core forward at any G (issue 8's short config,
# G = 6): builds two snapshots side by side (new = the commit under test, old = the same tree
# with fa2.cu / sel_fused.cu of the base commit), runs the GPU parity cases, compute-sanitizer
# on a small G = 6 problem, and times the short config (S: Hq 12, Hkv 2, hd 64, B 8, T 2048) on
# the masked/packed roles (what G = 6 ran before) and the fast roles, and shape A at 64k
# old/new interleaved. Not a test runner for CI.
# Usage (repository root, on the device): SNAP=dir-with-new-and-old bash bench/fwd_anyg.sh
# Make the snapshot here: bash bench/fwd_anyg.sh --snap BASE_COMMIT (writes build-fwdg/snap).
set -u
if [ "${1:-}" = "--snap" ]; then
  S=build-fwdg/snap; rm -rf $S; mkdir -p $S/new $S/old
  git archive HEAD | tar -x -C $S/new && git archive HEAD | tar -x -C $S/old || exit 1
  for f in src/cuda/fa2.cu src/cuda/sel_fused.cu; do git show "$2:$f" >$S/old/$f || exit 1; done
  exit 0
fi
OUT=${OUT:-/tmp/out}
S=${SNAP:-build-fwdg/snap}
mkdir -p "$OUT"
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }
log "card"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv | tee -a "$OUT/summary.txt"
conf() { cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real; }
log "build new"
{ conf $S/new /tmp/bn && cmake --build /tmp/bn -j16 --target test_gpu_parity bench_forward; } \
  >"$OUT/build.log" 2>&1 || { log "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
log "build old (background)"
{ conf $S/old /tmp/bo && cmake --build /tmp/bo -j8 --target bench_forward; } >"$OUT/build_old.log" 2>&1 &
BPID=$!
T=/tmp/bn/tests/test_gpu_parity
for c in route_any_g fast_any_g fast_sel_pad sanitize_g6 fa2_cmp_win fused_sel all_fast_paper \
         ties_exact public_forward sanitize_small; do
  timeout 120 $T $c >>"$OUT/test.log" 2>&1; log "test $c rc=$?"
done
grep -E "FAIL|G=(3|6|12|24|40) " "$OUT/test.log" | cut -c1-300 | tee -a "$OUT/summary.txt"
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $T sanitize_g6 >>"$OUT/san.log" 2>&1
  log "compute-sanitizer $tool sanitize_g6 rc=$?"; tail -1 "$OUT/san.log" | tee -a "$OUT/summary.txt"
done
wait $BPID; log "old build rc=$?"
BN=/tmp/bn/bench/bench_forward BO=/tmp/bo/bench/bench_forward
bn() { # label, bench args: rows relabelled "label" in the shape column
  local l=$1; shift
  $BN "$@" 2>>"$OUT/build.log" | grep -v "^kind" | sed "s/^nsa,[ABS],/nsa,$l,/" >>"$OUT/bench.csv"
}
log "bench short config and other G (S shape: hd 64, l32 d16 lp64 n16 w512)"
: >"$OUT/bench.csv"
bn S-G6-B8 --shapes S --S 2048 --reps 20 --roles tiled
for h in 12,2 12,4 12,1; do
  for tn in 0 2; do bn "S-h$h-B8" --shapes S --S 2048 --reps 20 --heads $h --tune sel_union=$tn; done
done
for tn in 0 2; do bn S-h12,2-B1 --shapes S --S 16384 --reps 10 --heads 12,2 --batch 1 --tune sel_union=$tn; done
for tn in 0 1; do bn L-h16,1-B1 --shapes S --S 32768 --reps 10 --heads 16,1 --batch 1 --tune sel_union=$tn; done
log "bench shape A 64k, old/new interleaved"
for v in old new old new; do
  B=$BN; [ $v = old ] && B=$BO
  $B --shapes A --S 65536 --reps 10 --roles fast 2>>"$OUT/build.log" | grep -v "^kind" |
    sed "s/,fast,/,fast-$v,/" >>"$OUT/bench.csv"
done
grep -E "total|sel,|cmp|win" "$OUT/bench.csv" | cut -d, -f2-7 | tee -a "$OUT/summary.txt"
grep gemm "$OUT/bench.csv" | head -1
if [ $SECONDS -lt 200 ]; then # planted bugs: ceil instead of floor queries per CTA -> rows unwritten
  brk() { # file, sed, case, label
    cp "$1" /tmp/orig.cu; sed -i "$2" "$1"; cmp -s "$1" /tmp/orig.cu && { log "break $4: no change"; return; }
    cmake --build /tmp/bn -j16 --target test_gpu_parity >>"$OUT/build.log" 2>&1
    timeout 100 $T $3 >>"$OUT/break.log" 2>&1; log "break $4: $3 rc=$? (expected 1)"
    grep -E "^FAIL" "$OUT/break.log" | tail -1 | cut -c1-250 | tee -a "$OUT/summary.txt"
    cp /tmp/orig.cu "$1"
  }
  brk $S/new/src/cuda/fa2.cu 's#QPB = FA_BM / G,#QPB = (FA_BM + G - 1) / G,#; s#(P->T + BM / P->G - 1) / (BM / P->G)#(P->T + (BM + P->G - 1) / P->G - 1) / ((BM + P->G - 1) / P->G)#' fast_any_g fa2-ceil-qpb
  brk $S/new/src/cuda/sel_fused.cu 's#QPB = 16 / G,#QPB = (16 + G - 1) / G,#; s#const int QPB = 16 / P->G;#const int QPB = (16 + P->G - 1) / P->G;#' fast_sel_pad sel16-ceil-qpb
fi
log "done ($SECONDS s)"
