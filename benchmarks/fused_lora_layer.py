"""One LoRA layer's forward + backward at a size's shapes under bf16 autocast on the GPU: PEFT's forward, stop 26's
fused order (the big matmul first, the rank-r product added onto its output) and the shipped one
(`training/fused_lora.py`: the rank-r product first, the big matmul added onto it in its epilogue). What each saves
per layer, where the real path's rows/s cannot tell it from noise (issue 16). A diagnostic, not a bench figure.

    python benchmarks/fused_lora_layer.py --size 7b --size 14b
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from sl_scaling.bench import shapes
from sl_scaling.training import fused_lora

TOKENS, REPEATS = 60 * 143, 20


class BigMatmulFirst(torch.autograd.Function):
    """Stop 26's order: `x·Wᵀ + b`, then `addmm_(x·Aᵀ, Bᵀ)` onto it; `g·W`, then `addmm_(g·B, A)`."""

    @staticmethod
    def forward(ctx: Any, x: Any, weight: Any, bias: Any, lora_a: Any, lora_b: Any, scaling: float) -> Any:
        rows = x.reshape(-1, x.shape[-1])
        down = rows @ lora_a.t()
        out = torch.nn.functional.linear(rows, weight, bias)
        out.addmm_(down, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(rows, weight, lora_a, lora_b, down)
        ctx.scaling, ctx.input_shape = scaling, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        rows, weight, lora_a, lora_b, down = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        g_down = g @ lora_b
        grad_x = (g @ weight).addmm_(g_down, lora_a, alpha=ctx.scaling).view(ctx.input_shape)
        grad_a = (rows.t() @ g_down).t().mul_(ctx.scaling)
        grad_b = (down.t() @ g).t().mul_(ctx.scaling)
        return grad_x, None, None, grad_a, grad_b, None


def layer_ms(features: tuple[int, int], bias: bool, variant: str) -> float:
    """Milliseconds per forward + backward of one adapted linear layer (frozen bf16 base, float32 LoRA)."""
    base = torch.nn.Sequential(torch.nn.Linear(*features, bias=bias)).cuda().to(torch.bfloat16)
    base.requires_grad_(False)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=8, target_modules=["0"]))
    x = torch.randn(1, TOKENS, features[0], device="cuda", dtype=torch.bfloat16, requires_grad=True)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    shipped = fused_lora.FusedLoraLinear
    fused_lora.FusedLoraLinear = BigMatmulFirst if variant == "big-first" else shipped  # type: ignore[misc]
    switches = fused_lora.lora_switches(model, fuse=variant != "peft")

    def step() -> None:
        with torch.autocast("cuda", torch.bfloat16), switches.applied():
            model(x).sum().backward()

    try:
        step()  # warm-up: cuBLAS' kernel choice, the allocator
        torch.cuda.synchronize()
        start.record()
        for _ in range(REPEATS):
            step()
        end.record()
        torch.cuda.synchronize()
    finally:
        fused_lora.FusedLoraLinear = shipped  # type: ignore[misc]
    return start.elapsed_time(end) / REPEATS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", required=True)
    for size in parser.parse_args().size:
        hidden, intermediate = shapes.shape(size).hidden, shapes.shape(size).intermediate
        layers = (
            ("q_proj", (hidden, hidden), True),
            ("o_proj", (hidden, hidden), False),
            ("gate/up_proj", (hidden, intermediate), False),
            ("down_proj", (intermediate, hidden), False),
        )
        for name, features, bias in layers:
            ms = {variant: layer_ms(features, bias, variant) for variant in ("peft", "big-first", "shipped")}
            print(
                f"{size} {name} {features}: PEFT {ms['peft']:.3f} ms, big matmul first {ms['big-first']:.3f} ms, "
                f"shipped {ms['shipped']:.3f} ms ({ms['big-first'] / ms['shipped']:.3f}× stop 26's order)",
                flush=True,
            )


if __name__ == "__main__":
    main()
