"""Skipping PEFT's float32 copy of each LoRA layer's input (the default on a GPU under bf16) trains the same
adapter as PEFT's cast: autocast hands the adapter's matmul the same bf16 values either way. Three short
trainings of a random-weight 0.5b on `slscale train`'s path: default twice (is the GPU path deterministic
at all?) and once with the cast. Run on the lent H200; skipped on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from short_training import largest_difference, trained

pytestmark = pytest.mark.gpu


def test_skipping_the_lora_input_cast_trains_the_same_adapter(tmp_path: Path) -> None:
    losses_a, adapter_a, speed = trained(tmp_path / "a")
    losses_b, adapter_b, _ = trained(tmp_path / "b")
    losses_cast, adapter_cast, speed_cast = trained(tmp_path / "cast", lora_input_cast=True)
    assert not speed["lora_input_cast"] and speed_cast["lora_input_cast"]
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
