#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test.sh — the README's test command: set up, build (gcc, -Werror), run every test, then the
# Python package's pytest suite (torch on the CPU), the whole CPU suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer, a clang build, and each libFuzzer target for 60 s
# (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
echo "== build (gcc, Release)"
# Every .cu file compiles wherever nvcc is (AUTO), GPU or not: a CUDA build break must not land.
# Without a GPU nothing runs the kernels, so one architecture (sm_80, no code is arch-specific)
# shows they compile in about half the time of the two shipped; with a GPU, the shipped ones.
# NSA_CUDA_ARCHS overrides (docs/decisions.md, "Build and install").
if [ -n "${NSA_CUDA_ARCHS:-}" ]; then archs=(-DCMAKE_CUDA_ARCHITECTURES="$NSA_CUDA_ARCHS")
elif bash scripts/has_gpu.sh; then archs=(-UCMAKE_CUDA_ARCHITECTURES)
else archs=(-DCMAKE_CUDA_ARCHITECTURES=80-real); fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNSA_CUDA="${NSA_CUDA:-AUTO}" "${archs[@]}" \
  >/dev/null
cmake --build build -j"$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j"$jobs"
echo "== python: torch (CPU) and pytest of python/ over this build's libnsa"
bash scripts/torch_cpu.sh
NSA_LIBRARY="$PWD/build/src/libnsa.so" python3 -m pip install -q --no-deps --no-build-isolation \
  --disable-pip-version-check --root-user-action=ignore ./python
rc=0
python3 -m pytest -q -p no:cacheprovider python/tests || rc=$?
if ((rc == 5)); then echo "pytest collected no tests: python/tests is broken" >&2; fi
((rc == 0))
echo "== tests under ASan + UBSan (CPU build)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNSA_SANITIZE=ON -DNSA_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
echo "== clang -Werror build"
CC=clang cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Release -DNSA_CUDA=OFF -DNSA_TESTS=OFF >/dev/null
cmake --build build-clang -j"$jobs"
echo "== fuzzers (60 s each, ASan + UBSan)"
bash scripts/fuzz.sh 60
echo "== all tests passed"
