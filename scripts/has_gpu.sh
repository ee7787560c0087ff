#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# has_gpu.sh — exit 0 when this machine has an NVIDIA GPU (`nvidia-smi -L` lists one, or
# /dev/nvidia0 exists), 1 otherwise. Not a CUDA check: the toolkit may still be missing.
# Used by main.sh (build and train on the GPU) and test.sh (which CUDA architectures to compile).
case "$(nvidia-smi -L 2>/dev/null || true)" in GPU*) exit 0 ;; esac
[ -e /dev/nvidia0 ]
