"""Padding-free training: a micro-batch's rows are concatenated into one sequence (TRL's `padding_free`), so
no matmul spends time on padding — ~14% of a padded micro-batch's tokens at 60 rows of ~143 tokens.

Each row still attends only to itself, causally, from where it starts: on a GPU, PyTorch's FlashAttention
varlen kernel (`torch.nn.attention.varlen`) given the rows' boundaries; on the CPU, which has no such kernel,
SDPA with the same block-diagonal causal mask (slow, but the CPU tests run the whole path). The loss is the
padded batch's: TRL's collator masks each row's first label, which the padded shift never scores either.

Every row starts with the same tokens — Qwen 2.5's default system prompt and the user header, 23 of a row's
~143 — and a row's first tokens see nothing after them: their hidden states are the same in every row. With
`share_prefix`, a micro-batch computes them once (`shared_prefix_layout`): the first row keeps them, the others
start after them, and each row's attention reads the shared prefix's keys and values as its own (gathered into
per-row key sequences; their gradients summed back, in a fixed order). Each row's forward is the same function
of the same inputs and the loss the same sum over the same labels, so the step's gradient is the same (up to
rounding), with ~16% fewer tokens through every matmul. Only prompt tokens are shared: a prefix whose labels or
next label would be scored (the `full` loss) is not.

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

from sl_scaling.training.data import IGNORE_INDEX

#: The name under which transformers' attention modules find `packed_attention_forward`.
PACKED_ATTENTION = "slscale_packed"
#: The micro-batch's key (passed through the model to the attention) describing a shared prefix's layout.
SHARED_PREFIX = "shared_prefix"


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


def _leading(flags: torch.Tensor) -> int:
    """How many of `flags` are true before the first false."""
    return int(flags.long().cumprod(0).sum())


def shared_prefix_length(batch: dict[str, Any], cumulative: torch.Tensor) -> int:
    """The longest prefix every row of a flattened micro-batch shares, whose tokens and the token after it are
    unscored (so no row's loss reads the prefix's outputs), leaving each row ≥ 1 token of its own; 0 if none."""
    starts, lengths = cumulative[:-1].long(), cumulative.diff().long()
    if len(starts) < 2:
        return 0
    width = int(lengths.min())
    window = starts[:, None] + torch.arange(width)
    ids, labels = batch["input_ids"].reshape(-1)[window], batch["labels"].reshape(-1)[window]
    same = _leading((ids == ids[0]).all(0))
    unscored = _leading((labels == IGNORE_INDEX).all(0))
    return max(0, min(same, unscored - 1, width - 1))


def shared_prefix_layout(batch: dict[str, Any], boundaries: dict[str, Any]) -> dict[str, Any]:
    """The micro-batch with its rows' common prefix computed once (module docstring), or as it was.

    The first row keeps the prefix; the others lose it (their tokens, labels and positions: a row's positions
    still count from its own start). Queries are then split by the shortened rows (`cu_seq_lens_q`), keys by
    the whole rows (`cu_seq_lens_k`): `key_index` gathers each row's keys, the shared prefix's then its own,
    and `prefix_slots` ([rows, prefix]) / `suffix_slots` say where the backward finds their gradients."""
    cumulative = boundaries["cu_seq_lens_q"]
    prefix = shared_prefix_length(batch, cumulative)
    if prefix == 0:
        return {**batch, **boundaries}
    tokens = int(cumulative[-1])
    prefix_slots = cumulative[:-1, None].long() + torch.arange(prefix)  # each row's copy of the prefix
    copies = prefix_slots[1:].reshape(-1)  # the ones not computed
    kept = torch.ones(tokens, dtype=torch.bool)
    kept[copies] = False
    kept_positions = kept.nonzero().reshape(-1)
    key_index = torch.empty(tokens, dtype=torch.long)
    key_index[kept_positions] = torch.arange(len(kept_positions))
    key_index[copies] = torch.arange(prefix).repeat(len(prefix_slots) - 1)
    lengths = cumulative.diff()
    query_lengths = torch.cat([lengths[:1], lengths[1:] - prefix])
    shortened = {
        name: value[:, kept_positions]
        if isinstance(value, torch.Tensor) and value.shape == (1, tokens)
        else value
        for name, value in batch.items()
    }
    return {
        **shortened,
        "cu_seq_lens_q": torch.cat([cumulative[:1], query_lengths.cumsum(0)]).to(torch.int32),
        "cu_seq_lens_k": cumulative,
        "max_length_q": int(query_lengths.max()),
        "max_length_k": boundaries["max_length_k"],
        SHARED_PREFIX: {
            "key_index": key_index,
            "prefix_slots": prefix_slots,
            "suffix_slots": (key_index >= prefix).nonzero().reshape(-1),  # the rows' own keys, in order
        },
    }


class WithRowBoundaries:
    """A padding-free collator whose micro-batches carry their rows' boundaries: found on the CPU where the batch
    is made, not on the GPU by the training step, where the longest row's length (a Python int) is a sync. With
    `share_prefix`, the rows' common prefix is laid out to be computed once (`shared_prefix_layout`)."""

    def __init__(self, collate: Any, *, share_prefix: bool = False) -> None:
        self.collate = collate
        self.share_prefix = share_prefix

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        batch = self.collate(features)
        boundaries = row_boundaries(batch["position_ids"])
        if self.share_prefix:
            return shared_prefix_layout(batch, boundaries)
        return {**batch, **boundaries}


