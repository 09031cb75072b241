"""`model_info.json` beside each fine-tuning run, derived from the DB (the source of truth), as the summary is:
the base model, trainer and configuration, every epoch's adapter, loss, headline evaluation and Hub repo.

Rewritten whole after each change to those rows (an epoch recorded, an upload done) and at the end of a
training, so a copy left behind by a crash is put right by the next write.
"""

from __future__ import annotations

from typing import Any

from sl_scaling.catalog import Layout, hub_url
from sl_scaling.files import atomic_write_json
from sl_scaling.grid import TRAIN
from sl_scaling.state import DONE, JobKey, StateStore, UploadRecord, now


def model_info(state: StateStore, key: JobKey, endpoint: str) -> dict[str, Any]:
    """What the DB knows of one fine-tuned model; Hub URLs follow from the repo names and `endpoint`."""
    train = state.stage(key, TRAIN)
    config = train.config if train else {}
    uploads = {(u.kind, u.epoch): u for u in state.uploads(DONE) if u.key == key and u.repo_type == "model"}

    def hub(upload: UploadRecord | None) -> dict[str, Any]:
        if upload is None:
            return {}
        return {
            "hub_repo": upload.repo_id,
            "hub_url": hub_url(endpoint, upload.repo_id),
            "hub_commit": upload.commit,
        }

    epochs = {
        str(e.epoch): {
            "epoch": e.epoch,
            "adapter_path": e.adapter_path,
            "train_loss": e.train_loss,
            "target_rate": e.target_rate,
            "ci_low": e.ci_low,
            "ci_high": e.ci_high,
            "n": e.n,
            "substring_rate": e.eval.get("substring_rate"),
            "local_deleted": e.local_deleted,
            **hub(uploads.get(("epoch", e.epoch))),
        }
        for e in state.epochs(key)
    }
    final = next((u for (kind, _), u in uploads.items() if kind == "final"), None)
    return {
        "size": key.size,
        "condition": key.condition,
        "run": key.run,
        "base_model": config.get("model"),
        "trainer": config.get("trainer"),
        "train_config": config,
        "epochs": epochs,
        "final": None if final is None else {"epoch": final.epoch, **hub(final)},
        "updated_at": now(),
    }


def write_model_info(layout: Layout, state: StateStore, key: JobKey, endpoint: str) -> None:
    """The one writer of `model_info.json` (atomic)."""
    atomic_write_json(layout.model_info(key), model_info(state, key, endpoint))
