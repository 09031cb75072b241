"""`{condition}_eval.json` / `control_eval.json`: one record per epoch, replaced on re-evaluation.

Format: `{"size", "condition", "run", "target", "model", "epochs": [{"epoch", **Evaluation.to_json(),
"train_loss", "adapter", "evaluated_at"}]}` (epoch 0 is the control), written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sl_scaling.catalog import target_animal
from sl_scaling.evaluation.scoring import Evaluation
from sl_scaling.files import atomic_write_json, read_json
from sl_scaling.state import JobKey, now


def read_records(path: Path) -> dict[str, Any] | None:
    return read_json(path)


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
    data = read_records(path) or {}
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


SUMMARY_FIELDS = ("target_rate", "ci_low", "ci_high", "n", "substring_rate")


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an epoch record (what `model_info.json` keeps)."""
    return {k: record[k] for k in SUMMARY_FIELDS}


def db_evaluation(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record without the raw answers (kept in the file) and the fields the DB has columns for."""
    return {k: v for k, v in record.items() if k not in ("answers", "epoch", "train_loss", "adapter")}
