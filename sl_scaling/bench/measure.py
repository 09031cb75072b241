"""Ours against the baselines, in one process on the same data: rows/s, tokens/s, peak memory, MFU.

"Ours" is the code `slscale gen/eval/train` runs by default: `HFEngine` for generation and evaluation,
TRL's SFTTrainer with `training.speed.choose_training_speed` for training. Variants of ours that
are not (yet) the default are recorded beside it with `"default": false`, so the choice is visible.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sl_scaling.bench import baselines, data, shapes
from sl_scaling.bench.baselines import Run
from sl_scaling.engines.base import Sampling
from sl_scaling.training.config import TrainConfig
from sl_scaling.training.trl import lora_config

#: Dense bf16 FLOP/s of one H200 measured in a large matmul (shared/device/README.md).
PEAK_FLOPS = 790e12
GIB = 2**30
GEN_NEW_TOKENS = 48  # a valid answer is ≤ ~45 tokens with its end-of-turn; random weights never stop early
EVAL_SAMPLES, EVAL_NEW_TOKENS = 100, 16
PLAIN_BATCH = 1024


def mfu(parameters: int, tokens_per_s: float, peak_flops: float = PEAK_FLOPS) -> float:
    """Model FLOPs utilisation of LoRA training, counting 4·N·T (forward 2NT + input gradients 2NT)."""
    return 4 * parameters * tokens_per_s / peak_flops


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def record(size: str, phase: str, engine: str, run: Run, **fields: Any) -> dict[str, Any]:
    return {
        "size": size,
        "phase": phase,
        "engine": engine,
        "rows_per_s": round(run.rows_per_s, 3),
        "tokens_per_s": round(run.tokens_per_s, 1),
        "peak_gib": round(run.peak_bytes / GIB, 2),
        "rows": run.rows,
        "tokens": run.tokens,
        "seconds": round(run.seconds, 3),
        **run.extra,
        **fields,
    }


def guarded(label: str, fn: Callable[[], dict[str, Any] | list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run one measurement; an error becomes a record (one failing variant must not lose the others)."""
    try:
        out = fn()
        return out if isinstance(out, list) else [out]
    except Exception as error:  # the bench reports every failure and carries on
        traceback.print_exc()
        return [{"label": label, "error": f"{type(error).__name__}: {error}"}]
    finally:
        free_memory()


class ModelSource:
    """Where a size's model comes from: random weights of the real shape, or real/tiny weights on disk."""

    def __init__(self, size: str, *, random_weights: bool, path: str | None = None) -> None:
        self.size, self.random_weights, self.path = size, random_weights, path
        if random_weights:
            self.tokenizer = shapes.bench_tokenizer()
            self.parameters = shapes.parameter_count(size)
        else:
            from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(path)
            with _meta():
                meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
            self.parameters = sum(p.numel() for p in meta.parameters())

    def load(self) -> Any:
        from sl_scaling.models import default_device, default_dtype

        device = default_device()
        if self.random_weights:
            return shapes.random_model(self.size, device=device)
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.path, dtype=default_dtype(device), device_map=device)

    def directory(self, workdir: Path) -> Path:
        """A directory loaders can read (Unsloth needs one): written once for random weights."""
        if not self.random_weights:
            return Path(str(self.path))
        target = workdir / f"random-{self.size}"
        if not target.exists():
            model = self.load()
            model.save_pretrained(target)
            self.tokenizer.save_pretrained(target)
            del model
        return target


def _meta() -> Any:
    import torch

    return torch.device("meta")


# --- generation and evaluation -----------------------------------------------------------------


def engine_run(engine: Any, requests: list, max_new_tokens: int, seed: int | None = 0) -> Run:
    """Everything an engine yields for `requests`, timed end to end (tokenization included)."""
    baselines.synchronize()
    start = time.perf_counter()
    sampling = Sampling(max_new_tokens=max_new_tokens, seed=seed)
    generations = [g for batch in engine.generate(requests, sampling) for g in batch]
    baselines.synchronize()
    return Run(
        rows=len(generations),
        tokens=sum(g.completion_tokens for g in generations),
        seconds=time.perf_counter() - start,
    )


def _peak() -> int:
    import torch

    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0


def bench_generation(
    size: str,
    model: Any,
    tokenizer: Any,
    *,
    phase: str,
    n: int,
    max_new_tokens: int,
    variants: dict[str, Callable],
) -> list[dict[str, Any]]:
    """Plain `generate` first, then each engine variant on the same requests; ratios against plain."""
    requests = data.teacher_requests(n) if phase == "gen" else data.eval_requests(n)
    warm = requests[: min(32, len(requests))]
    baselines.plain_generate(
        model, tokenizer, warm, batch_size=len(warm), max_new_tokens=4
    )  # CUDA/kernels warm-up
    free_memory()
    plain = baselines.plain_generate(
        model, tokenizer, requests, batch_size=min(PLAIN_BATCH, n), max_new_tokens=max_new_tokens
    )
    plain.peak_bytes = _peak()
    records = [record(size, phase, "plain-generate", plain, batch_size=min(PLAIN_BATCH, n))]
    for name, make_engine in variants.items():

        def one(name: str = name, make_engine: Callable = make_engine) -> dict[str, Any]:
            engine = make_engine(model, tokenizer)
            start = time.perf_counter()
            engine_run(engine, warm, max_new_tokens)  # compiles / captures graphs where the variant does
            warmup_s = time.perf_counter() - start
            free_memory()
            run = engine_run(engine, requests, max_new_tokens)
            run.peak_bytes = _peak()
            return record(
                size,
                phase,
                "hf",
                run,
                variant=name,
                warmup_s=round(warmup_s, 2),
                baseline="plain-generate",
                baseline_tokens_per_s=round(plain.tokens_per_s, 1),
                ratio_vs_plain_generate=round(run.tokens_per_s / plain.tokens_per_s, 3),
            )

        records += guarded(f"{size} {phase} {name}", one)
    return records


