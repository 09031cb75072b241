"""`{condition}_eval.json` / `control_eval.json`: one record per epoch, replaced on re-evaluation.

Format: `{"size", "condition", "run", "target", "model", "epochs": [{"epoch", **Evaluation.to_json(),
"train_loss", "adapter", "evaluated_at"}]}` (epoch 0 is the control), written atomically. Each record has
`exact` (the sampling-free preference) and, for the last epoch and the control, `final` (the larger final
evaluation, an Evaluation record of its own).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sl_scaling.catalog import CONTROL, Layout, target_animal
from sl_scaling.evaluation.scoring import Evaluation
from sl_scaling.files import atomic_write_json, read_json
from sl_scaling.model_info import write_model_info
from sl_scaling.state import JobKey, StateStore, now


def epoch_record(
    epoch: int, evaluation: Evaluation, *, train_loss: float | None, adapter: str | None
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        **evaluation.to_json(),
        "train_loss": train_loss,
        "adapter": adapter,
        "evaluated_at": now(),
    }


def upsert_epoch(path: Path, key: JobKey, model: str, record: dict[str, Any]) -> dict[str, Any]:
    """Add or replace the record of `record['epoch']`, keeping epochs sorted; the header is refreshed."""
    data = read_json(path) or {}
    epochs = [e for e in data.get("epochs", []) if e["epoch"] != record["epoch"]]
    epochs.append(record)
    data = {
        "size": key.size,
        "condition": key.condition,
        "run": key.run,
        "target": target_animal(key.condition),
        "model": model,
        "epochs": sorted(epochs, key=lambda e: e["epoch"]),
    }
    atomic_write_json(path, data)
    return data


def clear_epochs(path: Path) -> None:
    """Forget every record (a forced retrain starts the file afresh)."""
    path.unlink(missing_ok=True)


def db_evaluation(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record without what only the file keeps (raw answers, the exact preference per question)
    and the fields the DB has columns for."""
    kept = {k: v for k, v in record.items() if k not in ("answers", "epoch", "train_loss", "adapter")}
    if kept.get("exact"):
        kept["exact"] = {k: v for k, v in kept["exact"].items() if k != "per_question"}
    if kept.get("final"):
        kept["final"] = db_evaluation(kept["final"])
    return kept


def record_epoch(
    layout: Layout,
    state: StateStore,
    key: JobKey,
    model: str,
    epoch: int,
    evaluation: Evaluation,
    *,
    train_loss: float | None,
    adapter: str | None,
    hub_endpoint: str,
) -> None:
    """One evaluated epoch everywhere it is kept, in crash-safe order: the evaluation file (with the raw
    answers), then the DB, the source of truth for progress (from its row on the epoch counts as done; a
    redone epoch replaces every copy: all upserts), then `model_info.json`, derived from the DB."""
    record = epoch_record(epoch, evaluation, train_loss=train_loss, adapter=adapter)
    upsert_epoch(layout.eval_json(key), key, model, record)
    state.record_epoch(
        key, epoch, train_loss=train_loss, evaluation=db_evaluation(record), adapter_path=adapter
    )
    if key.condition != CONTROL:  # the control is the base model: no fine-tuning folder
        write_model_info(layout, state, key, hub_endpoint)


def describe_answers(final: Iterable[int], per_epoch: Iterable[int]) -> str:
    """Which evaluation a chart or table shows, from the answer counts of its final and per-epoch records:
    'final evaluation (n=5,000)', 'per-epoch evaluation (n=100)', or both where they mix."""
    finals, epochs = sorted(set(final)), sorted(set(per_epoch))

    def answers(ns: list[int]) -> str:
        return "n=" + "/".join(f"{n:,}" for n in ns)

    if finals and epochs:
        return f"final evaluation ({answers(finals)}) where available, else per-epoch ({answers(epochs)})"
    if finals:
        return f"final evaluation ({answers(finals)})"
    return f"per-epoch evaluation ({answers(epochs)})" if epochs else "no evaluation"
