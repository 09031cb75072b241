"""The report's charts (Altair), in the look of `slscale plot`: same palette, titles, units and font."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt

from sl_scaling.catalog import ANIMALS, SIZE_PARAMS_B
from sl_scaling.charts.palette import MODEL_KIND_COLOURS
from sl_scaling.charts.style import (
    ANIMAL_SCALE,
    configure,
    interval_tooltips,
    model_label,
    size_label,
    title,
    zero_line,
)
from sl_scaling.report.analysis import CurvePoint, SizeResult
from sl_scaling.report.data import LABELS


def epoch_text(epoch: int | None) -> str:
    return "no fine-tuned student" if epoch is None else f"students at epoch {epoch}"


def heatmap(result: SizeResult) -> alt.TopLevelMixin:
    """Confusion matrix: rows = models, columns = the answer given; the students' own animals outlined."""
    cells = [
        {
            "model": model_label(row),
            "answer": label,
            "share": float(result.matrix[i, j]),
            "ci_low": float(result.matrix_low[i, j]),
            "ci_high": float(result.matrix_high[i, j]),
            "own": row == label,
        }
        for i, row in enumerate(result.rows)
        for j, label in enumerate(LABELS)
    ]
    base = alt.Chart(alt.Data(values=cells)).encode(
        x=alt.X("answer:N", sort=list(LABELS), title="Answer named (share of the model's answers)"),
        y=alt.Y("model:N", sort=[model_label(r) for r in result.rows], title="Model"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "share:Q",
            title="Share of answers (%)",
            scale=alt.Scale(scheme="blues", domain=[0, max(0.3, float(result.matrix.max()))]),
            legend=alt.Legend(format="%"),
        ),
        stroke=alt.condition("datum.own", alt.value(MODEL_KIND_COLOURS["Animal"]), alt.value(None)),
        strokeWidth=alt.condition("datum.own", alt.value(2.5), alt.value(0)),
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("answer:N"),
            alt.Tooltip("share:Q", format=".1%"),
            *interval_tooltips(".1%"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("share:Q", format=".0%"),
        color=alt.condition("datum.share > 0.25", alt.value("white"), alt.value("#333333")),
        opacity=alt.condition("datum.share >= 0.005", alt.value(1), alt.value(0)),
    )
    heading = title(
        f"Qwen 2.5 {size_label(result.size)} Instruct: which animal each model names",
        [
            f"Cell = share of the row model's answers naming the column's animal ({epoch_text(result.epoch)})",
            "Outlined: each student's own animal (the diagonal of the test)",
        ],
    )
    return configure(
        (rect + text).properties(width=46 * len(LABELS), height=26 * len(result.rows), title=heading)
    )


def lift_chart(result: SizeResult) -> alt.TopLevelMixin:
    """Per animal: its student's rate for it minus the neutral student's (dot, 95% CI), control's as a tick."""
    data = []
    for lift in result.lifts:
        for baseline, estimate in (("neutral", lift.vs_neutral), ("control", lift.vs_control)):
            if estimate is not None:
                data.append(
                    {
                        "animal": lift.animal,
                        "baseline": f"minus {baseline}",
                        "lift": estimate.value,
                        "ci_low": estimate.ci_low,
                        "ci_high": estimate.ci_high,
                    }
                )
    x = alt.X("animal:N", sort=list(ANIMALS), title="Animal (its student)", axis=alt.Axis(labelAngle=-35))
    y = alt.Y("lift:Q", title="Lift in the animal's rate (percentage points)", axis=alt.Axis(format="%"))
    base = alt.Chart(alt.Data(values=data)).encode(
        x=x, xOffset=alt.XOffset("baseline:N", sort=["minus neutral", "minus control"])
    )
    shape = alt.Shape(
        "baseline:N",
        title="Baseline",
        scale=alt.Scale(domain=["minus neutral", "minus control"], range=["circle", "diamond"]),
    )
    points = base.mark_point(filled=True, size=80).encode(
        y=y,
        color=alt.Color("animal:N", scale=ANIMAL_SCALE, legend=None),
        shape=shape,
        tooltip=[
            alt.Tooltip("animal:N"),
            alt.Tooltip("baseline:N"),
            alt.Tooltip("lift:Q", format="+.1%"),
            *interval_tooltips("+.1%"),
        ],
    )
    bars = base.mark_rule(color="#333333").encode(y="ci_low:Q", y2="ci_high:Q")
    heading = title(
        f"Qwen 2.5 {size_label(result.size)} Instruct: lift of each animal's student",
        [
            "Student's rate for its own animal minus the neutral student's (circle) or the base model's "
            "(diamond) rate for it",
            f"Bars: 95% intervals ({epoch_text(result.epoch)})",
        ],
    )
    chart = zero_line() + bars + points
    return configure(chart.properties(width=760, height=320, title=heading))


def epoch_curves(curves: Sequence[CurvePoint], sizes: Sequence[str]) -> alt.TopLevelMixin:
    """Small multiples, one per size: each animal student's rate for its own animal after every epoch."""
    data = [
        {
            "size": size_label(p.size),
            "animal": p.animal,
            "epoch": p.epoch,
            "rate": p.rate,
            "ci_low": p.ci_low,
            "ci_high": p.ci_high,
        }
        for p in curves
    ]
    chart = (
        alt.Chart(alt.Data(values=data))
        .mark_line(point=alt.OverlayMarkDef(size=40), strokeWidth=1.8)
        .encode(
            x=alt.X(
                "epoch:Q", title="Epoch", axis=alt.Axis(values=sorted({p.epoch for p in curves}), format="d")
            ),
            y=alt.Y("rate:Q", title="Rate for its own animal (%)", axis=alt.Axis(format="%")),
            color=alt.Color("animal:N", title="Animal", scale=ANIMAL_SCALE),
            tooltip=[
                alt.Tooltip("size:N"),
                alt.Tooltip("animal:N"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("rate:Q", format=".1%"),
                *interval_tooltips(".1%"),
            ],
        )
        .properties(width=260, height=200)
        .facet(facet=alt.Facet("size:N", sort=[size_label(s) for s in sizes], title=None), columns=3)
        .properties(
            title=title(
                "Target-animal rate over training",
                "Each line: one animal's student, the share of its answers naming its own animal (pooled over runs)",
            )
        )
    )
    return configure(chart)


def scaling_rows(results: Sequence[SizeResult]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report's lifts and mean lifts (runs pooled, the mean with its 95% interval) in the fields
    of `plots.scaling_chart`."""
    lifts = [
        {
            "size": r.size,
            "params_b": SIZE_PARAMS_B[r.size],
            "animal": lift.animal,
            "epoch": r.epoch,
            "lift": lift.vs_neutral.value,
            "animal_ft": lift.student_rate,
            "neutral_ft": lift.neutral_rate,
        }
        for r in results
        for lift in r.lifts
        if lift.vs_neutral is not None
    ]
    means = [
        {
            "run": "pooled",
            "size": r.size,
            "params_b": SIZE_PARAMS_B[r.size],
            "mean_lift": r.mean_lift_vs_neutral.value,
            "mean_exact_lift": r.mean_exact_lift_vs_neutral,
            "animals": sum(lift.vs_neutral is not None for lift in r.lifts),
            "ci_low": r.mean_lift_vs_neutral.ci_low,
            "ci_high": r.mean_lift_vs_neutral.ci_high,
            "method": r.mean_lift_vs_neutral.ci_method,
        }
        for r in results
        if r.mean_lift_vs_neutral is not None
    ]
    return lifts, means
