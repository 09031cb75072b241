#!/usr/bin/env bash
# Training call 1 of 2 on the H200: 0.5b, 1.5b, 3b on `slscale train`'s path, each alone and then several
# conditions side by side (as `slscale run` trains them); TRL's defaults at 0.5b; then the side-by-side GPU test.
source benchmarks/device-env.sh wheels-core wheels-fast
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
timeout 270 slscale bench --random-weights --phase train --size 0.5b --size 1.5b --size 3b \
  --fit-only 1.5b --fit-only 3b --no-unsloth --json "$OUT/train-small.json" 2>&1 | tee "$OUT/train-small.log"
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_side_by_side_gpu.py 2>&1 | tee "$OUT/gpu-tests.log"
