"""`slscale status`: the grid at a glance from the state DB (a table, JSON, or a live view)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from sl_scaling.catalog import parse_run, parse_sizes
from sl_scaling.cli.errors import ErrorHandlingGroup
from sl_scaling.cli.options import Sizes, Workdir
from sl_scaling.context import make_context
from sl_scaling.dashboard import status_view
from sl_scaling.errors import UsageError
from sl_scaling.state import StateStore
from sl_scaling.status import read_status

WATCH_INTERVAL_S = 2.0
NOTHING_YET = (
    "Nothing has run yet in {workdir}. Start with: slscale run --size tiny (the whole pipeline offline)"
)

app = typer.Typer(cls=ErrorHandlingGroup, help="The grid at a glance, read from the state DB.")

AsJson = Annotated[bool, typer.Option("--json", help="Print the same rows as JSON (for scripts).")]
Watch = Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until Ctrl-C.")]
Runs = Annotated[list[int], typer.Option("--run", min=1, help="Only this replicate run (repeatable).")]


def _show(sizes: list[str], runs: list[int], as_json: bool, watch: bool, workdir: Workdir) -> None:
    if as_json and watch:
        raise UsageError("--json and --watch do not combine; use one of them")
    chosen_sizes = parse_sizes(sizes, default=[])
    chosen_runs = [parse_run(run) for run in runs]
    ctx = make_context(workdir)
    console = Console()
    if not ctx.layout.db_path.exists():  # do not create a DB just to say it is empty
        if as_json:
            typer.echo(json.dumps({"rows": [], "counts": {}, "events": []}, indent=2))
        else:
            console.print(NOTHING_YET.format(workdir=ctx.layout.workdir))
        return
    with StateStore.open(ctx.layout.workdir) as state:
        if watch:
            _watch(console, state, chosen_sizes, chosen_runs)
            return
        grid = read_status(state, sizes=chosen_sizes, runs=chosen_runs)
    if as_json:
        typer.echo(json.dumps(grid.to_json(), indent=2))
    elif grid.empty:
        console.print(NOTHING_YET.format(workdir=ctx.layout.workdir))
    else:
        console.print(status_view(grid))


def _watch(console: Console, state: StateStore, sizes: list[str], runs: list[int]) -> None:
    """Redraw from a fresh snapshot every couple of seconds; Ctrl-C ends it quietly (exit 0)."""
    try:
        with Live(console=console, refresh_per_second=1, screen=False) as live:
            while True:
                live.update(status_view(read_status(state, sizes=sizes, runs=runs), events=True))
                time.sleep(WATCH_INTERVAL_S)
    except KeyboardInterrupt:
        return


@app.callback(invoke_without_command=True)
def status(
    ctx: typer.Context,
    size: Sizes = [],  # noqa: B006 - Typer reads the default
    run: Runs = [],  # noqa: B006
    as_json: AsJson = False,
    watch: Watch = False,
    workdir: Workdir = None,
) -> None:
    """The grid at a glance: a row per (run, size, condition) with rows, epochs, target rate, uploads, state."""
    if ctx.invoked_subcommand is None:
        _show(size, run, as_json, watch, workdir)


@app.command("table")
def table(
    size: Sizes = [],  # noqa: B006
    run: Runs = [],  # noqa: B006
    as_json: AsJson = False,
    watch: Watch = False,
    workdir: Workdir = None,
) -> None:
    """The status table: a row per (run, size, condition), control included.

    Columns: state (and the stage it is about), rows generated and kept, epochs done/planned, the
    latest target rate with its 95% CI, the most frequent answer and the uploads still pending.
    """
    _show(size, run, as_json, watch, workdir)
