"""`slscale status`: the grid at a glance from the state DB."""

from __future__ import annotations

import typer

from sl_scaling.cli.errors import ErrorHandlingGroup
from sl_scaling.errors import SlscaleError

app = typer.Typer(cls=ErrorHandlingGroup, help="The grid at a glance, read from the state DB.")


@app.callback(invoke_without_command=True)
def status(ctx: typer.Context) -> None:
    """The grid at a glance, read from the state DB. Not built yet."""
    if ctx.invoked_subcommand is None:
        raise SlscaleError("'slscale status' is not built yet")


@app.command("table")
def table() -> None:
    """A row per (size, condition): generated, kept, epochs, target rate, uploads, state. Not built yet."""
    raise SlscaleError("'slscale status table' is not built yet")
