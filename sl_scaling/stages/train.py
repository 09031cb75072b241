"""Phase 2 for one size: LoRA-tune a student per condition, evaluating and recording every epoch.

Before any training starts, everything the run will need is checked (filtered data, Hub
credentials unless --no-push, disk) and a missing piece refuses the whole command with one line.
A condition that is done is skipped unless `force`; one that was interrupted resumes from its last
recorded epoch (see `training/callback.py` and `training/resume.py` for why that is consistent).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sl_scaling import library_output
from sl_scaling.catalog import Layout, wandb_run_name
from sl_scaling.context import Context
from sl_scaling.errors import MissingPrerequisiteError, StateError, UsageError
from sl_scaling.evaluation.records import clear_epochs
from sl_scaling.grid import TRAIN as STAGE
from sl_scaling.model_info import write_model_info
from sl_scaling.models import cpu_threads_for, intra_op_threads
from sl_scaling.progress import Reporter
from sl_scaling.seeds import train_seed
from sl_scaling.state import JobKey, StateStore
from sl_scaling.tracking import new_run_id, start_tracking
from sl_scaling.training.base import TrainerBackend, choose_trainer, get_backend
from sl_scaling.training.callback import EpochCallback, EpochJob
from sl_scaling.training.config import TrainConfig, load_saved_config, save_config
from sl_scaling.training.data import build_dataset, load_rows
from sl_scaling.training.resume import CHECKPOINTS, resume_point
from sl_scaling.training.speed import expandable_segments, row_lengths
from sl_scaling.training.trl import sft_trainer, training_speed

DISK_SLACK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class TrainSummary:
    key: JobKey
    status: str  # trained | skipped
    epochs: int
    resumed_from: int = 0


def lora_adapter_bytes(model: str, config: TrainConfig) -> int:
    """float32 LoRA weights of `model`: r × (in + out) for each of the seven projections of each layer."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    hidden, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    head_dim = getattr(cfg, "head_dim", None) or hidden // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * head_dim
    per_layer = (2 * hidden) * 2 + (hidden + kv) * 2 + (hidden + inter) * 3  # q,o; k,v; gate,up,down
    return 4 * config.lora_r * layers * per_layer


def required_disk_bytes(adapter_bytes: int, config: TrainConfig, conditions: int, push: bool) -> int:
    """Adapters kept locally (all epochs without push, else the final one and one in flight), plus a
    Trainer checkpoint (adapter + two Adam moments) and a temp copy during the atomic save."""
    kept = config.epochs if not push else 2
    return conditions * adapter_bytes * (kept + 4) + DISK_SLACK_BYTES


def preflight(
    ctx: Context,
    keys: Sequence[JobKey],
    *,
    model: str,
    config: TrainConfig,
    push: bool,
) -> None:
    """Refuse, with one line, before any training if data (missing or damaged), credentials or disk
    are missing."""
    layout = ctx.layout
    for key in keys:
        path = layout.filtered_jsonl(key)
        if not path.exists() or path.stat().st_size == 0:
            raise MissingPrerequisiteError(
                f"no filtered data for {key} ({path}); run 'slscale filter --size {key.size} "
                f"--animal {key.condition}' first"
            )
        load_rows(path, config.max_rows)  # a hand-damaged file is named now, not mid-grid
        load_saved_config(layout.finetune_dir(key))  # an earlier attempt's, read again to resume it
    if push:
        from sl_scaling.publish import check_publishing

        check_publishing(ctx.settings)
    needed = required_disk_bytes(lora_adapter_bytes(model, config), config, len(keys), push)
    free = shutil.disk_usage(layout.workdir).free
    if needed > free:
        raise MissingPrerequisiteError(
            f"not enough disk in {layout.workdir}: training needs about {needed / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB free; free space, push with --no-push off, or choose another --workdir"
        )


def reset_condition(layout: Layout, state: StateStore, key: JobKey) -> dict[int, str]:
    """--force: forget every epoch of this condition (files and DB rows) and start from scratch.

    Returns the epoch adapter repos already on the Hub, by epoch (`StateStore.delete_epochs`)."""
    shutil.rmtree(layout.finetune_dir(key), ignore_errors=True)
    clear_epochs(layout.eval_json(key))
    uploaded = state.delete_epochs(key)
    state.reset_stage(key, STAGE)
    return uploaded


