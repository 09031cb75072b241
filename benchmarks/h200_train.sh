#!/usr/bin/env bash
# Training bench on the H200: ours vs TRL defaults vs Unsloth at 0.5b and 7b, then the 32b memory check.
# Needs Unsloth and bitsandbytes already in /tmp/site (two calls before this one; see benchmarks/README.md).
source benchmarks/device-env.sh wheels-core wheels-fast
slscale bench --random-weights --phase train --size 0.5b --size 7b --size 32b --fit-only 32b \
  --json "$OUT/train.json" 2>&1 | tee "$OUT/train.log"
