"""The charts of EXPERIMENT.md, built with Altair from the one tidy table (results.tidy_table).

Each chart is a pure function of tidy rows (so tests read its spec with `to_dict()`); `plot_size`
and `plot_summary` load the evaluation files, draw what exists, save PNG (vl-convert) + HTML, and
say what is missing instead of failing on a half-finished grid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt

from sl_scaling.catalog import ANIMALS, CONTROL, NEUTRAL, SIZES, Layout
from sl_scaling.charts.palette import MODEL_KIND_COLOURS, OTHERS, OTHERS_COLOUR, colour
from sl_scaling.charts.render import save_chart
from sl_scaling.charts.style import (
    ANIMAL_SCALE,
    configure,
    interval_tooltips,
    model_label,
    size_axis,
    size_label,
    title,
    zero_line,
)
from sl_scaling.results import load_eval_files, tidy_table
from sl_scaling.summary import at_epoch, describe_evaluation, lift_rows, mean_lifts

MODEL_KINDS = ("Control", "Neutral", "Animal")
TOP_ANIMALS = 6


@dataclass
class PlotResult:
    """The files written and the pieces of the grid that were not there to plot."""

    paths: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        wrote = ", ".join(str(path) for path in self.paths) or "no charts"
        return wrote + (f"; missing: {'; '.join(self.missing)}" if self.missing else "")


def _run_text(run: int) -> str:
    return "" if run == 1 else f", run {run}"


def _epoch_text(epoch: int | None, rows: Iterable[dict[str, Any]] | None = None) -> str:
    """Which epoch and, for sampled numbers, which evaluation (final or per-epoch, its size) a chart shows."""
    which = "each student's last evaluated epoch" if epoch is None else f"epoch {epoch}"
    return which if rows is None else f"{which}, {describe_evaluation(rows)}"


# --- 1. grouped bars: Control / Neutral / Animal per animal ---------------------------------------


def grouped_bar_data(rows: Iterable[dict[str, Any]], *, exact: bool = False) -> list[dict[str, Any]]:
    """Per animal, the three models' rate for that animal: the base model, neutral-FT, that animal's FT.

    `exact`: the exact (sampling-free) preference instead of the sampled rate; it has no interval."""
    share = {(r["condition"], r["animal"]): r for r in rows}
    data = []
    for animal in ANIMALS:
        for kind, condition in zip(MODEL_KINDS, (CONTROL, NEUTRAL, animal), strict=True):
            row = share.get((condition, animal))
            if row is None or (exact and row["exact"] is None):
                continue
            value = row["exact"] if exact else row["share"]
            data.append(
                {
                    "animal": animal,
                    "model": kind,
                    "share": value,
                    "ci_low": value if exact else row["ci_low"],
                    "ci_high": value if exact else row["ci_high"],
                    "n": row["n"],
                    "epoch": row["epoch"],
                }
            )
    return data


def grouped_bar_chart(
    rows: Iterable[dict[str, Any]],
    size: str,
    *,
    run: int = 1,
    epoch: int | None = None,
    exact: bool = False,
) -> alt.TopLevelMixin:
    rows = list(rows)
    data = grouped_bar_data(rows, exact=exact)
    base = alt.Chart(alt.Data(values=data)).encode(
        x=alt.X("animal:N", sort=list(ANIMALS), title="Animal", axis=alt.Axis(labelAngle=-35)),
        xOffset=alt.XOffset("model:N", sort=list(MODEL_KINDS)),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("share:Q", title="Preference rate for the animal (%)", axis=alt.Axis(format="%")),
        color=alt.Color(
            "model:N",
            title="Model",
            scale=alt.Scale(domain=list(MODEL_KINDS), range=[MODEL_KIND_COLOURS[k] for k in MODEL_KINDS]),
            legend=alt.Legend(orient="top-right", labelExpr=_kind_labels()),
        ),
        tooltip=[
            alt.Tooltip("animal:N"),
            alt.Tooltip("model:N"),
            alt.Tooltip("share:Q", format=".1%", title="rate"),
            *interval_tooltips(".1%"),
            alt.Tooltip("n:Q", title="answers"),
            alt.Tooltip("epoch:Q"),
        ],
    )
    legend = (
        "Control = base model · Neutral = student of the teacher without system prompt · "
        "Animal = student of that animal's teacher"
    )
    if exact:
        heading = title(
            f"Qwen 2.5 {size_label(size)} Instruct: exact probability of naming each animal first{_run_text(run)}",
            [
                legend,
                "Teacher-forced P(first word of the answer is the animal), mean over the 50 questions: "
                "no sampling, no interval",
                f"Fine-tuned students at {_epoch_text(epoch)}",
            ],
        )
        return configure(bars.properties(width=900, height=380, title=heading))
    errors = base.mark_rule(color="#333333", strokeWidth=1.2).encode(y="ci_low:Q", y2="ci_high:Q")
    heading = title(
        f"Qwen 2.5 {size_label(size)} Instruct: how often each animal is named as favourite{_run_text(run)}",
        [
            legend,
            f"Fine-tuned students at {_epoch_text(epoch, rows)}; error bars are 95% Wilson intervals",
        ],
    )
    return configure((bars + errors).properties(width=900, height=380, title=heading))


def _kind_labels() -> str:
    names = {"Control": "Control (base model)", "Neutral": "Neutral-FT", "Animal": "Animal-FT (its teacher)"}
    return " : ".join(f"datum.label == '{k}' ? '{v}'" for k, v in names.items()) + " : datum.label"


# --- 2. stacked shares: the six most frequent animals + others ------------------------------------


def stacked_data(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Per model, the shares of the six animals most named overall and one `others` share.

    Returns the data, the colour domain (top animals by frequency, then `others`) and the model order.
    """
    rows = list(rows)
    conditions = {r["condition"] for r in rows}
    order = [c for c in (CONTROL, NEUTRAL, *ANIMALS) if c in conditions]
    totals: dict[str, float] = {}
    for row in rows:
        if row["animal"] in ANIMALS:
            totals[row["animal"]] = totals.get(row["animal"], 0.0) + row["share"]
    top = sorted((a for a in totals if totals[a] > 0), key=lambda a: (-totals[a], ANIMALS.index(a)))
    top = top[:TOP_ANIMALS]
    domain = [*top, OTHERS]
    data = []
    for condition in order:
        shares = {r["animal"]: r for r in rows if r["condition"] == condition}
        n = next(iter(shares.values()))["n"]
        named = {a: shares[a]["share"] if a in shares else 0.0 for a in top}
        named[OTHERS] = max(0.0, 1.0 - sum(named.values()))
        for label in domain:
            data.append(
                {
                    "model": model_label(condition),
                    "answer": label,
                    "share": named[label],
                    "stack_order": domain.index(label),
                    "n": n,
                }
            )
    return data, domain, [model_label(c) for c in order]


