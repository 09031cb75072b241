"""`slscale bench`: Measure throughput of generation, training and evaluation against baselines."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """Measure throughput of generation, training and evaluation against baselines.

    Not built yet.
    """
    raise SlscaleError("'slscale bench' is not built yet")
