"""One bench run: for each size and phase, ours against the baselines; then the projection and record."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sl_scaling.bench import measure, metrics, projection
from sl_scaling.bench.variants import generation_variants

PHASES = ("gen", "eval", "train")


def device_name() -> str:
    import torch

    return (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or 'x86'})"
    )


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_bench(
    sizes: Sequence[str],
    phases: Sequence[str],
    *,
    random_weights: bool,
    workdir: Path,
    model_path: Callable[[str], str | None] = lambda size: None,
    gen_rows: int = 2048,
    with_unsloth: bool = True,
    fit_only: Sequence[str] = (),
    gen_variants: Sequence[str] = (),
    vllm: bool = False,
    vllm_replicas: Sequence[int] = (),
    vllm_adapters: int = 16,
    adapter_answers: int = 5_000,
    train_variants: Sequence[str] = (),
    side_by_side: bool = True,
    trainings: Sequence[int] = (),
    train_steps: int = measure.train_path.WARMUP_STEPS + measure.train_path.STEADY_STEPS,
    log: Callable[[str], None] = print,
    checkpoint: Callable[[dict[str, Any]], None] = lambda record: None,
) -> dict[str, Any]:
    """Measure every (size, phase); `fit_only` sizes train ours only (the 32b memory check).

    With `vllm` (random weights only), `VLLMEngine` is timed after the HF engine on the same requests
    (bench/vllm_bench.py): `vllm_adapters` adapters × `adapter_answers` answers in one load, and
    `vllm_replicas` engine processes sharing the GPU.

    `checkpoint` receives the record so far after each phase, so a run cut short keeps what it measured."""
    results: list[dict[str, Any]] = []
    for size in sizes:
        source = measure.ModelSource(size, random_weights=random_weights, path=model_path(size))
        if "gen" in phases or "eval" in phases:
            model = source.load()
            for phase in ("gen", "eval"):
                if phase not in phases:
                    continue
                n = gen_rows if phase == "gen" else measure.EVAL_SAMPLES
                new_tokens = measure.GEN_NEW_TOKENS if phase == "gen" else measure.EVAL_NEW_TOKENS
                log(f"{size} {phase}: {n} rows × {new_tokens} new tokens")
                results += measure.bench_generation(
                    size,
                    model,
                    source.tokenizer,
                    phase=phase,
                    n=n,
                    max_new_tokens=new_tokens,
                    variants={
                        name: make
                        for name, make in generation_variants(large_batch=1024).items()
                        if not gen_variants or name in gen_variants
                    },
                )
                _log_last(results, log)
                checkpoint(_record(results, random_weights))
            del model
            metrics.free_memory()
            if vllm and random_weights:
                done = list(results)
                results += _bench_vllm(
                    size, [p for p in ("gen", "eval") if p in phases], done, workdir, gen_rows,
                    replicas=tuple(vllm_replicas), adapters=vllm_adapters, answers=adapter_answers,
                    log=log, checkpoint=lambda records, done=done: checkpoint(_record(done + records, random_weights)),
                )  # fmt: skip
                checkpoint(_record(results, random_weights))
    if "train" in phases:
        log(f"train: {', '.join(sizes)}")
        sources = [measure.ModelSource(s, random_weights=random_weights, path=model_path(s)) for s in sizes]
        done = list(results)

        def progress(records: list[dict[str, Any]]) -> None:
            log(json.dumps(records[-1], default=str))
            checkpoint(_record(done + records, random_weights))

        results += measure.bench_training(
            sources,
            workdir=workdir,
            with_unsloth=with_unsloth,
            fit_only=tuple(fit_only),
            variants=tuple(train_variants),
            side_by_side=side_by_side,
            trainings=tuple(trainings),
            steps=train_steps,
            checkpoint=progress,
        )
        checkpoint(_record(results, random_weights))
    return _record(results, random_weights)


def _bench_vllm(
    size: str,
    phases: list[str],
    results: list[dict[str, Any]],
    workdir: Path,
    gen_rows: int,
    *,
    replicas: tuple[int, ...],
    adapters: int,
    answers: int,
    log: Callable[[str], None],
    checkpoint: Callable[[list[dict[str, Any]]], None],
) -> list[dict[str, Any]]:
    """vLLM for one size, with ratios against plain generate's records of this call."""
    from sl_scaling.bench.vllm_bench import bench_vllm

    plain = {
        r["phase"]: r["tokens_per_s"]
        for r in results
        if r.get("size") == size and r.get("engine") == "plain-generate"
    }
    log(f"{size} vllm: {', '.join(phases)}; {adapters} adapters × {answers} answers; replicas {replicas}")
    records = bench_vllm(
        size, phases=tuple(phases), plain=plain, workdir=workdir, gen_rows=gen_rows, adapters=adapters,
        adapter_answers=answers, replicas=replicas, checkpoint=checkpoint,
    )  # fmt: skip
    for r in records:
        log(json.dumps(r, default=str))
    return records


def _record(results: list[dict[str, Any]], random_weights: bool) -> dict[str, Any]:
    return {
        "device": device_name(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "commit": commit(),
        "random_weights": random_weights,
        "results": results,
        "projection": projection.project(results),
    }


def _log_last(results: list[dict[str, Any]], log: Callable[[str], None]) -> None:
    for r in results[-6:]:
        log(json.dumps(r, default=str))
