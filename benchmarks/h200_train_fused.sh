#!/usr/bin/env bash
# Fused LoRA layers (issue 16): each LoRA layer's adapter term added inside its matmul (`addmm`), the default on
# a GPU since 2026-12-03 (evening); and the in-memory final evaluation the projection counts. One part per
# device call (each ≤ 10 minutes):
#   tests — the GPU tests (fused vs PEFT's forward; trainings side by side; packed attention), then 7b default,
#           PEFT's forward (`peft-lora`) and the final evaluation in memory (`final-evaluation`);
#   large — the same three at 14b, then 32b default;
#   small — 0.5b, 1.5b, 3b: alone and side by side as `slscale run` trains them, 0.5b's `peft-lora`;
#   32b   — 32b's `peft-lora` and `final-evaluation`.
source benchmarks/device-env.sh wheels-core wheels-fast
python3 -c "import peft, torch, transformers; print(peft.__version__, torch.__version__, transformers.__version__)"
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" 2>&1 \
    | tee "$OUT/$name.log" | grep -v '^\s*$' | tail -25; }
compare="--train-variant peft-lora --train-variant final-evaluation"
case "$1" in
  check)  # the fused forward runs in training, and what it saves per layer
    timeout 120 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_fused_lora_gpu.py 2>&1 | tee "$OUT/tests-fused.log" \
      | grep -v "^\s*$" | tail -6
    timeout 60 python3 benchmarks/fused_lora_layer.py --size 7b --size 14b 2>&1 | tee "$OUT/fused-layer.log" ;;
  tests)
    timeout 300 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_fused_lora_gpu.py \
      tests/gpu/test_side_by_side_gpu.py tests/gpu/test_packed_attention_gpu.py 2>&1 | tee "$OUT/tests.log" \
      | grep -v '^\s*$' | tail -25
    bench train-7b 280 --size 7b $compare ;;
  large)
    bench train-14b 330 --size 14b $compare
    bench train-32b 240 --size 32b --fit-only 32b ;;
  small)
    bench train-0.5b 200 --size 0.5b --train-variant peft-lora
    bench train-1.5b 170 --size 1.5b --fit-only 1.5b
    bench train-3b 170 --size 3b --fit-only 3b ;;
  32b)
    bench train-32b-variants 500 --size 32b $compare ;;
esac
