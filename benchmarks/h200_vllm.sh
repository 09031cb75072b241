#!/usr/bin/env bash
# vLLM on the H200 (issue 15), run from the repository root on the device machine after the vLLM bundle
# (/work/shared/device/VLLM.md: two calls carrying its parts) is unpacked to /tmp/site. Steps, one device call each:
#   tests  — install .dev/wheels-lean (wheels-core less wandb and what the bundle already has), the vLLM engine's
#            GPU tests (~6 min with the engine starts)
#   cli    — the end-to-end `slscale gen/eval --engine vllm` GPU tests (after `tests`, on the warm machine)
#   0.5b   — the 0.5b generation bench (one process, and 2 processes sharing the GPU, as `gen` runs 0.5b)
#   7b     — the 7b bench: generation, and 16 adapters × 5,000 answers evaluated in one load
#   7b-eval — only the 7b evaluation: 100 answers (plain generate, HF, vLLM), then 16 adapters × 5,000 in one load
#   7b-replicas — 7b generation with 2 engine processes sharing the GPU beside one (untried: the per-row seed
#            loop is CPU time each process could overlap with the other's GPU steps)
#   32b    — the 32b generation bench (1,024 prompts)
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  DO_NOT_TRACK=1 VLLM_USE_FLASHINFER_SAMPLER=0 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
bench() {  # bench SECONDS ARGS...: `slscale bench` under a time limit (its --json is written as it goes)
  local limit=$1; shift
  timeout "$limit" python3 -c 'from sl_scaling.cli.app import main; main()' bench --random-weights \
    --variant default --vllm "$@"
}
quiet() { grep -v -E "^(INFO|DEBUG|\(EngineCore)" | tail -"$1"; }
case "$1" in
  tests)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/wheels-lean/*.whl
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
    timeout "${TESTS_S:-480}" python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_vllm_engine_gpu.py 2>&1 \
      | tee "$OUT/gpu-tests.log" | quiet 60 ;;
  cli)
    timeout "${TESTS_S:-480}" python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_vllm_cli_gpu.py 2>&1 \
      | tee "$OUT/gpu-tests-cli.log" | quiet 60 ;;
  0.5b)
    bench "${BENCH_S:-400}" --phase gen --phase eval --size 0.5b --adapters 0 --replicas 2 --json "$OUT/bench-0.5b.json" 2>&1 \
      | tee "$OUT/bench-0.5b.log" | quiet 40 ;;
  7b)
    bench 590 --phase gen --phase eval --size 7b --adapters 16 --adapter-answers 5000 --json "$OUT/bench-7b.json" 2>&1 | tee "$OUT/bench-7b.log" \
      | quiet 40 ;;
  7b-eval)
    bench 500 --phase eval --size 7b --adapters 16 --adapter-answers 5000 --json "$OUT/bench-7b-eval.json" 2>&1 \
      | tee "$OUT/bench-7b-eval.log" | quiet 40 ;;
  7b-replicas)
    bench 590 --phase gen --size 7b --adapters 0 --replicas 2 --json "$OUT/bench-7b-replicas.json" 2>&1 \
      | tee "$OUT/bench-7b-replicas.log" | quiet 40 ;;
  32b)
    bench 590 --phase gen --phase eval --size 32b --adapters 0 --gen-rows 1024 --json "$OUT/bench-32b.json" 2>&1 \
      | tee "$OUT/bench-32b.log" | quiet 40 ;;
  *) echo "usage: $0 tests|cli|0.5b|7b|7b-eval|7b-replicas|32b" >&2; exit 2 ;;
esac
