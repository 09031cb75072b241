#!/usr/bin/env bash
# Issue 16, 2026-12-04 session: the GPU's idle time between a training's steps and micro-batches, and the LoRA
# layer's order of sums. One part per device call; raw output: benchmarks/results/raw-2026-12-04.
#   gaps    — `h200_train_profile.sh gaps 7b 14b` (at 26b55d0): the timelines behind the changes below;
#   order   — the LoRA layer's microbenchmark at four sizes (PEFT, stop 26's order, the rank-r product first),
#             the GPU tests of the fused layer and padding-free attention, then 7b on the default path (at
#             2f1d5d9: a data-loader worker collated, the row boundaries came from the collator, no train-mode
#             walk) against the variant without the worker (dropped after: 132.6 rows/s without, 130.4 with);
#   a, b    — 32b and 1.5b × 3; 14b and 3b × 2 (the default path, warm epoch ends included);
#   c       — the GPU tests of trainings side by side and of the trainers, 0.5b × 4, 3b × 3 (the side-by-side
#             test found the executor never quit its MPS daemon: fixed in local.py);
#   d       — that GPU test again, and 7b on the shipped default path (no data-loader worker).
source benchmarks/device-env.sh wheels-core wheels-fast
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" \
    >"$OUT/$name.log" 2>&1; grep '^{"size' "$OUT/$name.log" | cut -c1-300; }
case "$1" in
  order)
    timeout 150 python3 benchmarks/fused_lora_layer.py --size 1.5b --size 7b --size 14b --size 32b 2>&1 \
      | tee "$OUT/fused-layer.log" | grep -v Warning
    timeout 240 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_fused_lora_gpu.py \
      tests/gpu/test_packed_attention_gpu.py 2>&1 | tee "$OUT/tests-gpu.log" | grep -v '^\s*$' | tail -6
    bench train-7b 230 --size 7b --train-variant no-dataloader-worker ;;
  a)
    bench train-32b 330 --size 32b --fit-only 32b
    bench train-1.5b 190 --size 1.5b --fit-only 1.5b --trainings 3 ;;
  b)
    bench train-14b 240 --size 14b --fit-only 14b
    bench train-3b 210 --size 3b --fit-only 3b --trainings 2 ;;
  c)
    timeout 240 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_side_by_side_gpu.py \
      tests/gpu/test_trainers_gpu.py 2>&1 | tee "$OUT/tests-gpu-c.log" | grep -v '^\s*$' | tail -6
    bench train-0.5b 140 --size 0.5b --fit-only 0.5b --trainings 4
    bench train-3b-x3 170 --size 3b --fit-only 3b --trainings 3 ;;
  d)
    timeout 200 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_side_by_side_gpu.py 2>&1 \
      | tee "$OUT/tests-gpu-d.log" | grep -v '^\s*$' | tail -3
    bench train-7b-final 170 --size 7b --fit-only 7b ;;
esac
