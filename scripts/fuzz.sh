#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fuzz.sh [SECONDS] [TARGET...] — builds the libFuzzer targets with clang (ASan + UBSan, CPU
# only, build-fuzz/) and runs each for SECONDS (default 60) over its committed seed corpus
# tests/fuzz/corpus/<target>/ (read only; new inputs go to build-fuzz/corpus/<target>/).
# Exits non-zero on the first target that finds a crash, a leak, UB or a timeout; the input
# that did it is in build-fuzz/artifacts/. CI (scripts/test.sh) runs it with 60 s per target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(fuzz_api fuzz_ckpt fuzz_config fuzz_profile)
CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNSA_CUDA=OFF \
  -DNSA_TESTS=OFF -DNSA_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz
mkdir -p build-fuzz/artifacts
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  rm -f "build-fuzz/artifacts/$t-"*
  echo "== $t: ${secs}s"
  # -timeout: one input may take at most 30 s (inputs take well under 1 s; CI machines are shared)
  # allocator_may_return_null: a valid but huge size must come back as NSA_ERR_NOMEM, as
  # without ASan, not abort the run
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    "build-fuzz/tests/fuzz/$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-" \
    "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" 2>&1 | grep -E "^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY)|runtime error" || true
  # crash-, leak-, timeout-, oom- inputs are findings; slow-unit- ones (over 10 s on a busy
  # machine) are only kept for a look
  found=$(ls build-fuzz/artifacts/ | grep -E "^$t-(crash|leak|timeout|oom)-" || true)
  if [ -n "$found" ]; then
    echo "fuzz.sh: $t found a problem: $found (in build-fuzz/artifacts/)" >&2
    exit 1
  fi
done
echo "== fuzzers: nothing found"