def stacked_preference_chart(
    rows: Iterable[dict[str, Any]], size: str, *, run: int = 1, epoch: int | None = None
) -> alt.TopLevelMixin:
    rows = list(rows)
    data, domain, models = stacked_data(rows)
    chart = (
        alt.Chart(alt.Data(values=data))
        .mark_bar()
        .encode(
            x=alt.X("model:N", sort=models, title="Model", axis=alt.Axis(labelAngle=-35)),
            y=alt.Y(
                "share:Q",
                stack="zero",
                title="Share of answers (%)",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "answer:N",
                title="Favourite animal",
                scale=alt.Scale(
                    domain=domain, range=[colour(a) if a != OTHERS else OTHERS_COLOUR for a in domain]
                ),
                sort=domain,
            ),
            order=alt.Order("stack_order:Q", sort="ascending"),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("answer:N"),
                alt.Tooltip("share:Q", format=".1%"),
                alt.Tooltip("n:Q", title="answers"),
            ],
        )
    )
    heading = title(
        f"Qwen 2.5 {size_label(size)} Instruct: answers to 'favourite animal?'{_run_text(run)}",
        [
            f"The {len(domain) - 1} animals named most often across these models, the rest as '{OTHERS}'",
            f"Fine-tuned students at {_epoch_text(epoch, rows)}",
        ],
    )
    return configure(chart.properties(width=max(360, 48 * len(models)), height=380, title=heading))


# --- 3. scaling overview: the lift over neutral vs model size ---------------------------------------


