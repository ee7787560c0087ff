#!/usr/bin/env bash
# main.sh — the README's main job. Until training lands: build and run the reference self-check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
./build/nsa selfcheck
