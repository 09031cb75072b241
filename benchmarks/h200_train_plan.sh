#!/usr/bin/env bash
# Issue 16, 2026-12-04 (third session): micro-batches planned from the rows' own lengths and shared prefix
# (`training/speed.py:RowLengths`): 32b trains 30 × 2 instead of 20 × 3. One part per device call; raw output:
# benchmarks/results/raw-2026-12-04-plan.
#   a — 32b on the default path (30 × 2) against variant micro-batch-20 (20 × 3, the old plan), then TRL's defaults
#       (cut by the time limit where the call runs out: each record is written as it is taken);
#   b — 32b on the default path again, with PyTorch's expandable allocator segments (no fragmentation retries),
#       set by the environment (before the training's own switch existed);
#   c — 32b on the default path (expandable segments switched on by the training itself) against the variant
#       fixed-segments, then TRL's defaults;
#   d — 7b and 14b on the default path (their plans unchanged; expandable segments now on for them too);
#   e — 7b on the default path against the variant fixed-segments, then TRL's defaults.
source benchmarks/device-env.sh wheels-core wheels-fast
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" \
    >"$OUT/$name.log" 2>&1; grep '^{"size' "$OUT/$name.log" | cut -c1-400; }
case "$1" in
  a)
    bench train-32b 570 --size 32b --train-variant micro-batch-20 ;;
  b)
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True bench train-32b-expandable 330 --size 32b --fit-only 32b ;;
  c)
    bench train-32b 450 --size 32b --train-variant fixed-segments ;;
  d)
    bench train-7b 200 --size 7b --fit-only 7b
    bench train-14b 260 --size 14b --fit-only 14b ;;
  e)
    bench train-7b-ab 300 --size 7b --train-variant fixed-segments ;;
esac
