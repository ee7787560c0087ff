#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# sass_hopper.sh — the no-GPU evidence of docs/cuda_hopper.md: compiles src/cuda/sm90/fa3.cu for
# sm_90a alone, prints ptxas's registers/spills per kernel and, per kernel, the count of the
# instructions that matter in its disassembly (HGMMA, UTMALDG, SYNCS, USETMAXREG, local memory).
# Not a test: it asserts nothing. Needs nvcc, and cuobjdump + nvdisasm on PATH (a toolkit, or
# the PyPI wheels nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm).
# usage: bash scripts/sass_hopper.sh [OUTDIR]   (default /tmp/sass_hopper)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/tmp/sass_hopper}
mkdir -p "$OUT"
nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Xptxas=-v,-warn-spills -lineinfo \
  --expt-relaxed-constexpr -I"$ROOT/include" -DNSA_BUILD -DNSA_HAVE_CUDA=1 \
  -c "$ROOT/src/cuda/sm90/fa3.cu" -o "$OUT/fa3.o" 2>"$OUT/ptxas.txt"
echo "ptxas (per kernel: registers at entry, spills):"
grep -E "Compiling entry|spill|Used" "$OUT/ptxas.txt" | sed -E 's/ptxas info *: //'
grep -E "C75[0-9][0-9]" "$OUT/ptxas.txt" || echo "(no ptxas C75xx warnings: setmaxnreg honoured, no wgmma serialisation)"
cuobjdump -sass "$OUT/fa3.o" >"$OUT/fa3.sass"
echo "kernel | HGMMA | UTMALDG | SYNCS | USETMAXREG | LDL/STL"
awk '/Function :/ {f = $3; k[f] = 1}
     /HGMMA/ {h[f]++} /UTMALDG/ {t[f]++} /SYNCS/ {s[f]++} /USETMAXREG/ {r[f]++}
     / (LDL|STL)(\.| )/ {l[f]++}
     END {for (f in k) printf "%s | %d | %d | %d | %d | %d\n", f, h[f], t[f], s[f], r[f], l[f]}' \
  "$OUT/fa3.sass" | sort
