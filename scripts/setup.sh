#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# setup.sh — installs what nsa needs on Debian 12 (build tools, OpenBLAS, gnuplot, clang's
# libFuzzer runtime for scripts/fuzz.sh); idempotent.
set -euo pipefail
pkgs=(cmake ninja-build gcc clang libclang-rt-dev make pkg-config libopenblas-openmp-dev gnuplot-nox zlib1g-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
