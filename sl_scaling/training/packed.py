"""Padding-free training: a micro-batch's rows are concatenated into one sequence (TRL's `padding_free`), so
no matmul spends time on padding — ~14% of a padded micro-batch's tokens at 60 rows of ~143 tokens.

Each row still attends only to itself, causally, from where it starts: on a GPU, PyTorch's FlashAttention
varlen kernel (`torch.nn.attention.varlen`) given the rows' boundaries; on the CPU, which has no such kernel,
SDPA with the same block-diagonal causal mask (slow, but the CPU tests run the whole path). The loss is the
padded batch's: TRL's collator masks each row's first label, which the padded shift never scores either.

Only the training step uses it (`packed_attention`); evaluation and generation keep SDPA on padded batches.
TRL logs that padding-free batches want a FlashAttention implementation it knows by name: this is one (the
stage's log file has that line; tests/test_packed.py and tests/gpu/test_packed_attention_gpu.py the proof).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch
from transformers import AttentionInterface

#: The name under which transformers' attention modules find `packed_attention_forward`.
PACKED_ATTENTION = "slscale_packed"


def varlen_kernel_available() -> bool:
    """PyTorch ≥ 2.10 ships FlashAttention's varlen kernel for CUDA GPUs of compute capability ≥ 8.0."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0):
        return False
    return importlib.util.find_spec("torch.nn.attention.varlen") is not None


def row_boundaries(position_ids: torch.Tensor) -> dict[str, Any]:
    """Where each row of a flattened micro-batch starts (its position ids restart at 0), as transformers'
    FlashAttention keyword arguments: computed once per micro-batch, on the CPU by `WithRowBoundaries`."""
    positions = position_ids.reshape(-1)
    starts = (positions == 0).nonzero().reshape(-1)
    end = torch.tensor([positions.numel()], device=positions.device)
    cumulative = torch.cat([starts, end]).to(torch.int32)
    longest = int(cumulative.diff().max())
    return {
        "cu_seq_lens_q": cumulative,
        "cu_seq_lens_k": cumulative,
        "max_length_q": longest,
        "max_length_k": longest,
    }


class WithRowBoundaries:
    """A padding-free collator whose micro-batches carry their rows' boundaries: found on the CPU where the batch
    is made, not on the GPU by the training step, where the longest row's length (a Python int) is a sync."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        batch = self.collate(features)
        return {**batch, **row_boundaries(batch["position_ids"])}


@cache
def _varlen_parameters() -> frozenset[str]:
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _kernel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cumulative: torch.Tensor,
    longest: int,
    scale: float,
) -> torch.Tensor:
    """Causal, grouped-KV varlen attention in whichever form this PyTorch's `varlen_attn` takes it (2.10 had
    `is_causal`; later versions `window_size=(-1, 0)`, `enable_gqa` and `scale`)."""
    from torch.nn.attention.varlen import varlen_attn

    names = _varlen_parameters()
    options: dict[str, Any] = {"window_size": (-1, 0)} if "window_size" in names else {"is_causal": True}
    if "enable_gqa" in names:
        options["enable_gqa"] = True
    if "scale" in names:
        options["scale"] = scale
    elif scale != query.shape[-1] ** -0.5:
        raise RuntimeError(
            "this PyTorch's varlen attention takes no scale, and the model's is not the default"
        )
    return varlen_attn(query, key, value, cumulative, cumulative, longest, longest, **options)


def _masked_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cumulative: torch.Tensor, scale: float
) -> torch.Tensor:
    """The same attention through SDPA and a block-diagonal causal mask (the CPU's path)."""
    tokens = query.shape[0]
    row = torch.zeros(tokens, dtype=torch.long, device=query.device)
    row[cumulative[1:-1].long()] = 1
    row = row.cumsum(0)
    position = torch.arange(tokens, device=query.device)
    mask = (row[:, None] == row[None, :]) & (position[:, None] >= position[None, :])
    out = torch.nn.functional.scaled_dot_product_attention(
        query.transpose(0, 1),
        key.transpose(0, 1),
        value.transpose(0, 1),
        attn_mask=mask,
        scale=scale,
        enable_gqa=True,
    )
    return out.transpose(0, 1)


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface for one flattened micro-batch: [1, heads, tokens, dim] in,
    [1, tokens, heads, dim] out."""
    if "cu_seq_lens_q" not in kwargs or query.shape[0] != 1:
        raise RuntimeError("packed attention needs one flattened micro-batch and its row boundaries")
    if dropout:
        raise RuntimeError("packed attention has no dropout (Qwen 2.5's attention dropout is 0)")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    cumulative, longest = kwargs["cu_seq_lens_q"], kwargs["max_length_q"]
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, dim]
    if q.is_cuda:
        out = _kernel_attention(q, k, v, cumulative, longest, scale)
    else:
        out = _masked_attention(q, k, v, cumulative, scale)
    return out.unsqueeze(0), None


AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)


@contextmanager
def packed_attention(model: Any) -> Iterator[None]:
    """The model's attention layers use `packed_attention_forward` while the block runs (a training step:
    forward and backward, so a checkpointed layer recomputes with it too)."""
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = PACKED_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = saved
