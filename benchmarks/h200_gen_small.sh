#!/usr/bin/env bash
# Generation bench at 0.5b (default engine vs batch 1024 vs plain generate), then the bench's GPU tests.
source benchmarks/device-env.sh wheels-core wheels-fast
timeout 150 python3 -c 'import sys, typer; from sl_scaling.cli.bench import command; sys.argv[0] = "slscale bench"; typer.run(command)' \
  --random-weights --phase gen --phase eval --size 0.5b --variant default --variant batch1024 \
  --json "$OUT/gen-0.5b.json" 2>&1 | tee "$OUT/gen-0.5b.log" | grep '^{'
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_bench_gpu.py 2>&1 | tee "$OUT/gpu-tests.log" | tail -5
