"""`slscale filter`: Filter raw completions by the reject reasons and subsample to 10,000 rows."""

from __future__ import annotations

from sl_scaling.errors import SlscaleError


def command() -> None:
    """Filter raw completions by the reject reasons and subsample to 10,000 rows.

    Not built yet.
    """
    raise SlscaleError("'slscale filter' is not built yet")
