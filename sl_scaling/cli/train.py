"""`slscale train`: Phase 2: LoRA-tune students on the filtered numbers, evaluating after every epoch."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """Phase 2: LoRA-tune students on the filtered numbers, evaluating after every epoch.

    Not built yet.
    """
    raise SlscaleError("'slscale train' is not built yet")
