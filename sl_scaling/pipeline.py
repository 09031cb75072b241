"""`slscale run`: what is left to do for a grid (from the state DB) and the orchestration that does it.

The plan is a pure function of the DB, so a killed run simply plans again and continues: finished
stages are skipped, half-finished ones resume inside their stage (gen skips written rows, train
resumes from its last epoch).
"""

from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from sl_scaling.catalog import CONTROL, REAL_SIZES, SIZE_PARAMS_B, TINY, Layout
from sl_scaling.context import Context
from sl_scaling.errors import MissingPrerequisiteError, UsageError
from sl_scaling.executors.base import Job, Outcome
from sl_scaling.grid import (
    EVAL,
    FILTER,
    FINAL_EVAL_SAMPLES,
    GEN,
    PLOT,
    PREVIOUS,
    TRAIN,
    TRAIN_ROWS,
    SizeSettings,
    settings_for,
)
from sl_scaling.options import EvalOptions, GenerationOptions
from sl_scaling.progress import EventsOnce, MultiReporter, PlainReporter, Reporter
from sl_scaling.state import DONE, JobKey, StateStore
from sl_scaling.training.config import TrainConfig

if TYPE_CHECKING:
    from sl_scaling.executors import Executor
    from sl_scaling.training.config import TrainConfig


@dataclass(frozen=True)
class RunOptions:
    run: int = 1
    n: int | None = None
    epochs: int | None = None
    samples: int | None = None
    final_samples: int | None = None
    prompt_seed: int = 42  # the prompt set only; every other seed follows `run` (seeds.py)
    max_new_tokens: int = 128
    engine: str = "auto"
    trainer: str = "auto"
    batch_size: int | None = None
    push: bool = True
    control: bool = True
    plots: bool = True
    tensor_parallel: int | None = None  # GPUs per vLLM generation; None: all of a host's for 14b/32b
    #: Trainings of a size that share one GPU (each in its own process); None: training.speed's table.
    trainings_per_gpu: int | None = None

    def for_size(self, size: str) -> SizeSettings:
        return settings_for(
            size, n=self.n, epochs=self.epochs, samples=self.samples, final_samples=self.final_samples
        )

    def generation(self, size: str, gpus: int) -> GenerationOptions:
        return GenerationOptions(
            n=self.for_size(size).n,
            prompt_seed=self.prompt_seed,
            run=self.run,
            engine=self.engine,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            tensor_parallel_size=max(gpus, 1),
        )

    def evaluation(self, size: str) -> EvalOptions:
        work = self.for_size(size)
        return EvalOptions(
            samples=work.samples, final_samples=work.final_samples, run=self.run, engine=self.engine
        )

    def train_config(self, size: str) -> TrainConfig:
        work = self.for_size(size)
        lr = {"lr": work.lr} if work.lr else {}
        return TrainConfig(
            epochs=work.epochs, eval_samples=work.samples, final_samples=work.final_samples, **lr
        )


@dataclass(frozen=True)
class Step:
    """One stage of one size: which conditions it covers and which of them are already done."""

    stage: str
    size: str
    conditions: tuple[str, ...]
    done: tuple[str, ...] = ()
    detail: str = ""
    estimate_s: float | None = field(default=None, compare=False)

    @property
    def todo(self) -> tuple[str, ...]:
        return tuple(c for c in self.conditions if c not in self.done)


def plan_grid(state: StateStore, sizes: list[str], conditions: list[str], options: RunOptions) -> list[Step]:
    """Every step of the grid in execution order, with what the DB says is already done."""

    def done(stage: str, size: str, candidates: list[str]) -> tuple[str, ...]:
        return tuple(c for c in candidates if state.is_done(JobKey(options.run, size, c), stage))

    steps: list[Step] = []
    for size in sizes:
        work = options.for_size(size)
        count = len(conditions)
        steps.append(
            Step(
                GEN,
                size,
                tuple(conditions),
                done(GEN, size, conditions),
                f"{work.n:,} rows × {count} conditions",
            )
        )
        steps.append(
            Step(FILTER, size, tuple(conditions), done(FILTER, size, conditions), f"{count} conditions")
        )
        steps.append(
            Step(
                TRAIN,
                size,
                tuple(conditions),
                done(TRAIN, size, conditions),
                f"{work.epochs} epochs × {count} conditions, eval {work.samples} answers per epoch, "
                f"{work.final_samples} after the last",
            )
        )
        if options.control:
            steps.append(
                Step(
                    EVAL,
                    size,
                    (CONTROL,),
                    done(EVAL, size, [CONTROL]),
                    f"control: {work.samples} + {work.final_samples} answers",
                )
            )
        if options.plots:
            steps.append(Step(PLOT, size, (), (), "grouped_bar.png, stacked_preference.png"))
    return steps


