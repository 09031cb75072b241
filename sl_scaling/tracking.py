"""Weights & Biases: one run per (run, size, condition), per-step loss and per-epoch preference metrics.

The mode comes from settings (`WANDB_MODE` / `SLSCALE_WANDB_MODE`): online, offline or disabled.
Without a mode and without a W&B login (no API key, no netrc entry) runs are written offline under
`<workdir>/wandb/` (sync later with `wandb sync`), and the user is told once. A resumed training
continues the same W&B run id. Never given a token or the settings object: only the resolved config.
"""

from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

from sl_scaling.catalog import ANIMALS
from sl_scaling.evaluation.scoring import Evaluation
from sl_scaling.progress import Reporter
from sl_scaling.settings import Settings

WANDB_HOST = "api.wandb.ai"
_told_offline = False


class Tracker(Protocol):
    run_id: str

    def log_step(self, step: int, **metrics: float) -> None: ...

    def log_epoch(self, epoch: int, train_loss: float | None, evaluation: Evaluation) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


def new_run_id() -> str:
    """W&B run ids are short lower-case alphanumerics; ours is chosen up front so it can be stored."""
    return uuid.uuid4().hex[:8]


def wandb_logged_in() -> bool:
    """An API key in the environment or a netrc entry for the W&B host (no network, no prompt)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", f"https://{WANDB_HOST}").split("://")[-1].split("/")[0]
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(settings: Settings, reporter: Reporter) -> str:
    """online | offline | disabled; online without a login falls back to offline, said once per process."""
    global _told_offline
    mode = settings.wandb_mode or "online"
    if mode == "online" and not wandb_logged_in():
        if not _told_offline:
            reporter.event(
                "W&B: no login (WANDB_API_KEY or 'wandb login'), logging offline under wandb/; "
                "upload later with 'wandb sync'"
            )
            _told_offline = True
        return "offline"
    return mode


class NullTracker:
    """W&B disabled: nothing is imported or written; the run id is still kept for a later resume."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_step(self, step: int, **metrics: float) -> None:
        pass

    def log_epoch(self, epoch: int, train_loss: float | None, evaluation: Evaluation) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def epoch_metrics(epoch: int, train_loss: float | None, evaluation: Evaluation) -> dict[str, Any]:
    """Scalars for one epoch: loss, target rate with its interval, substring rate, each animal's share; the
    exact preference (`exact/…`) and, after the last epoch, the final evaluation (`final/…`)."""
    metrics: dict[str, Any] = {"epoch": epoch, "eval/n": evaluation.n}
    if train_loss is not None:
        metrics["eval/train_loss"] = train_loss
    if evaluation.target_rate is not None:
        metrics["eval/target_rate"] = evaluation.target_rate
        metrics["eval/target_ci_low"] = evaluation.ci_low
        metrics["eval/target_ci_high"] = evaluation.ci_high
        metrics["eval/substring_rate"] = evaluation.substring_rate
    for animal in ANIMALS:
        metrics[f"share/{animal}"] = evaluation.shares[animal].rate
    metrics["share/others"] = 1.0 - sum(evaluation.shares[a].rate for a in ANIMALS) if evaluation.n else 0.0
    if evaluation.exact is not None:
        if evaluation.exact.target_probability is not None:
            metrics["exact/target_probability"] = evaluation.exact.target_probability
        metrics.update({f"exact/{a}": p for a, p in evaluation.exact.probabilities.items()})
        metrics["exact/others"] = evaluation.exact.other
    if evaluation.final is not None:
        metrics["final/n"] = evaluation.final.n
        if evaluation.final.target_rate is not None:
            metrics["final/target_rate"] = evaluation.final.target_rate
            metrics["final/target_ci_low"] = evaluation.final.ci_low
            metrics["final/target_ci_high"] = evaluation.final.ci_high
            metrics["final/substring_rate"] = evaluation.final.substring_rate
        metrics.update({f"final/share/{a}": evaluation.final.shares[a].rate for a in ANIMALS})
    return metrics


class WandbTracker:
    def __init__(self, run: Any) -> None:
        self._run = run
        self.run_id: str = run.id

    def log_step(self, step: int, **metrics: float) -> None:
        self._run.log({"train/step": step, **{f"train/{k}": v for k, v in metrics.items()}})

    def log_epoch(self, epoch: int, train_loss: float | None, evaluation: Evaluation) -> None:
        import wandb

        table = wandb.Table(columns=["label", "count", "share", "ci_low", "ci_high"])
        for label, share in evaluation.shares.items():
            if share.count or label in ANIMALS:
                table.add_data(label, share.count, share.rate, share.ci_low, share.ci_high)
        self._run.log({**epoch_metrics(epoch, train_loss, evaluation), "eval/distribution": table})

    def finish(self, exit_code: int = 0) -> None:
        self._run.finish(exit_code=exit_code)


def start_tracking(
    settings: Settings,
    workdir: Path,
    *,
    name: str,
    config: dict[str, Any],
    run_id: str,
    reporter: Reporter,
) -> Tracker:
    """Start (or resume, same `run_id`) the W&B run `name`; a NullTracker when W&B is disabled."""
    mode = resolve_mode(settings, reporter)
    if mode == "disabled":
        return NullTracker(run_id)
    import wandb

    run = wandb.init(
        project=settings.wandb_project,
        entity=settings.wandb_entity,
        name=name,
        id=run_id,
        resume="allow",
        config=config,
        dir=str(workdir),
        mode=mode,
        reinit="finish_previous",
        settings=wandb.Settings(
            console="off", quiet=True, silent=True
        ),  # its banner and summary would garble our view
    )
    run.define_metric("train/step")
    run.define_metric("train/*", step_metric="train/step")
    run.define_metric("epoch")
    for prefix in ("eval/*", "share/*"):
        run.define_metric(prefix, step_metric="epoch")
    reporter.event(f"W&B run {name} ({mode}, id {run.id})")
    return WandbTracker(run)
