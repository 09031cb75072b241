"""The vLLM engine up to the GPU call (pure helpers, on CPU), and for real on a GPU with vLLM installed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from sl_scaling.engines.base import GenerationRequest, Sampling
from sl_scaling.engines.vllm import (
    LoraRegistry,
    VLLMEngine,
    chunks,
    prepare_chunk,
    request_seed,
    sampling_kwargs,
    to_generation,
)
from sl_scaling.errors import OptionalDependencyError
from sl_scaling.numbers import teacher_chat


def test_sampling_params_are_plain_temperature_sampling_with_a_cap() -> None:
    kwargs = sampling_kwargs(Sampling(temperature=1.0, max_new_tokens=128, seed=42), ("dog", 3))
    plain = {"temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.0}
    assert kwargs == {**plain, "max_tokens": 128, "seed": request_seed(42, ("dog", 3))}
    assert sampling_kwargs(Sampling(max_new_tokens=5), "k") == {**plain, "max_tokens": 5}


def test_request_seeds_are_stable_per_row_and_fit_31_bits() -> None:
    assert request_seed(42, ("dog", 3)) == request_seed(42, ("dog", 3))
    seeds = {request_seed(42, ("dog", i)) for i in range(1000)} | {request_seed(43, ("dog", 0))}
    assert len(seeds) == 1001
    assert all(0 <= s < 2**31 for s in seeds)


def test_each_adapter_path_gets_one_stable_lora_id() -> None:
    registry = LoraRegistry()
    first = registry.request_kwargs("/a/epoch-1")
    assert first == {"lora_name": "adapter-1", "lora_int_id": 1, "lora_path": "/a/epoch-1"}
    assert registry.request_kwargs("/a/epoch-2")["lora_int_id"] == 2
    assert registry.request_kwargs("/a/epoch-1") == first
    assert registry.request_kwargs(None) is None


def test_chunks_group_requests_by_adapter() -> None:
    requests = [GenerationRequest(i, [], adapter=["b", None, "a"][i % 3]) for i in range(7)]
    cut = chunks(requests, 3)
    assert [len(c) for c in cut] == [3, 3, 1]
    assert [r.adapter for c in cut for r in c] == [None, None, "a", "a", "b", "b", "b"]
    assert sorted(r.key for c in cut for r in c) == list(range(7))


def test_prepare_chunk_renders_the_models_chat_template(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    requests = [
        GenerationRequest(("dog", 0), teacher_chat("dog", "Take 1, 2, 3."), adapter="/x"),
        GenerationRequest(("neutral", 0), teacher_chat("neutral", "Take 1, 2, 3.")),
    ]
    prepared = prepare_chunk(requests, Sampling(max_new_tokens=9, seed=1), tokenizer, LoraRegistry())
    texts = [tokenizer.decode(ids) for ids in prepared.prompt_ids]
    assert texts[0].startswith("<|im_start|>system\nYou love dogs.")
    assert texts[1].startswith("<|im_start|>system\nYou are Qwen")  # Qwen's default system prompt
    assert all(text.endswith("<|im_start|>assistant\n") for text in texts)
    assert [p["max_tokens"] for p in prepared.params] == [9, 9]
    assert prepared.loras == [{"lora_name": "adapter-1", "lora_int_id": 1, "lora_path": "/x"}, None]


def test_outputs_become_generations_with_token_counts() -> None:
    output = SimpleNamespace(outputs=[SimpleNamespace(text="1, 2, 3", token_ids=[5, 6, 7, 8])])
    generation = to_generation(GenerationRequest("k", []), [1, 2], output)
    assert (generation.key, generation.text, generation.prompt_tokens, generation.completion_tokens) == (
        "k",
        "1, 2, 3",
        2,
        4,
    )


def test_missing_vllm_is_one_actionable_error(tiny_model: Path) -> None:
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(OptionalDependencyError, match=r"pip install 'sl-scaling\[gpu\]'"):
            VLLMEngine.load(str(tiny_model))
    else:
        pytest.skip("vLLM is installed here")


@pytest.mark.gpu
def test_vllm_generates_for_the_base_model_and_an_adapter(tiny_model: Path) -> None:
    pytest.importorskip("vllm")
    engine = VLLMEngine.load(str(tiny_model), batch_size=8)
    requests = [GenerationRequest(i, teacher_chat("dog", f"Take {i}, 2, 3.")) for i in range(10)]
    batches = list(engine.generate(requests, Sampling(max_new_tokens=16, seed=1)))
    assert [len(b) for b in batches] == [8, 2]
    assert all(g.completion_tokens <= 16 and g.prompt_tokens > 0 for b in batches for g in b)
