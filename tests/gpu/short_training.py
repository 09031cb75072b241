"""A few steps of `slscale train`'s own path on a random-weight 0.5b, for GPU tests that compare what two
speed settings train: the per-step losses and the final adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sl_scaling.bench import shapes
from sl_scaling.bench.train_path import WARMUP_STEPS, PathRun, bench_context, train_on_path
from sl_scaling.state import JobKey


def trained(
    workdir: Path, **speed_changes: Any
) -> tuple[list[float], dict[str, torch.Tensor], dict[str, Any]]:
    """Per-step losses, the final adapter's tensors and the speed settings of one short training."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    ctx = bench_context(workdir)
    run = PathRun(
        "0.5b", shapes.parameter_count("0.5b"), True, steps=WARMUP_STEPS + 2, speed_changes=speed_changes
    )
    torch.manual_seed(0)  # the random base weights are drawn inside; every run draws the same
    record = train_on_path(ctx, run, callbacks=[Losses()])
    adapter = load_file(
        ctx.layout.final_checkpoint(JobKey(1, "0.5b", run.condition)) / "adapter_model.safetensors"
    )
    return losses, adapter, record["speed"]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def assert_trains_like_without(workdir: Path, setting: str) -> None:
    """Training with `setting` (a TrainingSpeed field, on by default on a GPU) ends no further from training
    without it than that training ends from another split of the same step (60 × 1 against 20 × 3)."""
    losses, adapter, speed = trained(workdir / "on")
    assert speed[setting]
    losses_off, adapter_off, _ = trained(workdir / "off", **{setting: False})
    losses_split, adapter_split, split_speed = trained(workdir / "split", **{setting: False}, micro_batch=20)
    assert split_speed["micro_batch"] == 20
    change, split = largest_difference(adapter, adapter_off), largest_difference(adapter_off, adapter_split)
    print(
        f"losses {losses} / {losses_off} / {losses_split}; adapter differences: {setting} {change}, split {split}"
    )
    assert losses == pytest.approx(losses_off, rel=1e-2)
    assert change <= 4 * split
