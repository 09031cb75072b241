"""After every epoch: save the adapter, evaluate the in-memory model, record, log, publish.

Order of writes, chosen so that a SIGKILL at any moment leaves a consistent state — an epoch is
either fully recorded or redone:

1. the adapter is saved into a temp dir and renamed into place (never half a directory);
2. the evaluation runs on the model already in memory (sampled answers, the exact preference and, after
   the last epoch, the final evaluation with `final_samples` answers);
3. W&B gets the epoch's metrics;
4. `{condition}_eval.json` and `model_info.json` get the epoch (atomic upserts), then the DB records
   it — from here on the epoch counts as done (`evaluation.records.record_epoch`, the one recorder);
5. the Publisher uploads what is pending (and deletes confirmed non-final epoch adapters).

The Trainer writes its checkpoint (optimizer, scheduler, RNG, data order) only *after* this
callback, so a checkpoint never runs ahead of the DB. A resume continues from the newest complete
checkpoint no later than the last recorded epoch and redoes anything after it; every record is an
upsert, so a redone epoch replaces, never duplicates.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from sl_scaling.catalog import Layout, target_animal
from sl_scaling.errors import HubError
from sl_scaling.evaluation.records import record_epoch
from sl_scaling.evaluation.runner import EvalPlan, evaluate_model
from sl_scaling.evaluation.scoring import Evaluation
from sl_scaling.progress import Reporter
from sl_scaling.settings import Settings
from sl_scaling.state import JobKey, StateStore
from sl_scaling.tracking import Tracker
from sl_scaling.training.base import TrainerBackend
from sl_scaling.training.config import TrainConfig


@dataclass
class EpochJob:
    """What the per-epoch work needs besides the model: where to write and whom to tell."""

    settings: Settings
    layout: Layout
    state: StateStore
    key: JobKey
    model_name: str
    config: TrainConfig
    backend: TrainerBackend
    tracker: Tracker
    reporter: Reporter
    push: bool
    job_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.job_id = f"train:{self.key}"

    def adapter_dir(self, epoch: int) -> Path:
        """The last planned epoch goes to `final_checkpoint/`, the others to `epoch-N/`."""
        if epoch == self.config.epochs:
            return self.layout.final_checkpoint(self.key)
        return self.layout.epoch_adapter_dir(self.key, epoch)


def save_adapter(model: Any, tokenizer: Any, dest: Path) -> None:
    """Save the LoRA adapter (and tokenizer) so that `dest` is either absent, old or complete."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    for path in tmp.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def evaluate_in_memory(job: EpochJob, model: Any, tokenizer: Any, epoch: int) -> Evaluation:
    """Evaluate the model being trained, without reloading it (the backend restores train mode)."""
    from sl_scaling.engines import ENGINES, IN_MEMORY

    with job.backend.inference(model):
        engine = ENGINES.load(IN_MEMORY).from_model(model, tokenizer)
        plan = EvalPlan.at_epoch(
            job.key.run,
            job.key.size,
            epoch,
            samples=job.config.eval_samples,
            max_new_tokens=job.config.eval_max_new_tokens,
            final_samples=job.config.final_samples if epoch == job.config.epochs else 0,
        )
        return evaluate_model(engine, plan, target=target_animal(job.key.condition))


def publish(job: EpochJob) -> None:
    """Upload what is pending; a Hub failure is reported and training goes on (`slscale push` retries)."""
    from sl_scaling.publish import Publisher

    try:
        result = Publisher(job.settings, job.layout, job.state, reporter=job.reporter).publish(job.key)
    except HubError as exc:
        job.reporter.event(
            f"upload for {job.key} failed: {exc}; adapters stay local, run 'slscale push' later"
        )
        return
    line = f"publish {job.key}: {len(result.uploaded)} uploaded, {len(result.deleted)} local epoch adapters deleted"
    if result.failed is not None:
        line += f"; failed: {result.failed[1]} (stays pending, 'slscale push' retries)"
    job.reporter.event(line)


