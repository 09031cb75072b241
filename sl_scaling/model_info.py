"""`model_info.json` beside each fine-tuning run: every epoch's local path, Hub repo, commit and eval summary.

Training and publishing both add to it; each update is a read-merge-atomic-write of one epoch entry.
"""

from __future__ import annotations

from typing import Any

from sl_scaling.catalog import Layout
from sl_scaling.files import atomic_write_json, read_json
from sl_scaling.state import JobKey, now


def read_model_info(layout: Layout, key: JobKey) -> dict[str, Any]:
    return read_json(layout.model_info(key), default=None) or {
        "size": key.size,
        "condition": key.condition,
        "run": key.run,
        "epochs": {},
        "final": None,
    }


def update_model_info(
    layout: Layout, key: JobKey, *, epoch: int | None = None, **fields: Any
) -> dict[str, Any]:
    """Merge `fields` into the entry of `epoch` (or into the top level when epoch is None)."""
    info = read_model_info(layout, key)
    if epoch is None:
        info.update(fields)
    else:
        entry = info["epochs"].setdefault(str(epoch), {"epoch": epoch})
        entry.update(fields)
    info["updated_at"] = now()
    atomic_write_json(layout.model_info(key), info)
    return info
