"""What a caller decides for a generation or an evaluation, passed whole (beside `TrainConfig` for training).

The CLI and the pipeline build one of these; the stages read it. Adding a setting is one field here and
one option in the CLI, not a parameter threaded through every function in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from sl_scaling.errors import UsageError
from sl_scaling.grid import EVAL_SAMPLES, PROMPTS


@dataclass(frozen=True)
class GenerationOptions:
    """Phase 1: how many prompts, from which seed, on which engine (`auto` is resolved by the stage)."""

    n: int = PROMPTS
    seed: int = 42
    run: int = 1
    engine: str = "auto"
    max_new_tokens: int = 128
    batch_size: int | None = None
    #: GPUs vLLM shards one model over (the HF engine uses one).
    tensor_parallel_size: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UsageError(f"--n must be at least 1 (got {self.n})")


@dataclass(frozen=True)
class EvalOptions:
    """Phase 3 standalone (the control, re-evaluating adapters): how many answers, on which engine."""

    samples: int = EVAL_SAMPLES
    run: int = 1
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UsageError(f"--samples must be at least 1, not {self.samples}")
