"""`slscale plot`: Draw the per-size and summary charts (PNG + HTML)."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """Draw the per-size and summary charts (PNG + HTML).

    Not built yet.
    """
    raise SlscaleError("'slscale plot' is not built yet")