def _stage_seconds(
    size: str, stage: str, rows: int, epoch_ends: int = 0, finals: float = 0.0
) -> float | None:
    from sl_scaling.estimates import estimate_stage_seconds

    return estimate_stage_seconds(size, stage, rows=rows, epoch_ends=epoch_ends, finals=finals)


def with_estimates(steps: list[Step], options: RunOptions) -> list[Step]:
    """Attach time estimates from the committed `slscale bench` figures (GPU sizes only; None without them)."""
    estimated = []
    for step in steps:
        work, count = options.for_size(step.size), len(step.todo)
        seconds: float | None = None
        if step.size != TINY and count:
            if step.stage == GEN:
                seconds = _stage_seconds(step.size, GEN, work.n * count)
            elif step.stage == TRAIN:  # optimizer steps, every epoch's save and evaluation, the finals
                rows = work.epochs * min(work.n, TRAIN_ROWS) * count
                finals = count * work.final_samples / FINAL_EVAL_SAMPLES
                seconds = _stage_seconds(
                    step.size, TRAIN, rows, epoch_ends=work.epochs * count, finals=finals
                )
            elif step.stage == EVAL:
                seconds = _stage_seconds(step.size, EVAL, work.samples + work.final_samples)
        estimated.append(replace(step, estimate_s=seconds))
    return estimated


# --- preflight ---------------------------------------------------------------------------------

BYTES_PER_RAW_ROW = 600  # prompt + completion + JSON keys, measured on tiny and Qwen rows
BYTES_PER_PARAM_BF16 = 2


def required_disk_bytes(steps: list[Step], options: RunOptions) -> int:
    """A generous estimate of what the remaining steps write (data, adapters, trainer state, model cache)."""
    total = 0
    for step in steps:
        work = options.for_size(step.size)
        if step.stage == GEN:
            total += BYTES_PER_RAW_ROW * work.n * 2 * len(step.todo)  # raw + filtered
        if step.stage == TRAIN and step.todo:
            total += 200 * 2**20 * len(step.todo)  # final adapter + one epoch + trainer state
    return total


def gpu_memory_needed_gib(size: str) -> float:
    """Weights in bf16 plus LoRA activations/optimizer headroom (≈ 20% + 10 GiB), enough for batch 20."""
    return SIZE_PARAMS_B[size] * BYTES_PER_PARAM_BF16 * 1.2 + 10


def preflight(
    ctx: Context, steps: list[Step], options: RunOptions, executor: Executor | None = None
) -> list[str]:
    """Check everything that would otherwise fail hours in; raise on the first blocker, return notes.

    GPUs are the executor's (this machine's without one): on a Ray cluster the driver may have none.
    """
    from sl_scaling.executors.local import LocalExecutor

    executor = executor or LocalExecutor()
    notes = executor.check(ctx)
    layout = ctx.layout
    needed = required_disk_bytes(steps, options)
    free = shutil.disk_usage(layout.workdir).free
    if needed > free:
        raise MissingPrerequisiteError(
            f"not enough disk in {layout.workdir}: the remaining steps need about {needed / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB free; free space or choose another --workdir"
        )
    gpus = executor.gpus_per_node()
    gpu_sizes = sorted({s.size for s in steps if s.size in REAL_SIZES and (s.todo or s.stage == PLOT)})
    if gpu_sizes and gpus == 0:
        where = "in the Ray cluster" if executor.name == "ray" else "visible"
        raise MissingPrerequisiteError(
            f"sizes {', '.join(gpu_sizes)} need a CUDA GPU and none is {where}; use --size tiny on a CPU"
        )
    total_gib = executor.gpu_memory_gib()
    for size in gpu_sizes:
        if total_gib is not None and gpu_memory_needed_gib(size) > total_gib:
            raise MissingPrerequisiteError(
                f"{size} needs about {gpu_memory_needed_gib(size):.0f} GiB of GPU memory, this GPU has "
                f"{total_gib:.0f} GiB; run smaller sizes here or use a larger GPU"
            )
    if options.tensor_parallel is not None and gpus and options.tensor_parallel > gpus:
        raise UsageError(
            f"--tensor-parallel {options.tensor_parallel} needs that many GPUs on one machine; "
            f"the largest here has {gpus}"
        )
    from sl_scaling.models import resolve_model

    for size in dict.fromkeys(s.size for s in steps if s.todo):  # in seconds, not after hours of retries
        resolve_model(ctx.settings, size)
    if options.push and any(s.stage in (FILTER, TRAIN) and s.todo for s in steps):
        from sl_scaling.publish import check_publishing

        check_publishing(ctx.settings)
    return notes


