#!/usr/bin/env bash
# Where a training step's time goes now (issue 16, 2026-12-03 night session): the PyTorch profiler over steady
# steps of `slscale train`'s path at the default speed knobs (padding-free, fused LoRA, no LoRA input cast), with
# the copy operators by input shape. One part per device call; raw output: benchmarks/results/raw-2026-12-03-night.
#   profile — 3b, 7b and 14b (copies by input shape), then 3b's copies by Python call site (that table failed
#             in torch's table builder; the operator tables came back);
#   fused   — after the LoRA layer became one autograd function (no CopySlices clone, gradient sums in the
#             matmuls' epilogues): its GPU tests, then 3b alone and 2 side by side, 1.5b alone and 3 side by side;
#   sizes   — 3b alone, 2 and 3 side by side; 7b and 14b on the default path;
#   rest    — 32b on the default path; 0.5b alone and 4 side by side; 1.5b alone and 3 side by side again;
#   gaps    — (gaps SIZE...) the sizes' timelines (profile_train.py --trace): where the GPU idles between kernels, and what the CPU runs
#             then (not run: the machine was refused);
#   nan     — 7b without the Trainer's per-micro-batch NaN check of the loss (the new default), then with it
#             (variant loss-nan-check) in the same process; cut before TRL's defaults.
source benchmarks/device-env.sh wheels-core wheels-fast
profile() { local limit=$1; shift
  timeout "$limit" python3 benchmarks/profile_train.py --out "$OUT" "$@" >"$OUT/profile-$2.log" 2>&1
  tail -c 600 "$OUT/profile-$2.log"; echo; }
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" \
    >"$OUT/$name.log" 2>&1; grep '^{"size' "$OUT/$name.log" | cut -c1-300; }
case "$1" in
  profile)
    profile 110 --size 3b --copies
    profile 130 --size 7b --copies
    profile 180 --size 14b --copies
    mkdir -p "$OUT/stacks" && timeout 150 python3 benchmarks/profile_train.py --out "$OUT/stacks" --size 3b \
      --copies --stacks >"$OUT/stacks/profile-3b.log" 2>&1; tail -c 300 "$OUT/stacks/profile-3b.log" ;;
  fused)
    timeout 200 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_fused_lora_gpu.py 2>&1 \
      | tee "$OUT/tests-fused.log" | grep -v '^\s*$' | tail -8
    bench train-3b 190 --size 3b --fit-only 3b --trainings 2
    bench train-1.5b 170 --size 1.5b --fit-only 1.5b --trainings 3 ;;
  sizes)
    bench train-3b-again 250 --size 3b --fit-only 3b --trainings 2 --trainings 3
    bench train-7b 120 --size 7b --fit-only 7b
    bench train-14b 190 --size 14b --fit-only 14b ;;
  rest)
    bench train-32b 290 --size 32b --fit-only 32b
    bench train-0.5b 130 --size 0.5b --fit-only 0.5b --trainings 4
    bench train-1.5b-again 150 --size 1.5b --fit-only 1.5b --trainings 3 ;;
  gaps) mkdir -p "$OUT/gaps" && for size in "${@:2}"; do
      timeout 230 python3 benchmarks/profile_train.py --out "$OUT/gaps" --size "$size" --trace \
        >"$OUT/gaps/profile-$size.log" 2>&1; tail -c 3000 "$OUT/gaps/profile-$size.log"; echo; done ;;
  nan) bench train-7b-nan 170 --size 7b --train-variant loss-nan-check ;;
esac
