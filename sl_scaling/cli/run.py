"""`slscale run`: The whole grid: gen, filter, train with per-epoch eval, control eval, plots."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """The whole grid: gen, filter, train with per-epoch eval, control eval, plots.

    Not built yet.
    """
    raise SlscaleError("'slscale run' is not built yet")
