"""LoRA's adapter term added inside the adapter's second matmul: `base.addmm_(x·Aᵀ, Bᵀ, alpha=scaling)`.

PEFT computes a LoRA layer as `base + B(A(x)) * scaling`: the product, the scaling and the sum are three
activation-sized tensors written and read again (and the scaling's backward a fourth), in every adapted
layer of every micro-batch — memory-bound kernels that a GPU waits on. One `addmm_` does the same sum in the
matmul's epilogue (cuBLAS' `beta = 1`), in place on the base layer's output, which no backward reads (an
out-of-place `addmm` would first copy it). Same rows, same loss, the same sum and its gradients; the adapter's
product is rounded once (with the sum) instead of twice, so values agree up to bf16 rounding (on the H200, 7
steps trained a bit-identical adapter: tests/gpu/test_fused_lora_gpu.py).

Only vanilla LoRA is fused (no dropout: EXPERIMENT.md's is 0; no DoRA, no LoRA bias), and only where the
matmul's operands agree in dtype or autocast casts them; any other layer or call runs PEFT's own forward.

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
    """A PEFT LoRA linear layer whose active adapters are plain `B(A(x)) * scaling` terms."""
    from peft.tuners.lora.layer import Linear

    if not isinstance(layer, Linear) or layer.merged or layer.disable_adapters or layer.lora_variant:
        return False
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    return all(
        isinstance(layer.lora_dropout[name], torch.nn.Identity) and layer.lora_B[name].bias is None
        for name in active
    )


def _operands_agree(layer: Any, x: torch.Tensor) -> bool:
    """addmm needs one dtype: autocast's, or the input's, the base weight's and the adapter's alike."""
    if torch.is_autocast_enabled(x.device.type):
        return True
    dtypes = {x.dtype, layer.base_layer.weight.dtype}
    dtypes |= {layer.lora_A[name].weight.dtype for name in layer.active_adapters if name in layer.lora_A}
    return len(dtypes) == 1


def fused_lora_forward(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """PEFT's `lora.Linear.forward` for vanilla LoRA, the adapter term summed by the matmul itself."""
    if args or kwargs or not _operands_agree(layer, x):
        return type(layer).forward(layer, x, *args, **kwargs)
    result = layer.base_layer(x)  # a fresh tensor no backward needs: the adapter terms go into it in place
    out = result.view(-1, result.shape[-1])
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue
        down = layer.lora_A[name](x)
        up = layer.lora_B[name].weight.to(out.dtype)  # autocast's cast, which an in-place op does not get
        out.addmm_(down.reshape(-1, down.shape[-1]), up.t(), alpha=layer.scaling[name])
    return result


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
