"""The inference-engine protocol shared by Phase 1 (teacher generation) and Phase 3 (evaluation)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationRequest:
    """One chat to complete. `adapter` names a LoRA adapter directory (None = the base model)."""

    key: Hashable
    messages: list[Message]
    adapter: str | None = None


@dataclass(frozen=True)
class WordScoringRequest:
    """A chat whose answer is scored, not sampled: how likely is each of `words` to be its first word."""

    key: Hashable
    messages: list[Message]
    words: tuple[str, ...]
    adapter: str | None = None


@dataclass(frozen=True)
class Generation:
    key: Hashable
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    max_new_tokens: int = 128
    seed: int | None = None


@dataclass(frozen=True)
class EngineLoad:
    """How to load a model: `tensor_parallel_size` shards vLLM over that many GPUs (HF uses one);
    `adapters=False` promises that no request names a LoRA adapter (vLLM then runs without LoRA
    layers); `eager` starts vLLM without compilation and CUDA graphs; `replicas` vLLM processes share
    one GPU."""

    batch_size: int | None = None
    tensor_parallel_size: int = 1
    adapters: bool = True
    eager: bool = False
    replicas: int = 1


class Engine(Protocol):
    """Loads a model once and completes many chats.

    `generate` yields finished batches as soon as they complete so that callers can write them
    durably; the order of batches is the engine's choice (e.g. sorted by prompt length).
    """

    name: str

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: Sampling
    ) -> Iterator[list[Generation]]: ...

    def word_probabilities(self, requests: Sequence[WordScoringRequest]) -> dict[Hashable, list[float]]:
        """Per request, for each word: P(the answer's first word is exactly that word), teacher-forced:
        P(the word's tokens) × P(the next token does not continue the word). No sampling."""
        ...

    def close(self) -> None: ...
