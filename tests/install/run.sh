#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run.sh BUILD_DIR SOURCE_DIR CC [CFLAGS] — the install test: `cmake --install` of BUILD_DIR into
# a temporary prefix; the C example of README.md (between its `example.c` markers, exactly as
# printed there) built against it through find_package(nsa) and through pkg-config, each with the
# shared and the static library, and run; the package must not drag OpenBLAS onto consumers;
# then the prefix is moved and the installed `nsa train` must find its own corpus
# (<prefix>/share/nsa). CFLAGS carries the sanitizer flags of a sanitized build.
set -euo pipefail
build=$1 src=$2 cc=$3 cflags=${4:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nsa-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tmp=$(cd "$tmp" && pwd -P)
prefix=$tmp/prefix
echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/nsa.h"

echo "== the example of README.md"
awk '/<!-- example.c: end -->/ { on = 0 } on && !/^```/ { print } /<!-- example.c: begin -->/ { on = 1 }' \
  "$src/README.md" >"$tmp/example.c"
[ "$(wc -l <"$tmp/example.c")" -ge 10 ] || { echo "README.md: no example between the markers"; exit 1; }

echo "== the package carries no OpenBLAS (libnsa does not call it)"
if grep -ril openblas "$prefix"/lib*/cmake/nsa "$prefix"/lib*/pkgconfig; then exit 1; fi

echo "== find_package(nsa): nsa::nsa and nsa::nsa_static"
cmake -S "$src/tests/install" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DNSA_EXAMPLE="$tmp/example.c" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/cmake" >/dev/null
"$tmp/cmake/example"
"$tmp/cmake/example_static"

echo "== pkg-config nsa: shared, then --static"
pc=$(dirname "$(find "$prefix" -name nsa.pc | head -n1)")
export PKG_CONFIG_PATH=$pc
libdir=$(pkg-config --variable=libdir nsa)
case "$(cd "$libdir" && pwd -P)" in "$prefix"/*) ;; *)
  echo "nsa.pc points outside the install prefix: libdir=$libdir"; exit 1 ;; esac
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
"$cc" -std=c11 $cflags "$tmp/example.c" -o "$tmp/example_pc" $(pkg-config --cflags nsa) \
  $(pkg-config --libs nsa) -Wl,-rpath,"$libdir"
"$tmp/example_pc"
static_libs=$(pkg-config --static --libs nsa)
# shellcheck disable=SC2046,SC2086
"$cc" -std=c11 $cflags "$tmp/example.c" -o "$tmp/example_pc_static" $(pkg-config --cflags nsa) \
  ${static_libs//-lnsa/$libdir/libnsa.a}
"$tmp/example_pc_static"

if [ -x "$prefix/bin/nsa" ] && [ -f "$prefix/share/nsa/kjv.txt" ]; then
  echo "== the installed nsa finds its corpus after the prefix moved"
  mv "$prefix" "$tmp/moved"
  (cd "$tmp" && "$tmp/moved/bin/nsa" train --steps 1 --eval_batches 1 --out "$tmp/run" --quiet)
  data=$(grep '"msg":"boot"' "$tmp/run/heartbeat.jsonl" | sed -E 's/.*"data":"([^"]*)".*/\1/')
  case "$data" in "$tmp/moved/"*share/nsa/kjv.txt) echo "corpus: $data" ;; *)
    echo "the installed nsa trained on $data, not on its own copy under $tmp/moved"; exit 1 ;; esac
fi
echo "== install test passed"
