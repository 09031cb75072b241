"""`slscale run`: the whole grid — gen → filter → train (per-epoch eval + uploads) → control eval → plots."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sl_scaling.catalog import REAL_SIZES, parse_conditions, parse_run, parse_sizes
from sl_scaling.cli import options as opt
from sl_scaling.context import make_context
from sl_scaling.executors import EXECUTORS, Outcome, make_executor
from sl_scaling.grid import FULL, TINY_DEFAULTS
from sl_scaling.pipeline import RunOptions, Step, plan_grid, run_grid, with_estimates
from sl_scaling.progress import make_reporter


def _format_estimate(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f}s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _plan_table(steps: list[Step]) -> Table:
    table = Table(title="slscale run — plan", title_justify="left")
    for column in ("size", "stage", "work", "done", "to do", "estimate"):
        table.add_column(column, justify="right" if column in ("done", "to do", "estimate") else "left")
    for step in steps:
        todo = "—" if step.stage == "plot" else str(len(step.todo))
        done = "—" if step.stage == "plot" else str(len(step.done))
        table.add_row(step.size, step.stage, step.detail, done, todo, _format_estimate(step.estimate_s))
    known = [step.estimate_s for step in steps if step.estimate_s is not None]
    if known:
        table.caption = (
            f"estimated total {_format_estimate(sum(known))} on the GPU of the shipped bench record "
            "(from 'slscale bench'; steps without figures not counted)"
        )
    return table


def _problems_table(problems: list[Outcome]) -> Table:
    table = Table(title="jobs that did not finish", title_justify="left")
    for column in ("job", "status", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for outcome in problems:
        table.add_row(outcome.job.id, outcome.status, str(outcome.attempts), outcome.error or "")
    return table


def command(
    sizes: opt.Sizes = [],  # noqa: B006 - typer needs a literal default
    animals: opt.Animals = [],  # noqa: B006
    all_animals: opt.AllAnimals = False,
    run: opt.Run = 1,
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, help=f"Rows per condition (default: {FULL.n}; tiny: {TINY_DEFAULTS.n})."),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"Epochs per condition (default: {FULL.epochs}; tiny: {TINY_DEFAULTS.epochs})."
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"Answers per evaluation (default: {FULL.samples}; tiny: {TINY_DEFAULTS.samples})."
        ),
    ] = None,
    final_samples: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Answers of the final evaluation of every student's last epoch and of the control, 0 for "
            f"none (default: {FULL.final_samples} = 100 per question, as the paper; tiny: "
            f"{TINY_DEFAULTS.final_samples}).",
        ),
    ] = None,
    prompt_seed: Annotated[
        int,
        typer.Option(
            min=0, help="Prompt-generator seed (42: the reference prompts). Every other seed follows --run."
        ),
    ] = 42,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Teacher generation cap (tokens).")] = 128,
    engine: opt.Engine = "auto",
    trainer: opt.Trainer = "auto",
    batch_size: opt.BatchSize = None,
    no_push: opt.NoPush = False,
    control: Annotated[bool, typer.Option(help="Evaluate the base model (the control bars).")] = True,
    plots: Annotated[bool, typer.Option(help="Draw the charts for each size and the summary.")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan with estimates; run nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: the plan as JSON.")] = False,
    executor: Annotated[
        str,
        typer.Option(help=f"Where jobs run: {EXECUTORS.help()}."),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            envvar="RAY_ADDRESS",
            help="Ray cluster to join, e.g. 10.0.0.1:6379 (default: start one on this machine).",
        ),
    ] = None,
    tensor_parallel: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="GPUs per vLLM generation job (default: all of a machine's for 14b and 32b, else 1).",
        ),
    ] = None,
    trainings_per_gpu: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Conditions of a size trained at once on one GPU, each in its own process with the math it "
            "would have alone, under slscale's own CUDA MPS daemon (SLSCALE_MPS=false: none) (default: 4 at 0.5b, "
            "3 at 1.5b, 2 at 3b, else 1; without a GPU: training processes, default one per core, each training "
            "its share of the conditions).",
        ),
    ] = None,
    max_retries: Annotated[
        int, typer.Option(min=0, help="Times a failed job is tried again before it is marked failed.")
    ] = 2,
    workdir: opt.Workdir = None,
    verbose: opt.Verbose = False,
) -> None:
    """Run the whole grid, resumably: gen → filter → train with per-epoch eval and uploads → control eval → plots.

    Sizes run largest first (default: all six real sizes); within a size, neutral then the animals
    (default: all 16 conditions). Whatever the state DB says is done is skipped; interrupted stages
    continue where they stopped. Each stage logs to `logs/qwen-2.5-scaling/{stage}_{size}_{time}.log`.

    Example: `slscale run --size tiny --animal neutral --animal dolphin --animal eagle`

    A job that fails is retried (--max-retries), then marked failed; what depends on it is skipped
    and everything else goes on; the command then exits 1 and lists them (slscale status shows them).
    """
    opt.show_library_output(verbose)
    ctx = make_context(workdir)
    chosen_sizes = parse_sizes(sizes, default=REAL_SIZES)
    conditions = parse_conditions(animals, all_animals=all_animals or not animals)
    options = RunOptions(
        run=parse_run(run),
        n=n,
        epochs=epochs,
        samples=samples,
        final_samples=final_samples,
        prompt_seed=prompt_seed,
        max_new_tokens=max_new_tokens,
        engine=engine,
        trainer=trainer,
        batch_size=batch_size,
        push=not no_push,
        control=control,
        plots=plots,
        tensor_parallel=tensor_parallel,
        trainings_per_gpu=trainings_per_gpu,
    )
    EXECUTORS.get(executor)  # an unknown name is refused before any work
    console = Console()
    if dry_run:
        with ctx.state() as state:
            steps = with_estimates(plan_grid(state, chosen_sizes, conditions, options), options)
        if as_json:
            typer.echo(json.dumps([step.__dict__ | {"todo": list(step.todo)} for step in steps], indent=2))
        else:
            console.print(_plan_table(steps))
        return
    runner = make_executor(
        executor,
        ctx.settings,
        max_retries=max_retries,
        ray_address=ray_address if executor == "ray" else None,
    )
    try:
        with make_reporter() as reporter:
            result = run_grid(ctx, chosen_sizes, conditions, options, reporter, runner)
    finally:
        runner.close()
    if result.problems:
        console.print(_problems_table(result.problems))
        console.print(
            f"[red]{sum(o.status == 'failed' for o in result.problems)} job(s) failed[/red]; fix the cause "
            "and run the same command again (finished work is kept)"
        )
        raise typer.Exit(1)
    console.print(
        f"[green]done[/green]: results in {ctx.layout.outputs_dir}, charts in {ctx.layout.plots_dir('')}"
    )
