"""The vLLM engine: one `vllm.LLM` per size, serving the base model and every LoRA adapter.

vLLM is imported only inside `VLLMEngine.load`, so CPU installs never touch it. Everything before the
GPU call (prompt encoding, sampling parameters, LoRA request ids, chunking) is a pure helper here and
is unit-tested on CPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sl_scaling.engines.base import Generation, GenerationRequest, Sampling
from sl_scaling.engines.chat import encode_chat
from sl_scaling.errors import OptionalDependencyError

#: Requests handed to vLLM per call: its scheduler batches inside; we only need durable checkpoints.
DEFAULT_CHUNK = 4096
MAX_LORA_RANK = 8
MAX_LORAS = 4
MAX_MODEL_LEN = 2048


def request_seed(seed: int, key: Hashable) -> int:
    """A per-request seed: a row samples the same text whichever chunk or order it is generated in."""
    digest = hashlib.sha256(repr((seed, repr(key))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & (2**31 - 1)


def sampling_kwargs(sampling: Sampling, key: Hashable) -> dict[str, Any]:
    """`SamplingParams` arguments: temperature and a token cap, as the reference (no top-k/top-p)."""
    kwargs: dict[str, Any] = {
        "temperature": sampling.temperature,
        "max_tokens": sampling.max_new_tokens,
        "top_p": 1.0,  # pure temperature sampling: never the model's recommended top-p/top-k/penalty
        "repetition_penalty": 1.0,
    }
    if sampling.seed is not None:
        kwargs["seed"] = request_seed(sampling.seed, key)
    return kwargs


@dataclass
class LoraRegistry:
    """Stable LoRA ids (1, 2, …) per adapter path, so vLLM loads each adapter once and caches it."""

    ids: dict[str, int] = field(default_factory=dict)

    def request_kwargs(self, path: str | None) -> dict[str, Any] | None:
        """`LoRARequest` arguments for an adapter, or None for the base model."""
        if path is None:
            return None
        lora_id = self.ids.setdefault(path, len(self.ids) + 1)
        return {"lora_name": f"adapter-{lora_id}", "lora_int_id": lora_id, "lora_path": path}


def chunks(requests: Sequence[GenerationRequest], size: int) -> list[list[GenerationRequest]]:
    """Cut requests into checkpoints, grouped by adapter so a chunk rarely swaps adapters."""
    ordered = sorted(requests, key=lambda r: r.adapter or "")
    return [list(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def parallel_kwargs(tensor_parallel_size: int) -> dict[str, Any]:
    """`LLM` arguments to shard over GPUs of this machine. Multiprocessing, not vLLM's Ray backend:
    inside a Ray task (slscale run --executor ray) vLLM's Ray workers lose the task's placement."""
    if tensor_parallel_size <= 1:
        return {}
    return {"tensor_parallel_size": tensor_parallel_size, "distributed_executor_backend": "mp"}


@dataclass(frozen=True)
class PreparedChunk:
    """Everything `LLM.generate` receives for one chunk, as plain data (built and tested without vLLM)."""

    requests: list[GenerationRequest]
    prompt_ids: list[list[int]]
    params: list[dict[str, Any]]
    loras: list[dict[str, Any] | None]


def prepare_chunk(
    chunk: list[GenerationRequest], sampling: Sampling, tokenizer: Any, loras: LoraRegistry
) -> PreparedChunk:
    return PreparedChunk(
        requests=chunk,
        prompt_ids=[encode_chat(tokenizer, r.messages) for r in chunk],
        params=[sampling_kwargs(sampling, r.key) for r in chunk],
        loras=[loras.request_kwargs(r.adapter) for r in chunk],
    )


def to_generation(request: GenerationRequest, prompt_ids: Sequence[int], output: Any) -> Generation:
    """A `RequestOutput` → Generation (its first and only completion)."""
    completion = output.outputs[0]
    return Generation(
        key=request.key,
        text=completion.text,
        prompt_tokens=len(prompt_ids),
        completion_tokens=len(completion.token_ids),
    )


class VLLMEngine:
    """Completes chats with `vllm.LLM.generate`; yields after each chunk so callers can write it."""

    name = "vllm"

    def __init__(self, llm: Any, *, batch_size: int | None = None) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.chunk_size = batch_size or DEFAULT_CHUNK
        self.loras = LoraRegistry()

    @classmethod
    def load(
        cls,
        model: str,
        *,
        batch_size: int | None = None,
        enable_lora: bool = True,
        max_model_len: int = MAX_MODEL_LEN,
        tensor_parallel_size: int = 1,
    ) -> VLLMEngine:
        try:
            import vllm
        except ImportError:
            raise OptionalDependencyError("vllm") from None
        llm = vllm.LLM(
            model=model,
            enable_lora=enable_lora,
            max_lora_rank=MAX_LORA_RANK,
            max_loras=MAX_LORAS,
            max_model_len=max_model_len,
            generation_config="vllm",  # ignore generation_config.json's sampling defaults (Qwen: top_p 0.8)
            **parallel_kwargs(tensor_parallel_size),
        )
        return cls(llm, batch_size=batch_size)

    def close(self) -> None:
        self.llm = None

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: Sampling
    ) -> Iterator[list[Generation]]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        for chunk in chunks(requests, self.chunk_size):
            prepared = prepare_chunk(chunk, sampling, self.tokenizer, self.loras)
            outputs = self.llm.generate(
                [{"prompt_token_ids": ids} for ids in prepared.prompt_ids],
                [SamplingParams(**params) for params in prepared.params],
                use_tqdm=False,
                lora_request=[None if lora is None else LoRARequest(**lora) for lora in prepared.loras],
            )
            yield [
                to_generation(r, ids, out)
                for r, ids, out in zip(chunk, prepared.prompt_ids, outputs, strict=True)
            ]
