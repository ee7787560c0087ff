#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# torch_cpu.sh — installs a CPU-usable torch from PyPI for the Python tests; idempotent (a no-op
# when the pinned version and the test tools already import).
# PyPI's Linux torch wheel is its CUDA build; only PyPI is reachable (no CPU-wheel index), so:
# the wheel without its ~3 GB of nvidia-* dependencies, plus the four small libraries its .so
# files link that this machine's CUDA toolkit lacks (cuFile, cuSPARSELt, NVSHMEM, and an NCCL
# new enough for it), then its pure-Python dependencies. ~1.1 GB of downloads on a fresh machine.
set -euo pipefail
TORCH=2.15.0
py=${PYTHON:-python3}
if $py -c "import sys, torch, pytest, numpy; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" \
    >/dev/null 2>&1; then
  exit 0
fi
pip=($py -m pip install -q --disable-pip-version-check --root-user-action=ignore)
"${pip[@]}" --no-deps "torch==$TORCH" nvidia-cusparselt-cu13==0.8.1 nvidia-nvshmem-cu13==3.7.2 \
  nvidia-nccl-cu13==2.30.7 nvidia-cufile==1.20.0.107
"${pip[@]}" filelock "typing-extensions>=4.13" "sympy>=1.13.3" "networkx>=2.5.1" jinja2 \
  "fsspec>=0.8.5" "setuptools>=77.0.3" numpy pytest
$py -c "import torch; torch.ones(1)" || { echo "torch_cpu.sh: torch does not import" >&2; exit 1; }
