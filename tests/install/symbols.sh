#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# symbols.sh LIBNSA_SO NSA_H — the exported-symbols test: the functions libnsa.so exports
# (nm -D --defined-only) must be exactly the functions include/nsa.h declares. An internal
# function leaking out, or a public one declared without NSA_API (hence hidden), fails it.
# Not an ABI checker: it compares names, not signatures.
set -euo pipefail
lib=$1 header=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nsa-symbols.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# linker-made markers (_init, _end, __bss_start, ...) are not the library's symbols
nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' |
  grep -vxE '_init|_fini|_edata|_end|__bss_start' | sort -u >"$tmp/exported"
# every function declaration at the start of a line: [NSA_API] type [*]nsa_name(
grep -E '^(NSA_API +)?[a-z][a-z0-9_ ]*[ *]nsa_[a-z0-9_]+\(' "$header" |
  sed -E 's/^.*[ *](nsa_[a-z0-9_]+)\(.*$/\1/' | sort -u >"$tmp/declared"
n=$(wc -l <"$tmp/declared")
[ "$n" -gt 0 ] || { echo "no declarations found in $header"; exit 1; }
if ! diff -u "$tmp/declared" "$tmp/exported" >"$tmp/diff"; then
  echo "libnsa.so exports differ from the functions of $header (- declared only, + exported only):"
  grep -E '^[-+][a-z_]' "$tmp/diff"
  exit 1
fi
echo "libnsa.so exports exactly the $n functions of $header"