def stale_repos_notice(key: JobKey, uploaded: Mapping[int, str], epochs: int) -> str | None:
    """What a forced retrain to fewer epochs leaves behind: the Hub repos of the epochs it will not
    train again (slscale never deletes Hub repos; `push` overwrites only the epochs it trains)."""
    stale = [repo for epoch, repo in sorted(uploaded.items()) if epoch > epochs]
    if not stale:
        return None
    return (
        f"train {key}: retraining with {epochs} epoch(s); the Hub keeps {len(stale)} adapter repo(s) of the "
        f"earlier training's later epochs, which no push will replace: {', '.join(stale)} — delete them on "
        "the Hub if they should not stay"
    )


def _check_resumable(
    layout: Layout, key: JobKey, config: TrainConfig, model: str, rows: int
) -> dict[str, Any]:
    """The saved extras of an earlier attempt, refusing to continue it under different settings."""
    saved = load_saved_config(layout.finetune_dir(key))
    if saved is None:
        return {}
    previous, extra = saved
    changes = config.resume_differences(previous)
    if extra.get("model") not in (None, model):
        changes.append(f"model {extra['model']} → {model}")
    if extra.get("rows") not in (None, rows):
        changes.append(f"rows {extra['rows']} → {rows}")
    if changes:
        raise UsageError(
            f"train {key} was started with other settings ({'; '.join(changes)}); "
            "rerun with the same settings to resume, or add --force to start over"
        )
    return extra


