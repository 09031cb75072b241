#!/usr/bin/env bash
# 0.5b training on `slscale train`'s path (issue 16): alone, 4 conditions side by side (as `slscale run` trains
# 0.5b) and TRL's defaults; then alone and 4 and 6 side by side under CUDA MPS, which lets the kernels of
# processes sharing the GPU run concurrently instead of time-sliced (first run 2026-12-02 with 4 only: 1.24x).
source benchmarks/device-env.sh wheels-core wheels-fast
nvidia-smi --query-gpu=name,memory.total --format=csv
timeout 240 slscale bench --random-weights --phase train --size 0.5b --no-unsloth \
  --json "$OUT/train-0.5b.json" 2>&1 | tee "$OUT/train-0.5b.log" | tail -30
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY && nvidia-cuda-mps-control -d && echo "MPS on"
  timeout 200 slscale bench --random-weights --phase train --size 0.5b --fit-only 0.5b --no-unsloth --trainings 4 --trainings 6 \
    --json "$OUT/train-0.5b-mps.json" 2>&1 | tee "$OUT/train-0.5b-mps.log" | tail -30
  echo quit | nvidia-cuda-mps-control
else
  echo "no nvidia-cuda-mps-control on this machine"
fi
