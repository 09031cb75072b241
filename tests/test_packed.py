"""Packed (padding-free) attention: each row of a flattened micro-batch attends to itself only, causally,
exactly as it would alone (the GPU kernel's own check is tests/gpu/test_packed_attention_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from sl_scaling.training.packed import packed_attention, packed_attention_forward, row_boundaries


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
