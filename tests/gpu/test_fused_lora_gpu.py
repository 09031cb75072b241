"""The fused LoRA forward (the default on a GPU) trains the adapter PEFT's own forward trains, up to bf16
rounding: a short training of a random-weight 0.5b on `slscale train`'s path ends no further from PEFT's
forward than PEFT's forward ends from another split of the same step (60 × 1 against 20 × 3); and the
fused layer itself, its output and its gradients (input, A, B) in bf16 under autocast, is no further from
float32 than PEFT's. Run on the lent H200; skipped on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from short_training import assert_trains_like_without

from sl_scaling.training import fused_lora as fused_lora_module
from sl_scaling.training.fused_lora import fused_lora_forward, lora_switches

pytestmark = pytest.mark.gpu


def test_a_fused_layer_is_as_close_to_float32_as_pefts() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(3584, 18944, bias=False)).cuda()  # a 7b gate_proj
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=8, target_modules=["0"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    x = torch.randn(8600, 3584, device="cuda")  # 60 rows of ~143 tokens, flattened
    upstream = torch.randn(8600, 18944, device="cuda")  # the gradient reaching the layer's output

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        model.zero_grad()
        out = model(x)
        out.backward(upstream.to(out.dtype))
        adapter = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
        return {"out": out.detach().float(), "x": x.grad.float(), **adapter}

    exact = run(x)

    def bf16_errors(fused: bool) -> dict[str, float]:
        with torch.autocast("cuda", torch.bfloat16), lora_switches(model, fuse=fused).applied():
            got = run(x.bfloat16())
        return {k: (got[k] - exact[k]).abs().max().item() for k in exact}

    fused_errors, peft_errors = bf16_errors(True), bf16_errors(False)
    print(f"bf16 errors against float32: fused {fused_errors}, PEFT {peft_errors}")
    assert len(exact) == 4  # output, input gradient, A and B gradients
    for k in exact:
        assert fused_errors[k] <= 1.5 * peft_errors[k], k


def test_fused_lora_training_ends_where_pefts_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(x.shape[-2])
        return fused_lora_forward(layer, x, *args, **kwargs)

    monkeypatch.setattr(fused_lora_module, "fused_lora_forward", counted)
    assert_trains_like_without(tmp_path, "fused_lora")
    assert calls  # the fused training's steps ran the fused forward (the others have it off)
