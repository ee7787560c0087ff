#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# main.sh — the README's main job: install what is needed, build, train a byte-level NSA
# language model with the defaults of `nsa train` on the built-in corpus (the King James Bible),
# plot its loss curve, and sample from the result through the KV-cache decode.
# Extra arguments go to `nsa train` (for example: bash scripts/main.sh --steps 100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
# OpenMP threads sleep instead of spinning while they wait: on a 2-core machine shared with
# anything else, spinning cost 3x in tokens/s (docs/training.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
out=runs/kjv
# a rerun starts over (--force replaces the run in $out); with --resume it continues instead
case " $* " in *" --resume "*) fresh=() ;; *) fresh=(--force) ;; esac
./build/nsa train --out "$out" ${fresh[@]+"${fresh[@]}"} "$@"
bash scripts/plot_loss.sh "$out/heartbeat.jsonl" "$out/loss.png"
echo "== sample (temperature 0.8, top-k 40)"
./build/nsa sample --out "$out" --prompt "Ge1:1 In the beginning" --tokens 400
