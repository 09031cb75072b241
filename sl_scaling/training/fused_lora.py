"""A LoRA layer as one autograd function on a GPU: the adapter's term `scaling · (x·Aᵀ)·Bᵀ (+ b)` first, then
`addmm_(x, Wᵀ)` onto it.

PEFT computes a LoRA layer as `base + B(A(x)) * scaling` through autograd: the adapter's product, the scaling
and the sum are activation-sized tensors written and read again in every adapted layer of every micro-batch,
and the backward adds the input's two gradients (through W and through the adapter) in one more pass. Here the
rank-r product writes the output once and the big matmul adds `x·Wᵀ` to it in its epilogue (cuBLAS' `beta`),
where a compute-bound matmul reads it almost for free; the backward sums the input's gradients the same way
(`(g·B)·A`, then `addmm_(g, W, beta=scaling)`) and writes nothing else activation-sized. (Adding the rank-r
product onto the big matmul's output instead — stop 26's order — reads and writes the output once more.) An
in-place sum under plain autograd would not do: the sum goes into a view of the base output, and autograd's
backward of an in-place op on a view (`CopySlices`) clones the whole output gradient — three output-sized copies
per layer that a profile of the H200 showed as ~10% of a 3b step. Same rows, same loss, the same sums and
gradients; products are rounded once (with their sum) instead of twice, so values agree up to bf16 rounding
(on the H200 a short training ends no further from PEFT's forward than another split of the same step does:
tests/gpu/test_fused_lora_gpu.py).

Only vanilla LoRA on a plain frozen `nn.Linear` is fused (no dropout: EXPERIMENT.md's is 0; no DoRA, no LoRA
bias; one active adapter), and only where the operands agree in dtype or autocast casts them; any other layer or
call runs PEFT's own forward.

`lora_switches` finds a model's LoRA layers once and puts a training step's switches on them (the fused
forward; no input cast, `TrainingSpeed.lora_input_cast`): scanning a 32b's modules takes ~25 ms of CPU, which
PEFT's own `disable_input_dtype_casting` spends twice in every micro-batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch


def fusable(layer: Any) -> bool:
    """A PEFT LoRA linear layer on a plain, frozen `nn.Linear` (the function gives the base no gradient)
    whose one active adapter is a plain `B(A(x)) * scaling`."""
    from peft.tuners.lora.layer import Linear

    if not isinstance(layer, Linear) or layer.merged or layer.disable_adapters or layer.lora_variant:
        return False
    base, active = layer.base_layer, [name for name in layer.active_adapters if name in layer.lora_A]
    return (
        type(base) is torch.nn.Linear
        and not any(param.requires_grad for param in base.parameters())
        and len(active) == 1
        and isinstance(layer.lora_dropout[active[0]], torch.nn.Identity)
        and layer.lora_B[active[0]].bias is None
    )


class FusedLoraLinear(torch.autograd.Function):
    """`x·Wᵀ + b + scaling · (x·Aᵀ)·Bᵀ` for a frozen `W`, `b`; every operand in the one compute dtype."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
    ) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        down = (rows @ lora_a.t()).mul_(scaling)  # [tokens, rank]: scaled here, where it is small
        out = down @ lora_b.t() if bias is None else torch.addmm(bias, down, lora_b.t())
        out.addmm_(rows, weight.t())  # the big matmul adds its product to the adapter's term in its epilogue
        ctx.save_for_backward(rows, weight, lora_a, lora_b, down)
        ctx.scaling, ctx.input_shape = scaling, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, weight, lora_a, lora_b, down = ctx.saved_tensors
        scaling = ctx.scaling
        g = grad.reshape(-1, grad.shape[-1])
        g_down = g @ lora_b  # the gradient reaching the scaled x·Aᵀ
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = g_down @ lora_a
            grad_x.addmm_(g, weight, beta=scaling)  # scaled, and added to g·W, in the big matmul's epilogue
            grad_x = grad_x.view(ctx.input_shape)
        if ctx.needs_input_grad[3]:
            grad_a = (rows.t() @ g_down).t().mul_(scaling)
        if ctx.needs_input_grad[4]:
            grad_b = (down.t() @ g).t()
        return grad_x, None, None, grad_a, grad_b, None


def _compute_dtype(layer: Any, x: torch.Tensor, adapter: str) -> torch.dtype | None:
    """The one dtype of the fused matmuls: autocast's, or the one the input, base layer and adapter share;
    None where mixed dtypes without autocast keep the call on PEFT's forward."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    weights = (layer.base_layer.weight, layer.lora_A[adapter].weight, layer.lora_B[adapter].weight)
    return x.dtype if all(w.dtype == x.dtype for w in weights) else None


def fused_lora_forward(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """PEFT's `lora.Linear.forward` for vanilla LoRA (a `fusable` layer), as one `FusedLoraLinear`. The
    operands are cast as autocast would cast them (the casts' backward returns the adapter's gradients in
    its own dtype)."""
    adapter = next(name for name in layer.active_adapters if name in layer.lora_A)
    dtype = None if args or kwargs else _compute_dtype(layer, x, adapter)
    if dtype is None:
        return type(layer).forward(layer, x, *args, **kwargs)
    base = layer.base_layer
    operands = (
        x.to(dtype),
        base.weight.to(dtype),
        None if base.bias is None else base.bias.to(dtype),
        layer.lora_A[adapter].weight.to(dtype),
        layer.lora_B[adapter].weight.to(dtype),
    )
    with torch.autocast(x.device.type, enabled=False):
        return FusedLoraLinear.apply(*operands, layer.scaling[adapter])


@dataclass(frozen=True)
class LoraSwitches:
    """The LoRA layers a training step switches: `fused` to `fused_lora_forward`, `uncast` to PEFT's
    forward without its input cast (a copy to float32 that bf16 autocast undoes)."""

    fused: tuple[Any, ...] = ()
    uncast: tuple[Any, ...] = ()

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The switches while the block runs (a training step: forward and backward, so a checkpointed
        layer recomputes with them too); PEFT's own behaviour after, also on error."""
        casts = [layer.cast_input_dtype_enabled for layer in self.uncast]
        for layer in self.fused:
            layer.forward = MethodType(fused_lora_forward, layer)
        for layer in self.uncast:
            layer.cast_input_dtype_enabled = False
        try:
            yield
        finally:
            for layer in self.fused:
                del layer.forward
            for layer, cast in zip(self.uncast, casts, strict=True):
                layer.cast_input_dtype_enabled = cast


def lora_switches(model: Any, *, fuse: bool, skip_cast: bool = False) -> LoraSwitches:
    """`model`'s LoRA layers to switch in a training step: the fusable ones if `fuse`, all if `skip_cast`."""
    if not (fuse or skip_cast):
        return LoraSwitches()
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    fused = tuple(m for m in layers if fusable(m)) if fuse else ()
    return LoraSwitches(fused, tuple(layers) if skip_cast else ())
