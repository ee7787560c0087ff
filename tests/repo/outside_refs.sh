#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# outside_refs.sh SOURCE_DIR — fails when a tracked file cites a document outside the repository
# (the session's shared folder, its design, performance, machine or style notes, or a spec/ path):
# a reader of the repository cannot open them. The design and the routing contract live in
# docs/design.md and docs/contract.md. Not a link checker: it only knows these names.
set -euo pipefail
src=$1
self=tests/repo/outside_refs.sh
pattern='\.\./shared|(DESIGN|PERF|MACHINES|STYLE)\.md|(^|[^A-Za-z0-9_])spec/'
cd "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  list() { git ls-files -z; }
else  # a source tree without git (a release archive): every file but build outputs
  list() { find . -path ./.git -prune -o -path './build*' -prune -o -type f -print0 | sed -z 's#^\./##'; }
fi
hits=$(list | grep -zv -x -e "$self" | xargs -0 grep -nIE "$pattern" -- || true)
if [ -n "$hits" ]; then
  echo "files that cite a path outside the repository (use docs/design.md or docs/contract.md):"
  echo "$hits"
  exit 1
fi
echo "no tracked file cites a path outside the repository"
