"""`slscale gen`: Phase 1: teachers write number sequences for the chosen conditions."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """Phase 1: teachers write number sequences for the chosen conditions.

    Not built yet.
    """
    raise SlscaleError("'slscale gen' is not built yet")
