"""The fused LoRA layer (one autograd function; `addmm_` adds the adapter term): the same outputs and
gradients as PEFT's own forward up to rounding, with no activation-sized copy, only inside the block, and only
for layers and calls it can fuse (the GPU's bf16 check is tests/gpu/test_fused_lora_gpu.py; one whole
training step is in tests/test_batch_order.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model

from sl_scaling.training.fused_lora import LoraSwitches, fusable, fused_lora_forward, lora_switches


class Block(torch.nn.Module):
    """Two linear layers, as in an MLP: enough for PEFT to adapt both."""

    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(16, 24, bias=True)
        self.down = torch.nn.Linear(24, 16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def adapted(**lora: Any) -> Any:
    torch.manual_seed(0)
    model = get_peft_model(Block(), LoraConfig(r=4, lora_alpha=8, target_modules=["up", "down"], **lora))
    with torch.no_grad():  # B starts at zero; a non-zero B makes the adapter term count
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    return model


def outputs_and_grads(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_forward_and_backward_equal_pefts() -> None:
    model = adapted().double()  # float64: the sums' other order is invisible, a wrong term is not
    # batch × tokens × features, as a transformer layer sees them
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    expected, expected_grads = outputs_and_grads(model, x)
    with lora_switches(model, fuse=True).applied():
        switched = [m for m in model.modules() if getattr(m.forward, "__func__", None) is fused_lora_forward]
        out, grads = outputs_and_grads(model, x)
    assert len(switched) == 2  # both adapted layers
    torch.testing.assert_close(out, expected)
    assert grads.keys() == expected_grads.keys() and len(grads) == 4
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name])


def test_under_bf16_autocast_it_is_as_close_to_float32_as_pefts() -> None:
    """As in training on a GPU: bf16 matmuls, float32 adapter weights whose gradients stay float32 — no
    further from the float32 layer than PEFT's own bf16 forward is (relative errors over 1,024 tokens: a few
    tokens' errors are too noisy to compare; over 20 inputs the fused layer's worst was 1.36× PEFT's)."""
    x = torch.randn(4, 256, 16, generator=torch.Generator().manual_seed(0))
    exact, exact_grads = outputs_and_grads(adapted(), x)
    model = adapted()
    model.base_model.model.to(torch.bfloat16)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
    with torch.autocast("cpu", torch.bfloat16):
        peft, peft_grads = outputs_and_grads(model, x.bfloat16())
        with lora_switches(model, fuse=True).applied():
            fused, fused_grads = outputs_and_grads(model, x.bfloat16())

    def error(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a.float() - b.float()).norm() / b.float().norm()).item()

    assert fused.dtype == torch.bfloat16
    assert error(fused, exact) <= 1.5 * error(peft, exact)
    for name in exact_grads:
        assert fused_grads[name].dtype == torch.float32
        assert error(fused_grads[name], exact_grads[name]) <= 1.5 * error(peft_grads[name], exact_grads[name])


def activation_passes(model: Any, x: torch.Tensor) -> int:
    """Elementwise passes (copies, sums, scalings) over tensors of a layer's input or output size in one
    forward and backward — memory-bound kernels a GPU waits on."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(x).square().sum().backward()
    tokens = x.shape[0] * x.shape[1]
    elementwise = ("aten::copy_", "aten::clone", "aten::add", "aten::add_", "aten::mul")
    return sum(
        event.count
        for event in prof.key_averages(group_by_input_shape=True)
        if event.key in elementwise
        and event.input_shapes
        and math.prod(event.input_shapes[0]) >= tokens * x.shape[-1]
    )


def test_the_fused_layer_makes_no_activation_sized_pass_of_its_own() -> None:
    """PEFT's forward writes the adapter term's scaling and the sum, and its backward the scaling's gradient
    and the sum of the input's two gradients: passes (at least three per layer, two layers here) that the
    fused function does in its matmuls' epilogues; its graph holds no `CopySlices` (an in-place sum into a
    view of the base output, whose backward clones the output's gradient)."""
    model = adapted()
    x = torch.randn(4, 64, 16, requires_grad=True)
    peft = activation_passes(model, x)
    with lora_switches(model, fuse=True).applied():
        fused = activation_passes(model, x)
        graph = model(x).grad_fn
    nodes, seen = [graph], set()
    while nodes:
        node = nodes.pop()
        if node is not None and node not in seen:
            seen.add(node)
            nodes.extend(next_node for next_node, _ in node.next_functions)
    names = {type(node).__name__ for node in seen}
    assert "FusedLoraLinearBackward" in names and "CopySlices" not in names
    assert fused <= peft - 2 * 3


def test_a_base_layer_that_trains_keeps_pefts_forward() -> None:
    """The fused function gives a frozen base layer no gradient: a trainable one is not fused."""
    model = adapted()
    model.base_model.model.up.base_layer.weight.requires_grad_(True)
    switches = lora_switches(model, fuse=True)
    assert switches.fused == (model.base_model.model.down,)
    with switches.applied():
        _, grads = outputs_and_grads(model, torch.randn(2, 5, 16))
    assert grads["base_model.model.up.base_layer.weight"].abs().sum() > 0


def test_the_switches_are_scoped_and_undone_on_error() -> None:
    model = adapted()
    switches = lora_switches(model, fuse=True, skip_cast=True)
    assert len(switches.fused) == len(switches.uncast) == 2
    with pytest.raises(RuntimeError, match="inside"), switches.applied():
        assert all(layer.forward.__func__ is fused_lora_forward for layer in switches.fused)
        assert not any(layer.cast_input_dtype_enabled for layer in switches.uncast)
        raise RuntimeError("inside")
    assert all("forward" not in vars(layer) for layer in switches.fused)
    assert all(layer.cast_input_dtype_enabled for layer in switches.uncast)
    assert lora_switches(model, fuse=False) == LoraSwitches()  # neither switch: nothing to find
    assert lora_switches(model, fuse=False, skip_cast=True).fused == ()


@pytest.mark.filterwarnings("ignore:`lora_bias=True`")
def test_layers_it_cannot_fuse_keep_pefts_forward() -> None:
    assert not any(fusable(m) for m in adapted(lora_dropout=0.1).modules())  # dropout between x and A
    assert not any(fusable(m) for m in adapted(use_dora=True).modules())
    assert not any(fusable(m) for m in adapted(lora_bias=True).modules())


def test_mixed_dtypes_without_autocast_run_pefts_forward() -> None:
    """Evaluation in bf16 with float32 adapters: PEFT casts the input; addmm could not mix them."""
    model = adapted()
    model.base_model.model.to(torch.bfloat16)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
    x = torch.randn(2, 5, 16, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = model(x)
        with lora_switches(model, fuse=True).applied():
            out = model(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
