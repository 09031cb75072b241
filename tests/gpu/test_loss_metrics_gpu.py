"""Training without TRL's entropy and token-accuracy metrics (the default on a GPU: `training/trl.py:fused_nll`)
computes TRL's own loss: two short trainings of a random-weight 0.5b on `slscale train`'s path, with and without
the metrics, train bit-identical losses and adapters (the GPU path is deterministic: test_lora_input_cast_gpu.py).
Run on the lent H200; skipped on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from short_training import largest_difference, trained

from sl_scaling.training import trl

pytestmark = pytest.mark.gpu


def test_the_loss_without_trls_metrics_is_trls_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = trl.fused_nll

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(trl, "fused_nll", counted)
    losses, adapter, speed = trained(tmp_path / "quiet")
    assert not speed["loss_metrics"] and calls  # the default's training steps computed the loss themselves
    ran = len(calls)
    losses_trl, adapter_trl, speed_trl = trained(tmp_path / "metrics", loss_metrics=True)
    assert speed_trl["loss_metrics"] and len(calls) == ran  # and with the metrics, TRL did
    difference = largest_difference(adapter, adapter_trl)
    print(f"losses {losses} / {losses_trl}; adapter difference {difference}; fused_nll calls {ran}")
    assert losses == losses_trl and difference == 0
