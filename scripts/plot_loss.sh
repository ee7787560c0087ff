#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# plot_loss.sh — turns an `nsa train` heartbeat (JSON Lines) into a PNG of the loss curves, in
# bits per byte: training loss from "progress" records, validation from "eval" records.
# usage: bash scripts/plot_loss.sh runs/kjv/heartbeat.jsonl [out.png]   (needs gnuplot)
set -euo pipefail
hb=${1:?usage: plot_loss.sh HEARTBEAT.jsonl [OUT.png]}
out=${2:-$(dirname "$hb")/loss.png}
[ -s "$hb" ] || { echo "plot_loss.sh: $hb is missing or empty" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot_loss.sh: gnuplot not found (bash scripts/setup.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# field KEY of a flat JSON line: the text after "KEY": up to the next , or }
field='function f(k,  s) { if (!match($0, "\"" k "\":[^,}]*")) return ""; s = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", s); return s }'
# progress records carry bits_per_byte; heartbeats written before it only loss (nats)
awk "$field"' /"msg":"progress"/ { b = f("bits_per_byte"); if (b == "") { b = f("loss"); if (b != "null") b = b / log(2) } if (b != "null") print f("step"), b }' "$hb" > "$tmp/train.dat"
awk "$field"' /"msg":"eval"/ { v = f("bits_per_byte"); if (v != "null") print f("step"), v }' "$hb" > "$tmp/val.dat"
[ -s "$tmp/train.dat" ] || { echo "plot_loss.sh: no progress records in $hb" >&2; exit 1; }
title=$(awk "$field"' /"msg":"boot"/ { m = f("model"); gsub(/"/, "", m); t = m } END { print t }' "$hb")
plot="plot '$tmp/train.dat' using 1:2 with lines lw 1.5 lc rgb '#1f77b4' title 'train'"
[ -s "$tmp/val.dat" ] && plot="$plot, '$tmp/val.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#d62728' title 'validation'"
gnuplot <<GP
set terminal pngcairo size 1000,560 font 'sans,10' noenhanced
set output '$out'
set title "nsa train — byte-level NSA language model\n$title"
set xlabel 'step'
set ylabel 'loss (bits per byte)'
set grid
set key top right
$plot
GP
echo "plot_loss.sh: wrote $out"
