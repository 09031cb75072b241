#!/usr/bin/env bash
# Trainings sharing the GPU under slscale's own CUDA MPS daemon (issue 16; `sl_scaling/executors/mps.py`, the
# default since 2026-12-03, the MPS session): the executor starts a private control daemon as the first training
# that shares a GPU starts, so that the small sizes' trainings overlap their kernels instead of taking turns.
# One part per device call (each ≤ 10 minutes); raw records: benchmarks/results/raw-2026-12-03-mps:
#   tests — the GPU tests (side by side under the private daemon, after this process took a CUDA context of its
#           own; fused LoRA; packed attention), then 0.5b alone, 4 and 6 side by side;
#   1.5b  — alone, 3, 4 and 5 side by side;
#   3b    — the side-by-side GPU test again (its final form), then 3b alone, 2, 3 and 4 side by side;
#   check — after the daemon got its probe (a CUDA client before the trainings) and the fused LoRA layer's sum went
#           in place: their GPU tests; 0.5b alone; 7b default; where a 14b step's copies come from
#           (profile_train.py --copies; cut short by the call's limit). As run (2900fcc) it also timed TRL's loss
#           without its entropy/accuracy metrics' GPU syncs (0.5b alone 269.6 rows/s against 269.1 with them, a
#           bit-identical training on the H200): no gain, so that change was taken out again.
source benchmarks/device-env.sh wheels-core wheels-fast
command -v nvidia-cuda-mps-control || echo "no nvidia-cuda-mps-control: trainings will take turns"
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" \
    >"$OUT/$name.log" 2>&1; grep '^{"size' "$OUT/$name.log" | cut -c1-300; }
case "$1" in
  tests)
    timeout 300 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_side_by_side_gpu.py \
      tests/gpu/test_fused_lora_gpu.py tests/gpu/test_packed_attention_gpu.py 2>&1 | tee "$OUT/tests.log" \
      | grep -v '^\s*$' | tail -40
    bench train-0.5b 260 --size 0.5b --fit-only 0.5b --trainings 4 --trainings 6 ;;
  1.5b) bench train-1.5b 560 --size 1.5b --fit-only 1.5b --trainings 3 --trainings 4 --trainings 5 ;;
  3b) timeout 150 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_side_by_side_gpu.py 2>&1 \
      | tee "$OUT/tests-side-by-side.log" | grep -v '^\s*$' | tail -12
    bench train-3b 440 --size 3b --fit-only 3b --trainings 2 --trainings 3 --trainings 4 ;;
  check)
    timeout 240 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_side_by_side_gpu.py \
      tests/gpu/test_fused_lora_gpu.py 2>&1 | tee "$OUT/tests-check.log" | grep -v '^\s*$' | tail -8
    bench train-0.5b-alone 120 --size 0.5b --no-side-by-side
    bench train-7b 120 --size 7b --fit-only 7b
    timeout 100 python3 benchmarks/profile_train.py --size 14b --out "$OUT" --copies 2>&1 | tail -2 ;;
esac
