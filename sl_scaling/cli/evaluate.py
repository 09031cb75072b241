"""`slscale eval`: Phase 3, ask a model for its favourite animal (the control, or saved adapters)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sl_scaling.catalog import parse_conditions, parse_run, parse_sizes
from sl_scaling.cli import options as opt
from sl_scaling.context import make_context
from sl_scaling.errors import UsageError
from sl_scaling.evaluation.scoring import Evaluation
from sl_scaling.grid import FULL, TINY_DEFAULTS
from sl_scaling.options import EvalOptions
from sl_scaling.pipeline import stage_log
from sl_scaling.progress import make_reporter


def _rows(job: str, evaluation: Evaluation) -> list[tuple[str, ...]]:
    """One row for the per-epoch evaluation, one for the final evaluation when there is one."""
    exact = evaluation.exact
    exact_text = (
        "—" if exact is None or exact.target_probability is None else f"{exact.target_probability:.2%}"
    )
    rows = []
    for label, shown in ((job, evaluation), (f"{job} final", evaluation.final)):
        if shown is None:
            continue
        rate = "—" if shown.target_rate is None else f"{shown.target_rate:.1%}"
        ci = "—" if shown.ci_low is None else f"{shown.ci_low:.1%}–{shown.ci_high:.1%}"
        top = ", ".join(f"{name} {count / shown.n:.0%}" for name, count in list(shown.counts.items())[:4])
        rows.append((label, str(shown.n), rate, ci, exact_text, top))
    return rows


def _table(rows: list[tuple[str, ...]]) -> Table:
    table = Table(title="slscale eval", title_justify="left")
    for column in ("model", "n", "target rate", "95% CI (Wilson)", "exact", "top answers"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def command(
    sizes: opt.Sizes = [],  # noqa: B006 - typer needs a literal default
    control: Annotated[
        bool, typer.Option("--control", help="Evaluate the base model (the control).")
    ] = False,
    animals: opt.Animals = [],  # noqa: B006
    all_animals: opt.AllAnimals = False,
    epochs: Annotated[
        list[int],
        typer.Option(
            "--epoch", min=1, help="Epoch to re-evaluate (repeatable) (default: every recorded one)."
        ),
    ] = [],  # noqa: B006
    samples: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Answers per evaluation, spread evenly over the 50 questions (default: the number "
            "recorded for that epoch, else 100).",
        ),
    ] = None,
    final_samples: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Answers of the final evaluation of the control and of the last epoch, 0 for none "
            "(default: as recorded for that epoch; for the control "
            f"{FULL.final_samples}, tiny {TINY_DEFAULTS.final_samples}).",
        ),
    ] = None,
    run: opt.Run = 1,
    engine: opt.Engine = "auto",
    workdir: opt.Workdir = None,
    verbose: opt.Verbose = False,
) -> None:
    """Phase 3: ask a model for its favourite animal (the control, or saved adapters).

    --control asks the base model (results in control_eval.json); --animal X re-evaluates the saved
    adapters of condition X (all recorded epochs, or those named with --epoch), downloading any whose
    local copy was deleted after upload. The base model is loaded once for all adapters. By default
    an epoch's evaluation is repeated exactly as training recorded it: the same seeds, number of answers
    and engine (--engine auto picks the recorded one). Each evaluation also scores the exact
    (sampling-free) preference.
    Examples: slscale eval --size tiny --control;  slscale eval --size 7b --animal dolphin --epoch 10 --samples 1000
    """
    from sl_scaling.stages.evaluate import run_adapter_eval, run_control_eval

    if not sizes:
        raise UsageError("choose at least one --size (e.g. --size tiny)")
    chosen = bool(animals or all_animals)
    if control == chosen:
        raise UsageError("choose either --control or --animal X (or --all-animals), not both and not neither")
    if control and epochs:
        raise UsageError("--epoch applies to fine-tuned adapters, not to --control")
    options = EvalOptions(samples=samples, final_samples=final_samples, run=parse_run(run), engine=engine)
    ctx = make_context(workdir)
    rows = []
    opt.show_library_output(verbose)
    chosen_sizes = parse_sizes(sizes)
    with make_reporter() as shown, stage_log(ctx.layout, "eval", "+".join(chosen_sizes), shown) as reporter:
        for size in chosen_sizes:
            if control:
                evaluation = run_control_eval(ctx, size, options, reporter)
                rows += _rows(f"{size}/control", evaluation)
                continue
            conditions = parse_conditions(animals, all_animals=all_animals)
            results = run_adapter_eval(ctx, size, conditions, epochs, options, reporter)
            rows += [
                row
                for key, by_epoch in results.items()
                for e, ev in by_epoch.items()
                for row in _rows(f"{key} epoch {e}", ev)
            ]
    Console().print(_table(rows))
