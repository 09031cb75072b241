"""`slscale plot`: the per-size charts and the scaling overview (PNG + HTML), and the summary JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from sl_scaling.catalog import SIZES, parse_run, parse_sizes
from sl_scaling.cli import options as opt
from sl_scaling.context import make_context
from sl_scaling.errors import MissingPrerequisiteError
from sl_scaling.results import load_eval_files
from sl_scaling.summary import write_summary

if TYPE_CHECKING:  # the charting stack loads only when a command draws (seconds of start-up otherwise)
    from sl_scaling.charts.plots import PlotResult


def command(
    sizes: opt.Sizes = [],  # noqa: B006 - typer needs a literal default
    run: opt.Run = 1,
    epoch: Annotated[
        int | None,
        typer.Option("--epoch", min=1, help="Plot the students at this epoch (default: each one's last)."),
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="Draw summary/scaling_overview.png (lift vs model size).")
    ] = False,
    workdir: opt.Workdir = None,
) -> None:
    """Draw the charts from the evaluation files: per size grouped_bar.png and stacked_preference.png,
    with --summary scaling_overview.png (an interactive .html beside each PNG). Also refreshes
    outputs/.../summary/all_results.json. Without --size or --summary: every size with results, and
    the summary. Missing pieces (no control yet, untrained conditions) are listed, not fatal."""
    ctx = make_context(workdir)
    run = parse_run(run)
    chosen = parse_sizes(sizes, default=[])
    if not chosen and not summary:
        chosen = sorted({f.size for f in load_eval_files(ctx.layout, runs=[run])}, key=SIZES.index)
        summary = True
    from sl_scaling.charts.plots import plot_size, plot_summary

    results = [plot_size(ctx.layout, size, run=run, epoch=epoch) for size in chosen]
    if summary:
        results.append(plot_summary(ctx.layout, run=run, epoch=epoch))
    _report(Console(), results)
    if not any(result.paths for result in results):
        raise MissingPrerequisiteError(
            "no charts drawn: nothing is evaluated yet for what was asked; run 'slscale run' "
            "(or 'slscale train' / 'slscale eval') first"
        )
    write_summary(ctx.layout)


def _report(console: Console, results: list[PlotResult]) -> None:
    for result in results:
        for path in result.paths:
            if path.suffix == ".png":
                console.print(f"[green]wrote[/green] {path} (+ .html)")
        for line in result.missing:
            console.print(f"[yellow]missing[/yellow] {line}", highlight=False)
