#!/usr/bin/env bash
# Padding-free training (issue 16): PyTorch's varlen FlashAttention kernel on flattened micro-batches, the
# default on a GPU since 2026-12-03. One part per device call (each ≤ 10 minutes):
#   tests  — the GPU tests (kernel vs per-row SDPA; padding-free vs padded training; the LoRA cast), then 7b
#            default and padded in one call;
#   large  — 14b default and padded, 32b default;
#   small  — 0.5b, 1.5b, 3b: alone, and side by side as `slscale run` trains them;
#   planner — after the memory planner's recalibration on these peaks: 14b at its new 60 × 1, then 0.5b × 4 and
#            × 6 and 1.5b × 4 under CUDA MPS.
source benchmarks/device-env.sh wheels-core wheels-fast
python3 -c 'import torch, inspect; from torch.nn.attention.varlen import varlen_attn as f; print(torch.__version__, inspect.signature(f))'
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" slscale bench --random-weights --phase train --no-unsloth --json "$OUT/$name.json" "$@" 2>&1 \
    | tee "$OUT/$name.log" | grep -v '^\s*$' | tail -25; }
case "$1" in
  tests)
    timeout 330 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_packed_attention_gpu.py \
      tests/gpu/test_lora_input_cast_gpu.py 2>&1 | tee "$OUT/tests.log" | grep -v '^\s*$' | tail -25
    bench train-7b 200 --size 7b --train-variant padded ;;
  large)
    timeout 60 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_packed_attention_gpu.py -k kernel 2>&1 \
      | tee "$OUT/tests-kernel.log" | grep -v '^\s*$' | tail -8
    bench train-14b 250 --size 14b --train-variant padded
    bench train-32b 250 --size 32b --fit-only 32b ;;
  small)
    bench train-0.5b 170 --size 0.5b
    bench train-1.5b 190 --size 1.5b --fit-only 1.5b
    bench train-3b 190 --size 3b --fit-only 3b ;;
  planner)
    bench train-14b-60 150 --size 14b --fit-only 14b
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY && nvidia-cuda-mps-control -d && echo "MPS on"
    bench train-0.5b-mps 190 --size 0.5b --fit-only 0.5b --trainings 4 --trainings 6
    bench train-1.5b-mps 130 --size 1.5b --fit-only 1.5b --trainings 4
    echo quit | nvidia-cuda-mps-control ;;
esac