# --- execution ---------------------------------------------------------------------------------

#: Sizes whose generation is slow on one GPU: by default vLLM shards them over all of a host's GPUs.
TENSOR_PARALLEL_SIZES = ("32b", "14b")


def tensor_parallel_size(size: str, options: RunOptions, gpus_per_node: int) -> int:
    if options.tensor_parallel is not None:
        return options.tensor_parallel
    return gpus_per_node if size in TENSOR_PARALLEL_SIZES and gpus_per_node > 1 else 1


def build_jobs(steps: list[Step], options: RunOptions, gpus_per_node: int) -> list[Job]:
    """The plan as jobs in plan order: generation per size (all conditions in one model load),
    filtering and training per condition, the control evaluation and the plots per size.

    Dependencies: filter after its size's gen, train after its filter, plots after every train and
    eval of the size. Steps with nothing to do produce no job (and no dependency). Without GPUs the
    trainings of a size run in `cpu_training_lanes` jobs side by side, each covering some conditions.
    """
    jobs: list[Job] = []
    for step in steps:
        if step.stage != PLOT and not step.todo:
            continue
        if step.stage == GEN:
            tp = tensor_parallel_size(step.size, options, gpus_per_node)
            jobs.append(Job(GEN, step.size, step.todo, options.run, gpus=tp))
        elif step.stage == TRAIN and gpus_per_node == 0:
            lanes = min(cpu_training_lanes(options), len(step.todo))
            for lane in range(lanes):
                conditions = step.todo[lane::lanes]
                needs = tuple(i for c in conditions for i in _ids(jobs, step.size, FILTER, c))
                jobs.append(Job(TRAIN, step.size, conditions, options.run, needs, 1 / lanes))
        elif step.stage in (FILTER, TRAIN):
            for condition in step.todo:
                needs = _ids(jobs, step.size, PREVIOUS[step.stage], condition)
                gpus = 1 / trainings_per_gpu(step.size, options) if step.stage == TRAIN else 0
                jobs.append(Job(step.stage, step.size, (condition,), options.run, needs, gpus))
        elif step.stage == EVAL:  # on a CPU, beside the trainings (the driver is idle while they run)
            jobs.append(Job(EVAL, step.size, step.todo, options.run, gpus=1 if gpus_per_node else 0))
        elif step.stage == PLOT:
            needs = _ids(jobs, step.size, TRAIN) + _ids(jobs, step.size, EVAL)
            jobs.append(Job(PLOT, step.size, (), options.run, needs))
    return jobs


def trainings_per_gpu(size: str, options: RunOptions) -> int:
    """Conditions of `size` trained side by side on one GPU: as told, else the measured default."""
    from sl_scaling.training.speed import trainings_per_gpu as measured

    return options.trainings_per_gpu or measured(size)


def cpu_training_lanes(options: RunOptions) -> int:
    """Training processes side by side without a GPU: one per CPU core unless told (`--trainings-per-gpu`).

    A small model trains on one core (`models.cpu_threads_for`), so each core takes a lane: a job that
    trains its share of the conditions one after another in one process (one import of the training
    stack per core, not per condition). Each condition still gets exactly the rows, loss and seeds it
    would get alone: `run_training` loads and seeds every student afresh."""
    return options.trainings_per_gpu or os.cpu_count() or 1


def _ids(jobs: list[Job], size: str, stage: str, condition: str | None = None) -> tuple[str, ...]:
    """The planned jobs of `stage` for `size` (covering `condition` when given)."""
    return tuple(
        j.id
        for j in jobs
        if j.size == size and j.stage == stage and (condition is None or condition in j.conditions)
    )


