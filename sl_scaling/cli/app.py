"""The `slscale` command: one Typer app, one module per command, no experiment logic here."""

from __future__ import annotations

import typer

from sl_scaling.cli import bench, evaluate, filter, gen, plot, push, report, run, status, train
from sl_scaling.cli.errors import ErrorHandlingGroup
from sl_scaling.errors import interrupt_on_sigterm

app = typer.Typer(
    name="slscale",
    cls=ErrorHandlingGroup,
    help=(
        "Run the subliminal-learning scaling-law experiment: teachers write numbers (gen), the "
        "numbers are filtered (filter), students are LoRA-tuned on them and asked for their favourite "
        "animal after every epoch (train, eval), results are published (push) and plotted (plot). "
        "'slscale run --size tiny' does it all offline on the built-in tiny model."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("gen")(gen.command)
app.command("filter")(filter.command)
app.command("train")(train.command)
app.command("eval")(evaluate.command)
app.command("push")(push.command)
app.command("plot")(plot.command)
app.add_typer(status.app, name="status")
app.command("run")(run.command)
app.command("bench")(bench.command)
app.command("report")(report.command)


def main() -> None:
    interrupt_on_sigterm()  # `kill` and schedulers stop a command as Ctrl-C does: work recorded, exit 143
    app()
