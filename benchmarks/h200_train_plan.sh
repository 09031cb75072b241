#!/usr/bin/env bash
# Issue 16, 2026-12-04 (third session): micro-batches planned from the rows' own lengths and shared prefix
# (`training/speed.py:RowLengths`): 32b trains 30 × 2 instead of 20 × 3. One part per device call; raw output:
# benchmarks/results/raw-2026-12-04-plan.
#   a — 32b on the default path (30 × 2) against variant micro-batch-20 (20 × 3, the old plan), then TRL's defaults
#       (cut by the time limit where the call runs out: each record is written as it is taken).
source benchmarks/device-env.sh wheels-core wheels-fast
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" \
    >"$OUT/$name.log" 2>&1; grep '^{"size' "$OUT/$name.log" | cut -c1-400; }
case "$1" in
  a)
    bench train-32b 570 --size 32b --train-variant micro-batch-20 ;;
esac
