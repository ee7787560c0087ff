#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# main.sh — the README's main job: install what is needed, build `nsa`, train a byte-level NSA
# language model on the built-in corpus (the King James Bible), plot its loss curve, and sample
# from the result through the KV-cache decode. Extra arguments go to `nsa train`.
# The CUDA backend is built only where a GPU is present (`nvidia-smi -L` lists one, or
# /dev/nvidia0 exists), for that GPU's architecture, and then training and sampling run on it
# with the settings of the README's GPU run; elsewhere the build never starts nvcc (on a 2-core
# machine the kernels for two architectures take 15-20 minutes). NSA_CUDA=ON or OFF overrides the
# detection; NSA_CUDA_ARCHS sets the architectures (CMake's CUDA_ARCHITECTURES syntax).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

gpu=0
bash scripts/has_gpu.sh && gpu=1
cuda=${NSA_CUDA:-$([ "$gpu" = 1 ] && echo AUTO || echo OFF)}
conf=(-DCMAKE_BUILD_TYPE=Release -DNSA_CUDA="$cuda")
archs=${NSA_CUDA_ARCHS:-}
if [ -z "$archs" ] && [ "$cuda" != OFF ]; then
  # compute capability 9.0 -> 90a-real (the build every H100 number was measured with), else NN-real
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .') || cc=
  case "$cc" in 90) archs=90a-real ;; [1-9][0-9]) archs=$cc-real ;; esac
fi
[ -n "$archs" ] && conf+=(-DCMAKE_CUDA_ARCHITECTURES="$archs")
echo "== build (GPU: $([ "$gpu" = 1 ] && echo yes || echo none), NSA_CUDA=$cuda${archs:+, archs $archs})"
cmake -S . -B build -G Ninja "${conf[@]}" >/dev/null
# only the command: the tests are scripts/test.sh's
cmake --build build -j"$(nproc)" --target nsa_cli

dev=()
if [ "$gpu" = 1 ] && grep -q '^NSA_CUDA_BUILT:INTERNAL=ON' build/CMakeCache.txt; then
  dev=(--device cuda)
  # the README's GPU run (docs/training_gpu.md): 6 layers, dim 384, paper NSA config, 16 x 1024
  set -- --layers 6 --dim 384 --heads 6 --kv_heads 2 --ffn 1024 --seq_len 1024 --batch 16 \
    --l 32 --d 16 --lp 64 --n 16 --w 512 --steps 2400 --warmup 100 --lr 2e-3 --log_every 20 \
    --eval_every 100 --eval_batches 4 --ckpt_every 200 "$@"
fi
# OpenMP threads sleep instead of spinning while they wait: on a 2-core machine shared with
# anything else, spinning cost 3x in tokens/s (docs/training.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
out=runs/kjv
# a rerun starts over (--force replaces the run in $out); with --resume it continues instead
case " $* " in *" --resume "*) fresh=() ;; *) fresh=(--force) ;; esac
./build/nsa train ${dev[@]+"${dev[@]}"} --out "$out" ${fresh[@]+"${fresh[@]}"} "$@"
bash scripts/plot_loss.sh "$out/heartbeat.jsonl" "$out/loss.png"
echo "== sample (temperature 0.8, top-k 40)"
./build/nsa sample ${dev[@]+"${dev[@]}"} --out "$out" --prompt "Ge1:1 In the beginning" --tokens 400
