"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sl_scaling.engines import ENGINES
from sl_scaling.training.base import TRAINERS

Sizes = Annotated[
    list[str],
    typer.Option("--size", "-s", help="Model size (repeatable): 0.5b 1.5b 3b 7b 14b 32b tiny, or 'all'."),
]
Animals = Annotated[
    list[str],
    typer.Option("--animal", "-a", help="Condition (repeatable): one of the 15 animals or 'neutral'."),
]
AllAnimals = Annotated[
    bool, typer.Option("--all-animals", help="All 16 conditions: neutral and the 15 animals.")
]
Run = Annotated[int, typer.Option("--run", help="Replicate run id; runs other than 1 get '-run-R' names.")]
Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", help="Working directory (default: $SLSCALE_WORKDIR or the current one)."),
]
Engine = Annotated[
    str,
    typer.Option("--engine", help=f"Inference engine: {ENGINES.help()}."),
]
Trainer = Annotated[
    str,
    typer.Option("--trainer", help=f"Trainer: {TRAINERS.help()}."),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Batch size (default: engine's choice).")
]
NoPush = Annotated[
    bool, typer.Option("--no-push", help="Keep everything local; publish later with 'slscale push'.")
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", help="Show the libraries' own warnings and log lines (default: in the stage's log file)."
    ),
]


def show_library_output(verbose: bool) -> None:
    """--verbose: third-party warnings and log lines stay on the terminal (`library_output.verbose`)."""
    if verbose:
        import os

        from sl_scaling.library_output import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
