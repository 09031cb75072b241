"""Padding-free training, the default on a GPU: PyTorch's varlen FlashAttention kernel gives each row of a
flattened micro-batch the attention SDPA gives it alone, forward and backward, also when the rows' common prefix
is computed once; and a short training on `slscale train`'s path ends as close to the padded training (or the
unshared one) as the padded one ends to another split of the same step (60 × 1 against 20 × 3). Run on the lent
H200; skipped on CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from short_training import assert_trains_like_without

from sl_scaling.training.data import IGNORE_INDEX
from sl_scaling.training.packed import (
    SHARED_PREFIX,
    packed_attention_forward,
    row_boundaries,
    shared_prefix_layout,
    varlen_kernel_available,
)

pytestmark = pytest.mark.gpu

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def per_row_sdpa(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: list[int]
) -> torch.Tensor:
    """Each row alone through SDPA, causal: [1, tokens, heads, dim] like the attention interface's output."""
    outs, start = [], 0
    for n in lengths:
        rows = slice(start, start + n)
        outs.append(
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, rows], key[:, :, rows], value[:, :, rows], is_causal=True, enable_gqa=True
            )
        )
        start += n
    return torch.cat(outs, dim=2).transpose(1, 2)


def on_gpu(kwargs: dict) -> dict:
    """The attention's keyword arguments as the Trainer hands them to the model: tensors on the GPU."""
    return {
        k: on_gpu(v) if isinstance(v, dict) else v.cuda() if isinstance(v, torch.Tensor) else v
        for k, v in kwargs.items()
    }


@pytest.mark.parametrize("prefix", [0, 23])
def test_the_varlen_kernel_attends_each_row_as_sdpa_does_alone(prefix: int) -> None:
    """`prefix` > 0: the rows share their first tokens (Qwen's system prompt: 23), computed once."""
    assert varlen_kernel_available()
    torch.manual_seed(0)
    lengths = torch.randint(100, 180, (60,)).tolist()  # a 7b micro-batch: 28 heads, 4 KV heads of 128
    heads, kv_heads, dim = 28, 4, 128
    ids = [
        i for n in lengths for i in list(range(prefix)) + torch.randint(1000, 2000, (n - prefix,)).tolist()
    ]
    labels = [label for n in lengths for label in [IGNORE_INDEX] * (prefix + 1) + [1] * (n - prefix - 1)]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    whole = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": positions}
    layout = shared_prefix_layout(whole, row_boundaries(positions))
    tokens = layout["input_ids"].shape[1]
    assert tokens == sum(lengths) - 59 * prefix
    # Each row's tokens → where the layout has them (all its own without a prefix).
    index = layout[SHARED_PREFIX]["key_index"].cuda() if prefix else torch.arange(sum(lengths), device="cuda")
    starts = row_boundaries(positions)["cu_seq_lens_q"][1:-1, None].long()
    computed = torch.ones(sum(lengths), dtype=torch.bool)  # not the rows' copies of the prefix
    computed[(starts + torch.arange(prefix)).reshape(-1)] = False
    computed = computed.cuda()
    exact = [torch.randn(1, h, tokens, dim, device="cuda") for h in (heads, kv_heads, kv_heads)]
    grad_out = torch.randn(1, tokens, heads, dim, device="cuda")

    def run(attend: Attend, dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
        inputs = [t.detach().to(dtype).clone().requires_grad_() for t in exact]
        out = attend(*inputs)
        out.backward(grad_out.to(dtype))
        return out.float(), [t.grad.float() for t in inputs]

    def kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return packed_attention_forward(torch.nn.Module(), q, k, v, None, **on_gpu(layout))[0]

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Each whole row alone (its prefix copied in), then only the outputs the layout computes."""
        return per_row_sdpa(*(t[:, :, index] for t in (q, k, v)), lengths)[:, computed]

    reference, reference_grads = run(sdpa, torch.float32)

    def errors(attend: Attend) -> list[float]:
        """bf16's largest errors against the float32 reference: out, dq, dk, dv."""
        out, grads = run(attend, torch.bfloat16)
        return [(out - reference).abs().max().item()] + [
            (g - r).abs().max().item() for g, r in zip(grads, reference_grads, strict=True)
        ]

    kernel_errors, sdpa_errors = errors(kernel), errors(sdpa)
    print(
        f"bf16 errors against float32 per-row SDPA (out, dq, dk, dv): kernel {kernel_errors}, sdpa {sdpa_errors}"
    )
    # The kernel in bf16 is no further from exact than PyTorch's own bf16 attention.
    assert all(k <= 2 * s + 1e-3 for k, s in zip(kernel_errors, sdpa_errors, strict=True))


def test_padding_free_training_ends_where_padded_training_does(tmp_path: Path) -> None:
    assert_trains_like_without(tmp_path, "padding_free")


def test_training_with_the_shared_prefix_ends_where_training_without_it_does(tmp_path: Path) -> None:
    assert_trains_like_without(tmp_path, "share_prefix")
