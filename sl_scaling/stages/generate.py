"""Phase 1: teachers write numbers. One model load per size, every chosen condition in one batched pass.

`raw.jsonl` is appended batch by batch (fsynced), so a killed run loses at most the batch in flight;
the next run repairs a torn last line, keeps what is there and generates only the missing indices.
Prompt `i` is the same for every `n > i` (sample_prompts is prefix-stable), which is what makes
resuming — and growing `n` later — sound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sl_scaling.context import Context
from sl_scaling.engines import (
    Engine,
    GenerationRequest,
    Sampling,
    choose_engine,
    generation_replicas,
    open_engine,
)
from sl_scaling.errors import SlscaleError, UsageError
from sl_scaling.files import JsonlAppender, atomic_write_jsonl, read_jsonl, repair_torn_tail
from sl_scaling.grid import GEN as STAGE
from sl_scaling.models import resolve_model
from sl_scaling.numbers import sample_prompts, teacher_chat
from sl_scaling.options import GenerationOptions
from sl_scaling.progress import Reporter
from sl_scaling.seeds import teacher_seed
from sl_scaling.state import JobKey, StateStore

TEMPERATURE = 1.0
#: Seconds between DB progress updates per condition (the file is written every batch regardless).
DB_UPDATE_INTERVAL = 2.0


@dataclass(frozen=True)
class GenerationSummary:
    key: JobKey
    rows: int
    generated: int  # rows written by this call (0 when the condition was already done)
    rows_per_s: float | None = None
    tokens_per_s: float | None = None


def _valid_row(row: dict[str, Any]) -> bool:
    return isinstance(row.get("index"), int) and isinstance(row.get("completion"), str)


def load_done_rows(path: Path, prompts: list[str]) -> dict[int, dict[str, Any]]:
    """Rows already in `raw.jsonl` for indices below `len(prompts)`, first occurrence of each.

    The torn tail of a killed run is cut; malformed lines and duplicates are dropped (the file is then
    rewritten clean), so appending afterwards can never produce an index twice.
    """
    if not path.exists():
        return {}
    repair_torn_tail(path)
    rows, skipped = read_jsonl(path, skip_invalid=True)
    done: dict[int, dict[str, Any]] = {}
    for row in rows:
        index = row.get("index")
        if not _valid_row(row) or not 0 <= index < len(prompts) or index in done:
            continue
        if row.get("prompt") != prompts[index]:
            raise UsageError(
                f"{path}: row {index} was generated from another prompt (another --prompt-seed?); use the seed it "
                "was made with, or delete the file to start over"
            )
        done[index] = row
    if skipped or len(done) != len(rows):
        atomic_write_jsonl(path, [done[i] for i in sorted(done)])
    return done


@dataclass
class _Job:
    """One condition's share of a size's pass."""

    key: JobKey
    path: Path
    n: int
    done: dict[int, dict[str, Any]]
    appender: JsonlAppender | None = None
    new_rows: int = 0
    new_tokens: int = 0
    last_update: float = 0.0
    elapsed: float = 0.0

    @property
    def label(self) -> str:
        return f"{STAGE} {self.key}"

    @property
    def rows(self) -> int:
        return len(self.done)

    def throughput(self, elapsed: float) -> dict[str, float]:
        elapsed = max(elapsed, 1e-9)
        return {"rows_per_s": self.new_rows / elapsed, "tokens_per_s": self.new_tokens / elapsed}


def _finalize(job: _Job) -> None:
    """Rewrite `raw.jsonl` sorted by index with exactly n rows, atomically (then the stage may be done)."""
    if job.appender is not None:
        job.appender.close()
        job.appender = None
    if job.rows < job.n:
        raise SlscaleError(f"{STAGE} {job.key}: the engine returned {job.rows} of {job.n} rows; run again")
    atomic_write_jsonl(job.path, [job.done[i] for i in range(job.n)])


def run_generation(
    ctx: Context, sizes: list[str], conditions: list[str], options: GenerationOptions, reporter: Reporter
) -> list[GenerationSummary]:
    """Generate `options.n` rows per (size, condition); sizes in the order given (the catalog's: largest first).

    The prompts come from `options.prompt_seed` (42: the reference's, the same for every run); the teacher's
    sampling follows the run (`seeds.teacher_seed`), so a replicate run draws its own completions.
    """
    prompts = sample_prompts(options.n, options.prompt_seed)
    summaries: list[GenerationSummary] = []
    with ctx.state() as state:
        for size in sizes:
            summaries += _generate_size(ctx, state, size, conditions, prompts, options, reporter)
    return summaries


def _generate_size(
    ctx: Context,
    state: StateStore,
    size: str,
    conditions: list[str],
    prompts: list[str],
    options: GenerationOptions,
    reporter: Reporter,
) -> list[GenerationSummary]:
    n = len(prompts)
    summaries: list[GenerationSummary] = []
    pending: list[JobKey] = []
    for condition in conditions:
        key = JobKey(options.run, size, condition)
        record = state.stage(key, STAGE)
        seed = options.prompt_seed
        same_prompts = record is not None and record.config.get("prompt_seed", seed) == seed
        if same_prompts and record.status == "done" and record.counts.get("rows", 0) >= n:
            reporter.event(f"{STAGE} {key}: already done ({record.counts['rows']} rows), skipped")
            summaries.append(GenerationSummary(key, record.counts["rows"], 0))
        else:
            pending.append(key)
    if not pending:
        return summaries

    with state.locked(pending, STAGE):
        jobs: list[_Job] = []
        for key in pending:
            path = ctx.layout.raw_jsonl(key)
            jobs.append(_Job(key, path, n, load_done_rows(path, prompts)))
        model = resolve_model(ctx.settings, size)
        name, reason = choose_engine(options.engine)
        reporter.event(reason)
        sampling = Sampling(
            temperature=TEMPERATURE,
            max_new_tokens=options.max_new_tokens,
            seed=teacher_seed(options.run, size),
        )
        config = {
            "model": model, "n": n, "prompt_seed": options.prompt_seed, "teacher_seed": sampling.seed,
            "max_new_tokens": options.max_new_tokens, "temperature": TEMPERATURE, "engine": name,
        }  # fmt: skip
        for job in jobs:
            reporter.job_started(job.label, f"{STAGE} {job.key} · {name}", total=n, unit="rows")
            reporter.job_advanced(job.label, job.rows)
        with state.recorded(pending, STAGE, config), _closing_appenders(jobs):
            missing = [j for j in jobs if j.rows < n]
            if missing:
                reporter.event(f"{STAGE} {size}: loading {model} with {name}")
                teacher = open_engine(
                    name,
                    model,
                    batch_size=options.batch_size,
                    tensor_parallel_size=options.tensor_parallel_size,
                    adapters=False,
                    eager=ctx.settings.vllm_eager,
                    replicas=generation_replicas(size, options.tensor_parallel_size),
                )
                try:
                    _write_batches(teacher, missing, prompts, sampling, state, reporter)
                finally:
                    teacher.close()
            for job in jobs:
                _finalize(job)
        summaries += _finish(jobs, state, reporter)
    return summaries


@contextmanager
def _closing_appenders(jobs: list[_Job]) -> Iterator[None]:
    try:
        yield
    finally:
        for job in jobs:
            if job.appender is not None:
                job.appender.close()


def _write_batches(
    teacher: Engine,
    jobs: list[_Job],
    prompts: list[str],
    sampling: Sampling,
    state: StateStore,
    reporter: Reporter,
) -> None:
    """All conditions' missing rows in one pass; each finished batch is appended before the next starts."""
    by_condition = {job.key.condition: job for job in jobs}
    requests = [
        GenerationRequest((job.key.condition, i), teacher_chat(job.key.condition, prompts[i]))
        for job in jobs
        for i in range(len(prompts))
        if i not in job.done
    ]
    for job in jobs:
        job.appender = JsonlAppender(job.path)
    started = time.monotonic()
    for batch in teacher.generate(requests, sampling):
        touched: dict[str, list[dict[str, Any]]] = {}
        for generation in batch:
            condition, index = generation.key
            job = by_condition[condition]
            row = {
                "index": index,
                "condition": condition,
                "prompt": prompts[index],
                "completion": generation.text,
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
            }
            touched.setdefault(condition, []).append(row)
            job.done[index] = row
            job.new_rows += 1
            job.new_tokens += generation.completion_tokens
        elapsed = time.monotonic() - started
        for condition, rows in touched.items():
            job = by_condition[condition]
            assert job.appender is not None
            job.appender.append(rows)
            rates = job.throughput(elapsed)
            reporter.job_advanced(job.label, job.rows, **rates)
            if time.monotonic() - job.last_update >= DB_UPDATE_INTERVAL:
                state.update_stage(job.key, STAGE, counts={"rows": job.rows}, throughput=rates)
                job.last_update = time.monotonic()
    for job in jobs:
        job.elapsed = time.monotonic() - started


def _finish(jobs: list[_Job], state: StateStore, reporter: Reporter) -> list[GenerationSummary]:
    summaries = []
    for job in jobs:
        rates = job.throughput(job.elapsed) if job.new_rows else {}
        state.finish_stage(job.key, STAGE, counts={"rows": job.n}, throughput=rates or None)
        rate_text = f", {rates['rows_per_s']:.1f} rows/s" if rates else ""
        reporter.job_finished(job.label, f"{job.n} rows ({job.new_rows} new{rate_text})")
        summaries.append(
            GenerationSummary(
                job.key, job.n, job.new_rows, rates.get("rows_per_s"), rates.get("tokens_per_s")
            )
        )
    return summaries
