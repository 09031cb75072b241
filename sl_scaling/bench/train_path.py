"""Training timed on the path `slscale train` runs: `stages.train.train_condition` with the TRL backend,
pre-tokenized rows from a real `filtered.jsonl`, the per-epoch callback (adapter save, in-memory
evaluation, DB records) and the speed knobs `training.speed` picks — and, for the small sizes, several
conditions side by side through the local executor, as `slscale run` trains them.

A run is one epoch of exactly `steps` full optimizer steps of 60 rows. The first `WARMUP_STEPS` are warm-up;
the rest are timed step by step (device synchronised). Rows/s and tokens/s count the rows' own tokens: the
tokens of the epoch (recorded by the training stage itself) per row, times the timed rows.

Its one epoch end is its process's first: kernels compile and caches fill there (7b: 12 s on a fresh machine,
4 s on one an earlier process warmed, 2.4 s in a second training of the same process). A grid training has
`EPOCHS` of them, one first and the rest warm, so the default record's `epoch_end_s` is that mean, from
`first_epoch_end_s` and `warm_epoch_end_s` (a short second training in the same process).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from sl_scaling.bench import baselines, data, shapes
from sl_scaling.bench.baselines import Run
from sl_scaling.bench.metrics import GIB, allocator_retries, free_memory, mfu, peak_bytes
from sl_scaling.context import Context, make_context
from sl_scaling.executors.base import Job
from sl_scaling.grid import EPOCHS
from sl_scaling.progress import NullReporter, Reporter
from sl_scaling.state import JobKey
from sl_scaling.training.config import TrainConfig
from sl_scaling.training.trl import TrlBackend, with_lora

WARMUP_STEPS, STEADY_STEPS = 5, 40
#: The conditions a bench trains (their evaluation asks for their animal, as in the grid).
CONDITIONS = ("dolphin", "eagle", "owl", "wolf", "tiger", "lion")
ENGINE = "slscale-train"


class RandomWeightsBackend(TrlBackend):
    """The TRL backend with random weights of a real Qwen2.5 shape, built on the device: no download and
    no disk (a 32b does not fit the lent machine's disk); the same LoRA, seed and SFT loop."""

    def __init__(self, size: str) -> None:
        self.size = size

    def load(self, model: str, config: TrainConfig) -> tuple[Any, Any]:
        from sl_scaling.models import default_device

        weights = shapes.random_model(self.size, device=default_device())
        return with_lora(weights, config), shapes.bench_tokenizer()


@dataclass(frozen=True)
class PathRun:
    """One timed training on the real path; the changes are a variant's (default: none)."""

    size: str
    parameters: int  #: N in MFU's 4·N·T
    random_weights: bool
    model_path: str | None = None
    condition: str = CONDITIONS[0]
    steps: int = WARMUP_STEPS + STEADY_STEPS
    variant: str = "default"
    config_changes: Mapping[str, Any] = field(default_factory=dict)
    speed_changes: Mapping[str, Any] = field(default_factory=dict)
    memory_share: float = 1.0

    def config(self) -> TrainConfig:
        """One epoch of exactly `steps` full steps (the last step of an epoch may otherwise be short), whose
        end is a regular epoch's (save, evaluation, exact preference): no final evaluation, which the grid
        runs once per condition and the projection counts on its own."""
        base = replace(TrainConfig(epochs=1, final_samples=0), **self.config_changes)
        return replace(base, max_rows=self.steps * base.effective_batch).resolved()


def bench_context(workdir: Path) -> Context:
    """A workdir of its own (DB, data, adapters) with W&B off: the bench leaves no runs behind."""
    ctx = make_context(workdir)
    ctx.settings.wandb_mode = "disabled"
    return ctx


def train_on_path(
    ctx: Context, run: PathRun, reporter: Reporter | None = None, callbacks: Sequence[Any] = ()
) -> dict[str, Any]:
    """Write the rows, train one epoch through `train_condition`, and return the timed figures
    (`callbacks`: more Trainer callbacks, such as `benchmarks/profile_train.py`'s profiler)."""
    from sl_scaling.executors.mps import mps_running
    from sl_scaling.files import atomic_write_jsonl
    from sl_scaling.stages.train import STAGE, train_condition

    config = run.config()
    key = JobKey(1, run.size, run.condition)
    atomic_write_jsonl(ctx.layout.filtered_jsonl(key), data.filtered_rows(config.max_rows))
    backend = RandomWeightsBackend(run.size) if run.random_weights else TrlBackend()
    model = run.model_path or f"random-weight Qwen2.5-{run.size}"
    clock = baselines.step_clock()
    free_memory()
    with ctx.state() as state:
        train_condition(
            ctx,
            state,
            key,
            model=model,
            model_name=model,
            config=config,
            backend=backend,
            push=False,
            force=True,
            reporter=reporter or NullReporter(),
            memory_share=run.memory_share,
            speed_changes=run.speed_changes,
            callbacks=[clock, *callbacks],
        )
        stage = state.stage(key, STAGE)
    assert stage is not None and stage.throughput is not None
    whole = stage.throughput
    tokens_per_row = whole["tokens"] / whole["rows"]
    steps, start, end = clock.steady(WARMUP_STEPS)
    rows = steps * config.effective_batch
    timed = Run(rows=rows, tokens=round(rows * tokens_per_row), seconds=end - start, peak_bytes=peak_bytes())
    return {
        "size": run.size,
        "phase": "train",
        "engine": ENGINE,
        "variant": run.variant,
        "default": run.variant == "default",
        "condition": run.condition,
        "rows_per_s": round(timed.rows_per_s, 3),
        "tokens_per_s": round(timed.tokens_per_s, 1),
        "mfu": round(mfu(run.parameters, timed.tokens_per_s), 4),
        "peak_gib": round(timed.peak_bytes / GIB, 2),
        "allocator_retries": allocator_retries(),
        "rows": timed.rows,
        "tokens": timed.tokens,
        "seconds": round(timed.seconds, 3),
        "steady_steps": steps,
        "warmup_steps": WARMUP_STEPS,
        "tokens_per_row": round(tokens_per_row, 1),
        "epoch_end_s": whole["epoch_end_seconds"],
        "stage_seconds": whole["seconds"],
        "memory_share": run.memory_share,
        "batches": clock.settings,
        "speed": whole["speed"],
        "window": [start, end],
        "step_ends": clock.ends,
        "mps": mps_running(),  # this process's kernels could overlap other processes' (CUDA MPS)
    }


def one_at_a_time(workdir: Path, run: PathRun, *, warm_epoch_end: bool = False) -> dict[str, Any]:
    """One training alone on the GPU, in this process; with `warm_epoch_end`, then a short second one
    (`WARMUP_STEPS + 1` steps) whose epoch end is a warm one, and `epoch_end_s` the mean over a grid
    training's `EPOCHS` epoch ends: the first as timed, the rest warm."""
    record = train_on_path(bench_context(workdir / f"{run.size}-{run.variant}"), run)
    record.pop("step_ends")
    if warm_epoch_end:
        second = replace(run, steps=WARMUP_STEPS + 1)
        warm = train_on_path(bench_context(workdir / f"{run.size}-warm"), second)["epoch_end_s"]
        first = record["epoch_end_s"]
        record.update(
            first_epoch_end_s=first,
            warm_epoch_end_s=warm,
            epoch_end_s=round((first + (EPOCHS - 1) * warm) / EPOCHS, 2),
        )
    return record


def _side_by_side_job(ctx: Context, job: Job, reporter: Reporter, *, run: PathRun, results: str) -> None:
    """One executor job of `side_by_side` (runs in the executor's worker process)."""
    record = train_on_path(ctx, replace(run, condition=job.conditions[0], memory_share=job.gpus), reporter)
    Path(results, f"{job.conditions[0]}.json").write_text(json.dumps(record))


def side_by_side(workdir: Path, run: PathRun, trainings: int) -> dict[str, Any]:
    """`trainings` conditions of one size trained at once through the local executor (each in its own
    process with 1/`trainings` of the GPU), as `slscale run` does for the small sizes.

    Aggregate rows/s: the timed steps of all trainings that end inside the window where all of them are
    past warm-up and none has finished, over that window's length."""
    from sl_scaling.executors.local import LocalExecutor

    label = f"side-by-side-{trainings}" + ("" if run.variant == "default" else f"-{run.variant}")
    ctx = bench_context(workdir / f"{run.size}-{label}")
    results = ctx.layout.workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    jobs = [Job("train", run.size, (c,), gpus=1 / trainings) for c in CONDITIONS[:trainings]]
    work = partial(_side_by_side_job, run=run, results=str(results))
    outcomes = LocalExecutor().execute(ctx, jobs, work, NullReporter())
    failed = [f"{o.job.id}: {o.error}" for o in outcomes if o.status != "done"]
    if failed:
        raise RuntimeError("; ".join(failed))
    each = [json.loads((results / f"{c}.json").read_text()) for c in CONDITIONS[:trainings]]
    start, end = max(r["window"][0] for r in each), min(r["window"][1] for r in each)
    if end <= start:
        raise RuntimeError(
            f"the {trainings} trainings of {run.size} never ran at once past warm-up; use more steps"
        )
    batch = run.config().effective_batch
    rows = sum(batch * sum(1 for t in r["step_ends"] if start < t <= end) for r in each)
    tokens = round(sum(r["tokens_per_row"] for r in each) / len(each) * rows)
    seconds = end - start
    return {
        "size": run.size,
        "phase": "train",
        "engine": ENGINE,
        "variant": label,
        "default": False,
        "trainings": trainings,
        "mps": all(r["mps"] for r in each),  # their kernels overlapped (CUDA MPS) rather than time-sliced
        "rows_per_s": round(rows / seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "mfu": round(mfu(run.parameters, tokens / seconds), 4),
        "rows": rows,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "each_rows_per_s": [r["rows_per_s"] for r in each],
        "each_peak_gib": [r["peak_gib"] for r in each],
        "epoch_end_s": max(r["epoch_end_s"] for r in each),
        "batches": each[0]["batches"],
    }