def complete_epoch(job: EpochJob, model: Any, tokenizer: Any, epoch: int, train_loss: float | None) -> None:
    """Steps 1–5 of the module docstring for one finished epoch."""
    key, layout = job.key, job.layout
    adapter = job.adapter_dir(epoch)
    save_adapter(model, tokenizer, adapter)
    job.reporter.event(f"train {key}: epoch {epoch} saved to {adapter}; evaluating")
    started = time.monotonic()
    evaluation = evaluate_in_memory(job, model, tokenizer, epoch)
    job.tracker.log_epoch(epoch, train_loss, evaluation)
    record_epoch(
        layout, job.state, key, job.model_name, epoch, evaluation,
        train_loss=train_loss, adapter=str(adapter), hub_endpoint=job.settings.hub_endpoint,
    )  # fmt: skip
    rate = "" if evaluation.target_rate is None else f", {key.condition} rate {evaluation.target_rate:.1%}"
    if evaluation.exact is not None and evaluation.exact.target_probability is not None:
        rate += f", exact {evaluation.exact.target_probability:.2%}"
    if evaluation.final is not None and evaluation.final.target_rate is not None:
        rate += f", final rate {evaluation.final.target_rate:.2%} (n={evaluation.final.n})"
    loss = "" if train_loss is None else f"loss {train_loss:.4f}"
    job.reporter.event(
        f"train {key}: epoch {epoch}/{job.config.epochs} {loss}{rate} "
        f"(n={evaluation.n}, eval {time.monotonic() - started:.0f}s)"
    )
    if job.push:
        publish(job)


class EpochCallback(TrainerCallback):
    """Hooks the Trainer: progress per logged step, `complete_epoch` at every epoch's end.

    Throughput counts the rows' own tokens (`epoch_tokens`, the sum of their `input_ids`), never the
    Trainer's `num_input_tokens_seen`, which counted ~79 of a ~143-token row. An epoch covers every row
    once, so the tokens done are `epochs done × epoch_tokens` exactly at epoch ends, pro rata between.
    """

    def __init__(self, job: EpochJob, *, epoch_rows: int, epoch_tokens: int) -> None:
        self.job = job
        self.epoch_rows, self.epoch_tokens = epoch_rows, epoch_tokens
        self._losses: list[float] = []
        self._started = time.monotonic()
        self._epoch_end_s = 0.0
        self._first_step = 0
        self._first_epoch = 0.0

    def _epochs_done(self, state: Any) -> float:
        return max((state.epoch or 0.0) - self._first_epoch, 0.0)

    def throughput(self, state: Any) -> dict[str, float]:
        """This process's share of the training (a resume restarts the clock): rows and tokens done,
        seconds in all and in the per-epoch save + evaluation, rows/s and tokens/s over all seconds."""
        seconds = max(time.monotonic() - self._started, 1e-9)
        epochs = self._epochs_done(state)
        rows, tokens = round(epochs * self.epoch_rows), round(epochs * self.epoch_tokens)
        return {
            "seconds": round(seconds, 1),
            "epoch_end_seconds": round(self._epoch_end_s, 1),
            "rows": rows,
            "tokens": tokens,
            "rows_per_s": round(rows / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
        }

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = time.monotonic()
        self._first_step = state.global_step
        self._first_epoch = state.epoch or 0.0
        self.job.reporter.job_started(
            self.job.job_id, f"train {self.job.key}", total=state.max_steps, unit="steps"
        )

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        if not logs or "loss" not in logs:
            return
        self._losses.append(logs["loss"])
        elapsed = max(time.monotonic() - self._started, 1e-9)
        done = state.global_step - self._first_step
        eta = elapsed / done * (state.max_steps - state.global_step) if done else None
        self.job.tracker.log_step(
            state.global_step, loss=logs["loss"], learning_rate=logs.get("learning_rate", 0.0)
        )
        self.job.reporter.job_advanced(
            self.job.job_id,
            state.global_step,
            epoch=round(state.epoch or 0.0, 2),
            loss=logs["loss"],
            tokens_per_s=self._epochs_done(state) * self.epoch_tokens / elapsed,
            eta_s=None if eta is None else round(eta),
        )

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = round(state.epoch)
        train_loss = sum(self._losses) / len(self._losses) if self._losses else None
        self._losses = []
        started = time.monotonic()
        complete_epoch(self.job, kwargs["model"], kwargs["processing_class"], epoch, train_loss)
        self._epoch_end_s += time.monotonic() - started

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.job.reporter.job_finished(self.job.job_id, f"{state.global_step} steps")
