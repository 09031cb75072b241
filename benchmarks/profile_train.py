"""Where a training step's time goes, on `slscale train`'s own path (issue 16): the PyTorch profiler over a few
steady steps of `bench.train_path.train_on_path` (random-weight Qwen2.5 shape, the default speed knobs).

    python benchmarks/profile_train.py --size 0.5b --size 14b --out "$OUT" [--copies [--stacks]] [--trace]

Writes, per size, `profile-SIZE.txt` (the top operators by GPU and by CPU time) and `profile-SIZE.json` (wall,
GPU-busy and CPU-launch time per step, kernel launches per step, the step times with the profiler off); with
`--copies`, also `profile-SIZE-copies.txt`: the copy operators by input shape, and with `--stacks` by Python
call site too (the profiler then records shapes and stacks, which slows the profiled steps and, with stacks, its
own summary by minutes at 14b; not the figures with it off); with `--trace`, `trace-SIZE.json.gz` (the
profiled steps' timeline) and, in the JSON, the GPU's idle time between kernels per step and what the CPU ran
at the start of the longest gaps.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

WARMUP, PROFILED = 6, 3


#: Operators that copy a tensor (a dtype cast or a layout change).
COPIES = ("aten::copy_", "aten::_to_copy", "aten::contiguous", "aten::clone")


def profiler_callback(copies: bool = False, stacks: bool = False) -> Any:
    """Profiles optimizer steps WARMUP+1 … WARMUP+PROFILED (synchronised at both ends)."""
    import torch
    from torch._C._profiler import _ExperimentalConfig
    from torch.profiler import ProfilerActivity, profile

    def synchronize() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    from transformers import TrainerCallback

    class StepProfiler(TrainerCallback):
        def __init__(self) -> None:
            self.prof: Any = None
            self.wall = 0.0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == WARMUP:
                synchronize()
                self.prof = profile(
                    activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                    record_shapes=copies,
                    with_stack=stacks,
                    # Python call sites reach the events only with a verbose config (torch 2.x's Kineto profiler)
                    experimental_config=_ExperimentalConfig(verbose=True) if stacks else None,
                )
                self.prof.__enter__()
                self.wall = time.perf_counter()
            elif state.global_step == WARMUP + PROFILED and self.prof is not None:
                synchronize()
                self.wall = time.perf_counter() - self.wall
                self.prof.__exit__(None, None, None)

    return StepProfiler()


def summarise(prof: Any, wall: float) -> dict[str, Any]:
    from torch.autograd import DeviceType

    events = prof.key_averages()
    # Kernels only: operators report their kernels' time as their own too
    device_us = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA)
    launches = sum(
        e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC")
    )
    return {
        "profiled_steps": PROFILED,
        "wall_s_per_step": round(wall / PROFILED, 4),
        "gpu_busy_s_per_step": round(device_us / 1e6 / PROFILED, 4),
        "kernel_launches_per_step": launches // PROFILED,
    }


def copy_tables(prof: Any, stacks: bool) -> str:
    """The copy operators by GPU time: grouped by input shape, then by the innermost Python frames if the
    profiler recorded them (plain text: torch's table builder fails on a filtered event list)."""
    groupings: list[dict[str, Any]] = [{"group_by_input_shape": True}]
    if stacks:
        groupings.append({"group_by_stack_n": 8})
    lines = []
    for grouping in groupings:
        events = [e for e in prof.key_averages(**grouping) if e.key in COPIES]
        for e in sorted(events, key=lambda e: e.device_time_total, reverse=True)[:20]:
            where = e.input_shapes if "group_by_input_shape" in grouping else " <- ".join(e.stack[:8])
            lines.append(f"{e.device_time_total / 1e3:10.1f} ms {e.count:7d}x {e.key:18s} {where}")
        lines.append("")
    return "\n".join(lines)


def idle_gaps(trace: Path, steps: int) -> dict[str, Any]:
    """The GPU's idle time between kernels in the profiled steps (from the exported trace): in all, and summed by
    what the CPU was doing when the GPU ran dry (the innermost and the outermost operator running then, CUDA
    runtime calls included), with the ten longest gaps and the kernels on either side."""
    events = json.loads(trace.read_text())["traceEvents"]
    kernels = sorted(
        (e["ts"], e["ts"] + e["dur"], e.get("name", ""))
        for e in events
        if e.get("cat") == "kernel" and "dur" in e
    )
    if not kernels:
        return {}
    gaps, end, before = [], kernels[0][1], kernels[0][2]
    for start, stop, name in kernels[1:]:
        if start > end:
            gaps.append((start - end, end, before[:60], name[:60]))
        if stop >= end:
            end, before = stop, name
    cpu = [
        e
        for e in events
        if e.get("cat") in ("cpu_op", "python_function", "user_annotation", "cuda_runtime") and "dur" in e
    ]
    inner: dict[str, float] = {}
    outer: dict[str, float] = {}
    longest = []
    for length, at, before, after in sorted(gaps, reverse=True):
        if length < 20:  # µs: launch latency, not a stall
            break
        running = sorted((e for e in cpu if e["ts"] <= at <= e["ts"] + e["dur"]), key=lambda e: e["dur"])
        names = [e["name"][:80] for e in running]
        if names:
            inner[names[0]] = inner.get(names[0], 0.0) + length
            outer[names[-1]] = outer.get(names[-1], 0.0) + length
        if len(longest) < 10:
            longest.append({"ms": round(length / 1e3, 2), "after": before, "before": after, "cpu": names[:8]})

    def per_step(by_name: dict[str, float]) -> dict[str, float]:
        top = sorted(by_name.items(), key=lambda item: item[1], reverse=True)[:15]
        return {name: round(us / 1e3 / steps, 2) for name, us in top}

    return {
        "idle_s_per_step": round(sum(g[0] for g in gaps) / 1e6 / steps, 4),
        "gaps_over_1ms_per_step": sum(1 for g in gaps if g[0] > 1e3) / steps,
        "idle_in_gaps_over_1ms_s_per_step": round(sum(g[0] for g in gaps if g[0] > 1e3) / 1e6 / steps, 4),
        "idle_ms_per_step_by_innermost_cpu_op": per_step(inner),
        "idle_ms_per_step_by_outermost_cpu_op": per_step(outer),
        "longest": longest,
    }


def main() -> None:
    from sl_scaling.bench import shapes
    from sl_scaling.bench.train_path import PathRun, bench_context, train_on_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--copies", action="store_true", help="also tabulate copies by input shape")
    parser.add_argument("--stacks", action="store_true", help="with --copies: by Python call site too (slow)")
    parser.add_argument("--trace", action="store_true", help="export the trace (gzip) and its GPU idle gaps")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for size in args.size:
        callback = profiler_callback(args.copies, args.stacks)
        run = PathRun(
            size=size, parameters=shapes.parameter_count(size), random_weights=True, steps=WARMUP + 6
        )
        with tempfile.TemporaryDirectory() as workdir:
            record = train_on_path(bench_context(Path(workdir)), run, callbacks=[callback])
        ends = record["step_ends"]
        summary = {
            "size": size,
            **summarise(callback.prof, callback.wall),
            "unprofiled_step_s": [round(b - a, 4) for a, b in pairwise(ends[WARMUP + PROFILED :])],
            "batches": record["batches"],
            "speed": record["speed"],
        }
        events = callback.prof.key_averages()
        tables = [
            events.table(sort_by="self_device_time_total", row_limit=40),
            events.table(sort_by="self_cpu_time_total", row_limit=40),
        ]
        (args.out / f"profile-{size}.txt").write_text("\n\n".join(tables))
        if args.copies:
            (args.out / f"profile-{size}-copies.txt").write_text(copy_tables(callback.prof, args.stacks))
        if args.trace:
            trace = args.out / f"trace-{size}.json"
            callback.prof.export_chrome_trace(str(trace))
            summary["gpu_idle"] = idle_gaps(trace, PROFILED)
            with trace.open("rb") as raw, gzip.open(f"{trace}.gz", "wb") as packed:
                shutil.copyfileobj(raw, packed)
            trace.unlink()
        (args.out / f"profile-{size}.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
