"""The vLLM logits processor behind per-row seeds (`row_sampler` has the math and the bookkeeping).

vLLM loads it in its engine process by name (`SAMPLER`, in `LLM(logits_processors=[...])`); this module
imports vLLM, so nothing else imports it.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from sl_scaling.engines.row_sampler import SEED_ARG, RowBook


class RowSeededSampler(LogitsProcessor):
    """Draws each seeded request's token from (row seed, position) and forces it; the request is greedy.

    Not argmax-invariant: it must run before vLLM's greedy argmax, which then returns the drawn token."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.book = RowBook()

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        args = sampling_params.extra_args or {}
        if SEED_ARG in args and sampling_params.temperature != 0:
            raise ValueError(f"{SEED_ARG} needs temperature 0 (the sampler forces the drawn token)")

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        self.book.update(
            batch_update.removed,
            [(row, params.extra_args, outputs) for row, params, _, outputs in batch_update.added],
            [(a, b, way == MoveDirectionality.SWAP) for a, b, way in batch_update.moved],
        )

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return self.book.draw(logits)
