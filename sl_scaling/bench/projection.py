"""Hours for the full grid on the benched GPU, from measured rates (interpolated for unmeasured sizes).

The rates and their interpolation live in `sl_scaling/estimates.py`, which the product reads too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sl_scaling.catalog import CONDITIONS, REAL_SIZES
from sl_scaling.estimates import (
    STAGES,
    epoch_end_rates,
    final_evaluation_rates,
    final_evaluation_seconds,
    grid_rows,
    interpolate,
    measured_rates,
    train_seconds,
)
from sl_scaling.grid import EPOCHS, EVAL, TRAIN


def project(results: Iterable[dict[str, Any]], sizes: Iterable[str] = REAL_SIZES) -> dict[str, Any]:
    """`{"grid_h200_hours", "by_size": {size: {gen_h, train_h, eval_h, total_h, measured}}}`; train_h
    includes every epoch's adapter save and evaluation as measured on the training path, eval_h is the
    final evaluations (the trained conditions' in memory, where timed, and the control's)."""
    results = list(results)
    rates, ends, finals = measured_rates(results), epoch_end_rates(results), final_evaluation_rates(results)
    by_size: dict[str, Any] = {}
    for size in sizes:
        entry: dict[str, Any] = {"measured": [s for s in STAGES if size in rates[s]]}
        for stage in STAGES:
            if stage == TRAIN:
                seconds = train_seconds(size, grid_rows(TRAIN), len(CONDITIONS) * EPOCHS, rates[TRAIN], ends)
            elif stage == EVAL:
                seconds = final_evaluation_seconds(size, rates[EVAL], finals)
            else:
                rate = interpolate(rates[stage], size)
                seconds = None if rate is None else grid_rows(stage) / rate
            entry[f"{stage}_h"] = None if seconds is None else round(seconds / 3600, 3)
        hours = [entry[f"{s}_h"] for s in STAGES]
        entry["total_h"] = None if None in hours else round(sum(hours), 3)
        by_size[size] = entry
    totals = [e["total_h"] for e in by_size.values()]
    grid = None if None in totals else round(sum(totals), 2)
    return {"grid_h200_hours": grid, "by_size": by_size}
