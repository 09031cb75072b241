#!/usr/bin/env bash
# Fused LoRA layers (issue 16): each LoRA layer's adapter term added inside its matmul (`addmm`), the default on
# a GPU since 2026-12-03 (the fused-LoRA session); and the in-memory final evaluation the projection counts. One part per
# device call (each ≤ 10 minutes), as run on 2026-12-03 (raw records: benchmarks/results/raw-2026-12-03-fused):
#   tests — the GPU tests (fused vs PEFT's forward; trainings side by side; packed attention), then 7b default,
#           PEFT's forward (`peft-lora`) and the final evaluation in memory (`final-evaluation`);
#   14b   — the fused forward provably runs in training (its GPU test, with a counter), what it saves per layer
#           (benchmarks/fused_lora_layer.py), then the same three at 14b;
#   sizes — 32b, 0.5b and 3b default (alone, and side by side as `slscale run` trains them);
#   final — 1.5b default, and 0.5b's final evaluation in memory;
#   liger — after Liger's kernels moved from TRL's deprecated flag to transformers' `apply_liger_kernel`: the
#           modules it patches (and no FutureWarning), then 7b default.
source benchmarks/device-env.sh wheels-core wheels-fast
python3 -c "import peft, torch, transformers; print(peft.__version__, torch.__version__, transformers.__version__)"
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" \
    >"$OUT/$name.log" 2>&1; grep '^{"size' "$OUT/$name.log" | cut -c1-260; }
compare="--train-variant peft-lora --train-variant final-evaluation"
case "$1" in
  tests)
    timeout 300 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_fused_lora_gpu.py \
      tests/gpu/test_side_by_side_gpu.py tests/gpu/test_packed_attention_gpu.py 2>&1 | tee "$OUT/tests.log" \
      | grep -v '^\s*$' | tail -25
    bench train-7b 280 --size 7b $compare ;;
  14b)
    timeout 120 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_fused_lora_gpu.py 2>&1 \
      | tee "$OUT/tests-fused.log" | grep -v '^\s*$' | tail -6
    timeout 60 python3 benchmarks/fused_lora_layer.py --size 7b --size 14b 2>&1 | tee "$OUT/fused-layer.log"
    bench train-14b 330 --size 14b $compare ;;
  sizes)
    bench train-32b 225 --size 32b --fit-only 32b
    bench train-0.5b 150 --size 0.5b --fit-only 0.5b
    bench train-3b 175 --size 3b --fit-only 3b ;;
  final)
    bench train-1.5b 170 --size 1.5b --fit-only 1.5b
    bench train-0.5b-final 170 --size 0.5b --no-side-by-side --train-variant final-evaluation ;;
  liger)
    python3 - <<'PY' 2>&1 | grep -v '^Backend impl' | tail -5
import warnings
warnings.simplefilter("error", FutureWarning)
from sl_scaling.bench import shapes
from sl_scaling.training.config import TrainConfig
from sl_scaling.training.trl import apply_liger_kernels, with_lora
model = with_lora(shapes.random_model("0.5b"), TrainConfig())
apply_liger_kernels(model)
base = model.get_base_model()
print("norm", type(base.model.norm).__name__, base.model.norm.forward.__qualname__)
print("mlp", base.model.layers[0].mlp.forward.__qualname__)
PY
    bench train-7b-liger 200 --size 7b --fit-only 7b ;;
esac
