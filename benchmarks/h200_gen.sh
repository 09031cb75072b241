#!/usr/bin/env bash
# Generation and evaluation bench on the H200: plain generate vs the HF engine's variants, 0.5b and 7b;
# then the GPU tests (bench + trainers).
source benchmarks/device-env.sh wheels-core wheels-fast
slscale bench --random-weights --phase gen --phase eval --size 0.5b --size 7b --no-unsloth \
  --json "$OUT/gen.json" 2>&1 | tee "$OUT/gen.log"
timeout 150 python3 -m pytest -x -q -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/gpu-tests.log"
