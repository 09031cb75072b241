"""Ours against the baselines, in one process on the same data: rows/s, tokens/s, peak memory, MFU.

"Ours" is the code `slscale gen/eval/train` runs by default: `HFEngine` for generation and evaluation,
TRL's SFTTrainer with `training.speed.choose_training_speed` for training. Variants of ours that
are not (yet) the default are recorded beside it with `"default": false`, so the choice is visible.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sl_scaling.bench import TRAIN_VARIANTS, baselines, data, shapes, train_path
from sl_scaling.bench.baselines import Run
from sl_scaling.bench.metrics import GIB, free_memory, mfu, peak_bytes
from sl_scaling.engines.base import Sampling
from sl_scaling.training.config import TrainConfig

GEN_NEW_TOKENS = 48  # a valid answer is ≤ ~45 tokens with its end-of-turn; random weights never stop early
EVAL_SAMPLES, EVAL_NEW_TOKENS = 100, 16
PLAIN_BATCH = 1024


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
    plain.peak_bytes = peak_bytes()
    records = [record(size, phase, "plain-generate", plain, batch_size=min(PLAIN_BATCH, n))]
    for name, make_engine in variants.items():

        def one(name: str = name, make_engine: Callable = make_engine) -> dict[str, Any]:
            engine = make_engine(model, tokenizer)
            start = time.perf_counter()
            engine_run(engine, warm, max_new_tokens)  # compiles / captures graphs where the variant does
            warmup_s = time.perf_counter() - start
            free_memory()
            run = engine_run(engine, requests, max_new_tokens)
            run.peak_bytes = peak_bytes()
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


#: Variants run shorter than the default's 5 + 40 steps (device time is the scarce thing).
VARIANT_STEPS = 15


class TrainingBench:
    """The baselines' training measurements of one size on the bench's rows (TRL defaults, Unsloth)."""

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
            steady_steps=baselines.TRAIN_STEPS - baselines.FIRST_TIMED_STEP + 1,
            **fields,
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
    sources: list[ModelSource],
    *,
    workdir: Path,
    with_unsloth: bool,
    fit_only: tuple[str, ...] = (),
    variants: tuple[str, ...] = (),
    side_by_side: bool = True,
    trainings: tuple[int, ...] = (),
    steps: int = train_path.WARMUP_STEPS + train_path.STEADY_STEPS,
    checkpoint: Callable[[list[dict[str, Any]]], None] = lambda records: None,
) -> list[dict[str, Any]]:
    """First, every size on `slscale train`'s own path (one training alone; the small sizes also side by
    side, as `slscale run` trains them, or `trainings` at once at every size); then, for sizes not in
    `fit_only`, the chosen variants and TRL's defaults; Unsloth last: importing it patches transformers and TRL for the rest of the process.
    That order keeps the default path's figures when a run is cut short."""
    from sl_scaling.training.speed import trainings_per_gpu

    records: list[dict[str, Any]] = []

    def take(label: str, fn: Callable[[], dict[str, Any]]) -> None:
        records.extend(guarded(label, fn))
        checkpoint(records)

    paths = {
        s.size: train_path.PathRun(s.size, s.parameters, s.random_weights, s.path, steps=steps)
        for s in sources
    }

    def sharing(size: str) -> list[int]:
        """The numbers of trainings timed side by side at `size`."""
        counts = (trainings or (trainings_per_gpu(size),)) if side_by_side else ()
        return [n for n in counts if n > 1]

    for size, path in paths.items():
        take(f"{size} train ours", lambda p=path: train_path.one_at_a_time(workdir, p, warm_epoch_end=True))
        for n in sharing(size):
            take(f"{size} {n} side by side", lambda p=path, n=n: train_path.side_by_side(workdir, p, n))
    compared = [s for s in sources if s.size not in fit_only]
    for source in compared:
        for name in variants:
            config_changes, speed_changes = TRAIN_VARIANTS[name]
            variant = replace(
                paths[source.size],
                variant=name,
                config_changes=config_changes,
                speed_changes=speed_changes,
            )
            short = replace(variant, steps=min(steps, VARIANT_STEPS))
            take(f"{source.size} train {name}", lambda v=short: train_path.one_at_a_time(workdir, v))
            # Where trainings share the GPU, a variant is judged by what it does to their aggregate.
            for n in sharing(source.size):
                take(
                    f"{source.size} {n} side by side {name}",
                    lambda v=variant, n=n: train_path.side_by_side(workdir, v, n),
                )
        take(f"{source.size} train trl-default", TrainingBench(source, workdir).trl_default)
    if with_unsloth:
        for source in compared:
            take(f"{source.size} train unsloth", TrainingBench(source, workdir).unsloth)
    for size in paths:
        _add_ratios([r for r in records if r.get("size") == size])
    return records


def _add_ratios(records: list[dict[str, Any]]) -> None:
    """Ours / each baseline, on the ours records (tokens/s, the rows' own tokens on both sides); trainings side
    by side also / the one trained alone in the same call (their aggregate's gain)."""
    by_engine = {r.get("engine"): r for r in records if "error" not in r}
    alone = next(
        (r for r in records if r.get("engine") == train_path.ENGINE and r.get("variant") == "default"), None
    )
    for r in records:
        if r.get("engine") != train_path.ENGINE or "error" in r:
            continue
        if r.get("trainings", 1) > 1 and alone is not None and "error" not in alone:
            r["ratio_vs_alone"] = round(r["tokens_per_s"] / alone["tokens_per_s"], 3)
        for baseline in ("unsloth", "trl-default"):
            if baseline in by_engine:
                r[f"ratio_vs_{baseline.replace('-', '_')}"] = round(
                    r["tokens_per_s"] / by_engine[baseline]["tokens_per_s"], 3
                )