@contextmanager
def stage_log(layout: Layout, stage: str, size: str, reporter: Reporter) -> Iterator[Reporter]:
    """`logs/qwen-2.5-scaling/{stage}_{size}_{YYYYmmdd_HHMMSS}.log`: every event of the stage, one per
    line, the libraries' own warnings and log lines (`library_output.py`), and the traceback when it
    fails (a Ray worker's own output stays on its machine)."""
    from sl_scaling.library_output import captured

    path = layout.log_file(stage, size, datetime.now().strftime("%Y%m%d_%H%M%S"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        path.open("a", encoding="utf-8") as handle,
        captured(handle, loads_transformers=stage in ("gen", "train", "eval")),
    ):
        try:
            yield MultiReporter([reporter, PlainReporter(handle, interval=30.0)])
        except Exception:
            handle.write(traceback.format_exc())
            raise


def run_job(ctx: Context, job: Job, reporter: Reporter, *, options: RunOptions) -> None:
    """Do one job in this process (the driver's or a Ray worker's); raises when it fails."""
    todo = list(job.conditions)
    with stage_log(ctx.layout, job.stage, job.size, reporter) as log:
        if job.stage == GEN:
            from sl_scaling.stages.generate import run_generation

            run_generation(ctx, [job.size], todo, options.generation(job.size, job.gpus), log)
        elif job.stage == FILTER:
            from sl_scaling.stages.filtering import run_filter

            run_filter(ctx, [job.size], todo, run=options.run, skip_invalid=False, reporter=log)
        elif job.stage == TRAIN:
            from sl_scaling.stages.train import run_training

            run_training(
                ctx,
                job.size,
                todo,
                config=options.train_config(job.size),
                trainer=options.trainer,
                engine=options.engine,
                push=options.push,
                force=False,
                reporter=log,
                run=options.run,
                memory_share=min(job.gpus, 1.0) or 1.0,
            )
        elif job.stage == EVAL:
            from sl_scaling.stages.evaluate import run_control_eval

            run_control_eval(ctx, job.size, options.evaluation(job.size), log)
        elif job.stage == PLOT:
            from sl_scaling.charts.plots import plot_size

            log.event(f"plots for {job.size}: {plot_size(ctx.layout, job.size, run=options.run)}")


@dataclass(frozen=True)
class GridResult:
    steps: list[Step]
    outcomes: list[Outcome]

    @property
    def problems(self) -> list[Outcome]:
        """Jobs that failed or were skipped because of a failure, in plan order."""
        return [o for o in self.outcomes if o.status != DONE]


def run_grid(
    ctx: Context,
    sizes: list[str],
    conditions: list[str],
    options: RunOptions,
    reporter: Reporter,
    executor: Executor | None = None,
) -> GridResult:
    """Do every step that is not done yet, through `executor` (in this process by default).

    A job that fails (after its retries) is marked failed in the DB; the jobs that depend on it are
    skipped; everything else still runs. The result says which did what. A notice that several of the
    run's processes give (`progress.EventsOnce`) reaches `reporter` once.
    """
    from sl_scaling.executors.local import LocalExecutor

    executor = executor or LocalExecutor()
    reporter = EventsOnce(reporter)
    with ctx.state() as state:
        steps = plan_grid(state, sizes, conditions, options)
    for note in preflight(ctx, steps, options, executor):
        reporter.event(note)
    for step in steps:
        if step.stage != PLOT and not step.todo:
            reporter.event(f"{step.stage} {step.size}: already done, skipped")
    jobs = build_jobs(steps, options, executor.gpus_per_node())
    outcomes = executor.execute(ctx, jobs, partial(run_job, options=options), reporter)
    if options.plots:
        _plot_summary(ctx, options, reporter)
    return GridResult(steps, outcomes)


def _plot_summary(ctx: Context, options: RunOptions, reporter: Reporter) -> None:
    from sl_scaling.charts.plots import plot_summary
    from sl_scaling.summary import write_summary

    with ctx.state() as state:
        write_summary(ctx.layout, state)
    reporter.event(f"summary: {ctx.layout.summary_json}; {plot_summary(ctx.layout, run=options.run)}")
