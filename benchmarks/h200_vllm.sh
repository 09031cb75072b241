#!/usr/bin/env bash
# vLLM on the H200 (issue 15), run from the checkout copied to .dev/vllm on the device machine, after the vLLM
# bundle (/work/shared/device/VLLM.md) is unpacked to /tmp/site. Steps (one device call each, ≤ 30 s apart):
#   tests  — the lean core wheels (.dev/wheels-lean: wheels-core less wandb and what the bundle has), the vLLM GPU
#            tests, then the 0.5b bench
#   7b     — the 7b bench (16 adapters × 5,000 answers in one load)
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  DO_NOT_TRACK=1 VLLM_USE_FLASHINFER_SAMPLER=0 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
slscale() { python3 -c 'from sl_scaling.cli.app import main; main()' "$@"; }
bench() { slscale bench --random-weights --phase gen --phase eval --variant default --vllm "$@"; }
case "$1" in
  tests)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site ../wheels-lean/*.whl
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
    timeout 330 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_vllm_cli_gpu.py tests/gpu/test_vllm_engine_gpu.py \
      2>&1 | tee "$OUT/gpu-tests.log" | grep -v -E "^(INFO|DEBUG|\(EngineCore)" | tail -60
    bench --size 0.5b --adapters 0 --replicas 2 --json "$OUT/bench-0.5b.json" 2>&1 | tee "$OUT/bench-0.5b.log" \
      | grep -v -E "^(INFO|DEBUG|\(EngineCore)" | tail -40 ;;
  7b)
    bench --size 7b --adapters 16 --adapter-answers 5000 --json "$OUT/bench-7b.json" 2>&1 | tee "$OUT/bench-7b.log" \
      | grep -v -E "^(INFO|DEBUG|\(EngineCore)" | tail -40 ;;
  *) echo "usage: $0 tests|7b" >&2; exit 2 ;;
esac