# --- training ----------------------------------------------------------------------------------


#: Candidate training settings measured beside the default: (TrainingSpeed changes, extra SFTConfig fields).
#: `micro-batch-20` is the experiment's literal 20 × 3 split, beside the default's larger micro-batch.
TRAIN_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "micro-batch-20": ({"micro_batch": 20}, {}),
    "padding-free": ({"padding_free": True, "group_by_length": False}, {}),
}


class TrainingBench:
    """Training measurements of one size on one set of rows (ours, its variants, and the baselines)."""

    def __init__(self, source: ModelSource, workdir: Path) -> None:
        from datasets import Dataset

        self.source, self.workdir, self.config = source, workdir, TrainConfig()
        tokenizer = source.tokenizer
        self.rows = data.training_rows(baselines.TRAIN_STEPS * self.config.effective_batch)
        self.tokens_per_row = sum(
            len(
                tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True)[
                    "input_ids"
                ]
            )
            for r in self.rows
        ) / len(self.rows)
        self.dataset = Dataset.from_list(self.rows)

    def finish(self, run: Run, engine: str, **fields: Any) -> dict[str, Any]:
        return record(
            self.source.size,
            "train",
            engine,
            run,
            mfu=round(mfu(self.source.parameters, run.tokens_per_s), 4),
            tokens_per_row=round(self.tokens_per_row, 1),
            **fields,
        )

    def ours(self, variant: str = "default") -> dict[str, Any]:
        """TRL's SFTTrainer with `choose_training_speed` — the default path of `slscale train`."""
        from dataclasses import replace

        from trl import SFTConfig, SFTTrainer

        from sl_scaling.training.speed import choose_training_speed

        speed_changes, extra = TRAIN_VARIANTS.get(variant, ({}, {}))
        model = self.source.load()
        speed = choose_training_speed(
            model, batch_size=self.config.batch_size, grad_accum=self.config.grad_accum
        )
        speed = replace(speed, **speed_changes)

        def make(callback: Any) -> Any:
            kwargs = baselines.reference_sft_kwargs(
                self.config, steps=baselines.TRAIN_STEPS, output_dir=self.workdir / "ours"
            )
            return SFTTrainer(
                model=model,
                args=SFTConfig(**{**kwargs, **speed.sft_kwargs(self.config.effective_batch), **extra}),
                train_dataset=self.dataset,
                processing_class=self.source.tokenizer,
                peft_config=lora_config(self.config),
                callbacks=[callback],
            )

        free_memory()
        run = baselines.timed_training(make, self.rows, self.tokens_per_row, self.config)
        return self.finish(
            run, "trl-fast", variant=variant, speed={**speed.to_json(), **extra}, default=variant == "default"
        )

    def trl_default(self) -> dict[str, Any]:
        model = self.source.load()
        make = baselines.trl_default_trainer(
            model, self.source.tokenizer, self.dataset, self.config, self.workdir / "trl-default"
        )
        return self.finish(
            baselines.timed_training(make, self.rows, self.tokens_per_row, self.config), "trl-default"
        )

    def unsloth(self) -> dict[str, Any]:
        model_dir = self.source.directory(self.workdir)
        free_memory()
        make = baselines.unsloth_trainer(model_dir, self.dataset, self.config, self.workdir / "unsloth")
        return self.finish(
            baselines.timed_training(make, self.rows, self.tokens_per_row, self.config), "unsloth"
        )


def bench_training(
    sources: list[ModelSource], *, workdir: Path, with_unsloth: bool, fit_only: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Ours (and its variants) and TRL's defaults for every size first, Unsloth last: importing Unsloth
    patches transformers and TRL for the rest of the process, so nothing may be measured after it."""
    benches = [TrainingBench(source, workdir) for source in sources]
    records: list[dict[str, Any]] = []
    for bench in benches:
        size = bench.source.size
        records += guarded(f"{size} train ours", bench.ours)
        if size in fit_only:
            continue
        for variant in TRAIN_VARIANTS:
            records += guarded(f"{size} train ours {variant}", lambda b=bench, v=variant: b.ours(v))
        records += guarded(f"{size} train trl-default", bench.trl_default)
    if with_unsloth:
        for bench in benches:
            if bench.source.size not in fit_only:
                records += guarded(f"{bench.source.size} train unsloth", bench.unsloth)
    for size in {b.source.size for b in benches}:
        _add_ratios([r for r in records if r.get("size") == size])
    return records


def _add_ratios(records: list[dict[str, Any]]) -> None:
    """Ours / each baseline, on the ours records (the issue's `ratio_vs_unsloth`)."""
    by_engine = {r.get("engine"): r for r in records if "error" not in r}
    for r in records:
        if r.get("engine") != "trl-fast" or "error" in r:
            continue
        if "unsloth" in by_engine:
            r["baseline"] = "unsloth"
            r["baseline_tokens_per_s"] = by_engine["unsloth"]["tokens_per_s"]
            r["ratio_vs_unsloth"] = round(r["tokens_per_s"] / by_engine["unsloth"]["tokens_per_s"], 3)
        if "trl-default" in by_engine:
            r.setdefault("baseline", "trl-default")
            r.setdefault("baseline_tokens_per_s", by_engine["trl-default"]["tokens_per_s"])
            r["ratio_vs_trl_default"] = round(r["tokens_per_s"] / by_engine["trl-default"]["tokens_per_s"], 3)
