"""Skipping PEFT's float32 copy of each LoRA layer's input (the default on a GPU under bf16) trains the same
adapter as PEFT's cast: autocast hands the adapter's matmul the same bf16 values either way. Three short
trainings of a random-weight 0.5b on `slscale train`'s path: default twice (is the GPU path deterministic
at all?) and once with the cast. Run on the lent H200; skipped on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sl_scaling.bench import shapes
from sl_scaling.bench.train_path import WARMUP_STEPS, PathRun, bench_context, train_on_path
from sl_scaling.state import JobKey

pytestmark = pytest.mark.gpu


def trained(workdir: Path, **speed_changes: Any) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Per-step losses and the final adapter's tensors of one short training."""
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
    assert record["speed"]["lora_input_cast"] is speed_changes.get("lora_input_cast", False)
    adapter = load_file(
        ctx.layout.final_checkpoint(JobKey(1, "0.5b", run.condition)) / "adapter_model.safetensors"
    )
    return losses, adapter


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_skipping_the_lora_input_cast_trains_the_same_adapter(tmp_path: Path) -> None:
    losses_a, adapter_a = trained(tmp_path / "a")
    losses_b, adapter_b = trained(tmp_path / "b")
    losses_cast, adapter_cast = trained(tmp_path / "cast", lora_input_cast=True)
    noise = largest_difference(adapter_a, adapter_b)
    difference = largest_difference(adapter_a, adapter_cast)
    print(
        f"losses {losses_a} / {losses_b} / {losses_cast}; adapter differences: run to run {noise}, cast {difference}"
    )
    if noise == 0 and losses_a == losses_b:  # a deterministic path: the two must be bit-identical
        assert losses_cast == losses_a and difference == 0
    else:  # nondeterministic kernels: no further from the default than the default from itself
        assert difference <= 4 * noise
        assert losses_cast == pytest.approx(losses_a, rel=1e-3)
