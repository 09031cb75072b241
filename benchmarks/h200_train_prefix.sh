#!/usr/bin/env bash
# Issue 16, 2026-12-04 (second session): the rows' common prompt prefix computed once per micro-batch
# (`share_prefix`). One part per device call; raw output: benchmarks/results/raw-2026-12-04-prefix.
#   a — the GPU tests of packed attention (with and without a shared prefix: FlashAttention's bottom-right causal
#       alignment, the short training with against without it), then 7b on the default path against the
#       variant without the shared prefix and TRL's defaults;
#   b — 32b, and 1.5b × 3 (the default path, warm epoch ends included);
#   c — 14b, and 3b × 2;
#   d — 1.5b (alone and × 3) against the variant without the shared prefix in the same call, then 0.5b × 4;
#   e — 3b (alone and × 2) against the variant without the shared prefix.
source benchmarks/device-env.sh wheels-core wheels-fast
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" \
    >"$OUT/$name.log" 2>&1; grep '^{"size' "$OUT/$name.log" | cut -c1-300; }
case "$1" in
  a)
    timeout 220 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_packed_attention_gpu.py -s 2>&1 \
      | tee "$OUT/tests-gpu-a.log" | grep -E 'errors|passed|failed|Error|adapter' | cut -c1-400
    bench train-7b 300 --size 7b --train-variant no-shared-prefix ;;
  b)
    bench train-32b 330 --size 32b --fit-only 32b
    bench train-1.5b 200 --size 1.5b --fit-only 1.5b --trainings 3 ;;
  c)
    bench train-14b 250 --size 14b --fit-only 14b
    bench train-3b 210 --size 3b --fit-only 3b --trainings 2 ;;
  d)
    bench train-1.5b-ab 330 --size 1.5b --trainings 3 --train-variant no-shared-prefix
    bench train-0.5b 200 --size 0.5b --fit-only 0.5b --trainings 4 ;;
  e)
    bench train-3b-ab 400 --size 3b --trainings 2 --train-variant no-shared-prefix ;;
esac
