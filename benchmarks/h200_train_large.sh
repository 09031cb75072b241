#!/usr/bin/env bash
# Training call 2 of 2 on the H200 (right after call 1, machine still warm: the wheels are installed):
# 32b, 14b and 7b on `slscale train`'s path, one process each (nothing of a size lingers in the next one's
# memory); at 14b also micro-batches not regrouped by length, gradient checkpointing on, TRL defaults (as time allows).
source benchmarks/device-env.sh
bench() { timeout "$1" slscale bench --random-weights --phase train --no-unsloth "${@:2}"; }
bench 210 --size 32b --fit-only 32b --json "$OUT/train-32b.json" 2>&1 | tee "$OUT/train-large.log"
bench 140 --size 14b --train-variant unsorted-micro-batches --train-variant checkpointing \
  --json "$OUT/train-14b.json" 2>&1 | tee -a "$OUT/train-large.log"
bench 60 --size 7b --fit-only 7b --json "$OUT/train-7b.json" 2>&1 | tee -a "$OUT/train-large.log"
