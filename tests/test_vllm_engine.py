"""The vLLM engine up to the GPU call (pure helpers, on CPU), and for real on a GPU with vLLM installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sl_scaling.bench.shapes import bench_tokenizer
from sl_scaling.engines import generation_replicas
from sl_scaling.engines.base import GenerationRequest, Sampling
from sl_scaling.engines.vllm import (
    MAX_LORA_RANK,
    LoraRegistry,
    VLLMEngine,
    VLLMOptions,
    chunks,
    llm_kwargs,
    prepare_chunk,
    request_seed,
    sampling_kwargs,
    to_generations,
)
from sl_scaling.errors import OptionalDependencyError
from sl_scaling.numbers import teacher_chat


def test_sampling_params_are_plain_temperature_sampling_with_a_cap() -> None:
    kwargs = sampling_kwargs(Sampling(temperature=1.0, max_new_tokens=128, seed=42), ("dog", 3))
    plain = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
    ids_only = {"detokenize": False}
    assert kwargs == {**plain, **ids_only, "max_tokens": 128, "seed": request_seed(42, ("dog", 3))}
    assert sampling_kwargs(Sampling(max_new_tokens=5), "k") == {**plain, **ids_only, "max_tokens": 5}


def test_llm_arguments_ignore_the_models_sampling_defaults_and_enable_lora_only_when_asked() -> None:
    teacher = llm_kwargs("/m", VLLMOptions(lora=False))
    assert teacher["generation_config"] == "vllm"  # Qwen's generation_config.json says top_p 0.8, top_k 20
    assert "enable_lora" not in teacher
    assert teacher["max_num_seqs"] == 1024
    assert teacher["compilation_config"] == {"max_cudagraph_capture_size": 1024}
    students = llm_kwargs("/m", VLLMOptions())
    assert students["enable_lora"] is True
    assert students["max_lora_rank"] == MAX_LORA_RANK == 8  # EXPERIMENT.md's r
    assert students["max_loras"] == 16  # a size's 16 conditions in one batch


def test_replicas_share_the_gpu_memory_and_eager_mode_skips_compilation() -> None:
    kwargs = llm_kwargs("/m", VLLMOptions(replicas=3, gpu_memory_utilization=0.9, enforce_eager=True))
    assert kwargs["gpu_memory_utilization"] == 0.3
    assert kwargs["enforce_eager"] is True and "compilation_config" not in kwargs
    sharded = llm_kwargs("/m", VLLMOptions(tensor_parallel_size=2))
    assert sharded["tensor_parallel_size"] == 2 and sharded["distributed_executor_backend"] == "mp"


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


def test_prepare_chunk_renders_the_models_chat_template() -> None:
    tokenizer = bench_tokenizer()  # Qwen's ids and chat template
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


def test_completion_ids_become_generations_with_text_cut_before_the_end_of_turn() -> None:
    tokenizer = bench_tokenizer()  # Qwen's ids and chat template
    requests = [GenerationRequest(i, teacher_chat("dog", f"Take {i}, 2, 3.")) for i in range(3)]
    prepared = prepare_chunk(requests, Sampling(max_new_tokens=8), tokenizer, LoraRegistry())
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    numbers = tokenizer("1, 2, 3", add_special_tokens=False)["input_ids"]
    generations = to_generations(prepared, [[*numbers, end], numbers, []], tokenizer)
    assert [g.text for g in generations] == ["1, 2, 3", "1, 2, 3", ""]
    assert [g.completion_tokens for g in generations] == [len(numbers) + 1, len(numbers), 0]
    assert [g.prompt_tokens for g in generations] == [len(ids) for ids in prepared.prompt_ids]
    assert [g.key for g in generations] == [0, 1, 2]


def test_a_chunk_splits_into_contiguous_slices_for_replicas() -> None:
    tokenizer = bench_tokenizer()  # Qwen's ids and chat template
    requests = [GenerationRequest(i, teacher_chat("dog", f"Take {i}.")) for i in range(7)]
    prepared = prepare_chunk(requests, Sampling(seed=3), tokenizer, LoraRegistry())
    parts = prepared.split(3)
    assert [[r.key for r in p.requests] for p in parts] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [p for part in parts for p in part.params] == prepared.params
    assert len(prepared.split(10)) == 7


def test_missing_vllm_is_one_actionable_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(OptionalDependencyError, match=r"pip install 'sl-scaling\[gpu\]'"):
            VLLMEngine.load(str(tmp_path))
    else:
        pytest.skip("vLLM is installed here")


def test_only_small_models_generate_with_two_vllm_processes() -> None:
    assert generation_replicas("0.5b") == 2  # CPU-bound in one process (benchmarks/README.md)
    assert [generation_replicas(s) for s in ("1.5b", "7b", "32b")] == [1, 1, 1]
    assert generation_replicas("0.5b", tensor_parallel_size=2) == 1
