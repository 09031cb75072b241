"""The in-place KV cache of the HF engine: what attention sees equals `DynamicCache`'s concatenation, so
`generate` draws the same tokens."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers.cache_utils import DynamicCache

from sl_scaling.engines.base import Sampling
from sl_scaling.engines.hf import HFEngine
from sl_scaling.engines.kv_cache import GrowingCache, GrowingLayer


def states(length: int, seed: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of `length` new positions: (batch, heads, positions, head dim)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 2, length, 4)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def test_a_layer_hands_attention_the_concatenation_through_growth_crop_and_reselection() -> None:
    layer, reference = GrowingLayer(room=2), DynamicCache()
    for step, length in enumerate([5, 1, 1, 1, 4, 1]):  # the prompt, then more than `room` (it must grow)
        keys, values = layer.update(*states(length, step))
        expected_keys, expected_values = reference.update(*states(length, step), layer_idx=0)
        assert torch.equal(keys, expected_keys) and torch.equal(values, expected_values)
    layer.crop(-3), reference.crop(-3)
    keys, _ = layer.update(*states(2, 10))
    assert torch.equal(keys, reference.update(*states(2, 10), layer_idx=0)[0])
    layer.batch_select_indices(torch.tensor([2, 0])), reference.batch_select_indices(torch.tensor([2, 0]))
    keys, values = layer.update(*states(1, 11, batch=2))
    expected_keys, expected_values = reference.update(*states(1, 11, batch=2), layer_idx=0)
    assert torch.equal(keys, expected_keys) and torch.equal(values, expected_values)


def test_generate_draws_the_same_tokens_as_with_transformers_cache(tiny_model: Path) -> None:
    engine = HFEngine.load(str(tiny_model), device="cpu")
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]]
    width = max(map(len, prompts))
    ids = torch.tensor([[engine.pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    # What the engine samples with.
    config = engine._generation_config(Sampling(temperature=1.0, max_new_tokens=40))
    config.min_new_tokens = 40  # the tiny model would end some rows early
    outputs = []
    for cache in (None, GrowingCache(new_tokens=8)):  # room for 8: it grows along the way
        torch.manual_seed(7)
        with torch.inference_mode():
            outputs.append(
                engine.model.generate(
                    input_ids=ids, attention_mask=mask, generation_config=config, past_key_values=cache
                )
            )
    assert outputs[0].shape[1] > width + 8 and torch.equal(outputs[0], outputs[1])
