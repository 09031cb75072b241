"""`slscale report`: The scaling-law analysis: lift, significance, confusion matrices, curves."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """The scaling-law analysis: lift, significance, confusion matrices, curves.

    Not built yet.
    """
    raise SlscaleError("'slscale report' is not built yet")