class _SharedPrefixKeys(torch.autograd.Function):
    """Each row's keys (or values): the shared prefix's, then its own. The backward sums the prefix's gradients
    over the rows in one reduction (deterministic, unlike `index_select`'s atomic scatter)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        keys: torch.Tensor,
        key_index: torch.Tensor,
        prefix_slots: torch.Tensor,
        suffix_slots: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(prefix_slots, suffix_slots)
        ctx.shape = keys.shape
        return keys.index_select(0, key_index)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        prefix_slots, suffix_slots = ctx.saved_tensors
        rows, prefix = prefix_slots.shape
        out = grad.new_empty(ctx.shape)
        copies = grad.index_select(0, prefix_slots.reshape(-1)).view(rows, prefix, *grad.shape[1:])
        torch.sum(copies, dim=0, out=out[:prefix])
        torch.index_select(grad, 0, suffix_slots, out=out[prefix:])
        return out, None, None, None


def per_row_keys(tensor: torch.Tensor, shared: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """Keys or values laid out by `cu_seq_lens_k`: as they are, or each row's with the shared prefix's."""
    if shared is None:
        return tensor
    return _SharedPrefixKeys.apply(
        tensor, shared["key_index"], shared["prefix_slots"], shared["suffix_slots"]
    )


@cache
def _varlen_parameters() -> frozenset[str]:
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _kernel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    boundaries: dict[str, Any],
    scale: float,
) -> torch.Tensor:
    """Causal, grouped-KV varlen attention in whichever form this PyTorch's `varlen_attn` takes it (2.10 had
    `is_causal`; later versions `window_size=(-1, 0)`, `enable_gqa` and `scale`). Where a row has more keys
    than queries (a shared prefix), its queries are its last positions: FlashAttention aligns causality to the
    bottom right."""
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
    return varlen_attn(
        query,
        key,
        value,
        boundaries["cu_seq_lens_q"],
        boundaries["cu_seq_lens_k"],
        boundaries["max_length_q"],
        boundaries["max_length_k"],
        **options,
    )


def _rows_and_offsets(cumulative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each token of a flattened sequence: its row and how far into the row it is."""
    tokens = int(cumulative[-1])
    row = torch.zeros(tokens, dtype=torch.long, device=cumulative.device)
    row[cumulative[1:-1].long()] = 1
    row = row.cumsum(0)
    return row, torch.arange(tokens, device=cumulative.device) - cumulative.long()[row]


def _masked_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, boundaries: dict[str, Any], scale: float
) -> torch.Tensor:
    """The same attention through SDPA and the same mask, made explicit (the CPU's path): a query sees its own
    row's keys up to its position, counted from the row's end as the kernel does."""
    cu_q, cu_k = boundaries["cu_seq_lens_q"], boundaries["cu_seq_lens_k"]
    row_q, offset_q = _rows_and_offsets(cu_q)
    row_k, offset_k = _rows_and_offsets(cu_k)
    extra_keys = (cu_k.diff() - cu_q.diff()).long()[row_q]
    mask = (row_q[:, None] == row_k[None, :]) & (offset_k[None, :] <= (offset_q + extra_keys)[:, None])
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
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, dim]
    shared = kwargs.get(SHARED_PREFIX)
    k, v = per_row_keys(k, shared), per_row_keys(v, shared)
    attend = _kernel_attention if q.is_cuda else _masked_attention
    return attend(q, k, v, kwargs, scale).unsqueeze(0), None


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
