"""`slscale push`: Publish pending datasets and adapters to the Hugging Face Hub."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """Publish pending datasets and adapters to the Hugging Face Hub.

    Not built yet.
    """
    raise SlscaleError("'slscale push' is not built yet")
