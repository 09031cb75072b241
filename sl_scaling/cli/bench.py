"""`slscale bench`: measure our default paths against plain baselines on this machine, and project the grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sl_scaling.bench import TRAIN_VARIANTS
from sl_scaling.catalog import TINY, parse_sizes
from sl_scaling.cli.options import Sizes, Workdir
from sl_scaling.errors import UsageError
from sl_scaling.files import atomic_write_json

PHASE_CHOICES = ("gen", "train", "eval", "all")


def _vllm_present() -> bool:
    from sl_scaling.engines import choose_engine

    return choose_engine("auto")[0] == "vllm"


def command(
    size: Sizes = [],  # noqa: B006 - Typer reads the default
    phase: Annotated[list[str], typer.Option("--phase", help="gen, train, eval or all (repeatable).")] = [],  # noqa: B006
    random_weights: Annotated[
        bool,
        typer.Option(
            "--random-weights", help="Real Qwen2.5 architecture, random weights: no download, same cost."
        ),
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the record here.")] = None,
    gen_rows: Annotated[
        int, typer.Option("--gen-rows", min=1, help="Prompts per generation measurement.")
    ] = 2048,
    unsloth: Annotated[bool, typer.Option("--unsloth/--no-unsloth", help="Also time Unsloth (GPU).")] = True,
    fit_only: Annotated[
        list[str],
        typer.Option(
            "--fit-only",
            help="Sizes trained on slscale train's path only: no variants, no baselines (repeatable).",
        ),
    ] = [],  # noqa: B006
    variant: Annotated[
        list[str],
        typer.Option("--variant", help="Generation variants to time (repeatable) (default: all)."),
    ] = [],  # noqa: B006
    vllm: Annotated[
        bool | None,
        typer.Option(
            "--vllm/--no-vllm",
            help="Also time vLLM through slscale's engine (default: when vLLM and a GPU are present; "
            "random weights only).",
        ),
    ] = None,
    replicas: Annotated[
        list[int],
        typer.Option("--replicas", help="Also time N vLLM engine processes sharing the GPU (repeatable)."),
    ] = [],  # noqa: B006
    adapters: Annotated[
        int, typer.Option("--adapters", help="vLLM: LoRA adapters evaluated together in one load (0: skip).")
    ] = 16,
    adapter_answers: Annotated[
        int, typer.Option("--adapter-answers", help="vLLM: answers per adapter in that evaluation.")
    ] = 5_000,
    train_variant: Annotated[
        list[str],
        typer.Option(
            "--train-variant",
            help="Training knobs to time beside the default, one change each (repeatable), alone and, where the "
            f"size's trainings share the GPU, side by side too: {', '.join(TRAIN_VARIANTS)} (default: none).",
        ),
    ] = [],  # noqa: B006
    side_by_side: Annotated[
        bool,
        typer.Option(
            "--side-by-side/--no-side-by-side",
            help="Also train the small sizes several conditions at once, as 'slscale run' does.",
        ),
    ] = True,
    trainings: Annotated[
        list[int],
        typer.Option(
            "--trainings",
            min=2,
            max=16,
            help="Train N conditions of each size side by side instead of the size's default count (repeatable).",
        ),
    ] = [],  # noqa: B006
    train_steps: Annotated[
        int,
        typer.Option(min=7, help="Optimizer steps per training measurement (the first 5 are warm-up)."),
    ] = 45,
    workdir: Workdir = None,
) -> None:
    """Measure throughput of generation, training and evaluation against baselines (ratios, MFU, peak memory),
    then project the hours of the full grid from the measured rates."""
    from sl_scaling.bench.runner import PHASES, run_bench
    from sl_scaling.context import make_context
    from sl_scaling.models import resolve_model

    unknown = [p for p in phase if p not in PHASE_CHOICES]
    if unknown:
        raise UsageError(f"unknown phase '{unknown[0]}'; valid: {', '.join(PHASE_CHOICES)}")
    unknown = [v for v in train_variant if v not in TRAIN_VARIANTS]
    if unknown:
        raise UsageError(f"unknown training variant '{unknown[0]}'; valid: {', '.join(TRAIN_VARIANTS)}")
    sizes = parse_sizes(size, default=["0.5b"])
    if random_weights and TINY in sizes:
        raise UsageError("--random-weights needs a Qwen2.5 size (0.5b … 32b), not tiny")
    ctx = make_context(workdir)
    phases = PHASES if not phase or "all" in phase else tuple(phase)
    record = run_bench(
        sizes,
        phases,
        random_weights=random_weights,
        workdir=ctx.layout.workdir / ".slscale" / "bench",
        model_path=lambda s: None if random_weights else resolve_model(ctx.settings, s),
        gen_rows=gen_rows,
        with_unsloth=unsloth,
        fit_only=[s.lower() for s in fit_only],
        gen_variants=variant,
        vllm=_vllm_present() if vllm is None else vllm,
        vllm_replicas=replicas,
        vllm_adapters=adapters,
        adapter_answers=adapter_answers,
        train_variants=train_variant,
        side_by_side=side_by_side,
        trainings=trainings,
        train_steps=train_steps,
        log=typer.echo,
        checkpoint=lambda partial: json_path and atomic_write_json(json_path, partial),
    )
    if json_path is not None:
        atomic_write_json(json_path, record)
        typer.echo(f"wrote {json_path}")
    grid = record["projection"]["grid_h200_hours"]
    typer.echo(f"projected full grid: {grid} GPU-hours on {record['device']}")
