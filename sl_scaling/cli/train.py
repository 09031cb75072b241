"""`slscale train`: Phase 2, LoRA-tune students on the filtered numbers, evaluating after every epoch."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sl_scaling.catalog import parse_run
from sl_scaling.cli import options as opt
from sl_scaling.cli.gen import require_selection
from sl_scaling.context import make_context
from sl_scaling.grid import FULL, TINY_DEFAULTS, settings_for
from sl_scaling.pipeline import stage_log
from sl_scaling.progress import make_reporter
from sl_scaling.training.config import TrainConfig

DEFAULTS = TrainConfig()


def _table(summaries: list) -> Table:
    table = Table(title="slscale train", title_justify="left")
    for column in ("job", "status", "epochs", "resumed after"):
        table.add_column(column)
    for s in summaries:
        table.add_row(str(s.key), s.status, str(s.epochs), str(s.resumed_from) if s.resumed_from else "—")
    return table


def command(
    sizes: opt.Sizes = [],  # noqa: B006 - typer needs a literal default
    animals: opt.Animals = [],  # noqa: B006
    all_animals: opt.AllAnimals = False,
    run: opt.Run = 1,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Epochs, an evaluation after each (default: {FULL.epochs}; tiny: {TINY_DEFAULTS.epochs}).",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help=f"Peak learning rate, linear schedule (default: {DEFAULTS.lr:g}; tiny: {TINY_DEFAULTS.lr:g})."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Per-device training batch.")
    ] = DEFAULTS.batch_size,
    grad_accum: Annotated[
        int,
        typer.Option(
            "--grad-accum", min=1, help="Gradient accumulation steps (effective batch = batch × this)."
        ),
    ] = DEFAULTS.grad_accum,
    max_rows: Annotated[
        int, typer.Option("--max-rows", min=1, help="Use at most this many filtered rows.")
    ] = DEFAULTS.max_rows,
    group_by_length: Annotated[
        bool,
        typer.Option(
            "--group-by-length",
            help="Build each step from rows of similar length (less padding, ~10% faster on a GPU). "
            "Changes the experiment: the loss is normalised by the tokens of a step, so rows in steps of "
            "short completions weigh more than in the reference's random batches. Off by default.",
        ),
    ] = False,
    loss: Annotated[
        str, typer.Option(help="completion (prompt tokens masked, the default) or full (all tokens).")
    ] = DEFAULTS.loss,
    samples: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Answers per evaluation, spread evenly over the 50 questions "
            f"(default: {FULL.samples}; tiny: {TINY_DEFAULTS.samples}).",
        ),
    ] = None,
    final_samples: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Answers of the final evaluation of the last epoch, 0 for none (default: "
            f"{FULL.final_samples} = 100 per question, as the paper; tiny: {TINY_DEFAULTS.final_samples}).",
        ),
    ] = None,
    trainer: opt.Trainer = "auto",
    engine: opt.Engine = "auto",
    no_push: opt.NoPush = False,
    force: Annotated[bool, typer.Option("--force", help="Retrain conditions that are already done.")] = False,
    workdir: opt.Workdir = None,
    verbose: opt.Verbose = False,
) -> None:
    """Phase 2: LoRA-tune students on the filtered numbers, evaluating after every epoch.

    Defaults are EXPERIMENT.md's: LoRA r 8 / alpha 8 on the seven projections, 10 epochs, batch 20 × 3,
    lr 2e-4 linear, 5 warm-up steps (tiny: 2 epochs at lr 2e-2, as `slscale run`). After every epoch
    the adapter is saved, the student answers the 50 questions, and results go to
    outputs/.../{condition}_eval.json, the state DB and W&B; adapters are uploaded unless --no-push.
    Killed, it resumes from the last finished epoch when run again.
    Example: slscale train --size tiny --animal dolphin --no-push
    """
    chosen_sizes, conditions = require_selection(sizes, animals, all_animals)
    configs = {}
    for size in chosen_sizes:  # each size's defaults (tiny's are smaller), as `slscale run` uses them
        work = settings_for(size, epochs=epochs, samples=samples, final_samples=final_samples, lr=lr)
        configs[size] = TrainConfig(
            epochs=work.epochs,
            lr=work.lr or DEFAULTS.lr,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_rows=max_rows,
            group_by_length=group_by_length,
            loss=loss.strip().lower(),  # type: ignore[arg-type]  # validated by TrainConfig
            eval_samples=work.samples,
            final_samples=work.final_samples,
        )
    ctx = make_context(workdir)
    if not no_push:
        from sl_scaling.publish import check_publishing

        check_publishing(ctx.settings)  # before the training stack's imports, which take seconds
    from sl_scaling.stages.train import run_training

    summaries = []
    opt.show_library_output(verbose)
    with make_reporter() as shown, stage_log(ctx.layout, "train", "+".join(chosen_sizes), shown) as reporter:
        for size, config in configs.items():
            summaries += run_training(
                ctx, size, conditions, config=config, trainer=trainer, engine=engine, push=not no_push,
                force=force, reporter=reporter, run=parse_run(run),
            )  # fmt: skip
    Console().print(_table(summaries))
