"""Packed (padding-free) attention: each row of a flattened micro-batch attends to itself only, causally,
exactly as it would alone, also when the rows' common prefix is computed once (the GPU kernel's own check is
tests/gpu/test_packed_attention_gpu.py)."""

from __future__ import annotations

import pytest
import torch
from packed_rows import rows_with_prefix

from sl_scaling.training.data import IGNORE_INDEX
from sl_scaling.training.packed import (
    SHARED_PREFIX,
    WithRowBoundaries,
    packed_attention,
    packed_attention_forward,
    row_boundaries,
    shared_prefix_layout,
)


class Attention(torch.nn.Module):
    """What transformers hands an attention function: a module with a config."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"_attn_implementation": "sdpa"})()


def test_row_boundaries_are_where_positions_restart() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    boundaries = row_boundaries(positions)
    assert boundaries["cu_seq_lens_q"].tolist() == [0, 3, 5, 9]
    assert boundaries["cu_seq_lens_q"].dtype == torch.int32
    assert boundaries["max_length_q"] == boundaries["max_length_k"] == 4


def test_each_packed_row_attends_as_it_would_alone_with_grouped_kv_heads() -> None:
    torch.manual_seed(0)
    lengths, heads, kv_heads, dim = [5, 1, 7, 3], 4, 2, 8
    tokens = sum(lengths)
    query = torch.randn(1, heads, tokens, dim)
    key, value = torch.randn(1, kv_heads, tokens, dim), torch.randn(1, kv_heads, tokens, dim)
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    out, _ = packed_attention_forward(
        Attention(), query, key, value, None, scaling=0.3, **row_boundaries(positions)
    )
    assert out.shape == (1, tokens, heads, dim)
    start = 0
    for n in lengths:
        rows = slice(start, start + n)
        alone = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, rows], key[:, :, rows], value[:, :, rows], is_causal=True, scale=0.3, enable_gqa=True
        )
        torch.testing.assert_close(out[:, rows], alone.transpose(1, 2))
        start += n


def test_packed_attention_needs_the_row_boundaries() -> None:
    query = torch.randn(1, 2, 4, 8)
    with pytest.raises(RuntimeError, match="row boundaries"):
        packed_attention_forward(Attention(), query, query, query, None)


def test_packed_attention_is_on_only_inside_the_block() -> None:
    module = Attention()
    with packed_attention(module):
        assert module.config._attn_implementation == "slscale_packed"
    assert module.config._attn_implementation == "sdpa"
    with pytest.raises(KeyError), packed_attention(module):
        raise KeyError("a failed step")
    assert module.config._attn_implementation == "sdpa"


def flattened(rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """A padding-free micro-batch of (token ids, labels) rows, as TRL's collator makes it."""
    ids = [i for row, _ in rows for i in row]
    labels = [label for _, row_labels in rows for label in row_labels]
    positions = [p for row, _ in rows for p in range(len(row))]
    return {
        name: torch.tensor([v])
        for name, v in (("input_ids", ids), ("labels", labels), ("position_ids", positions))
    }


M = IGNORE_INDEX
SYSTEM = [5, 6, 7]


def test_rows_sharing_an_unscored_start_keep_every_token_and_label_with_the_start_once() -> None:
    rows = [
        ([*SYSTEM, 1, 2, 3], [M, M, M, M, 2, 3]),
        ([*SYSTEM, 4, 5], [M, M, M, M, 5]),
        ([*SYSTEM, 1, 9], [M] * 4 + [9]),
    ]
    batch = shared_prefix_layout(flattened(rows), row_boundaries(flattened(rows)["position_ids"]))
    assert batch[SHARED_PREFIX]["prefix_slots"].shape == (3, 3)
    assert batch["input_ids"][0].tolist() == [*SYSTEM, 1, 2, 3, 4, 5, 1, 9]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5, 3, 4, 3, 4]  # still from each row's start
    assert batch["cu_seq_lens_q"].tolist() == [0, 6, 8, 10] and batch["max_length_q"] == 6
    assert batch["cu_seq_lens_k"].tolist() == [0, 6, 11, 16] and batch["max_length_k"] == 6
    assert list(zip(rows_with_prefix(batch), rows_with_prefix(batch, "labels"), strict=True)) == rows
    # The scored labels, hence the step's normalising token count, are the rows' own.
    assert (batch["labels"] != M).sum() == sum(label != M for _, labels in rows for label in labels)


def test_no_prefix_is_shared_that_a_row_scores_or_that_would_leave_a_row_empty() -> None:
    def shared_length(rows: list[tuple[list[int], list[int]]]) -> int:
        batch = WithRowBoundaries(lambda _: flattened(rows), share_prefix=True)([])
        return batch[SHARED_PREFIX]["prefix_slots"].shape[1] if SHARED_PREFIX in batch else 0

    prompt = ([*SYSTEM, 1, 2], [M] * 5)
    assert shared_length([prompt, ([*SYSTEM, 1, 4], [M] * 5)]) == 4  # the next label unscored too
    assert shared_length([prompt, ([*SYSTEM, 1, 4], [M] * 4 + [4])]) == 3  # row 2 scores its 5th token
    assert shared_length([prompt, ([*SYSTEM, 1, 4], [M, 6, 7, 1, 4])]) == 0  # the full loss: nothing shared
    assert shared_length([prompt, prompt]) == 4  # identical rows keep a token each
    assert shared_length([prompt]) == 0
    assert shared_length([prompt, ([9, *SYSTEM], [M] * 4)]) == 0


def test_each_row_attends_to_the_shared_prefix_as_to_its_own_start() -> None:
    torch.manual_seed(0)
    prefix, lengths, heads, kv_heads, dim = 4, [7, 5, 9, 6], 4, 2, 8
    rows = [
        ([*SYSTEM, 0, *list(range(10, 10 + n - prefix))], [M] * (prefix + 1) + [1] * (n - prefix - 1))
        for n in lengths
    ]
    whole = flattened(rows)
    boundaries = row_boundaries(whole["position_ids"])
    shared = shared_prefix_layout(whole, boundaries)
    kept = shared["input_ids"].shape[1]
    assert kept == sum(lengths) - 3 * prefix
    # Random projections of each token, identical for the shared prefix's tokens in every row.
    query = torch.randn(1, heads, kept, dim, dtype=torch.float64, requires_grad=True)
    key = torch.randn(1, kv_heads, kept, dim, dtype=torch.float64, requires_grad=True)
    value = torch.randn(1, kv_heads, kept, dim, dtype=torch.float64, requires_grad=True)
    index = shared[SHARED_PREFIX]["key_index"]  # each row's token → where the shared layout has it
    grad_out = torch.randn(1, sum(lengths), heads, dim, dtype=torch.float64)
    alone, _ = packed_attention_forward(
        Attention(), query[:, :, index], key[:, :, index], value[:, :, index], None, **boundaries
    )
    out, _ = packed_attention_forward(Attention(), query, key, value, None, **shared)
    # Each row's outputs are those it has alone; its prefix's are the first row's.
    own = torch.ones(sum(lengths), dtype=torch.bool)
    for start in boundaries["cu_seq_lens_q"][1:-1].tolist():
        own[start : start + prefix] = False
    torch.testing.assert_close(out, alone[:, own])
    # Gradients: the shared prefix's keys and values get what every row's attention sends them (the rows'
    # copies of the prefix's queries are not computed, so their outputs take no gradient in either layout).
    grads = torch.autograd.grad(out, (query, key, value), grad_out[:, own])
    expected = torch.autograd.grad(alone, (query, key, value), grad_out * own[None, :, None, None])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
