"""`slscale report`: the scaling-law analysis: lift, significance, confusion matrices, curves."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.console import Console

from sl_scaling.catalog import parse_run, parse_sizes
from sl_scaling.cli import options as opt
from sl_scaling.context import make_context
from sl_scaling.errors import UsageError

BOOTSTRAP_SCHEMES = ("questions", "questions+answers")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:\.\.|-)\s*(\d+)\s*$")


def parse_runs(values: list[str]) -> list[int] | None:
    """`--run 2`, `--run 1..3`, `--run 1,2,4` (repeatable) → sorted run ids; nothing → every run found."""
    runs: set[int] = set()
    for value in values:
        for part in value.split(","):
            match = _RANGE.match(part)
            try:
                if match:
                    first, last = int(match[1]), int(match[2])
                    if first > last:
                        raise ValueError
                    runs.update(parse_run(r) for r in range(first, last + 1))
                else:
                    runs.add(parse_run(int(part)))
            except ValueError:
                raise UsageError(
                    f"bad --run '{value}'; use a number, a range like 1..3 or a list like 1,2"
                ) from None
    return sorted(runs) or None


def command(
    sizes: opt.Sizes = [],  # noqa: B006 - typer needs a literal default
    run: Annotated[
        list[str],
        typer.Option(
            "--run", help="Replicate runs: 2, 1..3 or 1,2,4 (repeatable) (default: every run found)."
        ),
    ] = [],  # noqa: B006
    epoch: Annotated[
        int | None,
        typer.Option("--epoch", min=1, help="Students' epoch to compare (default: the last one evaluated)."),
    ] = None,
    bootstrap: Annotated[
        str,
        typer.Option(
            "--bootstrap",
            help="Bootstrap unit: 'questions' (each drawn question brings its answers) or "
            "'questions+answers' (answers resampled again within questions: conservative).",
        ),
    ] = "questions",
    workdir: opt.Workdir = None,
) -> None:
    """The scaling-law analysis: confusion matrices, lift per animal with bootstrap intervals, a permutation
    test per size, curves over epochs and sizes. Writes reports/qwen-2.5-scaling/report.{md,html,json}.

    Default sizes: the six real sizes if any has evaluations (those without are listed as missing), plus
    tiny if it has evaluations.
    """
    if bootstrap not in BOOTSTRAP_SCHEMES:
        raise UsageError(f"unknown --bootstrap '{bootstrap}'; valid: {', '.join(BOOTSTRAP_SCHEMES)}")
    # Imported here: the charting stack would add seconds to every slscale command's start.
    from sl_scaling.report import Options, build_report, default_sizes
    from sl_scaling.report.render import p_text, pp, verdict

    ctx = make_context(workdir)
    chosen = parse_sizes(sizes) if sizes else default_sizes(ctx.layout)
    files, analysis = build_report(
        ctx.layout,
        chosen,
        parse_runs(run),
        Options(epoch=epoch, resample_answers=bootstrap == "questions+answers"),
    )
    console = Console(highlight=False, soft_wrap=True)
    for result in analysis.sizes:
        c = result.contrast
        lift = result.mean_lift_vs_neutral
        console.print(
            f"{result.size:>5}  epoch {result.epoch}  mean lift vs neutral {pp(lift.value) if lift else '–'}  "
            f"permutation p {p_text(c.permutation.p_value) if c else '–'}  {verdict(result)}"
        )
    if analysis.missing:
        console.print(f"{len(analysis.missing)} missing piece(s): see the 'Missing' section of the report")
    for path in (files.markdown, files.html, files.json):
        console.print(f"wrote {path}")
