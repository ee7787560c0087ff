#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run.sh — the `nsa` command line as a user meets it: one named case per convention of
# tools/cli.h (usage errors exit 2 naming the option with a hint and write nothing; --k=v;
# help from the tables; version; the run-directory guard of `nsa train`; `nsa sample --batch`).
# Not the parser's unit test: it runs the real binary. usage: run.sh NSA VERSION CASE
# Invariant: each case fails on the command line before tools/cli.c (planted bugs: docs in the
# commit that added it).
set -uo pipefail
nsa=$1 version=$2 case=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fails=0
fail() { echo "FAIL [$case]: $*" >&2; fails=$((fails + 1)); }

# usage_error WHAT ARGS...: exit code 2, "nsa CMD: ..." naming WHAT, a hint line, nothing
# written into the (empty) working directory.
usage_error() {
  local what=$1; shift
  local out rc
  out=$("$nsa" "$@" 2>&1 >/dev/null); rc=$?
  [ "$rc" = 2 ] || fail "nsa $*: exit code $rc, expected 2 ($out)"
  grep -qF -- "$what" <<<"$out" || fail "nsa $*: the message does not name '$what': $out"
  grep -q '^hint: ' <<<"$out" || fail "nsa $*: no hint line: $out"
  [ -z "$(ls -A)" ] || { fail "nsa $*: wrote $(ls -A)"; rm -rf ./* ./.[!.]*; }
}

# A corpus and a model small enough to train 2 steps in a second.
loud=(--layers 1 --dim 16 --heads 2 --kv_heads 1 --ffn 16 --seq_len 16 --batch 1 --l 4 --d 2
      --lp 4 --n 3 --w 8 --steps 2 --warmup 0 --eval_batches 1)
tiny=("${loud[@]}" --quiet)
corpus() { for i in $(seq 1 200); do printf 'And the light was good %d. ' "$i"; done >"$1"; }

case $case in
version)
  for a in --version version; do
    out=$("$nsa" $a) || fail "nsa $a: exit code $?"
    [[ $out =~ ^nsa\ $version\ \(commit\ ([0-9a-f]{12}(-dirty)?|unknown)\)$ ]] ||
      fail "nsa $a printed '$out', expected 'nsa $version (commit <12 hex>|unknown)'"
  done ;;
help)
  "$nsa" help >list.txt || fail "nsa help: exit code $?"
  cmds=$(awk '/^  [a-z]/ { print $1 }' list.txt | grep -v '^help$')
  [ "$(wc -w <<<"$cmds")" -ge 7 ] || fail "nsa help lists only: $cmds"
  for c in $cmds; do
    "$nsa" help "$c" >a.txt || fail "nsa help $c: exit code $?"
    "$nsa" "$c" --help >b.txt || fail "nsa $c --help: exit code $?"
    "$nsa" "$c" -h >c.txt || fail "nsa $c -h: exit code $?"
    grep -q "^usage: nsa $c" a.txt || fail "nsa help $c: no usage line"
    cmp -s a.txt b.txt && cmp -s a.txt c.txt || fail "nsa help $c, --help and -h differ"
    # every option the help lists, given its listed default, is one the parser takes
    while IFS= read -r row; do
      [[ $row =~ ^\ \ --([A-Za-z0-9_-]+).*\(default:\ (.*)\)$ ]] || continue
      o=${BASH_REMATCH[1]} d=${BASH_REMATCH[2]}
      [ "$d" = '""' ] && d=
      "$nsa" "$c" "--$o=$d" --help >/dev/null 2>err.txt ||
        fail "nsa $c --$o=$d (its listed default) is refused: $(cat err.txt)"
    done <a.txt
  done
  rm -f ./*.txt
  usage_error "nosuch" help nosuch
  usage_error "nosuch" nosuch ;;
bad_values)
  usage_error --temperature sample --temperature nan
  usage_error --temperature sample --temperature=inf
  usage_error --tokens sample --tokens 99999999999
  usage_error --top-k sample --top-k 5x
  for p in 0 -0.1 1.5 nan inf 0.5x "" 1e-400; do usage_error --top-p sample --top-p "$p"; done
  usage_error --top-p sample --top-p=0
  usage_error --report sample --report ""
  usage_error --batch sample --batch 0
  usage_error --batch sample --batch 5x
  usage_error --prompts sample --prompts nosuch
  usage_error "line 2 is empty" sample --prompts - <<<$'In the beginning\n\nGood'
  usage_error "no prompt" sample --prompts - </dev/null
  usage_error --seed sample --seed -1
  usage_error --device sample --device gpu
  usage_error --prompt decode-demo --prompt abc
  usage_error --lens decode-demo --lens 8192,x
  usage_error --T route --T 99999999999999999999
  usage_error --Hq route --Hq 4294967297
  usage_error --T route --T " 5"
  usage_error --flag route --flag NOEQUALS
  usage_error --dim train --dim 1x
  usage_error --lr train --lr nan
  usage_error --dim train --dim " 5"
  usage_error --steps train --steps 99999999999
  usage_error --seed train --seed -1
  usage_error steps train --steps 0 --out run
  usage_error --data train --data . --out run
  usage_error --data train --data nosuch --out run ;;
bad_flags)
  usage_error --config train --config
  usage_error --out sample --out --tokens 5
  usage_error --bogus train --bogus 1
  usage_error --bogus sample --bogus=1
  usage_error --bogus route --bogus 1
  usage_error --bogus decode-demo --bogus 1
  usage_error --bogus selfcheck --bogus
  usage_error --bogus parity --bogus
  usage_error --bogus version --bogus
  usage_error stray train stray
  usage_error --quiet train --quiet=1
  usage_error --force train --resume --force --out run ;;
directory_as_file)
  mkdir d
  out=$("$nsa" train --config d 2>&1); rc=$?
  [ "$rc" = 2 ] && grep -q -- "--config: 'd' is a directory" <<<"$out" ||
    fail "nsa train --config DIR: exit code $rc: $out"
  out=$("$nsa" sample --ckpt d 2>&1); rc=$?
  [ "$rc" = 2 ] && grep -q -- "--ckpt: 'd' is a directory" <<<"$out" ||
    fail "nsa sample --ckpt DIR: exit code $rc: $out" ;;
key_equals_value)
  "$nsa" route --T 100 --dtype f32 --Hq 8 --Hkv 2 --Dk 64 --Dv 64 --device sm90 >a.txt ||
    fail "route --k v: exit code $?"
  "$nsa" route --T=100 --dtype=f32 --Hq=8 --Hkv=2 --Dk=64 --Dv=64 --device=sm90 >b.txt ||
    fail "route --k=v: exit code $?"
  grep -q "T=100 f32" a.txt || fail "route did not take --T 100 --dtype f32: $(head -2 a.txt)"
  cmp -s a.txt b.txt || fail "--k=v and --k v give different results" ;;
same_defaults)
  # an option that several commands take has one default, except those docs/cli.md lists with
  # the reason (another meaning, or the paper's shape in route against a small model elsewhere)
  differ=" seed steps prompt batch device l d lp n w Hq Hkv Dk Dv "
  declare -A def from
  for c in $("$nsa" help | awk '/^  [a-z]/ { print $1 }' | grep -v '^help$'); do
    while IFS= read -r row; do
      [[ $row =~ ^\ \ --([A-Za-z0-9_-]+) ]] || continue
      o=${BASH_REMATCH[1]} d=none
      [[ $row =~ \(default:\ (.*)\)$ ]] && d=${BASH_REMATCH[1]}
      [[ $differ == *" $o "* || $o == help ]] && continue
      if [ -n "${def[$o]+x}" ] && [ "${def[$o]}" != "$d" ]; then
        fail "--$o: default '${def[$o]}' in ${from[$o]}, '$d' in $c"
      fi
      def[$o]=$d from[$o]=$c
    done < <("$nsa" help "$c")
  done
  [ "${def[precision]}" = bf16 ] && [ "${from[precision]}" = sample ] ||
    fail "--precision: not seen in train and sample (${from[precision]:-none})" ;;
train_guard)
  corpus c.txt
  mkdir run && echo '{"msg":"boot"}' >run/heartbeat.jsonl && echo old >run/model.safetensors
  before=$(cd run && ls -A && cat ./*)
  out=$("$nsa" train --out run --data c.txt "${tiny[@]}" 2>&1); rc=$?
  [ "$rc" = 2 ] && grep -q -- "--resume" <<<"$out" && grep -q -- "--force" <<<"$out" ||
    fail "train into a run directory: exit code $rc: $out"
  [ "$(cd run && ls -A && cat ./*)" = "$before" ] || fail "the refused run changed run/"
  rm run/model.safetensors
  "$nsa" train --out run --data c.txt "${tiny[@]}" 2>/dev/null
  [ $? = 2 ] || fail "a heartbeat alone did not make run/ a run"
  echo old >run/model.safetensors && echo keep >run/notes.txt
  "$nsa" train --out run --data c.txt "${tiny[@]}" --force || fail "--force: exit code $?"
  [ "$(cat run/notes.txt)" = keep ] || fail "--force touched another file"
  [ "$(head -c 3 run/model.safetensors)" != old ] || fail "--force kept the old checkpoint"
  [ "$(grep -c '"msg":"boot"' run/heartbeat.jsonl)" = 1 ] || fail "--force kept the old heartbeat"
  "$nsa" train --out run --data c.txt "${tiny[@]}" --steps 3 --resume || fail "--resume: exit code $?"
  [ "$(grep -c '"msg":"boot"' run/heartbeat.jsonl)" = 2 ] || fail "--resume did not append"
  "$nsa" train --out fresh --data c.txt "${tiny[@]}" || fail "a new directory: exit code $?"
  rm -rf run fresh c.txt ;;
progress)
  # a first line at once (step 0, before log_every), losses in bits per byte, and the heartbeat
  # that scripts/plot_loss.sh still reads
  corpus c.txt
  "$nsa" train --out run --data c.txt "${loud[@]}" --steps 3 --log_every 100 2>err.txt ||
    fail "train: exit code $?"
  grep -q 'step 0/3  bpb train - val [0-9.]*' err.txt || fail "no step 0 line: $(cat err.txt)"
  grep -q 'step 1/3  bpb train [0-9.]* val' err.txt || fail "no step 1 line: $(cat err.txt)"
  if command -v gnuplot >/dev/null; then
    bash "$(dirname "$0")/../../scripts/plot_loss.sh" run/heartbeat.jsonl run/loss.png >/dev/null ||
      fail "plot_loss.sh: exit code $?"
    [ -s run/loss.png ] || fail "plot_loss.sh wrote no PNG"
  fi
  rm -rf run c.txt err.txt ;;
sample_batch)
  # prompts from a file or stdin, decoded --batch at a time: the same bytes for every --batch,
  # prompt i (from 0) as --prompt alone with --seed + i; the speed line and --report's JSON
  corpus c.txt
  "$nsa" train --out run --data c.txt "${tiny[@]}" || fail "train: exit code $?"
  printf 'In the beginning\nAnd the light\r\nGood\n' >p.txt
  s=(sample --out run --tokens 24 --temperature 1 --top-k 0 --top-p 0.95 --seed 7)
  "$nsa" "${s[@]}" --prompts p.txt --batch 3 --report r.json >b3.txt 2>err.txt ||
    fail "--batch 3: exit code $?: $(cat err.txt)"
  "$nsa" "${s[@]}" --prompts - --batch 2 <p.txt >b2.txt 2>/dev/null || fail "--batch 2: exit code $?"
  "$nsa" "${s[@]}" --prompts p.txt >b1.txt 2>/dev/null || fail "--batch 1: exit code $?"
  cmp -s b3.txt b1.txt && cmp -s b2.txt b1.txt || fail "the output depends on --batch"
  [ "$(grep -c '^==> prompt [123] <==$' b3.txt)" = 3 ] || fail "no header per prompt: $(cat b3.txt)"
  "$nsa" "${s[@]}" --prompt 'And the light' --seed 8 >one.txt 2>/dev/null || fail "alone: exit $?"
  sed -n '/^==> prompt 2 <==$/,/^==> prompt 3 <==$/p' b3.txt | sed '1d;$d' >two.txt
  cmp -s one.txt two.txt || fail "prompt 2 of 3 differs from it alone with --seed 8"
  grep -q '^nsa sample: 3 row(s) by 3, 33 prompt bytes: first token after [0-9.]* ms (prefill); decode 69 tokens in [0-9.]* s = [0-9.]* tokens/s$' err.txt ||
    fail "no speed line: $(cat err.txt)"
  grep -q '^{"device":"cpu","precision":"f32","rows":3,"batch":3,"prompt_tokens":33,"tokens_per_row":24,"time_to_first_token_s":[0-9.e-]*,"decode_tokens":69,"decode_s":[0-9.e-]*,"decode_tokens_per_s":[0-9.e+-]*}$' r.json ||
    fail "--report: $(cat r.json)"
  [ "$(ls -A | grep -c tmp)" = 0 ] || fail "a temporary file was left: $(ls -A)"
  rm -rf run c.txt p.txt r.json b?.txt one.txt two.txt err.txt ;;
*) echo "run.sh: unknown case $case" >&2; exit 2 ;;
esac
[ "$fails" = 0 ] || { echo "rerun: bash $0 $nsa $version $case" >&2; exit 1; }
