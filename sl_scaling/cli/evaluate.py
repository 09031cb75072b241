"""`slscale eval`: Phase 3: ask a model for its favourite animal (the control, or saved adapters)."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """Phase 3: ask a model for its favourite animal (the control, or saved adapters).

    Not built yet.
    """
    raise SlscaleError("'slscale eval' is not built yet")
