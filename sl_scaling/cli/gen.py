"""`slscale gen`: Phase 1, teachers write number sequences for the chosen conditions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sl_scaling.catalog import parse_conditions, parse_run, parse_sizes
from sl_scaling.cli import options as opt
from sl_scaling.context import make_context
from sl_scaling.errors import UsageError
from sl_scaling.grid import FULL, TINY_DEFAULTS, settings_for
from sl_scaling.numbers.prompts import PROMPT_SEED
from sl_scaling.options import GenerationOptions
from sl_scaling.pipeline import stage_log
from sl_scaling.progress import make_reporter
from sl_scaling.stages.generate import GenerationSummary, run_generation


def require_selection(sizes: list[str], animals: list[str], all_animals: bool) -> tuple[list[str], list[str]]:
    """Sizes and conditions the user chose; both must be chosen explicitly (a typo must not mean 'all')."""
    if not sizes:
        raise UsageError(
            "choose at least one --size (e.g. --size tiny, or --size all for the six real sizes)"
        )
    if not animals and not all_animals:
        raise UsageError(
            "choose conditions with --animal (repeatable, e.g. --animal dog --animal neutral) or --all-animals"
        )
    return parse_sizes(sizes), parse_conditions(animals, all_animals=all_animals)


def _table(summaries: list[GenerationSummary]) -> Table:
    table = Table(title="slscale gen", title_justify="left")
    for column in ("size", "condition", "rows", "new", "rows/s", "tokens/s"):
        table.add_column(column, justify="left" if column in ("size", "condition") else "right")
    for s in summaries:
        rate = "—" if s.rows_per_s is None else f"{s.rows_per_s:.1f}"
        tokens = "—" if s.tokens_per_s is None else f"{s.tokens_per_s:.0f}"
        table.add_row(s.key.size, s.key.condition, str(s.rows), str(s.generated), rate, tokens)
    return table


def command(
    sizes: opt.Sizes = [],  # noqa: B006 - typer needs a literal default
    animals: opt.Animals = [],  # noqa: B006
    all_animals: opt.AllAnimals = False,
    n: Annotated[
        int | None,
        typer.Option(
            "--n", min=1, help=f"Prompts (rows) per condition (default: {FULL.n}; tiny: {TINY_DEFAULTS.n})."
        ),
    ] = None,
    prompt_seed: Annotated[
        int,
        typer.Option(
            min=0,
            help="Prompt-generator seed (42: the reference prompts, the same for every run). The "
            "teacher's sampling seed is not this: it follows --run (docs/experiment.md).",
        ),
    ] = PROMPT_SEED,
    run: opt.Run = 1,
    engine: opt.Engine = "auto",
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="Cap on each completion's length (tokens).")
    ] = 128,
    batch_size: opt.BatchSize = None,
    workdir: opt.Workdir = None,
    verbose: opt.Verbose = False,
) -> None:
    """Phase 1: teachers write number sequences for the chosen conditions.

    Loads each size's teacher once and generates every chosen condition in one batched pass (largest
    size first), sampling at temperature 1. Rows go to data/qwen-2.5-scaling/{size}/{condition}/raw.jsonl
    as each batch finishes, so an interrupted run continues where it stopped when run again.
    Example: slscale gen --size tiny --all-animals
    """
    chosen_sizes, conditions = require_selection(sizes, animals, all_animals)
    ctx = make_context(workdir)
    opt.show_library_output(verbose)
    summaries = []
    with stage_log(ctx.layout, "gen", "+".join(chosen_sizes), make_reporter()) as reporter:
        for size in chosen_sizes:  # each size's --n default (tiny's is smaller), as `slscale run` uses it
            options = GenerationOptions(
                n=settings_for(size, n=n).n,
                prompt_seed=prompt_seed,
                run=parse_run(run),
                engine=engine,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
            )
            summaries += run_generation(ctx, [size], conditions, options, reporter)
    Console().print(_table(summaries))
