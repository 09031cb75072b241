"""Write the analysis as report.md (charts as PNG files beside it), report.html (self-contained) and report.json."""

from __future__ import annotations

import base64
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from markdown_it import MarkdownIt

from sl_scaling.catalog import EXPERIMENT, SIZE_PARAMS_B, Layout
from sl_scaling.charts import report as charts
from sl_scaling.charts.plots import scaling_chart
from sl_scaling.charts.render import to_png
from sl_scaling.charts.style import model_label, size_label
from sl_scaling.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from sl_scaling.report.analysis import ALPHA, Analysis, Estimate, SizeResult
from sl_scaling.report.data import LABELS, Grid
from sl_scaling.report.stats import LEVEL

CHARTS_DIR = "charts"
_CSS = """
body { font-family: Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; margin: 1em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    json: Path
    charts: list[Path]


# --- number formatting ------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def pp(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:+.1f} pp"


def with_ci(estimate: Estimate | None) -> str:
    if estimate is None:
        return "–"
    return f"{pp(estimate.value)} [{100 * estimate.ci_low:+.1f}, {100 * estimate.ci_high:+.1f}]"


def p_text(p: float | None) -> str:
    return "–" if p is None else (f"{p:.4f}" if p >= 0.0001 else f"{p:.1e}")


def verdict(result: SizeResult) -> str:
    if result.contrast is None:
        return "not tested"
    return "effect" if (result.contrast.p_holm or 1.0) < ALPHA else "no evidence of an effect"


#: Where a chart's image lives (a file path or a data URI); None when it was not drawn.
Image = Callable[[str], str | None]


def figure(image: Image, name: str, alt: str) -> list[str]:
    src = image(name)
    return [f"![{alt}]({src})" if src else f"_({alt}: not drawn, no data)_", ""]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


# --- markdown ---------------------------------------------------------------------------------


def methods_text(analysis: Analysis) -> list[str]:
    opts = analysis.options
    replicated = any(len(r.runs) >= 2 for r in analysis.sizes)
    return [
        "## Methods: tests, units, intervals",
        "",
        "- **Rates** are shares of a model's answers to the 50 favourite-animal questions (%). "
        "**Lifts and contrasts** are differences of rates, in percentage points (pp).",
        "- **Lift** of an animal: its student's rate for that animal minus the neutral student's rate for "
        "it (and, beside it, minus the base model's). The **mean lift** averages the animals present.",
        "- **Which answers**: at the last epoch, and for the control, the final evaluation (100 answers "
        "per question by default) where it exists, else the per-epoch evaluation; every table says which.",
        "- **Exact lift**: the same lift computed from the exact preference — the teacher-forced "
        "probability that the answer's first word is the animal, averaged over the 50 questions — which "
        "has no sampling noise and so no interval (docs/experiment.md).",
        "- **Own − others** (the contrast): mean over students of each student's rate for its own animal "
        "minus the mean of the other students' rates for that animal (diagonal minus off-diagonal of the "
        "students × animals matrix). It needs neither the neutral student nor the control.",
        f"- **Confidence intervals ({LEVEL:.0%})**: percentile bootstrap, {opts.n_boot:,} replicates, "
        + bootstrap_text(opts.resample_answers)
        + " The same question draws are used for every model of a size and run, so differences between "
        "models (lifts, contrasts) are paired by question.",
        f"- **Test of the per-size effect**: one-sided permutation test of the contrast, {opts.n_perm:,} "
        "random permutations (all of them, exactly, when there are few students). Unit: the student — "
        "the rows of the students × animals matrix are shuffled, i.e. which animal each student was "
        "trained for. p = (1 + #permuted ≥ observed) / (1 + permutations). Holm's correction across the "
        f"sizes tested controls the family-wise error; 'effect' means Holm p < {ALPHA}.",
        "- **Replicate runs**: rates are pooled as the mean over runs (each run weighs the same). "
        + (
            "With two or more runs **the run is the unit**: intervals for lifts and contrasts are t "
            "intervals over the per-run values (R − 1 degrees of freedom), shown with mean ± sd and each "
            "run's value; the bootstrap interval of the pooled value is kept in report.json. "
            if replicated
            else "This report has one run per size, so intervals are bootstrap intervals. "
        )
        + "The permutation test runs on the pooled matrix.",
        f"- Seeded (seed {opts.seed}): the same evaluation files give the same report.",
        "",
    ]


def bootstrap_text(resample_answers: bool) -> str:
    """What one bootstrap replicate does, and its unit, in words."""
    if resample_answers:
        return (
            "two-stage: unit the question, then the answer. Each replicate resamples the 50 questions with "
            "replacement, then each drawn question's answers with replacement. This counts the answer noise "
            "twice (it is already in each question's answers), so the intervals are conservative: wider than "
            "95% when there are several answers per question."
        )
    return (
        "unit: the question. Each replicate resamples the questions with replacement, and every drawn "
        "question brings all of its answers (they carry the answer-sampling noise with them). Resampling "
        "answers again within questions would count that noise twice ('--bootstrap questions+answers')."
    )


def summary_table(analysis: Analysis) -> list[str]:
    rows = []
    for r in analysis.sizes:
        c = r.contrast
        rows.append(
            [
                size_label(r.size),
                f"{SIZE_PARAMS_B[r.size]:g}",
                "–" if r.epoch is None else str(r.epoch),
                r.evaluation,
                ", ".join(map(str, r.runs)),
                str(len(r.lifts)),
                with_ci(r.mean_lift_vs_neutral),
                pp(r.mean_exact_lift_vs_neutral),
                with_ci(r.mean_lift_vs_control),
                with_ci(c.effect) if c else "–",
                p_text(c.permutation.p_value) if c else "–",
                p_text(c.p_holm) if c else "–",
                verdict(r),
            ]
        )
    header = [
        "Size",
        "Params (B)",
        "Epoch",
        "Evaluation",
        "Runs",
        "Animal students",
        "Mean lift vs neutral [95% CI]",
        "Mean exact lift vs neutral",
        "Mean lift vs control [95% CI]",
        "Own − others [95% CI]",
        "Permutation p",
        "Holm p",
        "Verdict",
    ]
    return ["## The answer in one table", "", *_table(header, rows)]


def size_section(result: SizeResult, image: Image) -> list[str]:
    name = size_label(result.size)
    lines = [f"## {name}", ""]
    answers = ", ".join(f"{model_label(row)} {'/'.join(map(str, ns))}" for row, ns in result.n.items())
    lines += [
        f"Epoch {result.epoch}, {result.evaluation}; runs {', '.join(map(str, result.runs))}. "
        f"Answers per model: {answers}.",
        "",
    ]
    c = result.contrast
    if c is not None:
        test = c.permutation
        lines += [
            f"Own − others: students name their own animal {pct(c.diagonal_mean)} of the time, other students "
            f"name it {pct(c.off_diagonal_mean)}: contrast {with_ci(c.effect)} ({c.effect.ci_method}); "
            f"permutation p = {p_text(test.p_value)} ({'exact, all' if test.exact else 'random'} "
            f"{test.n_permutations:,} permutations of {len(c.students)} students), Holm p = {p_text(c.p_holm)}.",
            "",
        ]
    replicated = len(result.runs) >= 2
    header = ["Animal", "Student rate", "Neutral rate", "Control rate", "Lift vs neutral [95% CI]"]
    header += ["Exact lift vs neutral", "Lift vs control [95% CI]"]
    header += ["Lift vs neutral per run (mean ± sd)"] if replicated else []
    rows = []
    for lift in result.lifts:
        row = [lift.animal, pct(lift.student_rate), pct(lift.neutral_rate), pct(lift.control_rate)]
        row += [with_ci(lift.vs_neutral), pp(lift.exact_vs_neutral), with_ci(lift.vs_control)]
        if replicated:
            row.append(spread_text(lift.vs_neutral))
        rows.append(row)
    if rows:
        lines += [f"### Lift per animal ({name})", "", *_table(header, rows)]
        lines += figure(image, f"{result.size}_lift", f"Lift per animal, {name}")
    if replicated:
        lines += between_runs_table(result)
    lines += [f"### Confusion matrix ({name}): share of each model's answers (%)", ""]
    lines += figure(image, f"{result.size}_confusion", f"Confusion matrix, {name}")
    matrix_rows = [
        [model_label(row)] + [f"{100 * v:.1f}" for v in result.matrix[i]] for i, row in enumerate(result.rows)
    ]
    lines += _table(["Model", *LABELS], matrix_rows)
    return lines


def spread_text(estimate: Estimate | None) -> str:
    if estimate is None or estimate.runs is None:
        return "–"
    s = estimate.runs
    values = ", ".join(f"{100 * v:+.1f}" for v in s.values)
    return f"{pp(s.mean)} ± {100 * (s.sd or 0):.1f} ({values})"


def between_runs_table(result: SizeResult) -> list[str]:
    rows = []
    for label, estimate in (
        ("Mean lift vs neutral", result.mean_lift_vs_neutral),
        ("Mean lift vs control", result.mean_lift_vs_control),
        ("Own − others", result.contrast.effect if result.contrast else None),
    ):
        rows.append([label, spread_text(estimate), with_ci(estimate)])
    header = ["Quantity", "Mean ± sd over runs (per-run values, pp)", "Pooled, t interval over runs"]
    return [
        f"### Between runs ({size_label(result.size)}): the run is the unit",
        "",
        *_table(header, rows),
    ]


def missing_section(analysis: Analysis) -> list[str]:
    lines = ["## Missing", ""]
    if not analysis.missing:
        return [*lines, "Nothing: every size asked for has control, neutral and all 15 animal students.", ""]
    grouped: dict[tuple[str, int | None, str], list[str]] = defaultdict(list)
    for m in analysis.missing:
        grouped[(m.size, m.run, m.reason)].append(m.condition or "")
    for (size, run, reason), conditions in grouped.items():
        where = size_label(size) + ("" if run is None else f", run {run}")
        names = ", ".join(c for c in conditions if c)
        lines.append(f"- {where}: {reason}" + (f": {names}" if names else ""))
    return [*lines, ""]


def markdown(analysis: Analysis, image: Image, generated_at: str) -> str:
    sizes = [size_label(r.size) for r in analysis.sizes]
    lines = [
        "# Subliminal learning across Qwen 2.5 sizes: does the student pick up its teacher's animal?",
        "",
        f"Generated {generated_at} by `slscale report` from the evaluation files of {', '.join(sizes)}. "
        "How to read it: docs/report.md.",
        "",
        *summary_table(analysis),
        *methods_text(analysis),
        "## Lift vs model size",
        "",
        *figure(image, "scaling", "Mean lift vs model size"),
        "## Target-animal rate over training",
        "",
        *figure(image, "epoch_curves", "Target rate vs epoch"),
    ]
    for result in analysis.sizes:
        lines += size_section(result, image)
    lines += missing_section(analysis)
    return "\n".join(lines)


def html(markdown_text: str) -> str:
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>slscale report: {EXPERIMENT}</title><style>{_CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


# --- json -------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Dataclasses, numpy arrays and NaN → plain JSON (NaN becomes null)."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _matrix_json(rows: list[str], *matrices: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        row: {
            label: {name: m[i, j] for name, m in zip(names, matrices, strict=True)}
            for j, label in enumerate(LABELS)
        }
        for i, row in enumerate(rows)
    }


def size_json(result: SizeResult) -> dict[str, Any]:
    return {
        "size": result.size,
        "params_b": SIZE_PARAMS_B[result.size],
        "epoch": result.epoch,
        "evaluation": result.evaluation,
        "runs": result.runs,
        "rows": result.rows,
        "answers_per_run": result.n,
        "matrix": _matrix_json(
            result.rows,
            result.matrix,
            result.matrix_low,
            result.matrix_high,
            names=("share", "ci_low", "ci_high"),
        ),
        "per_run_matrix": {
            run: _matrix_json(result.rows, m, names=("share",)) for run, m in result.per_run_matrix.items()
        },
        "lifts": result.lifts,
        "mean_lift_vs_neutral": result.mean_lift_vs_neutral,
        "mean_lift_vs_control": result.mean_lift_vs_control,
        "mean_exact_lift_vs_neutral": result.mean_exact_lift_vs_neutral,
        "exact_matrix": None
        if result.exact_matrix is None
        else _matrix_json(result.rows, result.exact_matrix, names=("probability",)),
        "contrast": result.contrast,
        "verdict": verdict(result),
    }


def report_json(analysis: Analysis, grid: Grid, generated_at: str) -> dict[str, Any]:
    opts = analysis.options
    return jsonable(
        {
            "experiment": EXPERIMENT,
            "generated_at": generated_at,
            "options": {
                "n_bootstrap": opts.n_boot,
                "bootstrap": opts.bootstrap_scheme,
                "n_permutations": opts.n_perm,
                "seed": opts.seed,
                "epoch": opts.epoch,
                "level": LEVEL,
                "alpha": ALPHA,
            },
            "methods": {
                "rates": "share of a model's answers; lifts and contrasts are differences of rates",
                "confidence_intervals": f"percentile bootstrap, scheme '{opts.bootstrap_scheme}': "
                + bootstrap_text(opts.resample_answers),
                "test": "one-sided permutation test of own-minus-others (diagonal minus off-diagonal mean); "
                "unit: the student (row labels of the students x animals matrix shuffled); Holm across sizes",
                "replicates": "pooled as the mean over runs; with >= 2 runs the run is the unit: t interval "
                "over per-run values (ci_method 't over runs')",
            },
            "labels": LABELS,
            "sizes": [size_json(r) for r in analysis.sizes],
            "curves": analysis.curves,
            "missing": analysis.missing,
            "data": grid.tidy,
        }
    )


# --- files ------------------------------------------------------------------------------------


def render_charts(analysis: Analysis) -> dict[str, bytes]:
    pngs: dict[str, bytes] = {}
    with_lift = [r for r in analysis.sizes if r.mean_lift_vs_neutral is not None]
    if with_lift:
        which = "each size at its report epoch (see its tables), runs pooled"
        pngs["scaling"] = to_png(scaling_chart(*charts.scaling_rows(with_lift), which=which))
    if analysis.curves:
        pngs["epoch_curves"] = to_png(charts.epoch_curves(analysis.curves, [r.size for r in analysis.sizes]))
    for result in analysis.sizes:
        pngs[f"{result.size}_confusion"] = to_png(charts.heatmap(result))
        if any(lift.vs_neutral or lift.vs_control for lift in result.lifts):
            pngs[f"{result.size}_lift"] = to_png(charts.lift_chart(result))
    return pngs


def write_report(analysis: Analysis, grid: Grid, layout: Layout) -> ReportFiles:
    """Write the three files (and the PNGs the markdown points to), each atomically."""
    out = layout.reports_dir
    generated_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    pngs = render_charts(analysis)
    chart_paths = []
    for name, data in pngs.items():
        path = out / CHARTS_DIR / f"{name}.png"
        atomic_write_bytes(path, data)
        chart_paths.append(path)

    def file_image(name: str) -> str | None:
        return f"{CHARTS_DIR}/{name}.png" if name in pngs else None

    def inline_image(name: str) -> str | None:
        return "data:image/png;base64," + base64.b64encode(pngs[name]).decode() if name in pngs else None

    files = ReportFiles(out / "report.md", out / "report.html", out / "report.json", chart_paths)
    atomic_write_text(files.markdown, markdown(analysis, file_image, generated_at))
    atomic_write_text(files.html, html(markdown(analysis, inline_image, generated_at)))
    atomic_write_json(files.json, report_json(analysis, grid, generated_at))
    return files