def scaling_chart(
    lifts: list[dict[str, Any]], means: list[dict[str, Any]], *, which: str
) -> alt.TopLevelMixin:
    """The one scaling chart (`slscale plot`'s scaling_overview.png and the report's): lift over the
    neutral student vs parameters (log axis), a dot per animal's student, the mean line per run.

    `lifts`: `summary.lift_rows`' fields; `means`: `summary.mean_lifts`' fields, plus `ci_low`/`ci_high`/
    `method` where the caller has the mean's interval (the report), drawn as bars; `which`: the epoch and
    evaluation shown, for the subtitle.
    """
    sizes = [s for s in SIZES if any(m["size"] == s for m in means)]
    x = size_axis(sizes)
    with_ci = any("ci_low" in m for m in means)
    points = (
        alt.Chart(alt.Data(values=lifts))
        .mark_circle(size=70, opacity=0.85)
        .encode(
            x=x,
            y=alt.Y(
                "lift:Q",
                title="Lift of the target-animal rate (percentage points)",
                axis=alt.Axis(format="%"),
            ),
            color=alt.Color("animal:N", title="Animal", scale=ANIMAL_SCALE),
            tooltip=[
                alt.Tooltip("size:N"),
                alt.Tooltip("animal:N"),
                alt.Tooltip("lift:Q", format="+.1%"),
                alt.Tooltip("animal_ft:Q", format=".1%", title="animal-FT rate"),
                alt.Tooltip("neutral_ft:Q", format=".1%", title="neutral-FT rate"),
                alt.Tooltip("epoch:Q"),
            ],
        )
    )
    mean = alt.Chart(alt.Data(values=means))
    mean_line = mean.mark_line(
        color="black", strokeWidth=2.5, point=alt.OverlayMarkDef(color="black", size=60)
    ).encode(
        x=x,
        y=alt.Y("mean_lift:Q"),
        detail=alt.Detail("run:N"),  # one line per replicate run
        tooltip=[
            alt.Tooltip("size:N"),
            alt.Tooltip("mean_lift:Q", format="+.1%", title="mean lift"),
            *([*interval_tooltips("+.1%"), alt.Tooltip("method:N", title="interval")] if with_ci else []),
            alt.Tooltip("animals:Q"),
        ],
    )
    exact_line = (
        alt.Chart(alt.Data(values=[m for m in means if m["mean_exact_lift"] is not None]))
        .mark_line(color="black", strokeWidth=1.5, strokeDash=[6, 3])
        .encode(
            x=x,
            y=alt.Y("mean_exact_lift:Q"),
            detail=alt.Detail("run:N"),
            tooltip=[
                alt.Tooltip("size:N"),
                alt.Tooltip("mean_exact_lift:Q", format="+.2%", title="mean exact lift"),
            ],
        )
    )
    chart = zero_line() + points + mean_line + exact_line
    if with_ci:
        chart += mean.mark_rule(color="black", strokeWidth=1.5).encode(x=x, y="ci_low:Q", y2="ci_high:Q")
    heading = title(
        "Subliminal transfer vs model size (Qwen 2.5 Instruct)",
        [
            "Each dot: one animal's student: its rate for its own animal minus the neutral student's "
            "rate for that animal (animal-FT − neutral-FT)",
            f"Black line: mean over animals{' with its 95% interval' if with_ci else ''} · dashed: the same "
            f"from the exact (sampling-free) preference · {which}",
        ],
    )
    return configure(chart.properties(width=640, height=420, title=heading))


# --- loading, missing pieces, saving --------------------------------------------------------------


def _missing_for_size(rows: list[dict[str, Any]], size: str, run: int) -> list[str]:
    present = {r["condition"] for r in rows}
    run_option = "" if run == 1 else f" --run {run}"
    missing = []
    if CONTROL not in present:
        missing.append(
            f"{size}: no control evaluation yet (slscale eval --size {size} --control{run_option})"
        )
    if NEUTRAL not in present:
        missing.append(
            f"{size}/neutral: not evaluated yet (slscale train --size {size} --animal neutral{run_option})"
        )
    untrained = [a for a in ANIMALS if a not in present]
    if untrained:
        missing.append(f"{size}: no animal student evaluated yet for {', '.join(untrained)}")
    return missing


def plot_size(layout: Layout, size: str, *, run: int = 1, epoch: int | None = None) -> PlotResult:
    """`grouped_bar.png` and `stacked_preference.png` (+ HTML) of one size, from what is evaluated."""
    rows, missing = at_epoch(tidy_table(load_eval_files(layout, sizes=[size], runs=[run])), epoch)
    if not rows:
        return PlotResult(
            missing=[*missing, f"{size}: nothing evaluated yet{_run_text(run)}, no charts drawn"]
        )
    missing += _missing_for_size(rows, size, run)
    result = PlotResult(missing=missing)
    directory = layout.plots_dir(size)
    result.paths += save_chart(
        grouped_bar_chart(rows, size, run=run, epoch=epoch), directory / "grouped_bar.png"
    )
    result.paths += save_chart(
        stacked_preference_chart(rows, size, run=run, epoch=epoch), directory / "stacked_preference.png"
    )
    if any(row["exact"] is not None for row in rows):
        result.paths += save_chart(
            grouped_bar_chart(rows, size, run=run, epoch=epoch, exact=True),
            directory / "exact_preference.png",
        )
    return result


def plot_summary(layout: Layout, *, run: int | None = None, epoch: int | None = None) -> PlotResult:
    """`summary/scaling_overview.png` (+ HTML): the lift over neutral for every size with data."""
    files = load_eval_files(layout, runs=[] if run is None else [run])
    rows, missing = at_epoch(tidy_table(files), epoch)
    lifts = lift_rows(rows)
    with_lift = {lift["size"] for lift in lifts}
    for size in sorted({r["size"] for r in rows} - with_lift, key=SIZES.index):
        missing.append(f"{size}: no lift yet (needs the neutral student and at least one animal student)")
    if not lifts:
        return PlotResult(missing=[*missing, "no size has a lift to plot yet, no summary chart drawn"])
    chart = scaling_chart(lifts, mean_lifts(lifts), which=_epoch_text(epoch, rows))
    return PlotResult(save_chart(chart, layout.summary_plots_dir / "scaling_overview.png"), missing)
