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


class Engine(Protocol):
    """Loads a model once and completes many chats.

    `generate` yields finished batches as soon as they complete so that callers can write them
    durably; the order of batches is the engine's choice (e.g. sorted by prompt length).
    """

    name: str

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: Sampling
    ) -> Iterator[list[Generation]]: ...

    def close(self) -> None: ...
