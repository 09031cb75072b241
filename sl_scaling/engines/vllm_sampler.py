"""The vLLM logits processor behind per-row seeds (`row_sampler` has the math and the bookkeeping).

vLLM loads it in its engine process by name (`vllm.ROW_SAMPLER`, in `LLM(logits_processors=[...])`); this module
imports vLLM, so nothing else imports it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from sl_scaling.engines.row_sampler import SEED_ARG, RaceBlock, RowBook, race_block


def fused_race_block() -> RaceBlock:
    """`race_block` compiled into a few fused kernels (eager it makes ~25 passes over rows × vocabulary
    per step); eager again, with a warning, if compilation fails."""
    compiled: RaceBlock = torch.compile(race_block, dynamic=True)

    def block(logits: torch.Tensor, keys: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        nonlocal compiled
        try:
            return compiled(logits, keys, temperature)
        except Exception as error:  # any compiler failure: the eager path is the same math
            if compiled is race_block:
                raise
            logging.getLogger(__name__).warning(
                "row sampler: torch.compile failed (%s); running eager", error
            )
            compiled = race_block
            return race_block(logits, keys, temperature)

    return block


class RowSeededSampler(LogitsProcessor):
    """Draws each seeded request's token from (row seed, position) and forces it; the request is greedy.

    Not argmax-invariant: it must run before vLLM's greedy argmax, which then returns the drawn token."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.book = RowBook(fused_race_block() if device.type == "cuda" else race_block)

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
