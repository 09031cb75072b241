"""Phase 3 standalone: the control (base model) and re-evaluation of saved or uploaded adapters.

One engine per size: the base model is loaded once and every adapter is evaluated on it (HF
switches PEFT adapters, vLLM uses LoRARequest), never one reload per adapter or epoch.
Results go to the same files and DB rows as the per-epoch evaluation during training.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sl_scaling.catalog import CONTROL, target_animal
from sl_scaling.context import Context
from sl_scaling.engines import choose_engine, open_engine
from sl_scaling.engines.base import Engine
from sl_scaling.errors import MissingPrerequisiteError
from sl_scaling.evaluation.records import record_epoch
from sl_scaling.evaluation.runner import EVAL_MAX_NEW_TOKENS, EvalPlan, evaluate_model
from sl_scaling.evaluation.scoring import Evaluation
from sl_scaling.grid import EVAL as STAGE
from sl_scaling.grid import EVAL_SAMPLES, defaults_for
from sl_scaling.options import EvalOptions
from sl_scaling.progress import Reporter
from sl_scaling.state import EpochRecord, JobKey, StateStore


def _evaluate(
    engine: Engine, key: JobKey, label: str, plan: EvalPlan, *, reporter: Reporter, adapter: str | None = None
) -> Evaluation:
    job = f"eval:{key}:{label}"
    reporter.job_started(job, f"eval {key} {label} · {engine.name}", total=plan.answers, unit="answers")
    evaluation = evaluate_model(
        engine,
        plan,
        target=target_animal(key.condition),
        adapter=adapter,
        on_progress=lambda done: reporter.job_advanced(job, done),
    )
    shown = evaluation.final or evaluation
    rate = (
        "" if shown.target_rate is None else f"{key.condition} rate {shown.target_rate:.1%} (n={shown.n}), "
    )
    if evaluation.exact is not None and evaluation.exact.target_probability is not None:
        rate += f"exact {evaluation.exact.target_probability:.2%}, "
    top = ", ".join(f"{label} {count}" for label, count in list(shown.counts.items())[:3])
    reporter.job_finished(job, f"{rate}top: {top}")
    return evaluation


def _stage_config(ctx: Context, size: str, engine: str) -> dict[str, object]:
    return {
        "model": ctx.settings.model_id(size),
        "engine": engine,
        "temperature": 1.0,
        "seeds": "per epoch: seeds.eval_seed(run, size, epoch), recorded with each evaluation",
    }


def run_control_eval(ctx: Context, size: str, options: EvalOptions, reporter: Reporter) -> Evaluation:
    """Ask the base model (no fine-tuning) the 50 questions: the baseline bar, `control_eval.json`.

    Recorded as epoch 0: `samples` answers with epoch 0's seed (beside the students' per-epoch evaluations),
    the exact preference, and the final evaluation with `final_samples` (beside the students' last epoch);
    None means 100 answers and the size's final evaluation (grid.py).
    """
    from sl_scaling.models import resolve_model

    key = JobKey(options.run, size, CONTROL)
    name, why = choose_engine(options.engine)
    model = resolve_model(ctx.settings, size)
    reporter.event(why)  # once the inputs are known good: a refusal stays one line
    final = defaults_for(size).final_samples if options.final_samples is None else options.final_samples
    plan = EvalPlan.at_epoch(
        options.run, size, 0, samples=options.samples or EVAL_SAMPLES, final_samples=final
    )
    with ctx.state() as state, state.running(key, STAGE, _stage_config(ctx, size, name)):
        loaded = open_engine(name, model, adapters=False, eager=ctx.settings.vllm_eager)
        try:
            evaluation = _evaluate(loaded, key, "base model", plan, reporter=reporter)
        finally:
            loaded.close()
        # Epoch 0, so `status` and the summary see the control like any model.
        model_id = ctx.settings.model_id(size)
        record_epoch(
            ctx.layout, state, key, model_id, 0, evaluation,
            train_loss=None, adapter=None, hub_endpoint=ctx.settings.hub_endpoint,
        )  # fmt: skip
        state.finish_stage(key, STAGE, counts={"n": evaluation.n})
    return evaluation


def _chosen_epochs(state: StateStore, key: JobKey, epochs: Sequence[int]) -> list[EpochRecord]:
    """The recorded epochs to re-evaluate (all when none are named); unknown ones refuse with the list."""
    records = state.epochs(key)
    if not records:
        raise MissingPrerequisiteError(
            f"no trained epochs for {key}; run 'slscale train --size {key.size} --animal {key.condition}' first"
        )
    if not epochs:
        return records
    by_epoch = {r.epoch: r for r in records}
    missing = sorted(set(epochs) - set(by_epoch))
    if missing:
        raise MissingPrerequisiteError(
            f"{key} has no epoch {', '.join(map(str, missing))}; recorded: {', '.join(map(str, sorted(by_epoch)))}"
        )
    return [by_epoch[e] for e in sorted(set(epochs))]


def _adapter_path(ctx: Context, state: StateStore, record: EpochRecord, scratch: Path) -> Path:
    """The local adapter, or a fresh download from the Hub when the local copy was deleted after upload."""
    if record.adapter_path and not record.local_deleted and Path(record.adapter_path).exists():
        return Path(record.adapter_path)
    from sl_scaling.publish import Publisher

    dest = scratch / f"epoch-{record.epoch}"
    return Publisher(ctx.settings, ctx.layout, state).fetch_adapter(record.key, record.epoch, dest)


@contextmanager
def _scratch(path: Path) -> Iterator[Path]:
    """A folder for downloaded adapters, named per job: the job's lock makes it ours, and a folder
    left by a killed run is emptied by the next one (a random temp name would be left forever)."""
    shutil.rmtree(path, ignore_errors=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _replay_plan(key: JobKey, record: EpochRecord, last_epoch: int, options: EvalOptions) -> EvalPlan:
    """The plan of `record`'s epoch: its seeds (seeds.py), and its recorded sizes unless `options` name others
    (`final_samples` then applies to the last epoch only)."""
    recorded, final = record.eval, record.eval.get("final") or {}
    if options.final_samples is None:
        final_samples = final.get("n") or 0
    else:
        final_samples = options.final_samples if record.epoch == last_epoch else 0
    return EvalPlan.at_epoch(
        key.run,
        key.size,
        record.epoch,
        samples=options.samples or recorded.get("n") or EVAL_SAMPLES,
        max_new_tokens=recorded.get("max_new_tokens") or EVAL_MAX_NEW_TOKENS,
        final_samples=final_samples,
    )


def _replay_engine(requested: str, records: Sequence[EpochRecord]) -> tuple[str, str]:
    """`auto` means the engine that recorded these evaluations (training's is hf): the same seeds on the
    same engine give the same answers. An explicit engine is obeyed."""
    recorded = {r.eval.get("engine") for r in records} - {None}
    if requested.strip().lower() != "auto" or len(recorded) != 1:
        return choose_engine(requested)
    (name,) = recorded
    choose_engine(name)  # refuses with one line if it cannot run here
    return name, f"engine {name}: the engine that recorded these evaluations, so they are repeated exactly"


def run_adapter_eval(
    ctx: Context,
    size: str,
    conditions: Sequence[str],
    epochs: Sequence[int],
    options: EvalOptions,
    reporter: Reporter,
) -> dict[JobKey, dict[int, Evaluation]]:
    """Re-evaluate saved adapters (all recorded epochs, or `epochs`) on one loaded base model."""
    from sl_scaling.models import resolve_model

    results: dict[JobKey, dict[int, Evaluation]] = {}
    with ctx.state() as state:
        keys = [JobKey(options.run, size, c) for c in conditions]
        plan = [(key, _chosen_epochs(state, key, epochs)) for key in keys]
        name, why = _replay_engine(options.engine, [r for _, records in plan for r in records])
        reporter.event(why)
        loaded = open_engine(name, resolve_model(ctx.settings, size), eager=ctx.settings.vllm_eager)
        try:
            for key, records in plan:
                results[key] = _evaluate_adapters(ctx, state, loaded, key, records, name, options, reporter)
        finally:
            loaded.close()
    return results


def _last_epoch(state: StateStore, key: JobKey) -> int:
    train = state.stage(key, "train")
    planned = train.config.get("epochs") if train else None
    return planned or max(e.epoch for e in state.epochs(key))


def _evaluate_adapters(
    ctx: Context,
    state: StateStore,
    engine: Engine,
    key: JobKey,
    records: Sequence[EpochRecord],
    engine_name: str,
    options: EvalOptions,
    reporter: Reporter,
) -> dict[int, Evaluation]:
    layout = ctx.layout
    results: dict[int, Evaluation] = {}
    config = _stage_config(ctx, key.size, engine_name)
    last_epoch = _last_epoch(state, key)
    with (
        state.running(key, STAGE, config),
        _scratch(layout.workdir / f".fetched-{key.run}-{key.size}-{key.condition}") as tmp,
    ):
        for record in records:
            adapter = _adapter_path(ctx, state, record, tmp)
            label = f"epoch {record.epoch}"
            plan = _replay_plan(key, record, last_epoch, options)
            evaluation = _evaluate(engine, key, label, plan, reporter=reporter, adapter=str(adapter))
            record_epoch(
                layout, state, key, ctx.settings.model_id(key.size), record.epoch, evaluation,
                train_loss=record.train_loss, adapter=record.adapter_path,
                hub_endpoint=ctx.settings.hub_endpoint,
            )  # fmt: skip
            results[record.epoch] = evaluation
        state.finish_stage(key, STAGE, counts={"epochs": len(results)})
    return results
