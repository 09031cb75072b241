"""`slscale filter`: keep the completions that are number lists, subsampled to 10,000 rows."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sl_scaling.catalog import parse_run
from sl_scaling.cli import options as opt
from sl_scaling.cli.gen import require_selection
from sl_scaling.context import make_context
from sl_scaling.numbers import REASONS
from sl_scaling.progress import make_reporter
from sl_scaling.stages.filtering import FilterSummary, NothingKeptError, run_filter

#: Short column headers for the reject reasons (the table must fit an 80-column terminal).
REASON_HEADERS = {
    "invalid format": "invalid",
    "too many numbers": ">10",
    "numbers too small": "<0",
    "numbers too large": ">999",
    "has banned numbers": "banned",
}


def summary_table(summaries: list[FilterSummary]) -> Table:
    """One row per condition: rows, how many passed, kept, and how many rows each reject reason removed."""
    table = Table(
        title="slscale filter",
        title_justify="left",
        caption="reject reasons: " + ", ".join(f"{h} = {r}" for r, h in REASON_HEADERS.items() if h != r),
        caption_justify="left",
    )
    table.add_column("job", no_wrap=True, min_width=max((len(str(s.key)) for s in summaries), default=3))
    for column in ("rows", "passed", "kept", *(REASON_HEADERS[reason] for reason in REASONS)):
        table.add_column(column, justify="right")
    for s in summaries:
        passed = f"{100 * s.valid / s.rows:.0f}%" if s.rows else "—"
        kept = f"{s.kept}" + (" (sampled)" if s.subsampled else "")
        reasons = [str(s.reasons.get(reason, 0)) for reason in REASONS]
        table.add_row(str(s.key), str(s.rows), passed, kept, *reasons)
    return table


def command(
    sizes: opt.Sizes = [],  # noqa: B006 - typer needs a literal default
    animals: opt.Animals = [],  # noqa: B006
    all_animals: opt.AllAnimals = False,
    run: opt.Run = 1,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip malformed raw.jsonl lines (and say how many).")
    ] = False,
    workdir: opt.Workdir = None,
) -> None:
    """Filter raw completions by the reject reasons and subsample to 10,000 rows.

    A completion is kept when it is a list of at most 10 numbers in 0..999 (EXPERIMENT.md's rules);
    when more than 10,000 survive, random.Random(1).sample picks 10,000. Writes filtered.jsonl next to
    raw.jsonl and prints the reasons per condition. Run `slscale gen` for the same selection first.
    Example: slscale filter --size tiny --all-animals
    """
    chosen_sizes, conditions = require_selection(sizes, animals, all_animals)
    ctx = make_context(workdir)
    console = Console()
    try:
        summaries = run_filter(
            ctx,
            chosen_sizes,
            conditions,
            run=parse_run(run),
            skip_invalid=skip_invalid,
            reporter=make_reporter(),
        )
    except NothingKeptError as exc:
        console.print(summary_table(exc.summaries))
        raise
    console.print(summary_table(summaries))
