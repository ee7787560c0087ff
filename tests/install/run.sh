#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run.sh BUILD_DIR SOURCE_DIR CC [CFLAGS] — the install test: `cmake --install` of BUILD_DIR into
# a temporary prefix, then the consumer program of this folder built and run twice against it:
# through find_package(nsa) (CMake package) and through pkg-config (nsa.pc). CFLAGS carries the
# sanitizer flags of a sanitized build. The prefix is removed afterwards.
set -euo pipefail
build=$1 src=$2 cc=$3 cflags=${4:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nsa-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/nsa.h"

echo "== find_package(nsa)"
cmake -S "$src/tests/install" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/cmake" >/dev/null
"$tmp/cmake/consumer"

echo "== pkg-config nsa"
pc=$(dirname "$(find "$prefix" -name nsa.pc | head -n1)")
export PKG_CONFIG_PATH=$pc
libdir=$(pkg-config --variable=libdir nsa)
case "$(cd "$libdir" && pwd -P)" in "$(cd "$prefix" && pwd -P)"/*) ;; *)
  echo "nsa.pc points outside the install prefix: libdir=$libdir"; exit 1 ;; esac
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
"$cc" $cflags "$src/tests/install/consumer.c" -o "$tmp/consumer_pc" $(pkg-config --cflags nsa) \
  $(pkg-config --libs nsa) -Wl,-rpath,"$libdir" -lm
"$tmp/consumer_pc"
echo "== install test passed"