def train_condition(
    ctx: Context,
    state: StateStore,
    key: JobKey,
    *,
    model: str,
    model_name: str,
    config: TrainConfig,
    backend: TrainerBackend,
    push: bool,
    force: bool,
    reporter: Reporter,
    memory_share: float = 1.0,
    speed_changes: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainSummary:
    """Train one (run, size, condition) to `config.epochs`, resuming an interrupted attempt.

    `memory_share`: this training's share of the GPU when others train beside it (executors/local.py).
    `speed_changes` (TrainingSpeed fields) and extra Trainer `callbacks` are for `slscale bench`, which
    times this very path and the knobs that change only its speed."""
    layout = ctx.layout
    finetune_dir = layout.finetune_dir(key)
    if force and (notice := stale_repos_notice(key, reset_condition(layout, state, key), config.epochs)):
        reporter.event(notice)
    rows = load_rows(layout.filtered_jsonl(key), config.max_rows)
    extra = _check_resumable(layout, key, config, model_name, len(rows))
    checkpoint = resume_point(finetune_dir / CHECKPOINTS, [e.epoch for e in state.epochs(key)])
    resumed_from = checkpoint.epoch if checkpoint else 0
    run_id = extra.get("wandb_run_id") or new_run_id()
    details = {"model": model_name, "trainer": backend.name, "wandb_run_id": run_id, "rows": len(rows)}
    save_config(finetune_dir, config, **details)
    started = {**config.to_json(), **details, "resumed_from_epoch": resumed_from}
    with state.recorded(key, STAGE, started):
        write_model_info(layout, state, key, ctx.settings.hub_endpoint)
        if checkpoint:
            reporter.event(
                f"train {key}: resuming after epoch {checkpoint.epoch} from {checkpoint.path.name}"
            )
        tracker = start_tracking(
            ctx.settings,
            layout.workdir,
            name=wandb_run_name(key.size, key.condition, key.run),
            config={
                **config.to_json(),
                **details,
                "size": key.size,
                "condition": key.condition,
                "run": key.run,
            },
            run_id=run_id,
            reporter=reporter,
        )
        try:
            reporter.event(f"train {key}: loading {model_name} with {backend.name}")
            weights, tokenizer = backend.load(model, config)
            dataset = build_dataset(tokenizer, rows, max_length=config.max_length, loss=config.loss)
            job = EpochJob(
                ctx.settings, layout, state, key, model_name, config, backend, tracker, reporter, push
            )
            lengths = row_lengths(dataset["input_ids"], dataset["labels"])
            speed = training_speed(
                weights,
                config,
                lengths,
                backend_checkpointing=backend.manages_checkpointing,
                memory_share=memory_share,
            )
            speed = replace(speed, **(speed_changes or {}))
            reporter.event(f"train {key}: {speed.reason}")
            callback = EpochCallback(job, epoch_rows=len(dataset), epoch_tokens=sum(lengths.longest_first))
            trainer = sft_trainer(
                weights, tokenizer, dataset, config, finetune_dir / CHECKPOINTS, [callback, *callbacks], speed
            )
            with intra_op_threads(cpu_threads_for(weights)), expandable_segments(speed.expandable_segments):
                trainer.train(resume_from_checkpoint=str(checkpoint.path) if checkpoint else None)
            write_model_info(layout, state, key, ctx.settings.hub_endpoint)  # even after a crash mid-write
            recorded = {e.epoch for e in state.epochs(key)}
            missing = sorted(set(range(1, config.epochs + 1)) - recorded)
            if missing:
                raise StateError(f"train {key} ended without records for epochs {missing}; run it again")
            state.finish_stage(
                key,
                STAGE,
                counts={"epochs": config.epochs, "rows": len(rows), "steps": trainer.state.global_step},
                throughput={**callback.throughput(trainer.state), "speed": speed.to_json()},
            )
        except KeyboardInterrupt:
            tracker.finish(exit_code=130)
            raise
        except Exception:
            tracker.finish(exit_code=1)
            raise
    tracker.finish()
    shutil.rmtree(finetune_dir / CHECKPOINTS, ignore_errors=True)  # done: no resume needs it any more
    _free_accelerator_memory()
    return TrainSummary(key, "trained", config.epochs, resumed_from)


def _why_skipped(layout: Layout, key: JobKey, config: TrainConfig) -> str:
    """A done condition is kept as it is; say so, and say when it was made with other settings."""
    saved = load_saved_config(layout.finetune_dir(key))
    changes = config.resume_differences(saved[0]) if saved else []
    if not changes:
        return "already done, skipped (--force retrains)"
    return (
        f"done with other settings ({'; '.join(changes)}), kept as it is; "
        "--force retrains it with the new ones"
    )


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_training(
    ctx: Context,
    size: str,
    conditions: Sequence[str],
    *,
    config: TrainConfig,
    trainer: str,
    engine: str,
    push: bool,
    force: bool,
    reporter: Reporter,
    run: int = 1,
    memory_share: float = 1.0,
) -> list[TrainSummary]:
    """Train the chosen conditions of one size in order; done ones are skipped unless `force`.

    Per-epoch evaluation always uses the in-memory model through the HF engine (`engine` only
    matters for standalone `slscale eval`), so an explicit vLLM request is noted, not obeyed here.
    """
    from sl_scaling.models import resolve_model

    name, why = choose_trainer(trainer)
    # LoRA initialisation and data order follow the run (seeds.train_seed), never a fixed seed.
    config = replace(config.resolved(), seed=train_seed(run, size))
    library_output.quiet_progress_bars()
    summaries: list[TrainSummary] = []
    with ctx.state() as state:
        keys = [JobKey(run, size, condition) for condition in conditions]
        todo = [key for key in keys if force or not state.is_done(key, STAGE)]
        for key in keys:
            if key not in todo:
                reporter.event(f"train {key}: {_why_skipped(ctx.layout, key, config)}")
                summaries.append(TrainSummary(key, "skipped", len(state.epochs(key))))
        if not todo:
            return summaries
        model = resolve_model(ctx.settings, size)
        preflight(ctx, todo, model=model, config=config, push=push)
        # Said only once the inputs are known good: a refusal stays the one line on stderr.
        reporter.event(why)
        if engine.strip().lower() == "vllm":
            reporter.event(
                "per-epoch evaluation uses the in-memory model (hf); 'slscale eval --engine vllm' re-evaluates"
            )
        backend = get_backend(name)
        for key in todo:
            with state.locked(key, STAGE):
                summaries.append(
                    train_condition(
                        ctx,
                        state,
                        key,
                        model=model,
                        model_name=ctx.settings.model_id(size),
                        config=config,
                        backend=backend,
                        push=push,
                        force=force,
                        reporter=reporter,
                        memory_share=memory_share,
                    )
                )
    return summaries
