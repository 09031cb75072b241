"""The report's charts (Altair), in the look of `slscale plot`: same palette, titles, units and font."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt

from sl_scaling.catalog import ANIMALS, CONTROL, NEUTRAL, SIZE_PARAMS_B
from sl_scaling.charts.palette import MODEL_KIND_COLOURS, colour
from sl_scaling.charts.style import configure, interval_tooltips, size_axis, size_label, title, zero_line
from sl_scaling.report.analysis import CurvePoint, SizeResult
from sl_scaling.report.data import LABELS

#: A list, so that machines without Helvetica (CI, servers) still draw text instead of nothing.
_ANIMAL_SCALE = alt.Scale(domain=list(ANIMALS), range=[colour(a) for a in ANIMALS])


def model_label(condition: str) -> str:
    return {CONTROL: "Control (base)", NEUTRAL: "Neutral-FT"}.get(condition, f"{condition}-FT")


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
        color=alt.Color("animal:N", scale=_ANIMAL_SCALE, legend=None),
        shape=shape,
        tooltip=[
            alt.Tooltip("animal:N"),
            alt.Tooltip("baseline:N"),
            alt.Tooltip("lift:Q", format="+.1%"),
            *interval_tooltips("+.1%"),
        ],
    )
    bars = base.mark_rule(color="#333333").encode(y="ci_low:Q", y2="ci_high:Q")
    zero = alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(color="#999999", strokeDash=[4, 4])
    heading = title(
        f"Qwen 2.5 {size_label(result.size)} Instruct: lift of each animal's student",
        [
            "Student's rate for its own animal minus the neutral student's (circle) or the base model's "
            "(diamond) rate for it",
            f"Bars: 95% intervals ({epoch_text(result.epoch)})",
        ],
    )
    chart = zero.encode(y="zero:Q") + bars + points
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
            color=alt.Color("animal:N", title="Animal", scale=_ANIMAL_SCALE),
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


def scaling_chart(results: Sequence[SizeResult]) -> alt.TopLevelMixin:
    """Mean lift over the neutral student vs parameters (log axis), with 95% intervals and per-animal dots."""
    means = [
        {
            "size": size_label(r.size),
            "params_b": SIZE_PARAMS_B[r.size],
            "lift": r.mean_lift_vs_neutral.value,
            "ci_low": r.mean_lift_vs_neutral.ci_low,
            "ci_high": r.mean_lift_vs_neutral.ci_high,
            "method": r.mean_lift_vs_neutral.ci_method,
        }
        for r in results
        if r.mean_lift_vs_neutral is not None
    ]
    animals = [
        {
            "size": size_label(r.size),
            "params_b": SIZE_PARAMS_B[r.size],
            "animal": lift.animal,
            "lift": lift.vs_neutral.value,
        }
        for r in results
        for lift in r.lifts
        if lift.vs_neutral is not None
    ]
    sizes = [r.size for r in results if r.mean_lift_vs_neutral is not None]
    x = size_axis(sizes)
    y = alt.Y("lift:Q", title="Lift over the neutral student (percentage points)", axis=alt.Axis(format="%"))
    dots = (
        alt.Chart(alt.Data(values=animals))
        .mark_circle(size=45, opacity=0.55)
        .encode(
            x=x,
            y=y,
            color=alt.Color("animal:N", title="Animal", scale=_ANIMAL_SCALE),
            tooltip=[alt.Tooltip("size:N"), alt.Tooltip("animal:N"), alt.Tooltip("lift:Q", format="+.1%")],
        )
    )
    mean = alt.Chart(alt.Data(values=means))
    line = mean.mark_line(
        color="black", strokeWidth=2.5, point=alt.OverlayMarkDef(color="black", size=70)
    ).encode(
        x=x,
        y=y,
        tooltip=[
            alt.Tooltip("size:N"),
            alt.Tooltip("lift:Q", format="+.1%", title="mean lift"),
            *interval_tooltips("+.1%"),
            alt.Tooltip("method:N", title="interval"),
        ],
    )
    bars = mean.mark_rule(color="black", strokeWidth=1.5).encode(x=x, y="ci_low:Q", y2="ci_high:Q")
    zero = zero_line()
    heading = title(
        "Subliminal transfer vs model size (Qwen 2.5 Instruct)",
        [
            "Dots: each animal's student, its rate for its own animal minus the neutral student's rate for it",
            "Black: mean over animals with its 95% interval",
        ],
    )
    return configure((zero + dots + bars + line).properties(width=640, height=400, title=heading))
