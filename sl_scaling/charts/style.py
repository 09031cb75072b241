"""The one look of every chart (`slscale plot` and `slscale report`): fonts, titles, size labels."""

from __future__ import annotations

from collections.abc import Iterable

import altair as alt

from sl_scaling.catalog import ANIMALS, CONTROL, NEUTRAL, SIZE_PARAMS_B, TINY
from sl_scaling.charts.palette import colour

#: A list, because PNG export has no font fallback of its own: a missing first font draws no text at all.
FONT = "Helvetica, Arial, DejaVu Sans, sans-serif"
PNG_SCALE = 2
#: The animals' colours, the same in every chart.
ANIMAL_SCALE = alt.Scale(domain=list(ANIMALS), range=[colour(a) for a in ANIMALS])


def size_label(size: str) -> str:
    return size if size == TINY else size.upper()


def model_label(condition: str) -> str:
    """Control, Neutral-FT, {animal}-FT: EXPERIMENT.md's model names, in every chart and table."""
    return {CONTROL: "Control", NEUTRAL: "Neutral-FT"}.get(condition, f"{condition}-FT")


def title(text: str, subtitle: str | list[str]) -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=subtitle, anchor="start", fontSize=16, subtitleFontSize=12)


def configure(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    return (
        chart.configure(font=FONT)
        .configure_axis(labelFontSize=12, titleFontSize=13, gridColor="#eeeeee")
        .configure_legend(labelFontSize=12, titleFontSize=13)
        .configure_view(stroke=None)
    )


def size_axis_labels(sizes: Iterable[str]) -> str:
    """A Vega expression naming the size at each tick (the axis is in billions of parameters)."""
    cases = [f"datum.value == {SIZE_PARAMS_B[s]} ? '{size_label(s)}'" for s in sizes]
    return " : ".join([*cases, "''"])


def size_axis(sizes: list[str]) -> alt.X:
    """The x axis of every chart against model size: billions of parameters on a log scale, one
    labelled tick per size."""
    return alt.X(
        "params_b:Q",
        title="Model size (billions of parameters, log scale)",
        scale=alt.Scale(type="log", nice=False, padding=30),
        axis=alt.Axis(
            values=[SIZE_PARAMS_B[s] for s in sizes], labelExpr=size_axis_labels(sizes), grid=False
        ),
    )


def zero_line() -> alt.Chart:
    """A dashed rule at zero lift."""
    return (
        alt.Chart(alt.Data(values=[{"zero": 0}]))
        .mark_rule(color="#999999", strokeDash=[4, 4])
        .encode(y="zero:Q")
    )


def interval_tooltips(number_format: str) -> list[alt.Tooltip]:
    """The two tooltip lines of a 95% interval (`ci_low`, `ci_high` fields), in every chart alike."""
    return [
        alt.Tooltip("ci_low:Q", format=number_format, title="95% CI low"),
        alt.Tooltip("ci_high:Q", format=number_format, title="95% CI high"),
    ]
